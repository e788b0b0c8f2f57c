using System.Text.Json.Nodes;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Data;
using Parrot.Parrot.Model;
using Parrot.Parrot.Tests.Text;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Parrot.Parrot.Tests.Training;

/// <summary>A tiny world for training tests: byte-level ChatML tokenizer, tiny Parrot, PNGs, LLaVA JSON and a toy vision tower.</summary>
internal static class TrainingFixtures
{
    public const int ImageSize = 16, Patch = 8, Channels = 12;
    /// <summary>1 CLS + (16/8)² patches.</summary>
    public const int ImageTokens = 5;

    private static readonly Lazy<ChatMl> ChatLazy = new(() => new ChatMl(TokenizerFixtures.Build(TokenizerJson())));
    public static ChatMl Chat => ChatLazy.Value;

    /// <summary>Bytes as ids 0–255, then &lt;|endoftext|&gt; 256, &lt;|im_start|&gt; 257, &lt;|im_end|&gt; 258.</summary>
    public static JsonObject TokenizerJson() => TokenizerFixtures.TinyJson(added:
    [
        TokenizerFixtures.Added(256, "<|endoftext|>"), TokenizerFixtures.Added(257, "<|im_start|>"), TokenizerFixtures.Added(258, "<|im_end|>"),
    ]);

    public static ParrotConfig Config(bool useMoe = true) => new()
    {
        Text = new Qwen2Config { VocabSize = 259, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, TieWordEmbeddings = false, RopeTheta = 10000, MaxPositionEmbeddings = 512 },
        MmHiddenSize = Channels, NumExperts = 3, MoeIntermediateSize = 20, MoeWeight = 0.1, UseMoe = useMoe,
    };

    public static ImagePreprocessor Preprocessor { get; } = new(new PreprocessorConfig { ShortestEdge = ImageSize, CropHeight = ImageSize, CropWidth = ImageSize });

    /// <summary>
    /// A deterministic stand-in for the CLIP tower: each 8×8 patch's per-channel mean through a fixed random
    /// 3→C map (plus a fixed per-position offset), the CLS token the mean over patches.
    /// </summary>
    public static Tensor ToyTower(Tensor pixels)
    {
        int b = pixels.Dim(0), s = pixels.Dim(2), g = s / Patch, n = g * g;
        var px = pixels.Contiguous().ToFloatArray();
        var w = new float[3 * Channels];
        for (int i = 0; i < w.Length; i++) w[i] = (float)Math.Sin(1.7 * i + 0.3);
        var outp = new float[b * (1 + n) * Channels];
        for (int img = 0; img < b; img++)
            for (int py = 0; py < g; py++)
                for (int pxi = 0; pxi < g; pxi++)
                {
                    int token = 1 + py * g + pxi;
                    for (int c = 0; c < 3; c++)
                    {
                        double mean = 0;
                        for (int y = 0; y < Patch; y++)
                            for (int x = 0; x < Patch; x++)
                                mean += px[((img * 3 + c) * s + py * Patch + y) * s + pxi * Patch + x];
                        mean /= Patch * Patch;
                        for (int k = 0; k < Channels; k++)
                        {
                            float v = (float)(mean * w[c * Channels + k]);
                            outp[(img * (1 + n) + token) * Channels + k] += v + (c == 0 ? 0.05f * token : 0);
                            outp[(img * (1 + n)) * Channels + k] += v / n;
                        }
                    }
                }
        return Tensor.FromArray(outp, b, 1 + n, Channels);
    }

    public static string TempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "parrot-train-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }

    /// <summary>A solid-ish PNG with a coloured square.</summary>
    public static void WritePng(string path, byte r, byte g, byte b, int size = 20)
    {
        using var img = new Image<Rgb24>(size, size + 4);
        for (int y = 0; y < img.Height; y++)
            for (int x = 0; x < img.Width; x++)
                img[x, y] = x > 4 && x < 14 && y > 4 && y < 14 ? new Rgb24(r, g, b) : new Rgb24((byte)(x * 10), (byte)(y * 9), 30);
        img.SaveAsPng(path);
    }

    /// <summary>
    /// Writes images/ with 3 PNGs and data.json with 8 samples in en/zh/pt (two text-only), returns (json, images dir).
    /// </summary>
    public static (string Json, string Images) WriteData(string dir, int samples = 8)
    {
        var images = Path.Combine(dir, "images");
        Directory.CreateDirectory(images);
        WritePng(Path.Combine(images, "red.png"), 220, 20, 20);
        WritePng(Path.Combine(images, "green.png"), 20, 200, 40);
        WritePng(Path.Combine(images, "blue.png"), 10, 30, 230);
        var names = new[] { "red", "green", "blue" };
        var langs = new[] { "en", "zh", "pt" };
        var arr = new JsonArray();
        for (int i = 0; i < samples; i++)
        {
            var lang = langs[i % 3];
            var colour = names[i % 3];
            var o = new JsonObject { ["id"] = $"{lang}_{i}" };
            if (i % 4 != 3) o["image"] = colour + ".png";
            string q = lang switch { "zh" => "这是什么颜色?", "pt" => "Que cor é esta?", _ => "What colour is this?" };
            o["conversations"] = new JsonArray(
                new JsonObject { ["from"] = "human", ["value"] = (i % 4 != 3 ? "<image>\n" : "") + q },
                new JsonObject { ["from"] = "gpt", ["value"] = colour + new string('!', i % 3) });
            arr.Add(o);
        }
        var json = Path.Combine(dir, "data.json");
        File.WriteAllText(json, arr.ToJsonString());
        return (json, images);
    }

    public static LlavaOptions DataOptions(bool skipBad = false, int maxLength = 2048) => new() { ImageTokens = ImageTokens, SkipBad = skipBad, MaxLength = maxLength };
}
