using System.Text.Json.Nodes;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Nn.Tests;

/// <summary>A config.json that is wrong, absurd or asks for what the decoder does not implement is a clear error naming the key.</summary>
public class Qwen2ConfigBadInputTests
{
    private static string FixtureConfig => File.ReadAllText(FixturePaths.Get("qwen2", "f32-gqa-untied", "config.json"));

    private static string With(string key, JsonNode? value)
    {
        var o = JsonNode.Parse(FixtureConfig)!.AsObject();
        o[key] = value;
        return o.ToJsonString();
    }

    /// <summary>The fixture with <paramref name="key"/> set to a raw JSON number (one a double cannot hold, which JsonNode cannot write).</summary>
    private static string WithNumber(string key, string number)
    {
        var o = JsonNode.Parse(FixtureConfig)!.AsObject();
        o.Remove(key);
        return o.ToJsonString().TrimEnd('}') + $", \"{key}\": {number}}}";
    }

    public static IEnumerable<TestCaseData> ParseCases()
    {
        TestCaseData Case(string name, string json, string expected) => new TestCaseData(json, expected).SetName(name);
        yield return Case("HeadsZeroNamesTheKey", With("num_attention_heads", 0), "num_attention_heads 0 must be positive");
        yield return Case("MaxPositionsZero", With("max_position_embeddings", 0), "max_position_embeddings 0 must be positive");
        yield return Case("EosOutsideVocab", With("eos_token_id", 96), "eos_token_id 96 is outside the vocabulary");
        yield return Case("EosNegative", With("eos_token_id", new JsonArray(5, -1)), "eos_token_id -1 is outside the vocabulary");
        yield return Case("EosFraction", With("eos_token_id", new JsonArray(1.5)), "'eos_token_id'[0] must be an integer, got 1.5");
        yield return Case("EosTooBig", With("eos_token_id", 1e20), "'eos_token_id' must be an integer or a list of integers");
        yield return Case("OtherActivation", With("hidden_act", "gelu"), "hidden_act \"gelu\" is not supported");
        yield return Case("RopeScaling", With("rope_scaling", new JsonObject { ["type"] = "yarn", ["factor"] = 4.0 }), "rope_scaling");
        yield return Case("SlidingWindow", With("use_sliding_window", true), "use_sliding_window true is not supported");
        // The escape \ud800 (an unpaired surrogate) parses but is not text: reading it threw InvalidOperationException, unnamed.
        yield return Case("LoneSurrogateValue", FixtureConfig.Replace("\"qwen2\"", "\"qwen2\\ud800\""), $"the string at $.model_type {JsonText.NotText}");
        yield return Case("LoneSurrogateKey", FixtureConfig.TrimEnd().TrimEnd('}') + ", \"x\\ud800\": 1}", $"a key of $ {JsonText.NotText}");
        // Past double's range the number read as ±Infinity and was accepted (rope_theta > 1, rms_norm_eps > 0).
        yield return Case("RopeThetaOverflows", WithNumber("rope_theta", "1e400"), "'rope_theta' must be a finite number, got 1e400");
        yield return Case("RmsNormEpsOverflows", WithNumber("rms_norm_eps", "1E+999"), "'rms_norm_eps' must be a finite number, got 1E+999");
        yield return Case("InitializerRangeOverflows", WithNumber("initializer_range", "-1e400"), "'initializer_range' must be a finite number, got -1e400");
        yield return Case("DuplicateKey", FixtureConfig.TrimEnd().TrimEnd('}') + ", \"hidden_size\": 32}", "Duplicate property 'hidden_size'");
    }

    [TestCaseSource(nameof(ParseCases))]
    public void BadConfigIsAnErrorNamingTheFileAndKey(string json, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => Qwen2ConfigJson.Parse(json, "the/config.json"))!;
        Assert.That(e.Message, Does.StartWith("the/config.json: ").And.Contain(expected));
    }

    [Test]
    public void ExplicitNullsAndTheUsualKeysStillLoad()
    {
        var o = JsonNode.Parse(FixtureConfig)!.AsObject();
        o["hidden_act"] = "silu";
        o["rope_scaling"] = null;
        o["use_sliding_window"] = false;
        Assert.That(Qwen2ConfigJson.Parse(o.ToJsonString(), "c").HiddenSize, Is.EqualTo(64));
    }

    /// <summary>Sizes that disagree with the checkpoint fail before the model is allocated (hidden_size 10^9 used to ask for terabytes; 10^6 layers ran until killed).</summary>
    [TestCase("hidden_size", 1_000_000_000, "vocab_size 96 and hidden_size 1000000000 make model.embed_tokens.weight [96, 1000000000], but the checkpoint's is [96, 64]; refusing to allocate")]
    [TestCase("vocab_size", 2_000_000_000, "model.embed_tokens.weight [2000000000, 64]")]
    [TestCase("intermediate_size", 1_000_000_000, "intermediate_size 1000000000 and hidden_size 64 make model.layers.0.mlp.gate_proj.weight")]
    [TestCase("num_hidden_layers", 1_000_000, "num_hidden_layers is 1000000, but the checkpoint holds 2 layers under 'model.layers.'")]
    public void AbsurdSizeIsNamedBeforeAllocating(string key, int value, string expected)
    {
        var dir = Path.Combine(Path.GetTempPath(), "parrot-absurd-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            File.Copy(FixturePaths.Get("qwen2", "f32-gqa-untied", "model.safetensors"), Path.Combine(dir, "model.safetensors"));
            File.WriteAllText(Path.Combine(dir, "config.json"), With(key, value));
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var e = Assert.Throws<InvalidDataException>(() => Qwen2Loader.Load(dir))!;
            Assert.That(e.Message, Does.Contain(Path.Combine(dir, "config.json")).And.Contain(expected));
            Assert.That(sw.Elapsed.TotalSeconds, Is.LessThan(10), "refused up front, not after allocating");
        }
        finally { Directory.Delete(dir, true); }
    }
}

