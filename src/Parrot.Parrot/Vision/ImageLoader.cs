using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Webp;
using Parrot.Parrot.Vision.Jpeg;
using SixLabors.ImageSharp.Metadata;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace Parrot.Parrot.Vision;

/// <summary>
/// Reads JPEG, PNG, GIF (first frame), WebP (still) and BMP images into 8-bit <see cref="RgbImage"/>s, the
/// way the reference pipeline's <c>PIL.Image.open(...).convert('RGB')</c> sees them:
/// <list type="bullet">
/// <item>alpha is dropped, not composited: a transparent pixel keeps the colour stored under it (PIL's
/// <c>convert('RGB')</c> does the same); in a GIF, transparent pixels show their palette entry, as in PIL;</item>
/// <item>grey images have R = G = B; 16-bit PNG samples keep their high byte (PIL does so for 16-bit colour;
/// for 16-bit grey PIL 9 clips the sample to 255, which whitens the image, and we deliberately do not);</item>
/// <item>the EXIF orientation is applied when <see cref="ImageLimits.ApplyExifOrientation"/> is set (the default;
/// PIL's open ignores it, see there).</item>
/// </list>
/// PNG, GIF, BMP and WebP decode to PIL's bytes exactly with ImageSharp; JPEG goes through our own decoder
/// (<see cref="ExactJpegDecoder"/>), which reproduces libjpeg-turbo (PIL's library) bit for bit, because
/// ImageSharp's JPEG decoder upsamples chroma differently (tens of levels at colour edges). CMYK JPEGs fall
/// back to ImageSharp (within a level of PIL); arithmetic-coded JPEGs and animated WebPs are unsupported.
/// <para>Before any pixel is decoded, the encoded size is checked against <see cref="ImageLimits.MaxEncodedBytes"/>,
/// the container walked for truncation and the header's width × height against <see cref="ImageLimits.MaxPixels"/>.
/// Every failure is an <see cref="ImageLoadException"/> naming the source and the problem.</para>
/// </summary>
public static class ImageLoader
{
    /// <summary>Only these five formats: fewer decoders, less attack surface.</summary>
    private static readonly Configuration Decoders = CreateConfiguration();

    private static Configuration CreateConfiguration()
    {
        var config = new Configuration(
            new JpegConfigurationModule(), new PngConfigurationModule(), new GifConfigurationModule(),
            new WebpConfigurationModule(), new BmpConfigurationModule());
        // The reference uses the first frame of an animation; decoding only that one bounds memory too.
        config.ImageFormatsManager.SetDecoder(GifFormat.Instance, new GifDecoder { DecodingMode = FrameDecodingMode.First });
        return config;
    }

    /// <summary>Loads the image file at <paramref name="path"/>.</summary>
    /// <exception cref="ImageLoadException">The file is missing, unreadable, too large, not a supported image,
    /// truncated or corrupt; the message starts with the path.</exception>
    public static RgbImage Load(string path, ImageLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        limits ??= ImageLimits.Default;
        limits.Validate();
        return Decode(ReadFile(path, limits), path, limits);
    }

    /// <summary>
    /// Checks the image file at <paramref name="path"/> as <see cref="Load(string, ImageLimits?)"/> would, short of
    /// decoding its pixels: the file's size, the format, the container structure (truncation), the header and
    /// the pixel count. Far cheaper than loading, it lets a data set's images be checked before a long run uses
    /// them; a file that passes can still hold corrupt compressed data, which only decoding finds.
    /// </summary>
    /// <exception cref="ImageLoadException">As <see cref="Load(string, ImageLimits?)"/>, for the problems named.</exception>
    public static void Check(string path, ImageLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        limits ??= ImageLimits.Default;
        limits.Validate();
        var data = ReadFile(path, limits);
        Guard(path, () =>
        {
            var inspected = Inspect(data, path, limits);
            if (inspected.AnimatedWebp)
            {
                var frame = AnimatedWebp.Extract(inspected.Data);
                CheckPixels(path, "WebP canvas", frame.CanvasWidth, frame.CanvasHeight, limits);
            }
            return 0;
        });
    }

    private static byte[] ReadFile(string path, ImageLimits limits)
    {
        byte[] data;
        try
        {
            var file = new FileInfo(path);
            if (!file.Exists)
                throw new ImageLoadException(path, ImageLoadFailure.NotFound, Directory.Exists(path) ? "is a directory, not an image file" : "no such file");
            if (file.Length == 0) throw new ImageLoadException(path, ImageLoadFailure.Empty, "the file is empty (0 bytes)");
            if (file.Length > limits.MaxEncodedBytes) throw TooManyBytes(path, file.Length, limits);
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException and not ImageLoadException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new ImageLoadException(path, ImageLoadFailure.Unreadable, $"cannot read the file: {e.Message}", e);
        }
        return data;
    }

