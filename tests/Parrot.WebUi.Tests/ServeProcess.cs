using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace Parrot.WebUi.Tests;

/// <summary>`dotnet parrot.dll serve` run as a user would, on 127.0.0.1 and a free port; ready once it says so.</summary>
internal sealed partial class ServeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private ServeProcess(Process process) => _process = process;

    public Uri Address { get; private set; } = null!;

    public string Log { get { lock (_log) return _log.ToString(); } }

    public static async Task<ServeProcess> StartAsync(string modelDir, params string[] extra)
    {
        var dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "parrot.dll");
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { dll, "serve", "--model", modelDir, "--host", "127.0.0.1", "--port", "0" }.Concat(extra)) psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet parrot.dll serve");
        var server = new ServeProcess(p);
        var address = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) { address.TrySetException(new InvalidOperationException("parrot serve ended")); ready.TrySetException(new InvalidOperationException("parrot serve ended")); return; }
            lock (server._log) server._log.AppendLine(e.Data);
            if (Listening().Match(e.Data) is { Success: true } m) address.TrySetResult(new Uri(m.Groups[1].Value));
            if (e.Data.EndsWith("; ready", StringComparison.Ordinal)) ready.TrySetResult();
        };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (server._log) server._log.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        try
        {
            server.Address = await address.Task.WaitAsync(TimeSpan.FromSeconds(60));
            await ready.Task.WaitAsync(TimeSpan.FromSeconds(60));
        }
        catch (Exception e)
        {
            await server.DisposeAsync();
            throw new InvalidOperationException($"parrot serve did not become ready: {e.Message}\n{server.Log}");
        }
        return server;
    }

    [GeneratedRegex(@"listening on (\S+)")]
    private static partial Regex Listening();

    public bool HasExited => _process.HasExited;

    /// <summary>Kills the server (the page then finds it gone).</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20));
    }

    public async ValueTask DisposeAsync()
    {
        try { await KillAsync(); }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException) { }
        _process.Dispose();
    }
}