/// <summary>A weight stored as integers or booleans is refused, not cast to float and computed with.</summary>
public class CheckpointDTypeBadInputTests
{
    private static string WriteWith(string name, Func<Tensor, Tensor> change)
    {
        var from = FixturePaths.Get("qwen2", "f32-gqa-untied");
        var dir = Path.Combine(Path.GetTempPath(), "parrot-dtype-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(from, "config.json"), Path.Combine(dir, "config.json"));
        using var checkpoint = SafetensorsCheckpoint.Open(from);
        var tensors = checkpoint.Names.Select(n => new KeyValuePair<string, Tensor>(n, n == name ? change(checkpoint.Load(n)) : checkpoint.Load(n))).ToList();
        SafetensorsCheckpoint.Save(dir, tensors, SafetensorsCheckpoint.DefaultMaxShardBytes);
        foreach (var t in tensors) t.Value.Dispose();
        return dir;
    }

    [TestCase(DType.I32)]
    [TestCase(DType.Bool)]
    [TestCase(DType.U8)]
    public void IntegerWeightIsNamed(DType stored)
    {
        var dir = WriteWith("model.norm.weight", t => t.To(stored));
        try
        {
            var e = Assert.Throws<StateDictException>(() => Qwen2Loader.Load(dir, DType.F32))!;
            Assert.That(e.Message, Does.Contain("shape or dtype mismatch 1").And.Contain($"model.norm.weight: checkpoint dtype {(stored == DType.Bool ? "BOOL" : stored.ToString().ToUpperInvariant())}, model F32"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void IntegerEmbeddingTableIsNotTakenAsTheComputeDType()
    {
        var dir = WriteWith("model.embed_tokens.weight", t => t.To(DType.I32));
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => Qwen2Loader.Load(dir))!;
            Assert.That(e.Message, Does.Contain("'model.embed_tokens.weight' is I32; the weights must be floating-point"));
        }
        finally { Directory.Delete(dir, true); }
    }
}

/// <summary>A CLIP config far beyond its checkpoint is refused before the tower is allocated (10^6 layers ran until killed).</summary>
public class ClipAbsurdSizeTests
{
    [TestCase("layers", "num_hidden_layers is 1000000, but the checkpoint holds 3 layers under 'vision_model.encoder.layers.'")]
    [TestCase("hidden", "hidden_size 1000000000 make vision_model.embeddings.class_embedding [1000000000]")]
    [TestCase("mlp", "intermediate_size 1000000000 and hidden_size 32 make vision_model.encoder.layers.0.mlp.fc1.weight")]
    [TestCase("image", "image_size 320000, patch_size 32 and hidden_size 32 make vision_model.embeddings.position_embedding.weight")]
    public void AbsurdSizeIsNamedBeforeAllocating(string what, string expected)
    {
        var dir = FixturePaths.Get("clip", "f32-standalone");
        var config = Parrot.Nn.Models.Clip.ClipVisionConfigJson.Load(Path.Combine(dir, "config.json"));
        config = what switch
        {
            "layers" => config with { NumHiddenLayers = 1_000_000 },
            "hidden" => config with { HiddenSize = 1_000_000_000, NumAttentionHeads = 1 },
            "mlp" => config with { IntermediateSize = 1_000_000_000 },
            _ => config with { ImageSize = 320_000, PatchSize = 32 },
        };
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<InvalidDataException>(() => Parrot.Nn.Models.Clip.ClipVisionLoader.Load(dir, DType.F32, config: config))!;
        Assert.That(e.Message, Does.Contain(expected).And.Contain("refusing to allocate"));
        Assert.That(sw.Elapsed.TotalSeconds, Is.LessThan(10));
    }
}
