namespace Parrot.Cli;

/// <summary>A usage or input problem reported to the user as one line, with exit code 2.</summary>
internal sealed class CliException(string message) : Exception(message);

/// <summary>Runs a command body and turns every expected failure into a clear message and a non-zero exit.</summary>
internal static class CliErrors
{
    public static int Run(string command, Func<int> body)
    {
        try { return body(); }
        catch (CliException e) { Console.Error.WriteLine($"parrot {command}: {Unprefixed(command, e.Message)}"); return 2; }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException or IOException
                                  or UnauthorizedAccessException or ArgumentException or FormatException or InvalidOperationException
                                  or NotSupportedException or OutOfMemoryException or global::Parrot.Nn.StateDictException)
        {
            Console.Error.WriteLine($"parrot {command}: {Unprefixed(command, e.Message)}");
            return 1;
        }
    }

    /// <summary>
    /// <paramref name="message"/> without a leading "<paramref name="command"/>: ": the library names the operation that
    /// failed ("generate: token id …", "train-lm: sequence 2 …", "pretrain-vision: steps …"), which is the command's own
    /// name, so the user read it twice ("parrot generate: generate: …").
    /// </summary>
    internal static string Unprefixed(string command, string message) =>
        message.StartsWith(command + ": ", StringComparison.Ordinal) ? message[(command.Length + 2)..] : message;
}
