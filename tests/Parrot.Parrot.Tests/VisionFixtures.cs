using System.Text.Json;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Tests;

/// <summary>The files tools/make_vision_fixtures.py wrote (PIL 9.4 and numpy as the reference) and their manifest.</summary>
public static class VisionFixtures
{
    public static string Folder => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "vision");

    public static string PathOf(string file) => Path.Combine(Folder, file);

    private static readonly Lazy<JsonDocument> LazyManifest = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "vision", "manifest.json"))));

    public static JsonElement Manifest => LazyManifest.Value.RootElement;

    public sealed record ImageEntry(string File, bool DecodeExact, bool Oriented, string? Decoded, string? DecodedOriented, int Width, int Height)
    {
        public override string ToString() => File;
    }

    public sealed record PreprocessCase(string Image, string Config, bool Pad, bool Oriented, string Expected, int[] Shape)
    {
        public override string ToString() => $"{Image} {Config} {(Pad ? "pad" : "nopad")}{(Oriented ? " oriented" : "")}";
    }

    public sealed record ResizeCase(string Source, ResampleFilter Filter, int Width, int Height, string Expected)
    {
        public override string ToString() => $"{Filter} {Width}x{Height}";
    }

    public static IEnumerable<ImageEntry> Images() =>
        Manifest.GetProperty("images").EnumerateArray().Select(e => new ImageEntry(
            e.GetProperty("file").GetString()!, e.GetProperty("decode_exact").GetBoolean(), e.GetProperty("oriented").GetBoolean(),
            e.GetProperty("decoded").ValueKind == JsonValueKind.Null ? null : e.GetProperty("decoded").GetString(),
            e.TryGetProperty("decoded_oriented", out var o) ? o.GetString() : null,
            e.GetProperty("size")[0].GetInt32(), e.GetProperty("size")[1].GetInt32()));

    public static ImageEntry Image(string file) => Images().Single(i => i.File == file);

    public static IEnumerable<PreprocessCase> PreprocessCases() =>
        Manifest.GetProperty("preprocess").EnumerateArray().Select(e => new PreprocessCase(
            e.GetProperty("image").GetString()!, e.GetProperty("config").GetString()!, e.GetProperty("pad").GetBoolean(),
            e.GetProperty("oriented").GetBoolean(), e.GetProperty("expected").GetString()!,
            e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray()));

    public static IEnumerable<ResizeCase> ResizeCases() =>
        Manifest.GetProperty("resize").EnumerateArray().Select(e => new ResizeCase(
            e.GetProperty("source").GetString()!, (ResampleFilter)e.GetProperty("filter").GetInt32(),
            e.GetProperty("width").GetInt32(), e.GetProperty("height").GetInt32(), e.GetProperty("expected").GetString()!));

    /// <summary>A uint8 [H, W, 3] .npy as an image.</summary>
    public static RgbImage ReadRgb(string file)
    {
        using var t = Npy.Read(PathOf(file));
        Assert.That(t.DType, Is.EqualTo(DType.U8), file);
        Assert.That(t.Shape.Length == 3 && t.Shape[2] == 3, Is.True, $"{file}: shape must be [H, W, 3]");
        return new RgbImage(t.Shape[1], t.Shape[0], t.ToArray<byte>());
    }

    public static float[] ReadFloats(string file, out int[] shape)
    {
        using var t = Npy.Read(PathOf(file));
        Assert.That(t.DType, Is.EqualTo(DType.F32), file);
        shape = t.Shape.ToArray();
        return t.ToArray<float>();
    }

    /// <summary>Largest |a − b| over two images of the same size, in 8-bit levels.</summary>
    public static int MaxLevelDifference(RgbImage actual, RgbImage expected, string what)
    {
        Assert.That((actual.Width, actual.Height), Is.EqualTo((expected.Width, expected.Height)), $"{what}: size");
        int max = 0;
        for (int i = 0; i < actual.Pixels.Length; i++) max = Math.Max(max, Math.Abs(actual.Pixels[i] - expected.Pixels[i]));
        return max;
    }

    /// <summary>Asserts two images are byte-identical, naming the first differing pixel.</summary>
    public static void AssertSamePixels(RgbImage actual, RgbImage expected, string what)
    {
        Assert.That((actual.Width, actual.Height), Is.EqualTo((expected.Width, expected.Height)), $"{what}: size");
        int n = 0, first = -1;
        for (int i = 0; i < actual.Pixels.Length; i++)
            if (actual.Pixels[i] != expected.Pixels[i]) { n++; if (first < 0) first = i; }
        if (n > 0)
        {
            int px = first / 3;
            Assert.Fail($"{what}: {n} of {actual.Pixels.Length} bytes differ; first at x={px % actual.Width}, y={px / actual.Width}, " +
                        $"channel {first % 3}: got {actual.Pixels[first]}, expected {expected.Pixels[first]}; " +
                        $"max difference {MaxLevelDifference(actual, expected, what)} levels");
        }
    }

    /// <summary>Largest |a − b| between a tensor and an expected float array of the same shape.</summary>
    public static double MaxAbsDifference(Tensor actual, float[] expected, int[] shape, string what)
    {
        Assert.That(actual.Shape.ToArray(), Is.EqualTo(shape), $"{what}: shape");
        Assert.That(actual.DType, Is.EqualTo(DType.F32), $"{what}: dtype");
        var a = actual.ToArray<float>();
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs((double)a[i] - expected[i]));
        return max;
    }
}
