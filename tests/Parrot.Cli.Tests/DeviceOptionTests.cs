using Parrot.Tensors;

namespace Parrot.Cli.Tests;

/// <summary>`--device` of the model commands: the CPU gives what the default gives; CUDA says why it cannot be used where there is none.</summary>
public class DeviceOptionTests
{
    private static string Model => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "qwen2", "f32-gqa-untied");

    /// <summary>Whether this machine has a usable CUDA device (the backend would start).</summary>
    private static bool CudaUsable()
    {
        try { _ = Backends.For(Device.Parse("cuda")); return true; }
        catch (NotSupportedException) { return false; }
    }

    [Test]
    public void ForwardOnTheCpuEqualsTheDefault()
    {
        string dir = CliRunner.TempDir(), a = Path.Combine(dir, "a.npy"), b = Path.Combine(dir, "b.npy");
        var r1 = CliRunner.Run(null, "forward", "--model", Model, "--tokens", "1,5,9,2", "--out", a);
        var r2 = CliRunner.Run(null, "forward", "--model", Model, "--tokens", "1,5,9,2", "--out", b, "--device", "cpu");
        Assert.That(r1.ExitCode, Is.EqualTo(0), r1.Stderr);
        Assert.That(r2.ExitCode, Is.EqualTo(0), r2.Stderr);
        Assert.That(File.ReadAllBytes(b), Is.EqualTo(File.ReadAllBytes(a)));
    }

    [Test]
    public void GenerateOnTheCpuEqualsTheDefault()
    {
        var r1 = CliRunner.Run(null, "generate", "--model", Model, "--tokens=3,4,5", "--max-new-tokens", "5", "--ignore-eos");
        var r2 = CliRunner.Run(null, "generate", "--model", Model, "--tokens=3,4,5", "--max-new-tokens", "5", "--ignore-eos", "--device", "cpu");
        Assert.That(r1.ExitCode, Is.EqualTo(0), r1.Stderr);
        Assert.That(r2.ExitCode, Is.EqualTo(0), r2.Stderr);
        Assert.That(r2.Stdout, Is.EqualTo(r1.Stdout));
    }

    public static IEnumerable<TestCaseData> Commands()
    {
        string tmp = Path.GetTempPath();
        yield return new TestCaseData((object)new[] { "forward", "--model", "M", "--tokens", "1,2", "--out", Path.Combine(tmp, "never.npy") }).SetArgDisplayNames("forward");
        yield return new TestCaseData((object)new[] { "generate", "--model", "M", "--tokens=1,2", "--max-new-tokens", "2" }).SetArgDisplayNames("generate");
        yield return new TestCaseData((object)new[] { "vision", "--model", "M", "--image", "I.png", "--out", Path.Combine(tmp, "never.npy") }).SetArgDisplayNames("vision");
        yield return new TestCaseData((object)new[] { "chat", "--model", "M", "--prompt", "hi" }).SetArgDisplayNames("chat");
        yield return new TestCaseData((object)new[] { "eval", "--model", "M", "--data", "D.tsv", "--out", Path.Combine(tmp, "never-eval") }).SetArgDisplayNames("eval");
        yield return new TestCaseData((object)new[] { "train", "--stage", "1", "--model", "M", "--data", "D.json", "--images", "I", "--out", Path.Combine(tmp, "never-train") }).SetArgDisplayNames("train");
        yield return new TestCaseData((object)new[] { "train-lm", "--model", "M", "--tokens", "T.jsonl", "--steps", "1", "--batch", "1", "--lr", "0.1", "--log", Path.Combine(tmp, "never.jsonl") }).SetArgDisplayNames("train-lm");
        yield return new TestCaseData((object)new[] { "pretrain-vision", "--world", Path.Combine(tmp, "no-such-world"), "--out", Path.Combine(tmp, "never-vision") }).SetArgDisplayNames("pretrain-vision");
        yield return new TestCaseData((object)new[] { "serve", "--model", Path.Combine(tmp, "no-such-model-dir") }).SetArgDisplayNames("serve");
        yield return new TestCaseData((object)new[] { "bench", "train", "--steps", "1", "--hidden", "32", "--layers", "1" }).SetArgDisplayNames("bench train");
        yield return new TestCaseData((object)new[] { "bench", "decoder", "--shape", "tiny" }).SetArgDisplayNames("bench decoder");
    }

    [TestCaseSource(nameof(Commands))]
    public void CudaSaysWhyItCannotBeUsed(string[] args)
    {
        // The device is checked before the model is opened: the placeholder paths are never read.
        var r = CliRunner.Run(null, [.. args, "--device", "cuda:0"]);
        if (CudaUsable())
        {
            // With a GPU the command goes on to its model (the placeholders then fail, or a bench runs): the device is not the problem.
            Assert.That(r.Stderr, Does.Not.Contain("no CUDA device"));
            return;
        }
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("--device cuda:0"));
        Assert.That(r.Stderr, Does.Contain("no CUDA device: "));
    }

    [Test]
    public void AnUnknownDeviceIsAClearError()
    {
        var r = CliRunner.Run(null, "forward", "--model", Model, "--tokens", "1,2", "--out", Path.Combine(CliRunner.TempDir(), "x.npy"), "--device", "gpu");
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("'gpu' is not a device"));
    }
}
