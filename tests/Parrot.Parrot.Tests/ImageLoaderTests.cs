using Parrot.Parrot.Vision;

namespace Parrot.Parrot.Tests;

/// <summary>
/// Decoding every supported format against what PIL 9.4 decodes (PIL.Image.open(...).convert('RGB')), EXIF
/// orientation against PIL's ImageOps.exif_transpose, and the whole pipeline from file to tensor.
/// </summary>
public class ImageLoaderTests
{
    /// <summary>
    /// Measured difference from PIL's pixels, in 8-bit levels (max, mean), for the files our exact JPEG decoder
    /// leaves to ImageSharp: CMYK (PIL's naive CMYK→RGB and ImageSharp's conversion differ) and arithmetic
    /// coding (ImageSharp upsamples chroma by repetition where libjpeg-turbo interpolates). Every other
    /// fixture, JPEG and lossy WebP included, must decode to PIL's bytes exactly.
    /// </summary>
    private static readonly Dictionary<string, (int Max, double Mean)> LossyTolerance = new()
    {
        ["cmyk.jpg"] = (3, 1.0),
    };

    private static readonly ImageLimits Raw = new() { ApplyExifOrientation = false };

    private static IEnumerable<VisionFixtures.ImageEntry> Decodable() =>
        VisionFixtures.Images().Where(i => i.Decoded != null && i.File is not "arithmetic.jpg");

    [TestCaseSource(nameof(Decodable))]
    public void DecodesLikePil(VisionFixtures.ImageEntry entry)
    {
        var expected = VisionFixtures.ReadRgb(entry.Decoded!);
        var actual = ImageLoader.Load(VisionFixtures.PathOf(entry.File), Raw);
        if (entry.DecodeExact)
        {
            VisionFixtures.AssertSamePixels(actual, expected, entry.File);
        }
        else
        {
            int max = VisionFixtures.MaxLevelDifference(actual, expected, entry.File);
            double mean = MeanDifference(actual, expected);
            TestContext.Out.WriteLine($"{entry.File}: max difference from PIL {max} levels, mean {mean:F3}");
            var tolerance = LossyTolerance[entry.File];
            Assert.That(max, Is.LessThanOrEqualTo(tolerance.Max), entry.File);
            Assert.That(mean, Is.LessThanOrEqualTo(tolerance.Mean), entry.File);
        }
    }

    [TestCaseSource(nameof(Decodable))]
    public void PathBytesAndStreamsAgree(VisionFixtures.ImageEntry entry)
    {
        string path = VisionFixtures.PathOf(entry.File);
        var fromPath = ImageLoader.Load(path);
        var bytes = File.ReadAllBytes(path);
        Assert.That(ImageLoader.Load(bytes, name: entry.File).Pixels, Is.EqualTo(fromPath.Pixels));
        using var seekable = new MemoryStream(bytes);
        Assert.That(ImageLoader.Load(seekable).Pixels, Is.EqualTo(fromPath.Pixels));
        using var pipe = new ForwardOnlyStream(bytes);
        Assert.That(ImageLoader.Load(pipe).Pixels, Is.EqualTo(fromPath.Pixels));
    }

    private static IEnumerable<string> OrientedFiles() => VisionFixtures.Images().Where(i => i.Oriented).Select(i => i.File);

    [TestCaseSource(nameof(OrientedFiles))]
    public void ExifOrientationIsAppliedLikeExifTranspose(string file)
    {
        var entry = VisionFixtures.Image(file);
        var turned = ImageLoader.Load(VisionFixtures.PathOf(file));
        var expected = VisionFixtures.ReadRgb(entry.DecodedOriented!);
        var raw = ImageLoader.Load(VisionFixtures.PathOf(file), Raw);
        if (file.Contains("orient6"))
        {
            Assert.That((raw.Width, raw.Height), Is.EqualTo((40, 24)), "stored landscape");
            Assert.That((turned.Width, turned.Height), Is.EqualTo((24, 40)), "shown portrait (rotated 90° clockwise)");
        }
        VisionFixtures.AssertSamePixels(turned, expected, file);
    }

    private static IEnumerable<VisionFixtures.PreprocessCase> EndToEndCases() =>
        VisionFixtures.PreprocessCases().Where(c => c.Image is not "arithmetic.jpg" && c.Config != "clip336.json");

