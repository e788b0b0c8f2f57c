using System.Diagnostics;
using System.Text;

namespace Parrot.Tests.Shared;

/// <summary>
/// Runs a reader over seeded mutations of a valid input (<see cref="FuzzMutator"/>): each case must be read, or refused
/// with one of the reader's documented exception types whose message names the input; anything else (a
/// NullReferenceException, an index or argument out of range, an overflow, a cast, a missing key, a failed check
/// of what was read, <see cref="Require"/>) or a case running past its time fails the test, with the case's seed, mutations and bytes.
/// </summary>
internal static class FuzzHarness
{
    /// <summary>The cases of a fuzz test: 200, or PARROT_FUZZ_CASES for a longer search by hand (the seeds stay those of the first 200).</summary>
    public static int Cases { get; } =
        int.TryParse(Environment.GetEnvironmentVariable("PARROT_FUZZ_CASES"), out int n) && n > 0 ? n : 200;

    /// <summary>
    /// Reads <paramref name="valid"/> (it must be read) and then <see cref="Cases"/> mutations of it with
    /// <paramref name="read"/>, which also checks what it needs of a success (finite numbers, …) with <see cref="Require"/>.
    /// </summary>
    /// <param name="seed">Case i is mutated by <c>new FuzzMutator(seed * 100_003 + i)</c>.</param>
    /// <param name="read">Reads one input; throwing is a refusal.</param>
    /// <param name="messageStartsWith">What a refusal's message must start with (the file's name), or null.</param>
    /// <param name="expected">The exception types a refusal may have (or derive from).</param>
    public static void Run(byte[] valid, int seed, Action<byte[]> read, string? messageStartsWith, params Type[] expected)
    {
        var clock = Stopwatch.StartNew();
        read(valid);
        var warm = clock.Elapsed;
        var failures = new List<string>();
        int refused = 0;
        for (int i = 0; i < Cases && failures.Count < 5; i++)
        {
            byte[] input = new FuzzMutator(seed * 100_003 + i).Mutate(valid, out string mutations);
            // A thread of its own (not the pool's, which other tests' work can keep busy) that can be left behind if it hangs.
            var task = Task.Factory.StartNew(() =>
            {
                try { read(input); return null; }
                catch (Exception e) { return e; }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            string Case() => $"case {i} (seed {seed}): {mutations}\n  input: {Show(input)}";
            // A hang is a failure of its own; the stuck case is left to finish or not in the background.
            if (!task.Wait(TimeSpan.FromSeconds(1))) { failures.Add($"{Case()}\n  did not finish within 1 s"); break; }
            if (task.Result is not { } error) continue;
            refused++;
            bool typeOk = expected.Any(t => t.IsInstanceOfType(error));
            bool messageOk = messageStartsWith is null || error.Message.StartsWith(messageStartsWith, StringComparison.Ordinal);
            if (!typeOk || !messageOk)
                failures.Add($"{Case()}\n  threw {error.GetType().Name}: {error.Message}\n  {error.StackTrace?.Split('\n').FirstOrDefault()?.Trim()}");
        }
        TestContext.Out.WriteLine($"fuzz seed {seed}: {Cases} cases, {refused} refused, {Cases - refused} read; valid input {warm.TotalMilliseconds:F0} ms, all {clock.Elapsed.TotalMilliseconds:F0} ms");
        Assert.That(failures.Count, Is.Zero, $"expected success or {string.Join(" / ", expected.Select(t => t.Name))}"
            + (messageStartsWith is null ? "" : $" starting '{messageStartsWith}'") + ":\n" + string.Join("\n", failures));
        // Each fuzz test is meant to take well under 2 s; the bound here is loose, for a loaded machine.
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(10.0 * Cases / 200), "the cases took too long");
    }

    /// <summary>
    /// <see cref="Run"/> for a config file whose reader's Load is ReadAllText and Parse(text, source): mutations of the
    /// file <paramref name="fixture"/>, each given to <paramref name="parse"/> as the text Load would read
    /// (<see cref="AsFileText"/>); a refusal must be an InvalidDataException whose message starts with "<paramref name="source"/>: ".
    /// </summary>
    /// <param name="parse">Parses one text, naming it <paramref name="source"/>, and checks what was read with <see cref="Require"/>.</param>
    public static void RunConfigText(string fixture, int seed, string source, Action<string> parse) =>
        Run(File.ReadAllBytes(fixture), seed, bytes => parse(AsFileText(bytes)), source + ": ", typeof(InvalidDataException));

    /// <summary>
    /// The text <see cref="File.ReadAllText(string)"/> gives for a file of <paramref name="bytes"/> (UTF-8, a byte order mark
    /// honoured, bad bytes as U+FFFD), for readers whose Load is ReadAllText and Parse: writing a file per case costs more
    /// than the parse on a busy disk.
    /// </summary>
    public static string AsFileText(byte[] bytes)
    {
        using var reader = new StreamReader(new MemoryStream(bytes), Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        return reader.ReadToEnd();
    }

    /// <summary>For a reader's check of what it read: a false <paramref name="condition"/> fails the case, saying what was accepted.</summary>
    /// <remarks>Not an NUnit assertion, which would also be recorded against the test from the case's thread.</remarks>
    public static void Require(bool condition, string accepted)
    {
        if (!condition) throw new AcceptedBadValueException($"accepted {accepted}");
    }

    private sealed class AcceptedBadValueException(string message) : Exception(message);

    /// <summary>The input as text, non-printable bytes as \xNN, cut to 400 characters.</summary>
    private static string Show(byte[] input)
    {
        var s = new StringBuilder();
        foreach (byte b in input.Take(400))
            s.Append(b is >= 0x20 and < 0x7F ? ((char)b).ToString() : $"\\x{b:X2}");
        if (input.Length > 400) s.Append($"… ({input.Length} bytes)");
        return s.ToString();
    }
}
