using Parrot.Tensors;

namespace Parrot.Parrot.Vision;

/// <summary>
/// Turns an <see cref="RgbImage"/> into the pixel tensor a CLIP vision tower takes, exactly as Hugging Face's
/// CLIPImageProcessor (transformers 4.39) does, optionally after Parrot's pad-to-square:
/// <list type="number">
/// <item>pad (Parrot's <c>image_aspect_ratio = "pad"</c>, <see cref="ExpandToSquare(RgbImage)"/>): a square of side
/// max(w, h) filled with int(mean × 255) per channel, (122, 116, 104) for CLIP, the image pasted at
/// ((side − w) / 2, (side − h) / 2) rounded down;</item>
/// <item>resize (<c>do_resize</c>) with PIL's filter (<see cref="PilResampler"/>) to the size of
/// <see cref="ResizeOutputSize"/>, skipped when the size is already right;</item>
/// <item>centre crop (<c>do_center_crop</c>) to crop_size: top = ⌊(h − crop_h) / 2⌋, left = ⌊(w − crop_w) / 2⌋;
/// where the image is smaller than the crop, the missing pixels are 0 (transformers pads with zeros before
/// rescaling, so they come out as −mean/std);</item>
/// <item>rescale (<c>do_rescale</c>): float32(v × rescale_factor), the product taken in double as numpy does;</item>
/// <item>normalise (<c>do_normalize</c>) in float32: (x − float32(mean)) / float32(std);</item>
/// <item>channels first: a float32 tensor [3, H, W].</item>
/// </list>
/// Since the output of steps 4–5 depends only on the channel and the byte value, they are one lookup table,
/// built with the reference's float operations: the tensor equals the reference's bit for bit whenever the
/// resized bytes do, which <see cref="PilResampler"/> guarantees for PIL's filters.
/// </summary>
public sealed class ImagePreprocessor
{
    private readonly float[][] lookup;

    /// <summary>A preprocessor for <paramref name="config"/> (CLIP ViT-L/14-336's settings when null).</summary>
    public ImagePreprocessor(PreprocessorConfig? config = null)
    {
        Config = config ?? PreprocessorConfig.Clip336;
        Config.Validate();
        lookup = BuildLookup(Config);
        PadColor = FillColor(Config.ImageMean);
    }

    /// <summary>Reads the model directory's preprocessor_config.json (CLIP-336 defaults when it has none).</summary>
    public static ImagePreprocessor FromDirectory(string directory) => new(PreprocessorConfig.LoadOrDefault(directory));

    /// <summary>The settings in use.</summary>
    public PreprocessorConfig Config { get; }

    /// <summary>The pad-to-square fill: int(mean × 255) per channel, (122, 116, 104) for CLIP.</summary>
    public (byte R, byte G, byte B) PadColor { get; }

    /// <summary>[channels, height, width] of every output: the crop size, or the resize target without a crop.
    /// Null when neither fixes it (no crop and a shortest-edge or no resize: the size follows the image).</summary>
    public int[]? FixedOutputShape =>
        Config.DoCenterCrop ? [3, Config.CropHeight, Config.CropWidth]
        : Config.DoResize && Config.ShortestEdge is null ? [3, Config.ResizeHeight!.Value, Config.ResizeWidth!.Value]
        : null;

    /// <summary>
    /// The pixel tensor for <paramref name="image"/>: float32 [3, H, W] (H × W the crop size with centre crop on,
    /// 336 × 336 for CLIP-336). With <paramref name="padToSquare"/> the image is first padded to a square as
    /// Parrot does. The caller owns (disposes) the tensor.
    /// </summary>
    public Tensor Process(RgbImage image, bool padToSquare)
    {
        ArgumentNullException.ThrowIfNull(image);
        PixelRows rows = padToSquare && image.Width != image.Height
            ? new SquarePaddedRows(image, PadColor)
            : new ImageRows(image);
        if (Config.DoResize)
        {
            var (width, height) = ResizeOutputSize(rows.Width, rows.Height);
            if (width != rows.Width || height != rows.Height)
                rows = new ImageRows(PilResampler.Resize(rows, width, height, Config.Resample));
        }
        int outHeight = Config.DoCenterCrop ? Config.CropHeight : rows.Height;
        int outWidth = Config.DoCenterCrop ? Config.CropWidth : rows.Width;
        // Python's floor division: negative when the image is smaller than the crop.
        int top = Config.DoCenterCrop ? FloorHalf(rows.Height - outHeight) : 0;
        int left = Config.DoCenterCrop ? FloorHalf(rows.Width - outWidth) : 0;
        return Normalize(rows, top, left, outHeight, outWidth);
    }

