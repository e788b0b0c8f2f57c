using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Clip;
using Parrot.Tensors;
using Parrot.Tensors.Formats;
using Checkpoint = Parrot.Tensors.Formats.SafetensorsCheckpoint;

namespace Parrot.Nn.Tests;

/// <summary>
/// CLIP vision towers with the real names load from standalone, full-CLIP and Parrot checkpoints and reproduce
/// the independent PyTorch implementation (tools/clip_vision_reference.py, fixtures by tools/make_clip_fixtures.py).
/// </summary>
public class ClipVisionTests
{
    private static string Dir(string variant) => FixturePaths.Get("clip", variant);

    private static ClipVisionModel LoadVariant(string variant, DType? dtype = DType.F32) => variant == "f32-parrot"
        ? ClipVisionLoader.Load(Dir(variant), dtype, config: ClipVisionConfigJson.Load(Path.Combine(Dir(variant), "clip_config.json")))
        : ClipVisionLoader.Load(Dir(variant), dtype);

    private static double RelL2(Tensor ours, Tensor gold) => Qwen2GoldenTests.RelL2(ours.ToFloatArray(), gold.ToFloatArray());

    [TestCase("f32-standalone")]
    [TestCase("bf16-full-clip")]
    [TestCase("f32-parrot")]
    public void EveryHiddenStateAndThePooledOutputMatchTheReferenceInFloat32(string variant)
    {
        using var model = LoadVariant(variant);
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var pixels = Npy.Read(Path.Combine(Dir(variant), "pixels.npy"));
        var gold = Npy.Read(Path.Combine(Dir(variant), "hidden_states.npy"));
        int layers = model.Config.NumHiddenLayers;
        Assert.That(gold.Dim(0), Is.EqualTo(layers + 1));
        var output = model.Forward(pixels);
        Assert.That(output.HiddenStates, Has.Count.EqualTo(layers + 1));
        double worst = 0;
        for (int i = 0; i <= layers; i++)
        {
            double e = RelL2(output.HiddenStates[i].Value, gold.Select(0, i));
            worst = Math.Max(worst, e);
            Assert.That(e, Is.LessThanOrEqualTo(1e-4), $"hidden_states[{i}]");
        }
        Assert.That(output.LastHiddenState.Value.ToFloatArray(), Is.EqualTo(output.HiddenStates[layers].Value.ToFloatArray()));
        double ePooled = RelL2(output.PoolerOutput.Value, Npy.Read(Path.Combine(Dir(variant), "pooled.npy")));
        TestContext.Out.WriteLine($"{variant}: worst relative L2 error over hidden states {worst:E2}, pooled {ePooled:E2}");
        Assert.That(ePooled, Is.LessThanOrEqualTo(1e-4));
    }

    [TestCase("f32-standalone", 0, 0)]
    [TestCase("f32-standalone", 1, 1)]
    [TestCase("f32-standalone", -2, 2)]
    [TestCase("f32-standalone", -1, 3)]
    [TestCase("f32-standalone", 3, 3)]
    [TestCase("f32-standalone", -4, 0)]
    [TestCase("bf16-full-clip", -2, 2)]
    [TestCase("f32-parrot", -2, 2)]
    public void OneHiddenStateAloneMatchesTheReference(string variant, int layer, int goldIndex)
    {
        using var model = LoadVariant(variant);
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var pixels = Npy.Read(Path.Combine(Dir(variant), "pixels.npy"));
        var gold = Npy.Read(Path.Combine(Dir(variant), "hidden_states.npy")).Select(0, goldIndex);
        Assert.That(model.HiddenStateIndex(layer), Is.EqualTo(goldIndex));
        var h = model.HiddenState(pixels, layer).Value;
        Assert.That(h.Shape.ToArray(), Is.EqualTo(new[] { 2, 17, 32 }));
        double e = RelL2(h, gold);
        TestContext.Out.WriteLine($"{variant} layer {layer}: relative L2 error {e:E2}");
        Assert.That(e, Is.LessThanOrEqualTo(1e-4));
    }

