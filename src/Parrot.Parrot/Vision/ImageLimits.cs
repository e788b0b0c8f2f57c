namespace Parrot.Parrot.Vision;

/// <summary>
/// What <see cref="ImageLoader"/> accepts, and how it turns a file into pixels. The limits stop decompression
/// bombs and hostile files before any pixel memory is allocated: the encoded size is checked before the data
/// is read, and the pixel count from the image header before the pixels are decoded.
/// </summary>
public sealed record ImageLimits
{
    /// <summary>The defaults: 64 MiB of encoded data, 100 million pixels, EXIF orientation applied.</summary>
    public static ImageLimits Default { get; } = new();

    /// <summary>The largest pixel count an <see cref="RgbImage"/> can hold in one array.</summary>
    public const long PixelCountCeiling = 715_000_000;

    /// <summary>Largest encoded image accepted, in bytes (default 64 MiB).</summary>
    public long MaxEncodedBytes { get; init; } = 64L << 20;

    /// <summary>Largest decoded image accepted, width × height (default 100 million), checked against every size
    /// the file declares (JPEG frame, PNG header, GIF screen and first frame, WebP canvas and bitstreams) before
    /// decoding. At most <see cref="PixelCountCeiling"/>.</summary>
    public long MaxPixels { get; init; } = 100_000_000;

    /// <summary>Rotate or flip the image as its EXIF Orientation tag says (default true), as a photo viewer
    /// shows it. The Parrot reference pipeline (PIL's <c>Image.open(...).convert('RGB')</c>) ignores the tag;
    /// set false to feed the model exactly the pixels the reference does.</summary>
    public bool ApplyExifOrientation { get; init; } = true;

    /// <summary>Throws when a limit is not positive or above what one buffer can hold.</summary>
    public void Validate()
    {
        if (MaxEncodedBytes <= 0 || MaxEncodedBytes > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(MaxEncodedBytes), $"ImageLimits: MaxEncodedBytes {MaxEncodedBytes} must be in 1..{Array.MaxLength}");
        if (MaxPixels <= 0 || MaxPixels > PixelCountCeiling)
            throw new ArgumentOutOfRangeException(nameof(MaxPixels), $"ImageLimits: MaxPixels {MaxPixels} must be in 1..{PixelCountCeiling}");
    }
}
