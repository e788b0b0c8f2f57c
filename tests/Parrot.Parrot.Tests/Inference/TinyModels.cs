using System.Text.Json.Nodes;
using Parrot.Nn;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Model;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Parrot.Tests.Shared;

/// <summary>
/// Tiny model directories generated on the fly (random weights): a byte-level ChatML tokenizer (ids 0–255
/// are the bytes, then &lt;|endoftext|&gt; 256, &lt;|im_start|&gt; 257, &lt;|im_end|&gt; 258), a text-only Qwen2
/// and a Parrot with a tiny CLIP tower in vision/ (28×28 images, 7×7 patches: 17 visual tokens).
/// Shared by the Parrot.Parrot and CLI tests (linked into both).
/// </summary>
internal static class TinyModels
{
    public const int Vocab = 259, EndOfText = 256, ImStart = 257, ImEnd = 258;

    public static Qwen2Config TextConfig(double initRange = 0.35) => new()
    {
        VocabSize = Vocab, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        RopeTheta = 10000, MaxPositionEmbeddings = 1024, InitializerRange = initRange,
    };

    public static ParrotConfig ParrotConfig() => new()
    {
        Text = TextConfig(), MmHiddenSize = 32, NumExperts = 3, MoeIntermediateSize = 24, MoeWeight = 0.1, UseMoe = true,
        MmVisionTower = "vision", MmVisionSelectLayer = -2,
    };

    public static string TempDir(string name = "parrot-inference-tests")
    {
        var d = Path.Combine(Path.GetTempPath(), name, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }

    /// <summary>Writes a Qwen2 model directory (config.json, model.safetensors, tokenizer.json) and returns it.</summary>
    public static string WriteQwen2(string dir, ulong seed = 1)
    {
        Directory.CreateDirectory(dir);
        using (var model = new Qwen2ForCausalLM(TextConfig(), seed)) Qwen2Loader.Save(model, dir);
        WriteTokenizer(dir);
        return dir;
    }

    /// <summary>Writes a Parrot model directory with its CLIP tower in vision/ and returns it.</summary>
    public static string WriteParrot(string dir, ulong seed = 2, bool withTower = true)
    {
        Directory.CreateDirectory(dir);
        using (var model = new ParrotForCausalLM(ParrotConfig(), seed))
        {
            // Wider weights than the default init, so that answers vary from token to token.
            using (var scope = global::Parrot.Tensors.TensorScope.Begin())
                foreach (var (name, p) in model.NamedParameters())
                    if (name.EndsWith(".weight", StringComparison.Ordinal) && p.Shape.Length == 2)
                        p.Value.CopyFrom(Init.Normal(p.Shape.ToArray(), 0.3, Init.SeedFor(seed, name)));
            ParrotLoader.Save(model, dir);
        }
        WriteTokenizer(dir);
        if (withTower) WriteTower(Path.Combine(dir, "vision"), seed + 100);
        return dir;
    }

    public static void WriteTower(string dir, ulong seed)
    {
        Directory.CreateDirectory(dir);
        var config = new ClipVisionConfig { HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 3, NumAttentionHeads = 4, ImageSize = 28, PatchSize = 7 };
        using (var tower = new ClipVisionModel(config, seed)) ModelLoading.Save(tower, dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), new JsonObject
        {
            ["model_type"] = "clip_vision_model", ["architectures"] = new JsonArray("CLIPVisionModel"),
            ["hidden_size"] = 32, ["intermediate_size"] = 64, ["num_hidden_layers"] = 3, ["num_attention_heads"] = 4,
            ["num_channels"] = 3, ["image_size"] = 28, ["patch_size"] = 7, ["hidden_act"] = "quick_gelu", ["layer_norm_eps"] = 1e-5,
        }.ToJsonString());
    }