    [Test]
    public void HiddenStateRunsOnlyTheLayersItNeeds()
    {
        using var model = LoadVariant("f32-standalone");
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var pixels = Npy.Read(Path.Combine(Dir("f32-standalone"), "pixels.npy"));
        // Spoil the last layer: hidden_states[-2] must not change, hidden_states[-1] must.
        var before = model.HiddenState(pixels, -2).Value.ToFloatArray();
        var last = model.VisionModel.Encoder.Layers[^1].Mlp.Fc2.Bias!.Value;
        last.CopyFrom(Tensor.Full(last.Shape, 1e3));
        Assert.That(model.HiddenState(pixels, -2).Value.ToFloatArray(), Is.EqualTo(before));
        var gold = Npy.Read(Path.Combine(Dir("f32-standalone"), "hidden_states.npy")).Select(0, 3);
        Assert.That(RelL2(model.HiddenState(pixels, -1).Value, gold), Is.GreaterThan(1));
    }

    [Test]
    public void Bf16CheckpointComputesInBf16CloseToTheFloat32Reference()
    {
        using var model = LoadVariant("bf16-full-clip", dtype: null);
        Assert.That(model.Parameters().Select(p => p.DType).Distinct(), Is.EqualTo(new[] { DType.BF16 }), "a bf16 checkpoint computes in bf16 unless asked otherwise");
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var pixels = Npy.Read(Path.Combine(Dir("bf16-full-clip"), "pixels.npy"));
        var gold = Npy.Read(Path.Combine(Dir("bf16-full-clip"), "hidden_states.npy")).Select(0, 2);
        var h = model.HiddenState(pixels, -2).Value;
        Assert.That(h.DType, Is.EqualTo(DType.BF16));
        double e = RelL2(h, gold);
        TestContext.Out.WriteLine($"bf16 compute, layer -2: relative L2 error vs float32 reference {e:E2}");
        Assert.That(e, Is.LessThanOrEqualTo(3e-2)); // bf16 keeps 8 significant bits in every activation
    }

    /// <summary>Hugging Face's CLIPVisionModel state-dict keys, spelled out from its module tree.</summary>
    private static IEnumerable<string> HuggingFaceNames(int layers)
    {
        const string v = "vision_model.";
        yield return v + "embeddings.class_embedding";
        yield return v + "embeddings.patch_embedding.weight";
        yield return v + "embeddings.position_embedding.weight";
        yield return v + "pre_layrnorm.weight";
        yield return v + "pre_layrnorm.bias";
        for (int i = 0; i < layers; i++)
        {
            foreach (var proj in new[] { "k_proj", "v_proj", "q_proj", "out_proj" })
                foreach (var kind in new[] { "weight", "bias" }) yield return $"{v}encoder.layers.{i}.self_attn.{proj}.{kind}";
            foreach (var m in new[] { "layer_norm1", "mlp.fc1", "mlp.fc2", "layer_norm2" })
                foreach (var kind in new[] { "weight", "bias" }) yield return $"{v}encoder.layers.{i}.{m}.{kind}";
        }
        yield return v + "post_layernorm.weight";
        yield return v + "post_layernorm.bias";
    }

