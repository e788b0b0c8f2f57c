using Parrot.Autograd;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Data;
using Parrot.Parrot.Data.World;
using Parrot.Parrot.Text;
using Parrot.Parrot.Training;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

namespace Parrot.Cli.Tests;

/// <summary>The committed assets/tiny (made by tools/make-tiny-assets.sh) load and fit together.</summary>
public class TinyAssetsTests
{
    private static string Assets()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "assets", "tiny");
            if (File.Exists(Path.Combine(candidate, "vision", "config.json"))) return candidate;
        }
        Assert.Fail($"assets/tiny not found above {TestContext.CurrentContext.TestDirectory}");
        return "";
    }

    /// <summary>
    /// `bench tiny` finds the repository's assets/tiny as `demo` does, from any working folder (the working folder, the
    /// executable's folder or any folder above them): its default was the relative path assets/tiny, so it worked only
    /// from the repository's root.
    /// </summary>
    [Test]
    public void BenchTinyFindsTheAssetsOutsideTheRepositoryRoot()
    {
        var elsewhere = CliRunner.TempDir();
        var (code, stdout, stderr) = CliRunner.RunIn(elsewhere, null, "bench", "tiny", "--reps", "1", "--batch", "1", "--seq", "2");
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(stdout, Does.Contain("vision: ").And.Contain("lm forward + backward, 1 × 2 tokens"));
        Directory.Delete(elsewhere);
    }

    [Test]
    public void VisionTowerLoadsAndSeesTheWorld()
    {
        var dir = Path.Combine(Assets(), "vision");
        using var tower = ClipVisionLoader.Load(dir, DType.F32);
        var c = tower.Config;
        Assert.That(c.ImageSize % c.PatchSize, Is.EqualTo(0));
        Assert.That(c.ImageSize / c.PatchSize, Is.EqualTo(3), "one patch per cell of the world's 3 × 3 slot grid");
        var pre = ImagePreprocessor.FromDirectory(dir);
        Assert.That(pre.FixedOutputShape, Is.EqualTo(new[] { 3, c.ImageSize, c.ImageSize }));
        Assert.That(tower.ParameterCount(), Is.LessThan(2_000_000));

        // Two scenes that differ only in the colour of the object on the left: the left patch's features differ
        // clearly, the empty corner patches hardly.
        var left = new SceneObject(ShapeKind.Star, WorldColor.Red, SizeClass.Large, Slot.Left, 0.19, 0.5);
        var right = new SceneObject(ShapeKind.Circle, WorldColor.Blue, SizeClass.Small, Slot.Right, 0.81, 0.5);
        var a = new Scene(WorldColor.White, [left, right]);
        var b = new Scene(WorldColor.White, [left with { Color = WorldColor.Green }, right]);
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        Tensor Features(Scene s)
        {
            var image = new RgbImage(c.ImageSize, c.ImageSize, SceneRenderer.Render(s, c.ImageSize));
            return tower.HiddenState(new Variable(pre.Process(image, padToSquare: true).Unsqueeze(0)), -1).Value.Select(0, 0);
        }
        var fa = Features(a).ToFloatArray();
        var fb = Features(b).ToFloatArray();
        Assert.That(fa.All(float.IsFinite), Is.True);
        double Distance(int token) => Math.Sqrt(Enumerable.Range(token * c.HiddenSize, c.HiddenSize).Sum(i => (double)(fa[i] - fb[i]) * (fa[i] - fb[i])));
        // Token 0 is CLS; patch (row 1, col 0) is token 1 + 3 = 4. Attention mixes a little of every patch into
        // every token, but the patch that shows the changed object changes most.
        var others = Enumerable.Range(1, 9).Where(t => t != 4).Select(Distance).ToArray();
        TestContext.Progress.WriteLine($"feature change: left patch {Distance(4):F2}, other patches {string.Join(" ", others.Select(d => d.ToString("F2")))}");
        Assert.That(Distance(4), Is.GreaterThan(2 * others.Max()), "the left patch vs every other patch");
    }

    [Test]
    public void LanguageModelAndTokenizerFitTogetherAndKnowTheWorldsText()
    {
        var dir = Path.Combine(Assets(), "lm");
        var tok = BpeTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        using var lm = Qwen2Loader.Load(dir, DType.F32);
        Assert.That(lm.Config.VocabSize, Is.EqualTo(tok.IdCount));
        Assert.That(tok.IdCount, Is.InRange(1024, 4096));
        foreach (var special in new[] { "<|endoftext|>", "<|im_start|>", "<|im_end|>" })
        {
            var id = tok.TokenToId(special);
            Assert.That(id, Is.Not.Null, special);
            Assert.That(tok.IsSpecial(id!.Value), Is.True, special);
        }
        Assert.That(lm.Config.EosTokenIds, Does.Contain(tok.TokenToId("<|im_end|>")!.Value));
        Assert.That(() => new ChatMl(tok), Throws.Nothing);
        Assert.That(lm.ParameterCount(), Is.LessThan(2_000_000));

        // Held-out text of the same generator (a seed the assets were not made from), in all six languages:
        // the LM predicts it far better than the uniform guess ln(vocab).
        var world = WorldBuilder.Build(new WorldOptions { Seed = 987_654, Stage1Count = 0, Stage2Count = 0, BenchmarkCount = 0, TextScenes = 12 });
        Assert.That(world.Text.Select(d => d.Language).Distinct().Count(), Is.EqualTo(6));
        var windows = new Dictionary<string, List<int[]>>();
        foreach (var d in world.Text)
        {
            var ids = tok.Encode(d.Text, parseSpecialTokens: false);
            Assert.That(tok.Decode(ids), Is.EqualTo(d.Text), d.Id);
            if (ids.Length >= 24) (windows.TryGetValue(d.Language, out var w) ? w : windows[d.Language] = []).Add(ids[..24]);
        }
        Assert.That(windows.Keys, Has.Count.EqualTo(6));
        var losses = windows.ToDictionary(kv => kv.Key, kv => CausalLmTrainer.Evaluate(lm, kv.Value, 8));
        double loss = CausalLmTrainer.Evaluate(lm, windows.Values.SelectMany(w => w).ToList(), 8);
        TestContext.Progress.WriteLine($"tiny LM on held-out world text: {loss:F3} nats/token (uniform {Math.Log(tok.IdCount):F3}); "
            + string.Join(", ", losses.Select(kv => $"{kv.Key} {kv.Value:F3}")));
        Assert.That(loss, Is.LessThan(2.0));
        foreach (var (language, l) in losses) Assert.That(l, Is.LessThan(2.5), language);
    }

    [Test]
    public void AssetsAreSmall()
    {
        long bytes = Directory.EnumerateFiles(Assets(), "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Assert.That(bytes, Is.LessThan(8L << 20));
    }
}
