using System.Text.Json.Nodes;
using Parrot.Nn;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Tests;

/// <summary>
/// Whole Parrot model directories in the released layout (Fixtures/parrot, made by tools/make_parrot_fixtures.py
/// with the independent PyTorch reference tools/parrot_reference.py): image → tower → projector → MoE → splice → Qwen2.
/// </summary>
public class ParrotModelDirectoryTests
{
    private readonly List<string> _temps = [];

    private static string Fixture(string name) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", name);

    private static float[] Npy32(string path)
    {
        using var t = Npy.Read(path);
        return t.ToFloatArray();
    }

    private static int[] Prompt()
    {
        using var t = Npy.Read(Fixture("prompt.npy"));
        return t.ToLongArray().Select(i => (int)i).ToArray();
    }

    private static RgbImage Image() => ImageLoader.Load(Fixture("image.png"));

    private static double RelL2(float[] a, float[] b)
    {
        Assert.That(a, Has.Length.EqualTo(b.Length));
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { num += (a[i] - (double)b[i]) * (a[i] - (double)b[i]); den += (double)b[i] * b[i]; }
        return Math.Sqrt(num / den);
    }

    private string Temp()
    {
        var d = Path.Combine(Path.GetTempPath(), "parrot-dir-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        _temps.Add(d);
        return d;
    }

    [TearDown]
    public void CleanUp()
    {
        foreach (var d in _temps) try { Directory.Delete(d, true); } catch (IOException) { }
        _temps.Clear();
    }

    /// <summary>A copy of fixture <paramref name="name"/> (and, beside it, the tower folder) with config.json edited.</summary>
    private string Copy(string name, Action<JsonObject>? config = null, Action<Dictionary<string, Tensor>>? tensors = null, bool withTower = true)
    {
        string root = Temp(), dir = Path.Combine(root, name);
        CopyDir(Fixture(name), dir);
        if (withTower) CopyDir(Fixture("tower"), Path.Combine(root, "tower"));
        if (config is not null)
        {
            var o = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
            config(o);
            File.WriteAllText(Path.Combine(dir, "config.json"), o.ToJsonString());
        }
        if (tensors is not null) RewriteCheckpoint(dir, tensors);
        return dir;
    }

    private static void RewriteCheckpoint(string dir, Action<Dictionary<string, Tensor>> edit)
    {
        using var scope = TensorScope.Begin();
        Dictionary<string, Tensor> all;
        using (var ckpt = SafetensorsCheckpoint.Open(dir))
            all = ckpt.Names.ToDictionary(n => n, n => ckpt.Load(n).Contiguous());
        edit(all);
        SafetensorsCheckpoint.Save(dir, all.ToList());
    }

    private static void CopyDir(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }

    private static float[] Logits(ParrotModelDirectory m, int[] ids, RgbImage? image)
    {
        using var t = m.Logits(ids, image);
        return t.ToFloatArray();
    }

    [Test]
    public void Float32WithTheTowerInItsOwnFolderMatchesTheReference()
    {
        using var m = ParrotModelDirectory.Load(Fixture("f32-separate"));
        Assert.That(m.VisionWeightsInCheckpoint, Is.False);
        Assert.That(m.VisionTowerDirectory, Is.EqualTo(Path.GetFullPath(Fixture("tower"))));
        Assert.That(m.PreprocessorFile, Is.EqualTo(Path.Combine(Path.GetFullPath(Fixture("tower")), "preprocessor_config.json")));
        Assert.That(m.ImageTokens, Is.EqualTo(17));
        Assert.That(m.Model.Model.EmbedTokens.Weight.DType, Is.EqualTo(DType.F32));
        var ids = Prompt();
        using var logits = m.Logits(ids, Image());
        Assert.That(logits.Shape.ToArray(), Is.EqualTo(new[] { ids.Length - 1 + 17, 64 }));
        double err = RelL2(logits.ToFloatArray(), Npy32(Path.Combine(Fixture("f32-separate"), "logits.npy")));
        TestContext.Out.WriteLine($"f32 image → logits rel L2 {err:E2}");
        Assert.That(err, Is.LessThan(1e-4));

        // The routing weights of the MoE, and the text-only path (the placeholder left out, no image).
        using var scope = TensorScope.Begin();
        using var ng = global::Parrot.Autograd.Graph.NoGrad();
        var output = m.Model.Forward([new ParrotSample(ids, null, 0)], m.ImageFeatures(Image()));
        Assert.That(RelL2(output.Routing[0]!.Value.ToFloatArray(), Npy32(Path.Combine(Fixture("f32-separate"), "routing.npy"))), Is.LessThan(1e-5));
        var text = ids.Where(i => i != ParrotSample.ImageToken).ToArray();
        Assert.That(RelL2(Logits(m, text, null), Npy32(Path.Combine(Fixture("f32-separate"), "logits_text.npy"))), Is.LessThan(1e-5));
    }

    [Test]
    public void Bf16ShardedWithTheTowerInsideMatchesTheReference()
    {
        // bf16-bundled's tower inside the checkpoint differs from ../tower's weights: the golden uses the bundled one.
        using var m = ParrotModelDirectory.Load(Fixture("bf16-bundled"), DType.F32);
        Assert.That(m.VisionWeightsInCheckpoint, Is.True);
        Assert.That(m.Model.Config.MmVisionSelectLayer, Is.EqualTo(1));
        var gold = Npy32(Path.Combine(Fixture("bf16-bundled"), "logits.npy"));
        double err = RelL2(Logits(m, Prompt(), Image()), gold);
        TestContext.Out.WriteLine($"bf16 weights, f32 compute: rel L2 {err:E2}");
        Assert.That(err, Is.LessThan(1e-4));

        // As released: bf16 weights computed in bf16 (rounding at every op: a loose bound).
        using var native = ParrotModelDirectory.Load(Fixture("bf16-bundled"));
        Assert.That(native.Model.Model.EmbedTokens.Weight.DType, Is.EqualTo(DType.BF16));
        Assert.That(native.VisionTower!.VisionModel.Embeddings.PatchEmbedding.Weight.DType, Is.EqualTo(DType.BF16));
        double errBf16 = RelL2(Logits(native, Prompt(), Image()), gold);
        TestContext.Out.WriteLine($"bf16 compute: rel L2 {errBf16:E2}");
        Assert.That(errBf16, Is.LessThan(5e-2));
    }

    [Test]
    public void StageOneWithPatchFeaturesDropsTheClsTokenAndBypassesTheMoe()
    {
        string dir = Copy("f32-separate", c => { c["use_moe"] = false; c["mm_vision_select_feature"] = "patch"; });
        using var m = ParrotModelDirectory.Load(dir);
        Assert.That(m.ImageTokens, Is.EqualTo(16));
        var ids = Prompt();
        using var logits = m.Logits(ids, Image());
        Assert.That(logits.Dim(0), Is.EqualTo(ids.Length - 1 + 16));
        Assert.That(RelL2(logits.ToFloatArray(), Npy32(Path.Combine(Fixture("f32-separate"), "logits_patch_nomoe.npy"))), Is.LessThan(1e-4));
        var last = logits.ToFloatArray().Skip((logits.Dim(0) - 1) * 64).ToArray();
        Assert.That(m.Generate(ids, Image(), 1, [63])[0], Is.EqualTo(Array.IndexOf(last, last.Max())));
    }

    [TestCase("f32-separate")]
    [TestCase("bf16-bundled")]
    public void AnAbsoluteTowerPathAndTheOverrideWork(string name)
    {
        string tower = Path.GetFullPath(Fixture("tower"));
        string dir = Copy(name, c => c["mm_vision_tower"] = tower, withTower: false);
        var gold = Npy32(Path.Combine(Fixture(name), "logits.npy"));
        using (var m = ParrotModelDirectory.Load(dir, DType.F32))
        {
            Assert.That(m.VisionTowerDirectory, Is.EqualTo(tower));
            Assert.That(RelL2(Logits(m, Prompt(), Image()), gold), Is.LessThan(1e-4));
        }
        // The trainer's path in a released config does not exist here: the override replaces it.
        dir = Copy(name, c => c["mm_vision_tower"] = "/mnt/workspace/openai/clip-vit-large-patch14-336", withTower: false);
        using (var m = ParrotModelDirectory.Load(dir, DType.F32, visionTower: tower))
            Assert.That(RelL2(Logits(m, Prompt(), Image()), gold), Is.LessThan(1e-4));
    }

    /// <summary>
    /// The two rules for where the tower folder is: an override (the CLI's --vision) is the caller's path, from the
    /// current directory; config.json's mm_vision_tower is the model's, from the model directory. Decoy folders named
    /// as the other rule would resolve them (without a config.json) make a wrong resolution fail.
    /// </summary>
    [Test]
    [NonParallelizable] // changes the current directory
    public void ARelativeOverrideIsFromTheCurrentDirectoryAndARelativeMmVisionTowerFromTheModelDirectory()
    {
        string dir = Copy("f32-separate"); // mm_vision_tower "../tower": root/tower, the real one
        string root = Path.GetDirectoryName(dir)!, tower = Path.Combine(root, "tower");
        Directory.CreateDirectory(Path.Combine(dir, "tower")); // what an override "tower" would be from the model directory
        string work = Temp(), sub = Path.Combine(work, "sub");
        Directory.CreateDirectory(sub);
        Directory.CreateDirectory(Path.Combine(work, "tower")); // what "../tower" would be from the current directory sub
        string saved = Directory.GetCurrentDirectory();
        try
        {
            Directory.SetCurrentDirectory(sub);
            using (var m = ParrotModelDirectory.Load(dir, DType.F32))
                Assert.That(m.VisionTowerDirectory, Is.EqualTo(tower), "mm_vision_tower from the model directory");

            Directory.SetCurrentDirectory(root);
            using (var m = ParrotModelDirectory.Load(dir, DType.F32, visionTower: "tower"))
                Assert.That(m.VisionTowerDirectory, Is.EqualTo(tower), "the override from the current directory");
            using (var m = ParrotModelDirectory.Load(Path.GetFileName(dir), DType.F32, visionTower: Path.Combine(".", "tower")))
                Assert.That(m.VisionTowerDirectory, Is.EqualTo(tower), "a relative model directory changes nothing");

            // A missing folder is named as resolved, beside the words it was given in.
            var e = Assert.Throws<DirectoryNotFoundException>(() => ParrotModelDirectory.Load(dir, DType.F32, visionTower: "nowhere"))!;
            Assert.That(e.Message, Does.Contain("the vision tower override 'nowhere'").And.Contain($"the folder {Path.Combine(root, "nowhere")} does not exist"));
            Directory.Delete(Path.Combine(dir, "tower"));
            File.WriteAllText(Path.Combine(dir, "config.json"), File.ReadAllText(Path.Combine(dir, "config.json")).Replace("\"../tower\"", "\"tower\"", StringComparison.Ordinal));
            e = Assert.Throws<DirectoryNotFoundException>(() => ParrotModelDirectory.Load(dir, DType.F32))!;
            Assert.That(e.Message, Does.Contain("mm_vision_tower 'tower'").And.Contain($"the folder {Path.Combine(dir, "tower")} does not exist"));
        }
        finally { Directory.SetCurrentDirectory(saved); }
    }

    [Test]
    public void AnEmptyOverrideIsAnArgumentErrorNamingIt()
    {
        var e = Assert.Throws<ArgumentException>(() => ParrotModelDirectory.Load(Fixture("f32-separate"), DType.F32, visionTower: ""))!;
        Assert.That(e.ParamName, Is.EqualTo("visionTower"));
        Assert.That(e.Message, Does.Contain("the vision tower override is empty"));
    }

    [TestCase("f32-separate", true)]
    [TestCase("bf16-bundled", true)]
    [TestCase("bf16-bundled", false)]
    public void GreedyDecodingWithTheKvCacheMatchesTheReference(string name, bool ignoreEos)
    {
        using var m = ParrotModelDirectory.Load(Fixture(name), DType.F32);
        using var gold = Npy.Read(Path.Combine(Fixture(name), "greedy.npy"));
        var expected = gold.ToLongArray().Select(i => (int)i).ToList();
        if (!ignoreEos) expected = expected.Take(expected.IndexOf(63) + 1).ToList(); // eos_token_id 63
        Assert.That(expected, Has.Count.GreaterThan(1));
        Assert.That(m.Generate(Prompt(), Image(), 8, [63], ignoreEos), Is.EqualTo(expected));
    }

    /// <summary>
    /// Generate with no new tokens returns at once without running the tower (the decoder runs nothing, so the image's
    /// features went unused); the prompt and image are still checked, and a negative count is refused, before the tower
    /// too (it used to encode the image and then refuse the count).
    /// </summary>
    [Test]
    public void GenerateWithNoNewTokensRunsNoTower()
    {
        using var m = ParrotModelDirectory.Load(Fixture("f32-separate"));
        var tower = m.Model.VisionFeatures!;
        int runs = 0;
        m.Model.VisionFeatures = pixels => { runs++; return tower(pixels); };
        var ids = Prompt();
        Assert.That(m.Generate(ids, Image(), 0, [63]), Is.Empty);
        Assert.That(m.Generate(ids, Image(), 0, [63], ignoreEos: true), Is.Empty);
        Assert.That(runs, Is.Zero, "the tower did not run");
        Assert.That(() => m.Generate(ids, Image(), -1, [63]), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("max new tokens must be ≥ 0"));
        Assert.That(() => m.Generate(ids, null, 0, [63]), Throws.ArgumentException.With.Message.Contains("no image was given"));
        Assert.That(() => m.Generate(ids, Image(), 0, null!), Throws.ArgumentNullException);
        Assert.That(runs, Is.Zero);
        Assert.That(m.Generate(ids, Image(), 1, [63]), Has.Count.EqualTo(1));
        Assert.That(runs, Is.EqualTo(1), "one new token: the tower runs once");
    }

    /// <summary>Every use after Dispose is refused by name (it ran on freed weights); a second Dispose is harmless.</summary>
    [Test]
    public void UseAfterDisposeIsRefused()
    {
        var m = ParrotModelDirectory.Load(Fixture("f32-separate"));
        var ids = Prompt();
        m.Dispose();
        m.Dispose();
        Assert.That(() => m.Logits(ids, Image()), Throws.TypeOf<ObjectDisposedException>());
        Assert.That(() => m.Generate(ids, Image(), 1, [63]), Throws.TypeOf<ObjectDisposedException>());
        Assert.That(() => m.Generate(ids, Image(), 0, [63]), Throws.TypeOf<ObjectDisposedException>());
        Assert.That(() => m.Pixels(Image()), Throws.TypeOf<ObjectDisposedException>());
        Assert.That(() => m.ImageFeatures(Image()), Throws.TypeOf<ObjectDisposedException>());
        Assert.That(() => m.To(Device.Cpu), Throws.TypeOf<ObjectDisposedException>());
        Assert.That(() => m.Save(Temp()), Throws.TypeOf<ObjectDisposedException>());
    }

    [Test]
    public void TextOnlyUseNeedsNoTowerFolder()
    {
        string dir = Copy("f32-separate", c => c["mm_vision_tower"] = "not-here", withTower: false);
        var text = Prompt().Where(i => i != ParrotSample.ImageToken).ToArray();
        using (var m = ParrotModelDirectory.Load(dir, loadVision: false))
        {
            Assert.That(m.VisionTower, Is.Null);
            Assert.That(RelL2(Logits(m, text, null), Npy32(Path.Combine(Fixture("f32-separate"), "logits_text.npy"))), Is.LessThan(1e-5));
            Assert.That(() => m.Logits(Prompt(), Image()), Throws.InstanceOf<InvalidOperationException>().With.Message.Contains("without the vision tower"));
        }
        var e = Assert.Throws<DirectoryNotFoundException>(() => ParrotModelDirectory.Load(dir))!;
        Assert.That(e.Message, Does.Contain("mm_vision_tower 'not-here'").And.Contain("config.json").And.Contain(Path.Combine(dir, "not-here")));
    }

    [Test]
    public void PromptsAndImagesMustAgree()
    {
        using var m = ParrotModelDirectory.Load(Fixture("f32-separate"));
        var ids = Prompt();
        var text = ids.Where(i => i != ParrotSample.ImageToken).ToArray();
        Assert.That(() => m.Logits(ids, null), Throws.ArgumentException.With.Message.Contains("-200").And.Message.Contains("no image"));
        Assert.That(() => m.Logits(text, Image()), Throws.ArgumentException.With.Message.Contains("no image placeholder -200"));
        Assert.That(() => m.Logits([.. ids, ParrotSample.ImageToken], Image()), Throws.ArgumentException.With.Message.Contains("2 image placeholders"));
        Assert.That(() => m.Logits([1, 64], null), Throws.ArgumentException.With.Message.Contains("64").And.Message.Contains("[0, 64)"));
    }

    [Test]
    public void TheTokenizerIsLoadedWhenPresent()
    {
        string dir = Copy("f32-separate");
        var trainer = new BpeTrainer(new BpeTrainerOptions { VocabSize = 300 });
        trainer.AddText("a red circle above a blue square\nun cercle rouge\n");
        trainer.Train().Save(Path.Combine(dir, "tokenizer.json"));
        using (var m = ParrotModelDirectory.Load(dir))
        {
            Assert.That(m.Tokenizer, Is.Not.Null);
            Assert.That(m.Tokenizer!.Decode(m.Tokenizer.Encode("a red square")), Is.EqualTo("a red square"));
        }
        using (var m = ParrotModelDirectory.Load(Fixture("f32-separate"))) Assert.That(m.Tokenizer, Is.Null);
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{\"model\": ");
        var e = Assert.Catch<Exception>(() => ParrotModelDirectory.Load(dir))!;
        Assert.That(e, Is.InstanceOf<InvalidDataException>());
        Assert.That(e.Message, Does.Contain("tokenizer.json"));
    }

    private static readonly string Tower = "model.vision_tower.vision_tower.vision_model.";

    public static IEnumerable<TestCaseData> BadCheckpoints()
    {
        yield return new TestCaseData("f32-separate", (Action<Dictionary<string, Tensor>>)(t => t.Remove("model.mm_projector.2.bias")), new[] { "missing 1", "model.mm_projector.2.bias", "model.safetensors" }).SetName("MissingProjectorTensor");
        yield return new TestCaseData("f32-separate", (Action<Dictionary<string, Tensor>>)(t => t.Remove("model.moe_model.experts.1.up_proj.weight")), new[] { "missing 1", "model.moe_model.experts.1.up_proj.weight" }).SetName("MissingMoeTensor");
        yield return new TestCaseData("f32-separate", (Action<Dictionary<string, Tensor>>)(t => t["model.extra.weight"] = Tensor.Zeros([2])), new[] { "unexpected 1", "model.extra.weight" }).SetName("UnexpectedTensor");
        yield return new TestCaseData("f32-separate", (Action<Dictionary<string, Tensor>>)(t => t["model.vision_tower.vision_tower.something"] = Tensor.Zeros([2])), new[] { "unexpected 1", "model.vision_tower.vision_tower.something" }).SetName("UnexpectedTowerTensor");
        yield return new TestCaseData("f32-separate", (Action<Dictionary<string, Tensor>>)(t => t["model.moe_model.gate.weight"] = Tensor.Zeros([4, 32])), new[] { "shape mismatch", "model.moe_model.gate.weight", "[4, 32]", "[3, 32]" }).SetName("MisShapedMoeGate");
        yield return new TestCaseData("bf16-bundled", (Action<Dictionary<string, Tensor>>)(t => t.Remove(Tower + "encoder.layers.2.mlp.fc1.bias")), new[] { "missing 1", Tower + "encoder.layers.2.mlp.fc1.bias", "model.safetensors" }).SetName("MissingBundledTowerTensor");
        yield return new TestCaseData("bf16-bundled", (Action<Dictionary<string, Tensor>>)(t => t[Tower + "encoder.layers.0.mlp.fc2.weight"] = Tensor.Zeros([16, 31], DType.BF16)), new[] { "shape mismatch", Tower + "encoder.layers.0.mlp.fc2.weight" }).SetName("MisShapedBundledTowerTensor");
        yield return new TestCaseData("bf16-bundled", (Action<Dictionary<string, Tensor>>)(t => t[Tower + "encoder.layers.3.mlp.fc2.weight"] = Tensor.Zeros([16, 32], DType.BF16)), new[] { "unexpected 1", Tower + "encoder.layers.3.mlp.fc2.weight" }).SetName("UnexpectedBundledTowerTensor");
    }

    [TestCaseSource(nameof(BadCheckpoints))]
    public void BadCheckpointsAreReportedWithTheFileAndTensor(string name, Action<Dictionary<string, Tensor>> edit, string[] expected)
    {
        string dir = Copy(name, tensors: edit);
        var e = Assert.Catch<Exception>(() => ParrotModelDirectory.Load(dir))!;
        Assert.That(e, Is.InstanceOf<StateDictException>().Or.InstanceOf<InvalidDataException>(), e.ToString());
        foreach (var s in expected) Assert.That(e.Message, Does.Contain(s));
    }

    [Test]
    public void TowerWeightsMissingEverywhereIsAnError()
    {
        string dir = Copy("f32-separate");
        File.Delete(Path.Combine(dir, "..", "tower", "model.safetensors"));
        var e = Assert.Throws<FileNotFoundException>(() => ParrotModelDirectory.Load(dir))!;
        Assert.That(e.Message, Does.Contain("no vision tower weights").And.Contain("mm_vision_tower '../tower'"));
        File.Delete(Path.Combine(dir, "..", "tower", "config.json"));
        e = Assert.Throws<FileNotFoundException>(() => ParrotModelDirectory.Load(dir))!;
        Assert.That(e.Message, Does.Contain("no config.json (the CLIP vision config)"));
    }

    public static IEnumerable<TestCaseData> BadConfigs()
    {
        yield return new TestCaseData((Action<JsonObject>)(c => c.Remove("mm_vision_tower")), "no mm_vision_tower").SetName("NoVisionTower");
        yield return new TestCaseData((Action<JsonObject>)(c => c["mm_vision_select_layer"] = 4), "mm_vision_select_layer 4 is outside the tower's 4 hidden states").SetName("SelectLayerOutOfRange");
        yield return new TestCaseData((Action<JsonObject>)(c => c["mm_vision_select_layer"] = "-2"), "'mm_vision_select_layer' must be an integer").SetName("SelectLayerNotAnInteger");
        yield return new TestCaseData((Action<JsonObject>)(c => c["mm_projector_type"] = "linear"), "mm_projector_type 'linear' is not supported").SetName("ProjectorType");
        yield return new TestCaseData((Action<JsonObject>)(c => c["mm_vision_select_feature"] = "patch"), "the MoE needs the CLS token").SetName("PatchWithMoe");
        yield return new TestCaseData((Action<JsonObject>)(c => c["moe_hidden_size"] = 16), "moe_hidden_size 16 must equal hidden_size 32").SetName("MoeHiddenSize");
        yield return new TestCaseData((Action<JsonObject>)(c => c["mm_patch_merge_type"] = "spatial"), "mm_patch_merge_type 'spatial'").SetName("PatchMerge");
        yield return new TestCaseData((Action<JsonObject>)(c => c["model_type"] = "qwen2"), "model_type must be parrot_qwen2").SetName("NotParrot");
        yield return new TestCaseData((Action<JsonObject>)(c => c["num_experts"] = 4), "model.moe_model.experts.3").SetName("MoreExpertsThanTheCheckpoint");
        // These used to run until killed (10^6 experts) or fail with a bare "cannot allocate", or (a typo) silently not pad.
        yield return new TestCaseData((Action<JsonObject>)(c => c["num_experts"] = 1_000_000), "num_experts is 1000000, but the checkpoint holds 3 experts under 'model.moe_model.experts.'").SetName("AbsurdExpertCount");
        yield return new TestCaseData((Action<JsonObject>)(c => c["moe_intermediate_size"] = 1_000_000_000), "moe_intermediate_size 1000000000 and hidden_size 32 make model.moe_model.experts.0.up_proj.weight").SetName("AbsurdExpertWidth");
        yield return new TestCaseData((Action<JsonObject>)(c => c["mm_hidden_size"] = 1_000_000_000), "mm_hidden_size 1000000000 and hidden_size 32 make model.mm_projector.0.weight").SetName("AbsurdProjectorInput");
        yield return new TestCaseData((Action<JsonObject>)(c => c["image_aspect_ratio"] = "padd"), "image_aspect_ratio 'padd' is not known").SetName("UnknownAspectRatio");
    }

    [TestCaseSource(nameof(BadConfigs))]
    public void BadConfigsAreReportedWithTheFileAndKey(Action<JsonObject> edit, string expected)
    {
        string dir = Copy("f32-separate", edit);
        var e = Assert.Catch<Exception>(() => ParrotModelDirectory.Load(dir))!;
        Assert.That(e, Is.InstanceOf<InvalidDataException>().Or.InstanceOf<StateDictException>(), e.ToString());
        Assert.That(e.Message, Does.Contain(expected));
        Assert.That(e.Message, Does.Contain(dir));
    }

    [Test]
    public void BadTowerFilesAreReportedWithTheFile()
    {
        string dir = Copy("f32-separate");
        string towerConfig = Path.Combine(dir, "..", "tower", "config.json");
        var o = (JsonObject)JsonNode.Parse(File.ReadAllText(towerConfig))!;
        o["hidden_size"] = 8;
        File.WriteAllText(towerConfig, o.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => ParrotModelDirectory.Load(dir))!;
        Assert.That(e.Message, Does.Contain("hidden_size 8 differs from mm_hidden_size 16").And.Contain("tower"));

        dir = Copy("f32-separate");
        File.WriteAllText(Path.Combine(dir, "..", "tower", "preprocessor_config.json"), "{\"size\": {\"shortest_edge\": 30}, \"crop_size\": 30}");
        e = Assert.Throws<InvalidDataException>(() => ParrotModelDirectory.Load(dir))!;
        Assert.That(e.Message, Does.Contain("preprocessor_config.json").And.Contain("30x30").And.Contain("28x28"));

        dir = Copy("f32-separate");
        File.WriteAllText(Path.Combine(dir, "config.json"), "{\"model_type\": \"parrot_qwen2\",");
        e = Assert.Throws<InvalidDataException>(() => ParrotModelDirectory.Load(dir))!;
        Assert.That(e.Message, Does.Contain(Path.Combine(dir, "config.json")).And.Contain("not valid JSON"));
    }

    [Test]
    public void SavingWritesTheReleasedLayoutAndLoadsBack()
    {
        using var m = ParrotModelDirectory.Load(Fixture("f32-separate"));
        var ids = Prompt();
        var before = Logits(m, ids, Image());

        // Tower inside the checkpoint, as released.
        string bundled = Temp();
        m.Save(bundled);
        HashSet<string> names;
        using (var ckpt = SafetensorsCheckpoint.Open(bundled)) names = ckpt.Names.ToHashSet();
        HashSet<string> expected;
        using (var lm = SafetensorsCheckpoint.Open(Fixture("f32-separate")))
        using (var tower = SafetensorsCheckpoint.Open(Fixture("tower")))
            expected = lm.Names.Concat(tower.Names.Select(n => "model.vision_tower.vision_tower." + n)).ToHashSet();
        Assert.That(names, Is.EquivalentTo(expected));
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(bundled, "config.json")))!;
        var original = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture("f32-separate"), "config.json")))!;
        Assert.That((string?)config["mm_vision_tower"], Is.EqualTo("vision_tower"));
        foreach (var key in new[] { "model_type", "mm_projector_type", "mm_hidden_size", "mm_vision_select_layer", "mm_vision_select_feature", "image_aspect_ratio",
                     "num_experts", "moe_hidden_size", "moe_intermediate_size", "moe_weight", "use_moe", "use_moe_residual", "mm_patch_merge_type",
                     "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "rope_theta", "rms_norm_eps", "tie_word_embeddings", "eos_token_id" })
            Assert.That(Canonical(config[key]), Is.EqualTo(Canonical(original[key])), key);
        Assert.That(File.Exists(Path.Combine(bundled, "vision_tower", "config.json")) && File.Exists(Path.Combine(bundled, "vision_tower", "preprocessor_config.json")), Is.True);
        Assert.That(File.Exists(Path.Combine(bundled, "vision_tower", "model.safetensors")), Is.False);
        using (var back = ParrotModelDirectory.Load(bundled))
        {
            Assert.That(back.VisionWeightsInCheckpoint, Is.True);
            Assert.That(Logits(back, ids, Image()), Is.EqualTo(before));
        }

        // Tower weights in the tower folder, under the standalone CLIP names.
        string separate = Temp();
        m.Save(separate, visionWeightsInCheckpoint: false);
        using (var ckpt = SafetensorsCheckpoint.Open(separate)) Assert.That(ckpt.Names.Any(n => n.StartsWith("model.vision_tower.", StringComparison.Ordinal)), Is.False);
        using (var ckpt = SafetensorsCheckpoint.Open(Path.Combine(separate, "vision_tower"))) Assert.That(ckpt.Names.All(n => n.StartsWith("vision_model.", StringComparison.Ordinal)), Is.True);
        using (var back = ParrotModelDirectory.Load(separate))
        {
            Assert.That(back.VisionWeightsInCheckpoint, Is.False);
            Assert.That(Logits(back, ids, Image()), Is.EqualTo(before));
        }
    }

    /// <summary>JSON text with numbers compared by value (1000000.0 and 1000000 are the same rope_theta).</summary>
    private static string? Canonical(JsonNode? n) =>
        n is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number ? v.GetValue<double>().ToString("R", System.Globalization.CultureInfo.InvariantCulture) : n?.ToJsonString();

    [Test]
    public void ABf16ReleasedDirectoryRoundTripsBitForBit()
    {
        using var m = ParrotModelDirectory.Load(Fixture("bf16-bundled"));
        string dir = Temp();
        m.Save(dir);
        using var scope = TensorScope.Begin();
        using var a = SafetensorsCheckpoint.Open(Fixture("bf16-bundled"));
        using var b = SafetensorsCheckpoint.Open(dir);
        Assert.That(b.Names, Is.EquivalentTo(a.Names));
        foreach (var n in a.Names)
        {
            Assert.That(b.Info(n).DType, Is.EqualTo(DType.BF16), n);
            Assert.That(b.Load(n).ToFloatArray(), Is.EqualTo(a.Load(n).ToFloatArray()), n);
        }

        // The other layout in bf16: the tower in its own folder (relative mm_vision_tower), still the reference's logits.
        string separate = Temp();
        m.Save(separate, visionWeightsInCheckpoint: false);
        using (var tower = SafetensorsCheckpoint.Open(Path.Combine(separate, ParrotModelDirectory.SavedTowerFolder)))
            Assert.That(tower.Names.All(n => n.StartsWith("vision_model.", StringComparison.Ordinal) && tower.Info(n).DType == DType.BF16), Is.True);
        using var back = ParrotModelDirectory.Load(separate, DType.F32);
        Assert.That(back.VisionWeightsInCheckpoint, Is.False);
        Assert.That(RelL2(Logits(back, Prompt(), Image()), Npy32(Path.Combine(Fixture("bf16-bundled"), "logits.npy"))), Is.LessThan(1e-4));
    }
}
