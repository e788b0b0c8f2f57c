using Parrot.Parrot.Vision;

namespace Parrot.Parrot.Tests;

/// <summary>Our resampler against PIL 9.4's Image.resize output, byte for byte, for every filter.</summary>
public class PilResamplerTests
{
    private static IEnumerable<VisionFixtures.ResizeCase> Cases() => VisionFixtures.ResizeCases();

    [TestCaseSource(nameof(Cases))]
    public void MatchesPilExactly(VisionFixtures.ResizeCase c)
    {
        var source = VisionFixtures.ReadRgb(c.Source);
        var expected = VisionFixtures.ReadRgb(c.Expected);
        var actual = PilResampler.Resize(source, c.Width, c.Height, c.Filter);
        VisionFixtures.AssertSamePixels(actual, expected, $"{c.Filter} {source.Width}x{source.Height} -> {c.Width}x{c.Height}");
    }

    [Test]
    public void CoversEveryFilterAndBothDirectionsOnEachAxis()
    {
        var cases = VisionFixtures.ResizeCases().ToList();
        Assert.That(cases.Select(c => c.Filter).Distinct().Count(), Is.EqualTo(6));
        Assert.That(cases.Any(c => c.Width > 61 && c.Height < 37) && cases.Any(c => c.Width < 61 && c.Height > 37), Is.True);
    }

    [Test]
    public void SameSizeIsACopy()
    {
        var source = VisionFixtures.ReadRgb("landscape_png.rgb.npy");
        var copy = PilResampler.Resize(source, source.Width, source.Height);
        Assert.That(copy.Pixels, Is.EqualTo(source.Pixels));
        Assert.That(copy.Pixels, Is.Not.SameAs(source.Pixels));
    }

    [Test]
    public void ConstantImageStaysConstant()
    {
        // Weights are rounded to 22 bits, so they need not sum to exactly 1.0: the rounding still lands on the value.
        var flat = RgbImage.Filled(97, 53, (122, 116, 104));
        foreach (var filter in new[] { ResampleFilter.Bicubic, ResampleFilter.Lanczos, ResampleFilter.Bilinear })
        foreach (var (w, h) in new[] { (336, 336), (13, 7), (500, 20) })
        {
            var r = PilResampler.Resize(flat, w, h, filter);
            int wrong = 0;
            for (int i = 0; i < r.Pixels.Length; i += 3)
                if (r.Pixels[i] != 122 || r.Pixels[i + 1] != 116 || r.Pixels[i + 2] != 104) wrong++;
            Assert.That(wrong, Is.Zero, $"{filter} {w}x{h}: pixels that changed colour");
        }
    }

    [Test]
    public void PaddedRowsResizeLikeTheMaterialisedSquare()
    {
        // The preprocessor resizes a virtual padded square (fill rows computed once); it must equal resizing the real one.
        var image = VisionFixtures.ReadRgb("portrait_png.rgb.npy");
        var wide = VisionFixtures.ReadRgb("landscape_png.rgb.npy");
        foreach (var img in new[] { image, wide })
        {
            var square = ImagePreprocessor.ExpandToSquare(img, ((byte)122, (byte)116, (byte)104));
            var viaRows = PilResampler.Resize(new SquarePaddedRows(img, (122, 116, 104)), 32, 32, ResampleFilter.Bicubic);
            VisionFixtures.AssertSamePixels(viaRows, PilResampler.Resize(square, 32, 32), "padded rows vs padded image");
        }
    }

    [Test]
    public void RejectsBadSizesAndFilters()
    {
        var image = RgbImage.Filled(4, 4, (0, 0, 0));
        Assert.That(() => PilResampler.Resize(image, 0, 4), Throws.ArgumentException.With.Message.Contains("Resize"));
        Assert.That(() => PilResampler.Resize(image, 4, -1), Throws.ArgumentException.With.Message.Contains("Resize"));
        Assert.That(() => PilResampler.Resize(image, 5, 5, (ResampleFilter)9), Throws.ArgumentException.With.Message.Contains("filter"));
    }

    [Test]
    public void LargeDownscaleTakesMilliseconds()
    {
        // A 12-megapixel photo to CLIP's 448x336: about PIL's time (~0.1 s here); the bound leaves room for a busy machine.
        var pixels = new byte[4032 * 3024 * 3];
        new Random(5).NextBytes(pixels);
        var photo = new RgbImage(4032, 3024, pixels);
        PilResampler.Resize(photo, 448, 336); // warm up
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var small = PilResampler.Resize(photo, 448, 336);
        watch.Stop();
        TestContext.Out.WriteLine($"4032x3024 -> 448x336 bicubic: {watch.Elapsed.TotalMilliseconds:F1} ms");
        Assert.That(small.Width, Is.EqualTo(448));
        Assert.That(watch.Elapsed.TotalSeconds, Is.LessThan(5.0));
    }
}
