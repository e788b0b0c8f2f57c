using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli.Tests;

public class ForwardGenerateCommandTests
{
    private static string Model(string variant) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "qwen2", variant);

    private static long[] PromptIds(string variant)
    {
        using var ids = Npy.Read(Path.Combine(Model(variant), "ids.npy"));
        using var row = ids.Select(0, 0);
        return row.ToLongArray();
    }

    [Test]
    public void ForwardWritesTheReferenceLogits()
    {
        var ids = PromptIds("f32-gqa-untied");
        var output = Path.Combine(CliRunner.TempDir(), "logits.npy");
        var r = CliRunner.Run(null, "forward", "--model", Model("f32-gqa-untied"), "--tokens", string.Join(",", ids), "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        using var ours = Npy.Read(output);
        Assert.That(ours.Shape.ToArray(), Is.EqualTo(new[] { ids.Length, 96 }));
        using var gold = Npy.Read(Path.Combine(Model("f32-gqa-untied"), "logits.npy"));
        using var row = gold.Select(0, 0);
        var a = ours.ToArray<float>(); var b = row.ToFloatArray();
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { num += (a[i] - b[i]) * (double)(a[i] - b[i]); den += (double)b[i] * b[i]; }
        Assert.That(Math.Sqrt(num / den), Is.LessThan(1e-5));
    }

    [TestCase("f32-gqa-untied")]
    [TestCase("f32-mha-tied")]
    public void GenerateMatchesGreedyRecomputation(string variant)
    {
        var ids = PromptIds(variant);
        var r = CliRunner.Run(null, "generate", "--model", Model(variant), $"--tokens={string.Join(",", ids)}", "--max-new-tokens", "8", "--ignore-eos");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        using var gold = Npy.Read(Path.Combine(Model(variant), "greedy.npy"));
        Assert.That(r.Stdout.Trim(), Is.EqualTo(string.Join(",", gold.ToLongArray())));
    }

    [Test]
    public void ClearErrorsOnBadTokens()
    {
        var r = CliRunner.Run(null, "forward", "--model", Model("f32-gqa-untied"), "--tokens", "1,x,3", "--out", "/tmp/x.npy");
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("'x'"));
        r = CliRunner.Run(null, "generate", "--model", Model("f32-gqa-untied"), "--tokens=5,-3", "--max-new-tokens", "2");
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("-3"));
        r = CliRunner.Run(null, "forward", "--model", Model("f32-gqa-untied"), "--tokens", "1,500", "--out", "/tmp/x.npy");
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("500"));
    }
}
