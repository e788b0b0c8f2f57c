using System.Buffers.Binary;
using System.Diagnostics;
using Parrot.Parrot.Vision;

namespace Parrot.Parrot.Tests;

/// <summary>
/// Every way an image can be bad ends in an <see cref="ImageLoadException"/> that names the source and the
/// problem, before any large allocation, and quickly: never another exception type, a crash, a hang, or a
/// silently half-decoded image.
/// </summary>
public class ImageBadInputTests
{
    private static byte[] Fixture(string file) => File.ReadAllBytes(VisionFixtures.PathOf(file));

    private static ImageLoadException Fails(byte[] data, string name, ImageLimits? limits = null)
    {
        var e = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(data, limits, name))!;
        Assert.That(e.Message, Does.StartWith(name + ": "), "the message names the source first");
        Assert.That(e.SourceName, Is.EqualTo(name));
        return e;
    }

    [TestCase("color.jpg")]
    [TestCase("progressive.jpg")]
    [TestCase("gray.jpg")]
    [TestCase("orient6.jpg")]
    [TestCase("restart.jpg")]
    [TestCase("restart_progressive.jpg")]
    [TestCase("transposed440.jpg")]
    [TestCase("landscape.png")]
    [TestCase("palette.png")]
    [TestCase("palette.gif")]
    [TestCase("animated.gif")]
    [TestCase("lossless.webp")]
    [TestCase("lossy.webp")]
    [TestCase("alpha.webp")]
    [TestCase("animated.webp")]
    [TestCase("animated_lossy_alpha.webp")]
    [TestCase("image.bmp")]
    [TestCase("palette.bmp")]
    public void TruncatedFilesAreRejectedNotHalfDecoded(string file)
    {
        // Cut at many points, from inside the header to the last byte: never a silently incomplete image. (A GIF
        // cut after its first frame is complete for the frame we use, so GIFs are cut inside that frame only.)
        var data = Fixture(file);
        int end = file.EndsWith(".gif") ? FirstGifFrameEnd(data) : data.Length;
        var cuts = Enumerable.Range(1, 40).Select(i => (int)((long)end * i / 41)).Append(end - 1).Distinct();
        foreach (int n in cuts)
        {
            var e = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(data[..n], name: $"{file}[..{n}]"), $"{file} cut to {n} of {data.Length} bytes")!;
            Assert.That(e.Failure, Is.AnyOf(ImageLoadFailure.Truncated, ImageLoadFailure.Corrupt, ImageLoadFailure.NotAnImage), e.Message);
        }
        var last = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(data[..(end - 1)], name: file))!;
        Assert.That(last.Failure, Is.EqualTo(ImageLoadFailure.Truncated), $"cut by one byte: {last.Message}");
        Assert.That(last.Message, Does.Contain("truncated"));
    }

    /// <summary><see cref="ImageLoader.Check"/> (no decoding) passes what loads and finds what the container walk and header find.</summary>
    [TestCase("color.jpg")]
    [TestCase("progressive.jpg")]
    [TestCase("landscape.png")]
    [TestCase("palette.gif")]
    [TestCase("lossy.webp")]
    [TestCase("animated.webp")]
    [TestCase("image.bmp")]
    public void CheckWithoutDecodingAgreesWithLoad(string file)
    {
        var data = Fixture(file);
        var dir = Path.Combine(Path.GetTempPath(), $"image-check-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var whole = Path.Combine(dir, file);
            File.WriteAllBytes(whole, data);
            Assert.DoesNotThrow(() => ImageLoader.Check(whole));
            var small = Assert.Throws<ImageLoadException>(() => ImageLoader.Check(whole, new ImageLimits { MaxPixels = 100 }))!;
            Assert.That(small.Failure, Is.EqualTo(ImageLoadFailure.TooManyPixels), small.Message);

            int end = file.EndsWith(".gif") ? FirstGifFrameEnd(data) : data.Length;
            var cut = Path.Combine(dir, "cut-" + file);
            File.WriteAllBytes(cut, data[..(end - 1)]);
            var e = Assert.Throws<ImageLoadException>(() => ImageLoader.Check(cut))!;
            Assert.That((e.Failure, e.SourceName), Is.EqualTo((ImageLoadFailure.Truncated, cut)), e.Message);

            File.WriteAllBytes(cut, []);
            Assert.That(Assert.Throws<ImageLoadException>(() => ImageLoader.Check(cut))!.Failure, Is.EqualTo(ImageLoadFailure.Empty));
            Assert.That(Assert.Throws<ImageLoadException>(() => ImageLoader.Check(Path.Combine(dir, "absent.png")))!.Failure, Is.EqualTo(ImageLoadFailure.NotFound));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static int FirstGifFrameEnd(byte[] d)
    {
        // The fixtures have a global colour table and one extension block before the first frame at most.
        int p = 13 + ((d[10] & 0x80) != 0 ? 3 << ((d[10] & 7) + 1) : 0);
        while (d[p] == 0x21) { p += 2; while (d[p] != 0) p += d[p] + 1; p++; }
        p += 10 + ((d[p + 9] & 0x80) != 0 ? 3 << ((d[p + 9] & 7) + 1) : 0) + 1;
        while (d[p] != 0) p += d[p] + 1;
        return p + 1;
    }

    [Test]
    public void TruncatedJpegMessageSaysWhere()
    {
        var data = Fixture("color.jpg");
        var e = Fails(data[..(data.Length / 2)], "photo.jpg");
        Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.Truncated));
        Assert.That(e.Message, Does.Contain("end-of-image"));
    }

    [Test]
    public void RandomBytesAreNotAnImage()
    {
        var random = new Random(11);
        foreach (int length in new[] { 1, 2, 7, 100, 4096, 1 << 20 })
        {
            var data = new byte[length];
            random.NextBytes(data);
            var e = Fails(data, $"noise{length}.bin");
            Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.NotAnImage), e.Message);
            Assert.That(e.Message, Does.Contain("not a JPEG, PNG, GIF, WebP or BMP image"));
        }
        var text = Fails("hello, this is text"u8.ToArray(), "notes.txt");
        Assert.That(text.Failure, Is.EqualTo(ImageLoadFailure.NotAnImage));
    }

    [Test]
    public void HugeDeclaredDimensionsAreRefusedBeforeDecoding()
    {
        // A 60-byte PNG claiming 100000 x 100000 pixels (10 gigapixels, 40 GB of RGBA): refused from the header.
        var bomb = TestPng.Assemble([("IHDR", TestPng.Header(100_000, 100_000, 8, 2)), ("IDAT", TestPng.Zlib(new byte[16])), ("IEND", [])]);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Fails(bomb, "bomb.png");
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.TooManyPixels));
        Assert.That(e.Message, Does.Contain("100000x100000").And.Contain("MaxPixels"));
        Assert.That(allocated, Is.LessThan(16 << 20), "nothing close to the pixel buffer was allocated");

        // A small WebP whose lossless bitstream header claims 16384 x 16384 (the decoder would size its buffers by it).
        var webp = Fixture("lossless.webp");
        Assert.That(System.Text.Encoding.ASCII.GetString(webp, 12, 4), Is.EqualTo("VP8L"));
        uint bits = BinaryPrimitives.ReadUInt32LittleEndian(webp.AsSpan(21));
        BinaryPrimitives.WriteUInt32LittleEndian(webp.AsSpan(21), (bits & ~0x0FFFFFFFu) | 0x0FFFFFFFu);
        var lying = Fails(webp, "lying.webp");
        Assert.That(lying.Failure, Is.EqualTo(ImageLoadFailure.TooManyPixels), lying.Message);

        // Same with a real but larger-than-allowed image and a tight limit.
        var small = Fails(Fixture("landscape.png"), "landscape.png", new ImageLimits { MaxPixels = 61 * 37 - 1 });
        Assert.That(small.Failure, Is.EqualTo(ImageLoadFailure.TooManyPixels));
        Assert.That(ImageLoader.Load(Fixture("landscape.png"), new ImageLimits { MaxPixels = 61 * 37 }).Width, Is.EqualTo(61));
    }

    [TestCase("color.jpg")]
    [TestCase("palette.gif")]
    [TestCase("image.bmp")]
    [TestCase("lossless.webp")]
    [TestCase("animated.webp")]
    [TestCase("offset.gif")]
    public void PixelLimitAppliesToEveryFormat(string file)
    {
        var e = Fails(Fixture(file), file, new ImageLimits { MaxPixels = 100 });
        Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.TooManyPixels), e.Message);
    }

    [Test]
    public void ZeroSizeInTheHeaderIsCorrupt()
    {
        var png = TestPng.Assemble([("IHDR", TestPng.Header(0, 5, 8, 2)), ("IDAT", TestPng.Zlib(new byte[16])), ("IEND", [])]);
        var e = Fails(png, "zero.png");
        Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.Corrupt), e.Message);
        // The size is named: the decoder's own words were "PNG Image does not contain a header chunk", which it has.
        Assert.That(e.Message, Is.EqualTo("zero.png: the PNG header (IHDR) declares a size of 0x5; an image has at least one pixel"));
        png = TestPng.Assemble([("IHDR", TestPng.Header(0, 0, 8, 2)), ("IEND", [])]);
        Assert.That(Fails(png, "zero.png").Message, Is.EqualTo("zero.png: the PNG header (IHDR) declares a size of 0x0; an image has at least one pixel"));

        var gif = Fixture("palette.gif");
        int descriptor = Array.IndexOf(gif, (byte)0x2C, 13);
        gif[descriptor + 5] = 0; gif[descriptor + 6] = 0; // first frame width = 0
        Assert.That(Fails(gif, "zero.gif").Failure, Is.EqualTo(ImageLoadFailure.Corrupt));

        var bmp = Fixture("image.bmp");
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(18), 0);
        Assert.That(Fails(bmp, "zero.bmp").Failure, Is.EqualTo(ImageLoadFailure.Corrupt));
    }

    [Test]
    public void EmptyAndMissingFiles()
    {
        string dir = Path.Combine(Path.GetTempPath(), "parrot-bad-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string empty = Path.Combine(dir, "empty.jpg");
            File.WriteAllBytes(empty, []);
            var e = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(empty))!;
            Assert.That((e.Failure, e.Message), Is.EqualTo((ImageLoadFailure.Empty, empty + ": the file is empty (0 bytes)")));

            string missing = Path.Combine(dir, "missing.png");
            e = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(missing))!;
            Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.NotFound));
            Assert.That(e.Message, Does.StartWith(missing).And.Contain("no such file"));

            e = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(dir))!;
            Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.NotFound));
            Assert.That(e.Message, Does.Contain("directory"));

            Assert.That(Fails([], "nothing").Failure, Is.EqualTo(ImageLoadFailure.Empty));
            e = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(new MemoryStream(), name: "empty stream"))!;
            Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.Empty));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void EncodedSizeLimitIsCheckedBeforeReading()
    {
        var limits = new ImageLimits { MaxEncodedBytes = 1000 };
        var data = Fixture("landscape.png"); // 3.5 kB
        Assert.That(Fails(data, "big.png", limits).Failure, Is.EqualTo(ImageLoadFailure.TooManyBytes));
        var fromPath = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(VisionFixtures.PathOf("landscape.png"), limits))!;
        Assert.That(fromPath.Failure, Is.EqualTo(ImageLoadFailure.TooManyBytes));
        Assert.That(fromPath.Message, Does.Contain("MaxEncodedBytes"));

        // An endless stream is read only up to the limit.
        var endless = new EndlessStream();
        var e = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(endless, limits, "endless"))!;
        Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.TooManyBytes));
        Assert.That(endless.Served, Is.LessThanOrEqualTo(1001));
    }

    [Test]
    public void FailingStreamIsUnreadable()
    {
        var e = Assert.Throws<ImageLoadException>(() => ImageLoader.Load(new FailingStream(), name: "socket"))!;
        Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.Unreadable));
        Assert.That(e.Message, Does.StartWith("socket: cannot read the stream"));
    }

    [Test]
    public void OtherFormatsAreNamedAsUnsupported()
    {
        foreach (var (bytes, name) in new (byte[], string)[]
        {
            ([(byte)'I', (byte)'I', 42, 0, 8, 0, 0, 0, 0, 0], "TIFF"),
            ([0, 0, 0, 0x1C, (byte)'f', (byte)'t', (byte)'y', (byte)'p', (byte)'h', (byte)'e', (byte)'i', (byte)'c', 0, 0], "HEIF/HEIC"),
            ([0, 0, 0, 0x1C, (byte)'f', (byte)'t', (byte)'y', (byte)'p', (byte)'a', (byte)'v', (byte)'i', (byte)'f', 0, 0], "AVIF"),
            ("<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>"u8.ToArray(), "SVG"),
        })
        {
            var e = Fails(bytes, "file");
            Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.UnsupportedFormat), name);
            Assert.That(e.Message, Does.Contain(name + " images are not supported"));
        }
    }

    [Test]
    public void CompressedMetadataBombIsNotInflated()
    {
        // A PNG carrying a zTXt chunk that inflates to 32 MB: the chunk is dropped before decoding, so the
        // 4x3 image loads in milliseconds with no large allocation.
        var zeros = new byte[32 << 20];
        var text = "Comment\0\0"u8.ToArray().Concat(TestPng.Zlib(zeros)).ToArray();
        zeros = null!;
        var png = TestPng.Encode(4, 3, 2, 8, (x, y, c) => (ushort)(x * 60 + c), [("zTXt", text), ("iCCP", "icc\0\0"u8.ToArray().Concat(TestPng.Zlib(new byte[1 << 22])).ToArray())]);
        Assert.That(png.Length, Is.LessThan(1 << 20));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var image = ImageLoader.Load(png, name: "bomb.png");
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(8 << 20));
        Assert.That(image[3, 2], Is.EqualTo(((byte)180, (byte)181, (byte)182)));
    }

    [Test]
    public void CorruptPngDataIsCorrupt()
    {
        var data = Fixture("landscape.png");
        int idat = IndexOf(data, "IDAT"u8) + 4;
        for (int i = 0; i < 40; i++) data[idat + 10 + i] ^= 0x5A; // damage the compressed pixels (the CRC no longer matches)
        var e = Fails(data, "damaged.png");
        Assert.That(e.Failure, Is.EqualTo(ImageLoadFailure.Corrupt), e.Message);
    }

    [Test]
    public void FuzzedFilesNeverEscapeAsOtherExceptions()
    {
        // Mutated copies of every fixture: each either loads (a valid image of the declared size) or throws
        // ImageLoadException; the whole run stays bounded in time.
        var random = new Random(1234);
        var seeds = VisionFixtures.Images().Where(i => i.Decoded != null).Select(i => (i.File, Data: Fixture(i.File))).ToList();
        var watch = Stopwatch.StartNew();
        int loaded = 0, rejected = 0;
        for (int round = 0; round < 1500; round++)
        {
            var (file, seed) = seeds[round % seeds.Count];
            var data = (byte[])seed.Clone();
            int edits = 1 + random.Next(8);
            for (int k = 0; k < edits; k++)
            {
                int at = random.Next(Math.Min(data.Length, random.Next(2) == 0 ? 64 : data.Length));
                data[at] = random.Next(3) switch { 0 => (byte)random.Next(256), 1 => 0xFF, _ => 0x00 };
            }
            if (random.Next(4) == 0) data = data[..random.Next(1, data.Length)];
            try
            {
                var image = ImageLoader.Load(data, new ImageLimits { MaxPixels = 4_000_000 }, file);
                Assert.That(image.Pixels.LongLength, Is.EqualTo((long)image.Width * image.Height * 3));
                loaded++;
            }
            catch (ImageLoadException e)
            {
                Assert.That(e.Message, Does.StartWith(file + ": "));
                rejected++;
            }
        }
        TestContext.Out.WriteLine($"fuzz: {loaded} loaded, {rejected} rejected in {watch.Elapsed.TotalSeconds:F1} s");
        Assert.That(rejected, Is.GreaterThan(100));
        Assert.That(watch.Elapsed.TotalSeconds, Is.LessThan(60));
    }

    [Test]
    public void DamagedJpegEntropyDataNeverEscapes()
    {
        // Mutations inside the compressed scans only (headers intact), the input our own decoder sees most:
        // each load either succeeds at the declared size or throws ImageLoadException, quickly.
        var random = new Random(77);
        var seeds = new[] { "color.jpg", "progressive.jpg", "restart.jpg", "restart_progressive.jpg", "transposed440.jpg", "gray_progressive.jpg" }
            .Select(f => (File: f, Data: Fixture(f))).ToArray();
        var watch = Stopwatch.StartNew();
        int loaded = 0, rejected = 0;
        for (int round = 0; round < 600; round++)
        {
            var (file, seed) = seeds[round % seeds.Length];
            var data = (byte[])seed.Clone();
            int scan = data.AsSpan().IndexOf([(byte)0xFF, (byte)0xDA]) + 20;
            for (int k = 0; k < 1 + random.Next(6); k++)
                data[scan + random.Next(data.Length - scan - 2)] = (byte)random.Next(256);
            try
            {
                var image = ImageLoader.Load(data, name: file);
                var info = VisionFixtures.Image(file);
                Assert.That((image.Width, image.Height), Is.EqualTo((info.Width, info.Height)));
                loaded++;
            }
            catch (ImageLoadException e)
            {
                Assert.That(e.Message, Does.StartWith(file + ": "));
                rejected++;
            }
        }
        TestContext.Out.WriteLine($"jpeg entropy fuzz: {loaded} loaded, {rejected} rejected in {watch.Elapsed.TotalSeconds:F1} s");
        Assert.That(loaded, Is.GreaterThan(0));
        Assert.That(watch.Elapsed.TotalSeconds, Is.LessThan(60));
    }

    [Test]
    public void LimitsAreValidated()
    {
        Assert.That(() => ImageLoader.Load([1, 2, 3], new ImageLimits { MaxPixels = 0 }), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("MaxPixels"));
        Assert.That(() => ImageLoader.Load([1, 2, 3], new ImageLimits { MaxEncodedBytes = -1 }), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("MaxEncodedBytes"));
        Assert.That(() => ImageLoader.Load((string)null!), Throws.ArgumentNullException);
    }

    private static int IndexOf(byte[] data, ReadOnlySpan<byte> what) => data.AsSpan().IndexOf(what);

    private sealed class EndlessStream : Stream
    {
        public long Served { get; private set; }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) { Array.Fill(buffer, (byte)0xFF, offset, count); Served += count; return count; }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    private sealed class FailingStream : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new IOException("connection reset");
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
