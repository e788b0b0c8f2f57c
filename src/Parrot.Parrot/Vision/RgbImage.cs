namespace Parrot.Parrot.Vision;

/// <summary>
/// An 8-bit RGB image in memory: <see cref="Height"/> rows of <see cref="Width"/> pixels, each pixel three
/// bytes R, G, B, rows stored top to bottom with no padding (the layout of a numpy uint8 array [H, W, 3]).
/// </summary>
public sealed class RgbImage
{
    /// <summary>Wraps <paramref name="pixels"/> (not copied: the image uses the array itself).</summary>
    /// <param name="width">Pixels per row, at least 1.</param>
    /// <param name="height">Rows, at least 1.</param>
    /// <param name="pixels">width × height × 3 bytes, row-major, R G B interleaved.</param>
    /// <exception cref="ArgumentException">A size is not positive or the array has the wrong length.</exception>
    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        if (width <= 0 || height <= 0) throw new ArgumentException($"RgbImage: size {width}x{height} must be positive");
        long needed = (long)width * height * 3;
        if (pixels.LongLength != needed)
            throw new ArgumentException($"RgbImage: {width}x{height} needs {needed} bytes, got {pixels.LongLength}");
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    /// <summary>A new image of the given size with every pixel set to <paramref name="fill"/>.</summary>
    public static RgbImage Filled(int width, int height, (byte R, byte G, byte B) fill)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"RgbImage: size {width}x{height} must be positive");
        long bytes = (long)width * height * 3;
        if (bytes > Array.MaxLength) throw new ArgumentException($"RgbImage: {width}x{height} is too large for one buffer");
        var pixels = new byte[bytes];
        FillRow(pixels, fill);
        return new RgbImage(width, height, pixels);
    }

    /// <summary>Pixels per row.</summary>
    public int Width { get; }

    /// <summary>Number of rows.</summary>
    public int Height { get; }

    /// <summary>The pixel bytes, row-major, R G B interleaved, <see cref="Width"/> × <see cref="Height"/> × 3 long.</summary>
    public byte[] Pixels { get; }

    /// <summary>The bytes of row <paramref name="y"/> (Width × 3 of them).</summary>
    public Span<byte> Row(int y)
    {
        if ((uint)y >= (uint)Height) throw new ArgumentOutOfRangeException(nameof(y), $"RgbImage: row {y} outside 0..{Height - 1}");
        return Pixels.AsSpan(y * Width * 3, Width * 3);
    }

    /// <summary>The colour at (<paramref name="x"/>, <paramref name="y"/>).</summary>
    public (byte R, byte G, byte B) this[int x, int y]
    {
        get
        {
            if ((uint)x >= (uint)Width) throw new ArgumentOutOfRangeException(nameof(x), $"RgbImage: column {x} outside 0..{Width - 1}");
            var row = Row(y);
            return (row[3 * x], row[3 * x + 1], row[3 * x + 2]);
        }
    }

    /// <summary>Fills <paramref name="bytes"/> (a whole number of pixels) with one colour.</summary>
    internal static void FillRow(Span<byte> bytes, (byte R, byte G, byte B) fill)
    {
        if (bytes.Length == 0) return;
        int first = Math.Min(bytes.Length, 3 * 64);
        for (int i = 0; i < first; i += 3)
        {
            bytes[i] = fill.R;
            bytes[i + 1] = fill.G;
            bytes[i + 2] = fill.B;
        }
        // Doubling copies of the filled prefix (a multiple of 3 bytes, so the pattern stays in phase):
        // a few memcpy calls instead of a byte loop over large buffers.
        for (long done = first; done < bytes.Length; done *= 2)
            bytes[..(int)Math.Min(done, bytes.Length - done)].CopyTo(bytes[(int)done..]);
    }
}