    /// <summary>File → tensor against the reference's tensor: identical for lossless formats; for JPEG and lossy
    /// WebP the decoding difference carries through (1 level = 1/255/std ≤ 0.015 after normalisation).</summary>
    [TestCaseSource(nameof(EndToEndCases))]
    public void FileToTensorMatchesTheReference(VisionFixtures.PreprocessCase c)
    {
        var entry = VisionFixtures.Image(c.Image);
        var image = ImageLoader.Load(VisionFixtures.PathOf(c.Image), new ImageLimits { ApplyExifOrientation = c.Oriented });
        var expected = VisionFixtures.ReadFloats(c.Expected, out var shape);
        using var actual = new ImagePreprocessor(PreprocessorConfig.Load(VisionFixtures.PathOf(c.Config))).Process(image, c.Pad);
        double max = VisionFixtures.MaxAbsDifference(actual, expected, shape, c.ToString());
        if (entry.DecodeExact) Assert.That(max, Is.EqualTo(0.0), c.ToString());
        else
        {
            TestContext.Out.WriteLine($"{c}: max |difference| {max:G4} ({max * 0.2613 * 255:F1} levels)");
            Assert.That(max, Is.LessThanOrEqualTo(LossyTolerance[c.Image].Max / 255.0 / 0.26130258 + 1e-6), c.ToString());
        }
    }

    [Test]
    public void GifGivesTheFirstFrame()
    {
        var first = ImageLoader.Load(VisionFixtures.PathOf("animated.gif"));
        VisionFixtures.AssertSamePixels(first, VisionFixtures.ReadRgb("animated_gif.rgb.npy"), "animated.gif frame 0");
    }

    [Test]
    public void TransparentPixelsKeepTheirColourAsInPil()
    {
        // PIL's convert('RGB') drops alpha without compositing: fully transparent pixels keep their stored colour.
        var rgba = ImageLoader.Load(VisionFixtures.PathOf("rgba.png"));
        var expected = VisionFixtures.ReadRgb("rgba_png.rgb.npy");
        Assert.That(rgba[0, 0], Is.EqualTo(expected[0, 0]));
        Assert.That(rgba[0, 0], Is.Not.EqualTo(((byte)0, (byte)0, (byte)0)), "the fixture has colour under alpha 0");
    }

    [Test]
    public void ArithmeticCodedJpegIsAClearError()
    {
        // libjpeg-turbo (PIL) decodes these; neither our exact decoder nor ImageSharp 2.1 does. They are rare.
        var e = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(VisionFixtures.PathOf("arithmetic.jpg")));
        Assert.That(e!.Failure, Is.EqualTo(ImageLoadFailure.UnsupportedFormat));
        Assert.That(e.Message, Does.Contain("arithmetic"));
    }

    [Test]
    public void AnimatedWebpGivesTheFirstFrame()
    {
        // ImageSharp 2.1 refuses animated WebP; the loader rewraps the first frame as a still image.
        var first = ImageLoader.Load(VisionFixtures.PathOf("animated.webp"));
        VisionFixtures.AssertSamePixels(first, VisionFixtures.ReadRgb("animated_webp.rgb.npy"), "animated.webp frame 0");
        var limited = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(VisionFixtures.PathOf("animated.webp"), new ImageLimits { MaxPixels = 100 }));
        Assert.That(limited!.Failure, Is.EqualTo(ImageLoadFailure.TooManyPixels));
    }

    [Test]
    public void SixteenBitPngKeepsTheHighByte()
    {
        // 16-bit RGB: PIL keeps the high byte. 16-bit grey: PIL 9 clips to 255 (a whitened image); we keep the
        // high byte there too, deliberately.
        var rgb16 = TestPng.Encode(3, 2, colorType: 2, bitDepth: 16, (x, y, c) => (ushort)(x * 20000 + y * 3000 + c * 700 + 0x00FF));
        var img = ImageLoader.Load(rgb16, name: "rgb16.png");
        for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++)
        {
            var (r, g, b) = img[x, y];
            Assert.That(new[] { r, g, b }, Is.EqualTo(Enumerable.Range(0, 3).Select(c => (byte)((x * 20000 + y * 3000 + c * 700 + 0xFF) >> 8))), $"({x},{y})");
        }
        var gray16 = TestPng.Encode(2, 1, colorType: 0, bitDepth: 16, (x, y, c) => (ushort)(x == 0 ? 1000 : 60000));
        var g16 = ImageLoader.Load(gray16, name: "gray16.png");
        Assert.That(g16[0, 0], Is.EqualTo(((byte)3, (byte)3, (byte)3)));
        Assert.That(g16[1, 0], Is.EqualTo(((byte)234, (byte)234, (byte)234)));
    }

    private static double MeanDifference(RgbImage a, RgbImage b)
    {
        double sum = 0;
        for (int i = 0; i < a.Pixels.Length; i++) sum += Math.Abs(a.Pixels[i] - b.Pixels[i]);
        return sum / a.Pixels.Length;
    }
}

/// <summary>A stream that can only be read forward, like a network response.</summary>
internal sealed class ForwardOnlyStream(byte[] data) : Stream
{
    private int position;
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override int Read(byte[] buffer, int offset, int count)
    {
        int n = Math.Min(Math.Min(count, 1000), data.Length - position);
        Array.Copy(data, position, buffer, offset, n);
        position += n;
        return n;
    }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
