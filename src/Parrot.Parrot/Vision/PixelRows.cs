using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Parrot.Parrot.Tests")]

namespace Parrot.Parrot.Vision;

/// <summary>
/// Row-by-row access to an RGB picture that need not exist in memory as a whole: the padded square of a
/// long panorama is mostly fill, and materialising it could take gigabytes for nothing.
/// </summary>
internal abstract class PixelRows
{
    public abstract int Width { get; }

    public abstract int Height { get; }

    /// <summary>Row <paramref name="y"/> as Width × 3 bytes, either a view of stored pixels or written into
    /// <paramref name="scratch"/> (at least Width × 3 bytes).</summary>
    public abstract ReadOnlySpan<byte> GetRow(int y, Span<byte> scratch);

    /// <summary>True when row <paramref name="y"/> is the fill colour from end to end, and so equal to every
    /// other such row: a resampling pass computes its output once.</summary>
    public virtual bool IsFillRow(int y) => false;
}

/// <summary>The rows of a stored image.</summary>
internal sealed class ImageRows(RgbImage image) : PixelRows
{
    public RgbImage Image => image;

    public override int Width => image.Width;

    public override int Height => image.Height;

    public override ReadOnlySpan<byte> GetRow(int y, Span<byte> scratch) => image.Row(y);
}

/// <summary>
/// An image pasted into a square of fill colour, as Parrot's <c>expand2square</c> does: the square's side is
/// the longer edge, and the image sits at ((side − width) / 2, (side − height) / 2), rounded down.
/// </summary>
internal sealed class SquarePaddedRows : PixelRows
{
    private readonly RgbImage image;
    private readonly (byte R, byte G, byte B) fill;
    private readonly int side, left, top;

    public SquarePaddedRows(RgbImage image, (byte R, byte G, byte B) fill)
    {
        this.image = image;
        this.fill = fill;
        side = Math.Max(image.Width, image.Height);
        left = (side - image.Width) / 2;
        top = (side - image.Height) / 2;
    }

    public override int Width => side;

    public override int Height => side;

    public override bool IsFillRow(int y) => y < top || y >= top + image.Height;

    public override ReadOnlySpan<byte> GetRow(int y, Span<byte> scratch)
    {
        if ((uint)y >= (uint)side) throw new ArgumentOutOfRangeException(nameof(y));
        if (!IsFillRow(y) && side == image.Width) return image.Row(y - top);
        var row = scratch[..(side * 3)];
        if (IsFillRow(y))
        {
            RgbImage.FillRow(row, fill);
            return row;
        }
        RgbImage.FillRow(row[..(left * 3)], fill);
        image.Row(y - top).CopyTo(row[(left * 3)..]);
        RgbImage.FillRow(row[((left + image.Width) * 3)..], fill);
        return row;
    }
}
