using System.Text.Json;

namespace Parrot.Cli.Tests;

public class SelfTestCommandTests
{
    [Test]
    public void OnTheCpuEveryOpPassesAndTheJsonListsThem()
    {
        var dir = CliRunner.TempDir();
        var json = Path.Combine(dir, "selftest.json");
        var (code, stdout, stderr) = CliRunner.Run(null, "selftest", "--device", "cpu", "--out", json);
        Assert.That(code, Is.EqualTo(0), stdout + stderr);
        Assert.That(stdout, Does.Contain("err vs f64").And.Contain("softmax").And.Contain("matmul 2-D").And.Match(@"selftest cpu: \d+ passed, 0 failed"));
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var root = doc.RootElement;
        Assert.That(root.GetProperty("device").GetString(), Is.EqualTo("cpu"));
        Assert.That(root.GetProperty("failed").GetInt32(), Is.Zero);
        var cases = root.GetProperty("cases").EnumerateArray().ToList();
        Assert.That(cases, Has.Count.GreaterThan(80).And.Count.EqualTo(root.GetProperty("passed").GetInt32()));
        // Every case runs in float32 and bfloat16 unless it names its dtypes (float16 and float64 only where asked for).
        var dtypes = cases.Select(c => c.GetProperty("dtype").GetString()).Distinct().ToList();
        Assert.That(dtypes, Is.SupersetOf(new[] { "float32", "bfloat16" }).And.SubsetOf(new[] { "float32", "bfloat16", "float16", "float64" }));
        // The errors are real measurements: bf16 results differ from float64 by about their rounding, float32 far less.
        var rms = cases.First(c => c.GetProperty("op").GetString() == "rms norm" && c.GetProperty("dtype").GetString() == "bfloat16");
        Assert.That(rms.GetProperty("error_vs_f64").GetDouble(), Is.InRange(1e-4, 1e-2));
        Directory.Delete(dir, true);
    }

    [Test]
    public void WithoutAGpuCudaSaysWhyAndFails()
    {
        if (global::Parrot.Tensors.Cuda.CudaBackend.IsAvailable(out var description)) Assert.Ignore($"a GPU is present: {description}");
        var (code, _, stderr) = CliRunner.Run(null, "selftest", "--device", "cuda");
        Assert.That(code, Is.EqualTo(2), "a usage error, as in every model command");
        Assert.That(stderr, Does.StartWith("parrot selftest: --device cuda: no CUDA device: "));
    }

    [Test]
    public void AnUnknownOpFilterIsReported()
    {
        var (code, _, stderr) = CliRunner.Run(null, "selftest", "--op", "no-such-op");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("no op matches"));
    }

    [Test]
    public void ABenchGroupNeedsTheBenchAndAKnownName()
    {
        var (code, _, stderr) = CliRunner.Run(null, "selftest", "--op", "softmax", "--bench-group", "decode-attention");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--bench-group needs --bench and one of: decode-attention"));
        (code, _, stderr) = CliRunner.Run(null, "selftest", "--op", "softmax", "--bench", Path.Combine(CliRunner.TempDir(), "b.json"), "--bench-group", "gemm");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain("--bench").And.Not.Contain("Unhandled"));
    }
}