    [Test]
    public void ParameterNamesAndShapesAreHuggingFaces()
    {
        var config = new ClipVisionConfig { HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, ImageSize = 28, PatchSize = 7 };
        using var model = new ClipVisionModel(config, seed: 3);
        var ours = model.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.Shape.ToArray());
        Assert.That(ours.Keys.Order(StringComparer.Ordinal), Is.EqualTo(HuggingFaceNames(2).Order(StringComparer.Ordinal)));
        Assert.That(ours["vision_model.embeddings.class_embedding"], Is.EqualTo(new[] { 32 }));
        Assert.That(ours["vision_model.embeddings.patch_embedding.weight"], Is.EqualTo(new[] { 32, 3, 7, 7 }));
        Assert.That(ours["vision_model.embeddings.position_embedding.weight"], Is.EqualTo(new[] { 17, 32 }));
        Assert.That(ours["vision_model.encoder.layers.1.mlp.fc1.weight"], Is.EqualTo(new[] { 48, 32 }));
        Assert.That(ours["vision_model.encoder.layers.1.mlp.fc2.weight"], Is.EqualTo(new[] { 32, 48 }));
        Assert.That(ours["vision_model.encoder.layers.0.self_attn.out_proj.bias"], Is.EqualTo(new[] { 32 }));
        Assert.That(model.NamedBuffers().Where(b => b.Persistent), Is.Empty, "position_ids is not persistent in Hugging Face's model");
        // And the full-size tower has ViT-L/14-336's parameter count (303.5 M without projection).
        using (Init.Deferred())
        using (var large = new ClipVisionModel(ClipVisionConfig.VitL14_336, initialize: false))
            Assert.That(large.ParameterCount(), Is.EqualTo(303_507_456));
    }

    [Test]
    public void FreshTowersAreInitialisedAsHuggingFaceDoes()
    {
        var config = new ClipVisionConfig { HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, ImageSize = 28, PatchSize = 7 };
        using var model = new ClipVisionModel(config, seed: 5);
        var p = model.NamedParameters().ToDictionary(x => x.Name, x => x.Parameter.Value);
        static double Std(Tensor t) { var a = t.ToFloatArray(); double m = a.Average(); return Math.Sqrt(a.Sum(x => (x - m) * (x - m)) / a.Length); }
        Assert.That(Std(p["vision_model.encoder.layers.0.self_attn.q_proj.weight"]), Is.EqualTo(Math.Pow(64, -0.5) * Math.Pow(4, -0.5)).Within(5).Percent);
        Assert.That(Std(p["vision_model.encoder.layers.0.self_attn.out_proj.weight"]), Is.EqualTo(Math.Pow(64, -0.5)).Within(5).Percent);
        Assert.That(Std(p["vision_model.encoder.layers.0.mlp.fc1.weight"]), Is.EqualTo(Math.Pow(128, -0.5)).Within(5).Percent);
        Assert.That(Std(p["vision_model.embeddings.position_embedding.weight"]), Is.EqualTo(0.02).Within(5).Percent);
        Assert.That(p["vision_model.encoder.layers.1.mlp.fc2.bias"].ToFloatArray(), Is.All.EqualTo(0f));
        Assert.That(p["vision_model.post_layernorm.weight"].ToFloatArray(), Is.All.EqualTo(1f));
    }

    [Test]
    public void ConfigsOfBothKindsAreRead()
    {
        // openai/clip-vit-large-patch14-336's vision_config keys, inside a full CLIP config.
        var vitL = ClipVisionConfigJson.Parse("""
            {"model_type": "clip", "projection_dim": 768, "text_config": {"hidden_size": 768},
             "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "model_type": "clip_vision_model",
                               "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768,
                               "dropout": 0.0, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "initializer_range": 0.02}}
            """);
        Assert.That(vitL, Is.EqualTo(ClipVisionConfig.VitL14_336));
        Assert.That(vitL.NumPositions, Is.EqualTo(577));
        Assert.That(vitL.Activation, Is.EqualTo(MlpActivation.QuickGelu));
        // Keys left out take transformers 4.39's CLIPVisionConfig defaults (ViT-B/32 at 224).
        Assert.That(ClipVisionConfigJson.Parse("""{"model_type": "clip", "vision_config": {}}"""), Is.EqualTo(new ClipVisionConfig()));
        Assert.That(ClipVisionConfigJson.Parse("""{"model_type": "clip"}"""), Is.EqualTo(new ClipVisionConfig()));
        var d = ClipVisionConfigJson.Parse("""{"model_type": "clip_vision_model"}""");
        Assert.That((d.HiddenSize, d.IntermediateSize, d.NumHiddenLayers, d.NumAttentionHeads, d.ImageSize, d.PatchSize, d.HiddenAct, d.LayerNormEps, d.NumChannels),
            Is.EqualTo((768, 3072, 12, 12, 224, 32, "quick_gelu", 1e-5, 3)));
        Assert.That(ClipVisionConfigJson.Load(Path.Combine(Dir("bf16-full-clip"), "config.json")).HiddenAct, Is.EqualTo("quick_gelu"));
        Assert.That(ClipVisionConfigJson.Load(Path.Combine(Dir("f32-standalone"), "config.json")).Activation, Is.EqualTo(MlpActivation.Gelu));
        Assert.That(ClipVisionConfigJson.Parse("""{"model_type": "clip_vision_model", "hidden_act": "gelu_pytorch_tanh"}""").Activation, Is.EqualTo(MlpActivation.GeluTanh));
    }

    [TestCase("{", "not valid JSON")]
    [TestCase("[1]", "JSON object")]
    [TestCase("""{"hidden_size": 8}""", "model_type '(missing)'")]
    [TestCase("""{"model_type": "qwen2"}""", "model_type 'qwen2'")]
    [TestCase("""{"model_type": "parrot_qwen2"}""", "mm_vision_tower")]
    [TestCase("""{"model_type": "clip", "vision_config": 3}""", "'vision_config'")]
    [TestCase("""{"model_type": "clip_vision_model", "hidden_size": "big"}""", "'hidden_size'")]
    [TestCase("""{"model_type": "clip_vision_model", "hidden_size": 2.5}""", "'hidden_size'")]
    [TestCase("""{"model_type": "clip", "vision_config": {"patch_size": null}}""", "'vision_config.patch_size'")]
    [TestCase("""{"model_type": "clip_vision_model", "layer_norm_eps": "x"}""", "'layer_norm_eps'")]
    [TestCase("""{"model_type": "clip_vision_model", "layer_norm_eps": 0}""", "layer_norm_eps")]
    // Past double's range the number reads as Infinity; refused where it is read, naming the key (prefix included).
    [TestCase("""{"model_type": "clip_vision_model", "layer_norm_eps": 1e400}""", "'layer_norm_eps' must be a finite number, got 1e400")]
    [TestCase("""{"model_type": "clip", "vision_config": {"layer_norm_eps": -1e400}}""", "'vision_config.layer_norm_eps' must be a finite number")]
    [TestCase("""{"model_type": "clip_vision_model", "hidden_act": 1}""", "'hidden_act'")]
    [TestCase("""{"model_type": "clip_vision_model", "hidden_act": "relu"}""", "hidden_act 'relu'")]
    [TestCase("""{"model_type": "clip", "vision_config": {"hidden_size": 100, "num_attention_heads": 16}}""", "vision_config.hidden_size 100 is not divisible")]
    [TestCase("""{"model_type": "clip_vision_model", "image_size": 100, "patch_size": 14}""", "image_size 100 is not a multiple of patch_size 14")]
    [TestCase("""{"model_type": "clip_vision_model", "num_hidden_layers": 0}""", "num_hidden_layers 0 must be positive")]
    [TestCase("""{"model_type": "clip_vision_model", "num_hidden_layers": 1, "num_hidden_layers": 2}""", "bad.json")]
    // \ud800 (an unpaired surrogate) parses but is not text: reading it threw InvalidOperationException, naming neither file nor key.
    [TestCase("""{"model_type": "clip", "vision_config": {"hidden_act": "gelu\ud800"}}""", "the string at $.vision_config.hidden_act is not valid text")]
    [TestCase("""{"model_type": "clip_vision_model", "x\ud800": 1}""", "a key of $ is not valid text")]
    public void BadConfigsAreErrorsNamingTheFileAndTheKey(string json, string expected)
    {
        Assert.That(() => ClipVisionConfigJson.Parse(json, "bad.json"),
            Throws.InstanceOf<InvalidDataException>().With.Message.StartsWith("bad.json: ").And.Message.Contain(expected));
    }

    [Test]
    public void BadModelDirectoriesAreClearErrors()
    {
        var dir = Path.Combine(Path.GetTempPath(), "parrot-bad-clip-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            Assert.That(() => ClipVisionLoader.Load(Path.Combine(dir, "nowhere")), Throws.InstanceOf<DirectoryNotFoundException>().With.Message.Contain("nowhere"));
            Assert.That(() => ClipVisionLoader.Load(dir), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("config.json"));
            // A Parrot directory: the tower's config is not in Parrot's config.json.
            Assert.That(() => ClipVisionLoader.Load(Dir("f32-parrot")), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("mm_vision_tower"));
            File.Copy(Path.Combine(Dir("f32-standalone"), "config.json"), Path.Combine(dir, "config.json"));
            Assert.That(() => ClipVisionLoader.Load(dir), Throws.Exception.With.Message.Contain(dir));
            // A checkpoint without a tower.
            File.Copy(FixturePaths.Get("qwen2", "f32-gqa-untied", "model.safetensors"), Path.Combine(dir, "model.safetensors"));
            Assert.That(() => ClipVisionLoader.Load(dir), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("no CLIP vision tower"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void CheckpointsThatDoNotFitTheConfigNameEveryProblem()
    {
        var standalone = Dir("f32-standalone");
        var config = ClipVisionConfigJson.Load(Path.Combine(standalone, "config.json"));
        // Fewer layers in the config: every tensor of layer 2 is unexpected.
        var e = Assert.Throws<StateDictException>(() => ClipVisionLoader.Load(standalone, DType.F32, config: config with { NumHiddenLayers = 2 }))!;
        Assert.That(e.Unexpected, Has.Count.EqualTo(16));
        Assert.That(e.Unexpected, Has.All.StartWith("vision_model.encoder.layers.2."));
        Assert.That(e.Message, Does.Contain("vision_model.encoder.layers.2.mlp.fc1.weight"));
        // More layers: every tensor of layer 3 is missing.
        e = Assert.Throws<StateDictException>(() => ClipVisionLoader.Load(standalone, DType.F32, config: config with { NumHiddenLayers = 4 }))!;
        Assert.That(e.Missing, Has.Count.EqualTo(16));
        Assert.That(e.Message, Does.Contain("vision_model.encoder.layers.3.self_attn.out_proj.bias"));
        // Another MLP width: the fc shapes mismatch, and are all named.
        e = Assert.Throws<StateDictException>(() => ClipVisionLoader.Load(standalone, DType.F32, config: config with { IntermediateSize = 96 }))!;
        Assert.That(e.Mismatched, Has.Count.EqualTo(9));
        Assert.That(e.Message, Does.Contain("vision_model.encoder.layers.0.mlp.fc1.weight: checkpoint [64, 32], model [96, 32]"));
        // Another image size: the position table does not fit.
        e = Assert.Throws<StateDictException>(() => ClipVisionLoader.Load(standalone, DType.F32, config: config with { ImageSize = 35 }))!;
        Assert.That(e.Message, Does.Contain("vision_model.embeddings.position_embedding.weight"));
    }

    [Test]
    public void MissingAndUnexpectedTensorsInTheCheckpointAreReported()
    {
        var dir = Path.Combine(Path.GetTempPath(), "parrot-clip-edit-" + Guid.NewGuid().ToString("N"));
        try
        {
            using (var source = Checkpoint.Open(Dir("f32-standalone")))
            using (var scope = TensorScope.Begin())
            {
                var tensors = source.Names.Where(n => n != "vision_model.pre_layrnorm.bias")
                    .Select(n => new KeyValuePair<string, Tensor>(n, source.Load(n))).ToList();
                tensors.Add(new("vision_model.encoder.layers.0.self_attn.extra", Tensor.Zeros([2])));
                tensors.Add(new("vision_model.embeddings.position_ids", Tensor.Arange(17, DType.I64).Reshape(1, 17)));
                tensors.Add(new("text_model.final_layer_norm.weight", Tensor.Zeros([4])));
                Checkpoint.Save(dir, tensors);
            }
            File.Copy(Path.Combine(Dir("f32-standalone"), "config.json"), Path.Combine(dir, "config.json"));
            var e = Assert.Throws<StateDictException>(() => ClipVisionLoader.Load(dir, DType.F32))!;
            Assert.That(e.Missing, Is.EqualTo(new[] { "vision_model.pre_layrnorm.bias" }));
            Assert.That(e.Unexpected, Is.EqualTo(new[] { "vision_model.encoder.layers.0.self_attn.extra" }), "position_ids and text_model.* are not the tower's business");
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Test]
    public void ThePrefixIsFoundFromTheNamesOrGiven()
    {
        var clip = ClipVisionConfigJson.Load(Path.Combine(Dir("f32-parrot"), "clip_config.json"));
        using (var found = ClipVisionLoader.Load(Dir("f32-parrot"), DType.F32, config: clip))
        using (var given = ClipVisionLoader.Load(Dir("f32-parrot"), DType.F32, ClipVisionLoader.ParrotPrefix, clip))
            Assert.That(found.VisionModel.Embeddings.ClassEmbedding.Value.ToFloatArray(), Is.EqualTo(given.VisionModel.Embeddings.ClassEmbedding.Value.ToFloatArray()));
        Assert.That(() => ClipVisionLoader.Load(Dir("f32-parrot"), DType.F32, "", clip), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("vision_model.embeddings.class_embedding"));
    }

    [Test]
    public void BadInputsAndLayersAreErrors()
    {
        using var model = LoadVariant("f32-standalone");
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        Assert.That(() => model.HiddenStateIndex(4), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contain("layer 4"));
        Assert.That(() => model.HiddenStateIndex(-5), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contain("layer -5"));
        Assert.That(() => model.HiddenState(Tensor.Zeros([1, 3, 28, 28]), 7), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => model.Forward(Tensor.Zeros([1, 3, 35, 35])), Throws.ArgumentException.With.Message.Contain("[batch, 3, 28, 28]"));
        Assert.That(() => model.Forward(Tensor.Zeros([3, 28, 28])), Throws.ArgumentException.With.Message.Contain("[3, 28, 28]"));
        Assert.That(() => model.Forward(Tensor.Zeros([1, 1, 28, 28])), Throws.ArgumentException.With.Message.Contain("ClipVisionEmbeddings"));
    }

    [Test]
    public void InferenceFreesEveryTemporaryAndFloat64PixelsAreAccepted()
    {
        using var model = LoadVariant("f32-standalone");
        var pixels = Npy.Read(Path.Combine(Dir("f32-standalone"), "pixels.npy"));
        using var pixels64 = pixels.To(DType.F64);
        using var ng = Graph.NoGrad();
        // Tensors other tests left to the finalizer must not be freed while we count.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long before = MemoryStats.CpuBytesInUse;
        float[] a, b;
        using (var scope = TensorScope.Begin()) a = model.HiddenState(pixels, -2).Value.ToFloatArray();
        using (var scope = TensorScope.Begin()) b = model.HiddenState(pixels64, -2).Value.ToFloatArray();
        Assert.That(MemoryStats.CpuBytesInUse, Is.EqualTo(before));
        Assert.That(b, Is.EqualTo(a));
        pixels.Dispose();
    }

    [Test]
    public void GradientsFlowThroughTheTower()
    {
        // The tower is frozen in Parrot, but its graph must still carry gradients back to the pixels.
        var config = new ClipVisionConfig { HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 2, ImageSize = 14, PatchSize = 7 };
        using var model = new ClipVisionModel(config, seed: 9);
        using var scope = TensorScope.Begin();
        var pixels = new Variable(Tensor.Normal([1, 3, 14, 14], 4), requiresGrad: true);
        var output = model.Forward(pixels);
        // A weighted sum: the plain sum of a LayerNorm output with unit weight and zero bias is 0 whatever the input, so
        // its gradient is zero in exact arithmetic and this test passed or failed on rounding noise.
        var weights = new Variable(Tensor.Normal([1, config.HiddenSize], 11));
        (output.PoolerOutput * weights).Sum().Backward();
        Assert.That(pixels.Grad, Is.Not.Null);
        Assert.That(pixels.Grad!.ToFloatArray().Any(x => x != 0), Is.True);
        Assert.That(model.VisionModel.Embeddings.ClassEmbedding.Grad, Is.Not.Null);
    }
}
