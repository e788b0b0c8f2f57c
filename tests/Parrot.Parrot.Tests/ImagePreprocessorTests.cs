using Parrot.Parrot.Vision;

namespace Parrot.Parrot.Tests;

/// <summary>
/// The CLIP preprocessing against the reference pipeline (PIL + transformers 4.39's CLIPImageProcessor steps,
/// written out in tools/make_vision_fixtures.py). Fed PIL's decoded pixels, the tensors must be identical to
/// the float32 bit: every step is either integer (resize, crop) or the reference's own float32 operations.
/// </summary>
public class ImagePreprocessorTests
{
    private static ImagePreprocessor ForConfig(string file) =>
        new(PreprocessorConfig.Load(VisionFixtures.PathOf(file)));

    private static IEnumerable<VisionFixtures.PreprocessCase> CasesWithDecodedPixels() =>
        VisionFixtures.PreprocessCases().Where(c => VisionFixtures.Image(c.Image).Decoded != null);

    [TestCaseSource(nameof(CasesWithDecodedPixels))]
    public void FromPilPixelsIsBitExact(VisionFixtures.PreprocessCase c)
    {
        var entry = VisionFixtures.Image(c.Image);
        var image = VisionFixtures.ReadRgb(c.Oriented ? entry.DecodedOriented! : entry.Decoded!);
        var expected = VisionFixtures.ReadFloats(c.Expected, out var shape);
        using var actual = ForConfig(c.Config).Process(image, c.Pad);
        Assert.That(actual.Shape.ToArray(), Is.EqualTo(shape), "shape");
        var got = actual.ToArray<float>();
        for (int i = 0; i < got.Length; i++)
            if (BitConverter.SingleToInt32Bits(got[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                Assert.Fail($"{c}: element {i} (channel {i / (shape[1] * shape[2])}) is {got[i]:R}, expected {expected[i]:R}");
    }

    [Test]
    public void FullSize336Cases()
    {
        // Through the files (lossless PNG), with the real CLIP-336 config: a 640x480 photo padded to 640x640 and
        // downscaled, and an image already 336x336 that is neither resampled nor cropped.
        var pre = ForConfig("clip336.json");
        foreach (var c in VisionFixtures.PreprocessCases().Where(c => c.Config == "clip336.json"))
        {
            var image = ImageLoader.Load(VisionFixtures.PathOf(c.Image));
            var expected = VisionFixtures.ReadFloats(c.Expected, out var shape);
            Assert.That(shape, Is.EqualTo(new[] { 3, 336, 336 }));
            using var actual = pre.Process(image, c.Pad);
            Assert.That(VisionFixtures.MaxAbsDifference(actual, expected, shape, c.ToString()), Is.EqualTo(0.0), c.ToString());
        }
    }

    [Test]
    public void Clip336ConfigFileMatchesTheBuiltInDefaults()
    {
        var fromFile = PreprocessorConfig.Load(VisionFixtures.PathOf("clip336.json"));
        var builtIn = PreprocessorConfig.Clip336;
        Assert.Multiple(() =>
        {
            Assert.That(fromFile.ShortestEdge, Is.EqualTo(336));
            Assert.That((fromFile.CropHeight, fromFile.CropWidth), Is.EqualTo((336, 336)));
            Assert.That(fromFile.ImageMean, Is.EqualTo(builtIn.ImageMean));
            Assert.That(fromFile.ImageStd, Is.EqualTo(builtIn.ImageStd));
            Assert.That(fromFile.Resample, Is.EqualTo(ResampleFilter.Bicubic));
            Assert.That(fromFile.RescaleFactor, Is.EqualTo(1.0 / 255));
        });
        var pre = new ImagePreprocessor();
        Assert.That(pre.PadColor, Is.EqualTo(((byte)122, (byte)116, (byte)104)));
        Assert.That(pre.FixedOutputShape, Is.EqualTo(new[] { 3, 336, 336 }));
        using var t = pre.Process(RgbImage.Filled(10, 7, (1, 2, 3)), padToSquare: true);
        Assert.That(t.Shape.ToArray(), Is.EqualTo(new[] { 3, 336, 336 }));
    }

    [Test]
    public void ExpandToSquareMatchesParrotsExpand2Square()
    {
        var pre = new ImagePreprocessor();
        foreach (var entry in VisionFixtures.Manifest.GetProperty("expand2square").EnumerateArray())
        {
            string file = entry.GetProperty("image").GetString()!;
            var image = VisionFixtures.ReadRgb(VisionFixtures.Image(file).Decoded!);
            var expected = VisionFixtures.ReadRgb(entry.GetProperty("expected").GetString()!);
            VisionFixtures.AssertSamePixels(pre.ExpandToSquare(image), expected, $"expand2square({file})");
        }
    }

    [Test]
    public void ExpandToSquareGeometry()
    {
        // 5 wide, 2 high: side 5, pasted at row (5 - 2) / 2 = 1; odd remainders put the extra row at the bottom.
        var image = RgbImage.Filled(5, 2, (9, 9, 9));
        var square = ImagePreprocessor.ExpandToSquare(image, ((byte)1, (byte)2, (byte)3));
        Assert.That((square.Width, square.Height), Is.EqualTo((5, 5)));
        for (int y = 0; y < 5; y++)
            Assert.That(square[0, y], Is.EqualTo(y is 1 or 2 ? ((byte)9, (byte)9, (byte)9) : ((byte)1, (byte)2, (byte)3)), $"row {y}");
        var tall = ImagePreprocessor.ExpandToSquare(RgbImage.Filled(1, 4, (9, 9, 9)), ((byte)0, (byte)0, (byte)0));
        Assert.That(tall[1, 0], Is.EqualTo(((byte)9, (byte)9, (byte)9)));
        Assert.That(tall[0, 0], Is.EqualTo(((byte)0, (byte)0, (byte)0)));
        var same = RgbImage.Filled(3, 3, (1, 1, 1));
        Assert.That(ImagePreprocessor.ExpandToSquare(same, ((byte)0, (byte)0, (byte)0)), Is.SameAs(same));
    }

    [Test]
    public void MeanColorImageIsTheReferenceSubstituteForBadImages()
    {
        var pre = new ImagePreprocessor();
        var blank = pre.MeanColorImage();
        Assert.That((blank.Width, blank.Height, blank[100, 200]), Is.EqualTo((336, 336, ((byte)122, (byte)116, (byte)104))));
        using var t = pre.Process(blank, padToSquare: true);
        var v = t.ToArray<float>();
        float red = ((float)(122 * (1.0 / 255)) - 0.48145466f) / 0.26862954f;
        Assert.That(v[0], Is.EqualTo(red));
        Assert.That(v[336 * 336 - 1], Is.EqualTo(red));
    }

    [Test]
    public void PadColorIsTruncatedMeanTimes255()
    {
        Assert.That(ImagePreprocessor.FillColor(PreprocessorConfig.ClipMean), Is.EqualTo(((byte)122, (byte)116, (byte)104)));
        Assert.That(ImagePreprocessor.FillColor([0.5, 0.5, 0.5]), Is.EqualTo(((byte)127, (byte)127, (byte)127)));
        Assert.That(ImagePreprocessor.FillColor([1.0, 0.0, 0.999]), Is.EqualTo(((byte)255, (byte)0, (byte)254)));
    }

    [Test]
    public void ResizeSizeRuleMatchesTransformers()
    {
        // int(s * long / short) from Python on awkward sizes: the quotient must be the same double, then truncated.
        var cache = new Dictionary<int, ImagePreprocessor>();
        int n = 0;
        foreach (var row in VisionFixtures.Manifest.GetProperty("size_rule").EnumerateArray())
        {
            int w = row[0].GetInt32(), h = row[1].GetInt32(), s = row[2].GetInt32();
            if (!cache.TryGetValue(s, out var pre))
                cache[s] = pre = new ImagePreprocessor(PreprocessorConfig.Clip336 with { ShortestEdge = s });
            Assert.That(pre.ResizeOutputSize(w, h), Is.EqualTo((row[3].GetInt32(), row[4].GetInt32())), $"{w}x{h} shortest edge {s}");
            n++;
        }
        Assert.That(n, Is.GreaterThan(100));
        Assert.That(new ImagePreprocessor().ResizeOutputSize(500, 333), Is.EqualTo((504, 336)));
    }

    [Test]
    public void ImageAtTargetSizeIsNotResampled()
    {
        // A 336x336 image with the CLIP config: no resize, no crop, so each value is the normalised input byte.
        var pixels = new byte[336 * 336 * 3];
        new Random(3).NextBytes(pixels);
        var image = new RgbImage(336, 336, pixels);
        var pre = new ImagePreprocessor();
        using var t = pre.Process(image, padToSquare: true);
        var values = t.ToArray<float>();
        float[] mean = [0.48145466f, 0.4578275f, 0.40821073f], std = [0.26862954f, 0.26130258f, 0.27577711f];
        for (int c = 0; c < 3; c++)
        for (int i = 0; i < 336 * 336; i += 997)
        {
            float x = (float)(pixels[3 * i + c] * (1.0 / 255));
            Assert.That(values[c * 336 * 336 + i], Is.EqualTo((x - mean[c]) / std[c]), $"channel {c} pixel {i}");
        }
    }

    [Test]
    public void CropLargerThanImagePadsWithZerosBeforeNormalising()
    {
        // s20crop32: a 20-pixel short side in a 32x32 crop; transformers pads with 0 bytes, so -mean/std there.
        var pre = ForConfig("s20crop32.json");
        using var t = pre.Process(RgbImage.Filled(20, 20, (255, 255, 255)), padToSquare: false);
        var v = t.ToArray<float>();
        float zeroRed = (0f - (float)PreprocessorConfig.ClipMean[0]) / (float)PreprocessorConfig.ClipStd[0];
        Assert.That(v[0], Is.EqualTo(zeroRed), "corner");
        Assert.That(v[6 * 32 + 6], Is.EqualTo(((float)(255 * (1.0 / 255)) - (float)PreprocessorConfig.ClipMean[0]) / (float)PreprocessorConfig.ClipStd[0]), "inside: ceil(12 / 2) = 6 rows and columns of zeros");
        Assert.That(v[5 * 32 + 5], Is.EqualTo(zeroRed), "just outside");
        Assert.That(v[25 * 32 + 25], Is.Not.EqualTo(zeroRed), "last inside row/column");
        Assert.That(v[26 * 32 + 26], Is.EqualTo(zeroRed), "padding after the image");
    }

    [Test]
    public void ConfigVariantsParse()
    {
        var s32 = PreprocessorConfig.Load(VisionFixtures.PathOf("s32.json"));
        Assert.That((s32.ShortestEdge, s32.CropHeight, s32.CropWidth), Is.EqualTo(((int?)32, 32, 32)));
        var hw = PreprocessorConfig.Load(VisionFixtures.PathOf("hw30x40.json"));
        Assert.That((hw.ShortestEdge, hw.ResizeHeight, hw.ResizeWidth, hw.DoCenterCrop, hw.Resample),
            Is.EqualTo(((int?)null, (int?)30, (int?)40, false, ResampleFilter.Bilinear)));
        Assert.That(new ImagePreprocessor(hw).FixedOutputShape, Is.EqualTo(new[] { 3, 30, 40 }));
        var scalarMean = PreprocessorConfig.Parse("""{"image_mean": 0.5, "image_std": [0.25], "size": [20, 30], "crop_size": [10, 12]}""");
        Assert.That(scalarMean.ImageMean, Is.EqualTo(new[] { 0.5, 0.5, 0.5 }));
        Assert.That(scalarMean.ImageStd, Is.EqualTo(new[] { 0.25, 0.25, 0.25 }));
        Assert.That((scalarMean.ResizeHeight, scalarMean.ResizeWidth, scalarMean.CropHeight, scalarMean.CropWidth), Is.EqualTo(((int?)20, (int?)30, 10, 12)));
        Assert.That(PreprocessorConfig.Parse("{}"), Is.EqualTo(PreprocessorConfig.Clip336 with { }).Using<PreprocessorConfig>((a, b) =>
            a.ShortestEdge == b.ShortestEdge && a.CropHeight == b.CropHeight && a.ImageMean.SequenceEqual(b.ImageMean)));
    }

    [Test]
    public void LoadOrDefaultFallsBackToClip336()
    {
        string dir = Path.Combine(Path.GetTempPath(), "parrot-vision-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            Assert.That(PreprocessorConfig.LoadOrDefault(dir), Is.SameAs(PreprocessorConfig.Clip336));
            File.Copy(VisionFixtures.PathOf("s32.json"), Path.Combine(dir, "preprocessor_config.json"));
            Assert.That(ImagePreprocessor.FromDirectory(dir).Config.ShortestEdge, Is.EqualTo(32));
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestCase("{", "not valid JSON")]
    [TestCase("[1]", "JSON object")]
    [TestCase("""{"size": {"longest_edge": 3}}""", "shortest_edge")]
    [TestCase("""{"size": -4}""", "size")]
    [TestCase("""{"crop_size": "336"}""", "crop_size")]
    [TestCase("""{"image_mean": [0.1, 0.2]}""", "image_mean")]
    [TestCase("""{"image_std": [0.1, 0, 0.3]}""", "image_std")]
    [TestCase("""{"resample": 7}""", "resample")]
    [TestCase("""{"do_resize": "yes"}""", "do_resize")]
    [TestCase("""{"rescale_factor": "x"}""", "rescale_factor")]
    public void BadConfigsNameTheFileAndKey(string json, string key)
    {
        Assert.That(() => PreprocessorConfig.Parse(json, "my_config.json"),
            Throws.TypeOf<InvalidDataException>().With.Message.Contains("my_config.json").And.Message.Contains(key));
    }

    [Test]
    public void MissingConfigFileIsAClearError()
    {
        Assert.That(() => PreprocessorConfig.Load("/nonexistent/preprocessor_config.json"),
            Throws.TypeOf<InvalidDataException>().With.Message.Contains("/nonexistent/preprocessor_config.json"));
    }
}