    /// <summary>Loads an image from encoded bytes; <paramref name="name"/> names it in error messages.</summary>
    /// <exception cref="ImageLoadException">The data is empty, too large, not a supported image, truncated or corrupt.</exception>
    public static RgbImage Load(byte[] data, ImageLimits? limits = null, string name = "image data")
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(name);
        limits ??= ImageLimits.Default;
        limits.Validate();
        if (data.Length == 0) throw new ImageLoadException(name, ImageLoadFailure.Empty, "no data (0 bytes)");
        if (data.Length > limits.MaxEncodedBytes) throw TooManyBytes(name, data.Length, limits);
        return Decode(data, name, limits);
    }

    /// <summary>Loads an image from <paramref name="stream"/>, read to its end but never past
    /// <see cref="ImageLimits.MaxEncodedBytes"/> + 1 bytes; <paramref name="name"/> names it in error messages.
    /// The stream is not closed.</summary>
    /// <exception cref="ImageLoadException">The stream fails, is empty or too long, or its data is not a supported,
    /// intact image.</exception>
    public static RgbImage Load(Stream stream, ImageLimits? limits = null, string name = "image stream")
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(name);
        limits ??= ImageLimits.Default;
        limits.Validate();
        byte[] data;
        try
        {
            if (stream.CanSeek && stream.Length - stream.Position > limits.MaxEncodedBytes)
                throw TooManyBytes(name, stream.Length - stream.Position, limits);
            data = ReadAtMost(stream, limits.MaxEncodedBytes + 1);
        }
        catch (Exception e) when (e is IOException and not ImageLoadException or NotSupportedException or ObjectDisposedException or UnauthorizedAccessException)
        {
            throw new ImageLoadException(name, ImageLoadFailure.Unreadable, $"cannot read the stream: {e.Message}", e);
        }
        if (data.Length == 0) throw new ImageLoadException(name, ImageLoadFailure.Empty, "no data (0 bytes)");
        if (data.Length > limits.MaxEncodedBytes) throw TooManyBytes(name, data.Length, limits, atLeast: true);
        return Decode(data, name, limits);
    }

    private static ImageLoadException TooManyBytes(string name, long bytes, ImageLimits limits, bool atLeast = false) =>
        new(name, ImageLoadFailure.TooManyBytes,
            $"{(atLeast ? "more than " : "")}{(atLeast ? limits.MaxEncodedBytes : bytes)} bytes of encoded image, more than the {limits.MaxEncodedBytes} allowed (ImageLimits.MaxEncodedBytes)");

    private static byte[] ReadAtMost(Stream stream, long max)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        while (buffer.Length < max)
        {
            int n = stream.Read(chunk, 0, (int)Math.Min(chunk.Length, max - buffer.Length));
            if (n == 0) break;
            buffer.Write(chunk, 0, n);
        }
        return buffer.ToArray();
    }

    private static RgbImage Decode(byte[] data, string name, ImageLimits limits) => Guard(name, () => DecodeChecked(data, name, limits));

    /// <summary>Runs <paramref name="body"/>, turning every failure but running out of memory into an <see cref="ImageLoadException"/>.</summary>
    private static T Guard<T>(string name, Func<T> body)
    {
        try
        {
            return body();
        }
        catch (ImageIntegrity.Problem p)
        {
            throw new ImageLoadException(name, p.Failure, p.Message);
        }
        catch (ImageLoadException)
        {
            throw;
        }
        catch (Exception e) when (e is NotSupportedException || e.Message.Contains("not supported", StringComparison.OrdinalIgnoreCase))
        {
            // A valid file using a feature the decoder lacks (arithmetic-coded JPEG, for one).
            throw new ImageLoadException(name, ImageLoadFailure.UnsupportedFormat, $"unsupported image feature: {e.Message}", e);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The decoder's own complaint (ImageSharp throws InvalidImageContentException for bad data, but a
            // damaged stream can also surface as an index or argument error from deep inside it).
            throw new ImageLoadException(name, ImageLoadFailure.Corrupt, $"corrupt image data: {e.Message}", e);
        }
    }

    private static RgbImage DecodeChecked(byte[] data, string name, ImageLimits limits)
    {
        var (format, checkedData, backfill, info, animated) = Inspect(data, name, limits);
        data = checkedData;
        if (animated) return DecodeAnimatedWebp(data, name, limits);

        if (format is JpegFormat && TryDecodeJpegExactly(data, info!, limits) is { } jpeg) return jpeg;

        bool sixteenBit = format is PngFormat && info!.Metadata.GetPngMetadata().BitDepth == PngBitDepth.Bit16;
        return sixteenBit
            ? ToRgbImage(Image.Load<Rgba64>(Decoders, data), limits, static (in Rgba64 p) => ((byte)(p.R >> 8), (byte)(p.G >> 8), (byte)(p.B >> 8)), default)
            : ToRgbImage(Image.Load<Rgba32>(Decoders, data), limits, static (in Rgba32 p) => (p.R, p.G, p.B), backfill);
    }

    /// <summary>What is known of an encoded image before its pixels are decoded (<see cref="Inspect"/>).</summary>
    private readonly record struct Inspected(IImageFormat Format, byte[] Data, ImageIntegrity.GifBackfill Backfill, IImageInfo? Info, bool AnimatedWebp);

    /// <summary>
    /// Every check made before decoding: the format, the container walk (truncation), the header and the pixel
    /// count. <see cref="Inspected.Data"/> is the data to decode (PNG chunks the decoder would not bound are
    /// stripped); an animated WebP has no <see cref="Inspected.Info"/> (its canvas is checked when it is extracted).
    /// </summary>
    private static Inspected Inspect(byte[] data, string name, ImageLimits limits)
    {
        IImageFormat? format = Image.DetectFormat(Decoders, data);
        if (format == null)
        {
            string? other = ImageIntegrity.OtherFormat(data);
            if (other != null)
                throw new ImageLoadException(name, ImageLoadFailure.UnsupportedFormat, $"{other} images are not supported (only JPEG, PNG, GIF, WebP and BMP)");
            throw new ImageLoadException(name, ImageLoadFailure.NotAnImage, $"not a JPEG, PNG, GIF, WebP or BMP image (starts with {Hex(data)})");
        }

        var backfill = default(ImageIntegrity.GifBackfill);
        switch (format)
        {
            case JpegFormat: ImageIntegrity.CheckJpeg(data); break;
            case PngFormat: data = ImageIntegrity.CheckAndStripPng(data); break;
            case GifFormat:
                backfill = ImageIntegrity.CheckGif(data);
                CheckPixels(name, "first GIF frame", backfill.Width, backfill.Height, limits);
                break;
            case BmpFormat: ImageIntegrity.CheckBmp(data); break;
            case WebpFormat:
                bool animated = ImageIntegrity.CheckWebp(data, out long declared);
                if (declared > limits.MaxPixels)
                    throw new ImageLoadException(name, ImageLoadFailure.TooManyPixels,
                        $"a WebP image chunk declares {declared} pixels, more than the {limits.MaxPixels} allowed (ImageLimits.MaxPixels); nothing was decoded");
                if (animated) return new Inspected(format, data, backfill, null, AnimatedWebp: true);
                break;
        }

        IImageInfo? info = Image.Identify(Decoders, data, out _);
        if (info == null) throw new ImageLoadException(name, ImageLoadFailure.NotAnImage, $"the {format.Name} header could not be read");
        if (info.Width <= 0 || info.Height <= 0)
            throw new ImageLoadException(name, ImageLoadFailure.Corrupt, $"the {format.Name} header declares a size of {info.Width}x{info.Height}");
        CheckPixels(name, "image", info.Width, info.Height, limits);
        return new Inspected(format, data, backfill, info, AnimatedWebp: false);
    }

    private static void CheckPixels(string name, string what, int width, int height, ImageLimits limits)
    {
        long pixels = (long)width * height;
        if (pixels > limits.MaxPixels)
            throw new ImageLoadException(name, ImageLoadFailure.TooManyPixels,
                $"{what} {width}x{height} = {pixels} pixels, more than the {limits.MaxPixels} allowed (ImageLimits.MaxPixels); nothing was decoded");
    }

    /// <summary>The first frame of an animated WebP on its canvas (see <see cref="AnimatedWebp"/>).</summary>
    private static RgbImage DecodeAnimatedWebp(byte[] data, string name, ImageLimits limits)
    {
        var frame = AnimatedWebp.Extract(data);
        CheckPixels(name, "WebP canvas", frame.CanvasWidth, frame.CanvasHeight, limits);
        long pixels = (long)frame.CanvasWidth * frame.CanvasHeight;
        using var decoded = Image.Load<Rgba32>(Decoders, frame.StillWebp);
        if (decoded.Width != frame.Width || decoded.Height != frame.Height)
            throw new ImageLoadException(name, ImageLoadFailure.Corrupt, $"the first WebP frame decodes to {decoded.Width}x{decoded.Height}, not the declared {frame.Width}x{frame.Height}");
        var canvas = new byte[pixels * 3];
        int canvasRow = frame.CanvasWidth * 3;
        decoded.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < rows.Height; y++)
            {
                var row = rows.GetRowSpan(y);
                var output = canvas.AsSpan((frame.Y + y) * canvasRow + frame.X * 3, frame.Width * 3);
                for (int x = 0; x < row.Length; x++)
                {
                    output[3 * x] = row[x].R;
                    output[3 * x + 1] = row[x].G;
                    output[3 * x + 2] = row[x].B;
                }
            }
        });
        return new RgbImage(frame.CanvasWidth, frame.CanvasHeight, canvas);
    }

    /// <summary>Our libjpeg-turbo-exact decoder (<see cref="ExactJpegDecoder"/>), or null for the files it leaves to
    /// ImageSharp (CMYK, arithmetic coding, 12-bit, or data it finds inconsistent).</summary>
    private static RgbImage? TryDecodeJpegExactly(byte[] data, IImageInfo info, ImageLimits limits)
    {
        RgbImage image;
        try
        {
            image = ExactJpegDecoder.Decode(data, limits.MaxPixels);
        }
        catch (Exception e) when (e is JpegFallbackException or IndexOutOfRangeException or ArgumentException)
        {
            // Unsupported coding, or data our decoder finds inconsistent: ImageSharp, more lenient, decides.
            return null;
        }
        if (image.Width != info.Width || image.Height != info.Height) return null;
        return limits.ApplyExifOrientation ? Orient(image, info.Metadata) : image;
    }

    /// <summary>Applies the EXIF orientation of <paramref name="metadata"/> with ImageSharp's AutoOrient.</summary>
    private static RgbImage Orient(RgbImage image, ImageMetadata metadata)
    {
        var orientation = metadata.ExifProfile?.GetValue(ExifTag.Orientation);
        if (orientation == null || orientation.Value is 0 or 1) return image;
        using var oriented = Image.LoadPixelData<Rgb24>(Decoders, image.Pixels, image.Width, image.Height);
        oriented.Metadata.ExifProfile = metadata.ExifProfile!.DeepClone();
        oriented.Mutate(x => x.AutoOrient());
        var pixels = new byte[(long)oriented.Width * oriented.Height * 3];
        oriented.CopyPixelDataTo(pixels);
        return new RgbImage(oriented.Width, oriented.Height, pixels);
    }

    private delegate (byte R, byte G, byte B) ToRgb<TPixel>(in TPixel pixel);

    private static RgbImage ToRgbImage<TPixel>(Image<TPixel> image, ImageLimits limits, ToRgb<TPixel> toRgb, ImageIntegrity.GifBackfill backfill)
        where TPixel : unmanaged, IPixel<TPixel>
    {
        using (image)
        {
            if (backfill.Present && image is Image<Rgba32> rgba)
            {
                // ImageSharp leaves a GIF's transparent pixels, and the screen outside the first frame, black; PIL shows a palette colour.
                var fill = new Rgba32(backfill.R, backfill.G, backfill.B, 0);
                rgba.ProcessPixelRows(rows =>
                {
                    for (int y = 0; y < rows.Height; y++)
                    {
                        var row = rows.GetRowSpan(y);
                        for (int x = 0; x < row.Length; x++)
                            if (backfill.Applies(x, y, row[x].A)) row[x] = fill;
                    }
                });
            }
            if (limits.ApplyExifOrientation) image.Mutate(x => x.AutoOrient());
            var pixels = new byte[(long)image.Width * image.Height * 3];
            int width = image.Width;
            image.ProcessPixelRows(rows =>
            {
                for (int y = 0; y < rows.Height; y++)
                {
                    var row = rows.GetRowSpan(y);
                    var output = pixels.AsSpan(y * width * 3, width * 3);
                    for (int x = 0; x < row.Length; x++)
                    {
                        var (r, g, b) = toRgb(in row[x]);
                        output[3 * x] = r;
                        output[3 * x + 1] = g;
                        output[3 * x + 2] = b;
                    }
                }
            });
            return new RgbImage(image.Width, image.Height, pixels);
        }
    }

    private static string Hex(ReadOnlySpan<byte> data) =>
        System.Convert.ToHexString(data[..Math.Min(8, data.Length)]) is var h && h.Length > 0 ? "0x" + h : "nothing";
}
