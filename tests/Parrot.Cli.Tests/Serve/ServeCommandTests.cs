using System.Diagnostics;
using System.Text.Json;

namespace Parrot.Cli.Tests.Serve;

/// <summary>The `parrot serve` command as a user runs it.</summary>
public class ServeCommandTests
{
    [Test]
    public void CudaWithoutABackendIsAClearError()
    {
        bool cuda;
        try { _ = global::Parrot.Tensors.Backends.For(global::Parrot.Tensors.Device.Parse("cuda")); cuda = true; }
        catch (NotSupportedException) { cuda = false; }
        if (!cuda)
        {
            // Checked before the model directory is opened (the server would otherwise start listening first).
            var (code, _, stderr) = CliRunner.Run(null, "serve", "--model", Path.Combine(ServeTestHost.Root, "missing"), "--device", "cuda");
            Assert.That(code, Is.EqualTo(2));
            Assert.That(stderr, Does.Contain("--device cuda: no CUDA device: "));
        }
        var (code2, _, stderr2) = CliRunner.Run(null, "serve", "--model", ServeTestHost.ModelDir, "--device", "tpu");
        Assert.That(code2, Is.EqualTo(2));
        Assert.That(stderr2, Does.Contain("--device"));
        var (code3, _, stderr3) = CliRunner.Run(null, "serve", "--model", Path.Combine(ServeTestHost.Root, "missing"));
        Assert.That(code3, Is.EqualTo(2));
        Assert.That(stderr3, Does.Contain("--model"));
    }

    [Test]
    public void AnAddressThisMachineDoesNotHaveIsAClearError()
    {
        // 192.0.2.1 is TEST-NET-1 (RFC 5737), never a local address: binding fails with EADDRNOTAVAIL, which
        // Kestrel passes through as a bare SocketException (it was an unhandled exception with a stack trace).
        var (code, stdout, stderr) = CliRunner.Run(null, "serve", "--model", ServeTestHost.ModelDir, "--host", "192.0.2.1", "--port", "0");
        Assert.That(code, Is.EqualTo(2), stdout + stderr);
        Assert.That(stderr, Does.StartWith("parrot serve: cannot listen on 192.0.2.1:0: ").And.Contain("--host must be an address of this machine"));
        Assert.That(stderr, Does.Not.Contain("   at "), "no stack trace");
    }

    /// <summary>Started as a user starts it (the default float32, and --dtype bf16, which the ready line names), it answers until killed.</summary>
    [TestCase(null)]
    [TestCase("bf16")]
    public async Task ServesOnLoopbackUntilStopped(string? dtype)
    {
        var dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "parrot.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        string[] dtypeArgs = dtype is null ? [] : ["--dtype", dtype];
        foreach (var a in new[] { dll, "serve", "--model", ServeTestHost.ModelDir, "--port", "0", "--max-batch", "2", "--max-queue", "4" }.Concat(dtypeArgs)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        try
        {
            string? line = await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.That(line, Does.StartWith("parrot serve: listening on http://127.0.0.1:"));
            var url = new Uri(line!.Split(' ')[4]);
            string? ready = await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.That(ready, Does.Contain("ready").And.Contain($"loaded ({dtype ?? "f32"}, "));
            using var client = new HttpClient { BaseAddress = url };
            Assert.That(JsonDocument.Parse(await client.GetStringAsync("/health")).RootElement.GetProperty("status").GetString(), Is.EqualTo("ok"));
            var (status, body) = await ServeTestHost.PostAsync(client, ServeTestHost.Request("hello", maxTokens: 3));
            Assert.That(status, Is.EqualTo(200), body.ToString());
        }
        finally
        {
            if (!p.HasExited) p.Kill(true);
            p.WaitForExit(10_000);
        }
    }
}
