using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Formats;
using Parrot.Tests.Shared;

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

    /// <summary>
    /// The fixture's context (max_position_embeddings) is 128: forward and generate refuse what serve refuses, with the
    /// prompt's length, the new tokens and the context named, before the model runs; a generation that fills the context
    /// exactly runs. Without the check both ran past the trained positions (the RoPE tables simply grew).
    /// </summary>
    [Test]
    public void PromptsPastTheContextAreRefused()
    {
        string model = Model("f32-gqa-untied");
        string Ids(int n) => string.Join(",", Enumerable.Range(0, n).Select(i => 1 + i % 90));
        string output = Path.Combine(CliRunner.TempDir(), "logits.npy");
        var r = CliRunner.Run(null, "forward", "--model", model, "--tokens", Ids(129), "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.Contain("maximum context length is 128 tokens; the prompt has 129 tokens"));
        Assert.That(File.Exists(output), Is.False);
        r = CliRunner.Run(null, "forward", "--model", model, "--tokens", Ids(128), "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);

        r = CliRunner.Run(null, "generate", "--model", model, "--tokens=" + Ids(120), "--max-new-tokens", "9", "--ignore-eos");
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.Contain("maximum context length is 128 tokens; the prompt has 120 tokens and 9 more were asked for (max new tokens), 129 in all"));
        Assert.That(r.Stdout, Is.Empty);
        r = CliRunner.Run(null, "generate", "--model", model, "--tokens=" + Ids(128), "--max-new-tokens", "1");
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.Contain("the prompt has 128 tokens and 1 more were asked for"));
        r = CliRunner.Run(null, "generate", "--model", model, "--tokens=" + Ids(120), "--max-new-tokens", "8", "--ignore-eos");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(r.Stdout.Trim().Split(','), Has.Length.EqualTo(8), "the prompt and the answer fill the context");
    }

    /// <summary>
    /// A checkpoint with a NaN weight (the final norm's: every logit NaN) fails at the first step with a message that says
    /// so, greedy (the pick taken by the backend) and sampled; before, greedy printed id 0 for every token asked for.
    /// </summary>
    [Test]
    public void ANaNCheckpointFailsClearly()
    {
        string dir = CliRunner.TempDir();
        using (var lm = new Qwen2ForCausalLM(TinyModels.TextConfig(), 4))
        {
            using var nan = Tensor.Full([lm.Config.HiddenSize], double.NaN);
            lm.Model.Norm.Weight.Value.CopyFrom(nan);
            Qwen2Loader.Save(lm, dir);
        }
        TinyModels.WriteTokenizer(dir);
        var r = CliRunner.Run(null, "generate", "--model", dir, "--tokens", "1,2,3", "--max-new-tokens", "4");
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.Contain("the logits of step 1 are all NaN or −∞, so no token can be chosen — the checkpoint or the inputs hold non-finite values"));
        Assert.That(r.Stdout, Is.Empty);
        r = CliRunner.Run(null, "chat", "--model", dir, "--prompt", "hi", "--max-new-tokens", "4", "--temperature", "0.7");
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.Contain("the logits of step 1 are all NaN or −∞"));
    }

    /// <summary>
    /// A checkpoint whose every row of logits holds a +∞ (the final norm keeps one hidden unit, scaled by 1e30, and two head
    /// rows of ±1e30 on it overflow to +∞ and −∞): greedy takes the +∞ id as the largest logit; sampling, with or without
    /// top-p, fails at the first step with a message that says so. Before, sampling without top-p printed the last id of
    /// the vocabulary for every token asked for (∞ − ∞ made every probability NaN and the draw ran past them all).
    /// </summary>
    [Test]
    public void APlusInfinityCheckpointFailsClearlyWhenSampled()
    {
        string dir = CliRunner.TempDir();
        using (var lm = new Qwen2ForCausalLM(TinyModels.TextConfig() with { TieWordEmbeddings = false }, 5))
        {
            var p = lm.NamedParameters().ToDictionary(x => x.Name, x => x.Parameter.Value);
            int hidden = lm.Config.HiddenSize;
            using (var norm = Tensor.FromArray(Enumerable.Range(0, hidden).Select(i => i == 0 ? 1e30 : 0.0).ToArray(), hidden))
                p["model.norm.weight"].CopyFrom(norm);
            p["lm_head.weight"].Narrow(0, 7, 1).Narrow(1, 0, 1).Fill(1e30);
            p["lm_head.weight"].Narrow(0, 9, 1).Narrow(1, 0, 1).Fill(-1e30);
            Qwen2Loader.Save(lm, dir);
        }
        TinyModels.WriteTokenizer(dir);
        var r = CliRunner.Run(null, "generate", "--model", dir, "--tokens", "1,2,3", "--max-new-tokens", "4", "--ignore-eos");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(r.Stdout.Trim().Split(','), Is.All.EqualTo("7").Or.EqualTo("9"), "greedy takes the +∞ logit");
        foreach (string[] sampling in new[] { new[] { "--temperature", "0.7" }, ["--temperature", "1", "--top-p", "0.9"] })
        {
            r = CliRunner.Run(null, ["chat", "--model", dir, "--prompt", "hi", "--max-new-tokens", "4", .. sampling]);
            Assert.That(r.ExitCode, Is.EqualTo(1), $"{string.Join(' ', sampling)}: {r.Stdout}{r.Stderr}");
            Assert.That(r.Stderr, Does.Contain("the logits leave no probability to sample from (a +∞ logit) — the checkpoint or the inputs hold non-finite values"), string.Join(' ', sampling));
        }
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
