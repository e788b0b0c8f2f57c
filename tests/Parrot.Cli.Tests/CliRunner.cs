using System.Diagnostics;

namespace Parrot.Cli.Tests;

/// <summary>Runs the built `parrot` command as a user would (dotnet parrot.dll ...), capturing its output.</summary>
internal static class CliRunner
{
    public static (int ExitCode, string Stdout, string Stderr) Run(string? stdin, params string[] args) => RunIn(null, stdin, args);

    /// <summary><see cref="Run"/> in <paramref name="workingDirectory"/> (null: this process's).</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunIn(string? workingDirectory, string? stdin, params string[] args)
    {
        var dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "parrot.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        if (workingDirectory is not null) psi.WorkingDirectory = workingDirectory;
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(300_000)) { p.Kill(true); Assert.Fail($"parrot {string.Join(' ', args)} did not finish in 5 minutes"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    public static string TempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "parrot-cli-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }
}
