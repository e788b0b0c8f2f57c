namespace Parrot.Cli.Tests;

/// <summary>
/// Runs the `parrot` entry point in this process (<see cref="ParrotCommandLine.Run"/>), as <see cref="CliRunner"/> runs it
/// as a separate process: what the command line writes through its invocation's output and error (help, usage errors,
/// the benches' tables) is captured; nothing process-wide is redirected, so tests calling it may run in parallel.
/// </summary>
internal static class CliInProcess
{
    public static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = ParrotCommandLine.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