    /// <summary>
    /// Writes the small CLIP tower beside the evaluation and training test models (16×16 images, patch 8, hidden
    /// 12, two layers, gelu, seed 1) with its preprocessor_config.json into <paramref name="dir"/>.
    /// </summary>
    public static string WriteSmallTower(string dir)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), new JsonObject
        {
            ["model_type"] = "clip_vision_model", ["hidden_size"] = 12, ["intermediate_size"] = 24, ["num_hidden_layers"] = 2,
            ["num_attention_heads"] = 2, ["num_channels"] = 3, ["image_size"] = 16, ["patch_size"] = 8, ["hidden_act"] = "gelu", ["layer_norm_eps"] = 1e-5,
        }.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "preprocessor_config.json"), "{\"size\": {\"shortest_edge\": 16}, \"crop_size\": {\"height\": 16, \"width\": 16}}");
        var clip = new ClipVisionConfig { HiddenSize = 12, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 2, ImageSize = 16, PatchSize = 8, HiddenAct = "gelu" };
        using (var clipModel = new ClipVisionModel(clip, seed: 1)) ModelLoading.Save(clipModel, dir);
        return dir;
    }

    /// <summary>A PNG with a coloured square on a gradient.</summary>
    public static string WritePng(string path, byte r, byte g, byte b, int width = 30, int height = 24)
    {
        using var img = new Image<Rgb24>(width, height);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                img[x, y] = x > 5 && x < 18 && y > 4 && y < 16 ? new Rgb24(r, g, b) : new Rgb24((byte)(x * 8), (byte)(y * 9), 40);
        img.SaveAsPng(path);
        return path;
    }

    public static void WriteTokenizer(string dir) => File.WriteAllText(Path.Combine(dir, "tokenizer.json"), TokenizerJson().ToJsonString());

    /// <summary>A byte-level tokenizer.json: the 256 byte symbols and three special tokens, Qwen's split pattern.</summary>
    public static JsonObject TokenizerJson()
    {
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++) vocab[ByteChar(b).ToString()] = b;
        var added = new JsonArray();
        foreach (var (id, content) in new[] { (EndOfText, "<|endoftext|>"), (ImStart, "<|im_start|>"), (ImEnd, "<|im_end|>") })
            added.Add(new JsonObject { ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true });
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false };
        return new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = added,
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = QwenPattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    byteLevel.DeepClone()),
            },
            ["post_processor"] = byteLevel.DeepClone(),
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false, ["vocab"] = vocab, ["merges"] = new JsonArray(),
            },
        };
    }

    private const string QwenPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>GPT-2's byte-to-character map.</summary>
    private static char ByteChar(int b)
    {
        static bool Printable(int x) => x is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
        if (Printable(b)) return (char)b;
        int n = 0;
        for (int x = 0; x < b; x++) if (!Printable(x)) n++;
        return (char)(256 + n);
    }
}

/// <summary>
/// Base of the test classes that share one model set, made once per class in a fresh temporary folder (deleted
/// after the class): a tiny Parrot with its tower (<see cref="ParrotDir"/>), a text-only Qwen2
/// (<see cref="QwenDir"/>) and two PNGs, <see cref="Red"/> (30×24) and <see cref="Blue"/> (20×34).
/// </summary>
public abstract class TinyModelSetFixture
{
    private readonly string _tempName;

    /// <summary><paramref name="tempName"/>: the folder under the system's temporary folder that holds the set's folder.</summary>
    protected TinyModelSetFixture(string tempName) => _tempName = tempName;

    /// <summary>The set's folder.</summary>
    protected string Root { get; private set; } = "";

    /// <summary>The Parrot model directory (vision/ holds its tower).</summary>
    protected string ParrotDir => Path.Combine(Root, "parrot");

    /// <summary>The Qwen2 model directory.</summary>
    protected string QwenDir => Path.Combine(Root, "qwen2");

    /// <summary>A red square on a gradient.</summary>
    protected string Red => Path.Combine(Root, "red.png");

    /// <summary>A blue square on a gradient, another size.</summary>
    protected string Blue => Path.Combine(Root, "blue.png");

    /// <summary>Writes the set.</summary>
    [OneTimeSetUp]
    public void MakeModels()
    {
        Root = TinyModels.TempDir(_tempName);
        TinyModels.WriteParrot(ParrotDir);
        TinyModels.WriteQwen2(QwenDir);
        TinyModels.WritePng(Red, 230, 20, 20);
        TinyModels.WritePng(Blue, 20, 20, 230, width: 20, height: 34);
    }

    /// <summary>Deletes the set.</summary>
    [OneTimeTearDown]
    public void Clean()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}