    /// <summary>
    /// (width, height) after the resize step for an input of <paramref name="width"/> × <paramref name="height"/>.
    /// With a shortest edge s, transformers' get_resize_output_image_size(default_to_square=False): the short
    /// side becomes s and the long side int(s × long / short), the quotient a correctly rounded double, then
    /// truncated (so 500 × 333 → 504 × 336, since 336 × 500 / 333 = 504.504…). With height and width, exactly that.
    /// </summary>
    public (int Width, int Height) ResizeOutputSize(int width, int height)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"ResizeOutputSize: image size {width}x{height} must be positive");
        if (Config.ShortestEdge is not { } s) return (Config.ResizeWidth!.Value, Config.ResizeHeight!.Value);
        bool portrait = width <= height;
        int shortSide = portrait ? width : height, longSide = portrait ? height : width;
        double longScaled = (double)((long)s * longSide) / shortSide;
        if (longScaled > int.MaxValue / 3) throw new ArgumentException($"ResizeOutputSize: {width}x{height} scaled to a {s}-pixel short side is too large");
        int newLong = (int)longScaled;
        return portrait ? (s, newLong) : (newLong, s);
    }

    /// <summary>
    /// Parrot's <c>expand2square</c> with this config's <see cref="PadColor"/>: the image in the middle of a
    /// square of side max(w, h), offset (long − short) / 2 rounded down along the short side. A square image
    /// is returned as is (not copied).
    /// </summary>
    public RgbImage ExpandToSquare(RgbImage image) => ExpandToSquare(image, PadColor);

    /// <summary><see cref="ExpandToSquare(RgbImage)"/> with an explicit fill colour.</summary>
    public static RgbImage ExpandToSquare(RgbImage image, (byte R, byte G, byte B) fill)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.Width == image.Height) return image;
        var rows = new SquarePaddedRows(image, fill);
        if ((long)rows.Width * rows.Height * 3 > Array.MaxLength)
            throw new ArgumentException($"ExpandToSquare: a {rows.Width}x{rows.Height} square is too large for one buffer");
        var pixels = new byte[(long)rows.Width * rows.Height * 3];
        int rowBytes = rows.Width * 3;
        var scratch = new byte[rowBytes];
        for (int y = 0; y < rows.Height; y++)
            rows.GetRow(y, scratch).CopyTo(pixels.AsSpan(y * rowBytes, rowBytes));
        return new RgbImage(rows.Width, rows.Height, pixels);
    }

    /// <summary>
    /// What the reference training code substitutes for an image it cannot read: a crop-sized image of the
    /// <see cref="PadColor"/> (its <c>Image.new('RGB', crop_size, int(mean × 255))</c>), to be processed like any other.
    /// </summary>
    public RgbImage MeanColorImage() => RgbImage.Filled(Config.CropWidth, Config.CropHeight, PadColor);

    /// <summary>int(mean × 255) per channel, as Parrot computes its fill (truncation, clamped to a byte).</summary>
    public static (byte R, byte G, byte B) FillColor(IReadOnlyList<double> mean)
    {
        ArgumentNullException.ThrowIfNull(mean);
        if (mean.Count != 3) throw new ArgumentException($"FillColor: need 3 channel means, got {mean.Count}");
        static byte Channel(double m) => (byte)Math.Clamp((int)Math.Clamp(m * 255, -1, 256), 0, 255);
        return (Channel(mean[0]), Channel(mean[1]), Channel(mean[2]));
    }

    private static int FloorHalf(int v) => v >= 0 ? v / 2 : -((-v + 1) / 2);

    /// <summary>Output value of each byte per channel, computed with the reference's float operations.</summary>
    private static float[][] BuildLookup(PreprocessorConfig config)
    {
        var table = new float[3][];
        for (int c = 0; c < 3; c++)
        {
            table[c] = new float[256];
            float mean = (float)config.ImageMean[c], std = (float)config.ImageStd[c];
            for (int v = 0; v < 256; v++)
            {
                float x = config.DoRescale ? (float)(v * config.RescaleFactor) : v;
                if (config.DoNormalize) x = (x - mean) / std;
                table[c][v] = x;
            }
        }
        return table;
    }

    /// <summary>Crop window [top, top + height) × [left, left + width) of <paramref name="rows"/>, pixels outside
    /// the image being 0, mapped through the lookup into a channels-first tensor.</summary>
    private Tensor Normalize(PixelRows rows, int top, int left, int height, int width)
    {
        var tensor = Tensor.Empty([3, height, width]);
        try
        {
            var data = tensor.AsSpan<float>();
            int plane = height * width;
            var scratch = new byte[rows.Width * 3];
            float[] r = lookup[0], g = lookup[1], b = lookup[2];
            int x0 = Math.Max(0, -left), x1 = Math.Min(width, rows.Width - left);
            for (int y = 0; y < height; y++)
            {
                int sy = top + y;
                var red = data.Slice(y * width, width);
                var green = data.Slice(plane + y * width, width);
                var blue = data.Slice(2 * plane + y * width, width);
                if (sy < 0 || sy >= rows.Height || x1 <= x0)
                {
                    red.Fill(r[0]); green.Fill(g[0]); blue.Fill(b[0]);
                    continue;
                }
                red[..x0].Fill(r[0]); green[..x0].Fill(g[0]); blue[..x0].Fill(b[0]);
                red[x1..].Fill(r[0]); green[x1..].Fill(g[0]); blue[x1..].Fill(b[0]);
                var source = rows.GetRow(sy, scratch);
                for (int x = x0, p = (left + x0) * 3; x < x1; x++, p += 3)
                {
                    red[x] = r[source[p]];
                    green[x] = g[source[p + 1]];
                    blue[x] = b[source[p + 2]];
                }
            }
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }
}
