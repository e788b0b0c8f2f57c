namespace Parrot.Parrot.Vision;

/// <summary>Why an image could not be loaded.</summary>
public enum ImageLoadFailure
{
    /// <summary>The file does not exist.</summary>
    NotFound,
    /// <summary>The file or stream could not be read (permissions, I/O error).</summary>
    Unreadable,
    /// <summary>Zero bytes.</summary>
    Empty,
    /// <summary>More encoded bytes than <see cref="ImageLimits.MaxEncodedBytes"/>.</summary>
    TooManyBytes,
    /// <summary>More pixels than <see cref="ImageLimits.MaxPixels"/> (checked from the header, before decoding).</summary>
    TooManyPixels,
    /// <summary>Not an image in any format we know.</summary>
    NotAnImage,
    /// <summary>An image format we do not decode (only JPEG, PNG, GIF, WebP and BMP are).</summary>
    UnsupportedFormat,
    /// <summary>The data ends before the image does.</summary>
    Truncated,
    /// <summary>The data is damaged or inconsistent (bad header, zero size, bad compressed data).</summary>
    Corrupt,
}

/// <summary>
/// An image could not be turned into pixels. The message names the source (a path, or the name the caller
/// gave a stream or buffer) and the problem; <see cref="Failure"/> says which problem, for callers that
/// substitute a blank image for a bad one as the reference training code does.
/// </summary>
public sealed class ImageLoadException : IOException
{
    /// <summary>Creates the exception; the message is "{source}: {problem}".</summary>
    public ImageLoadException(string source, ImageLoadFailure failure, string problem, Exception? inner = null)
        : base($"{source}: {problem}", inner)
    {
        SourceName = source;
        Failure = failure;
    }

    /// <summary>The path, or the name given for a stream or byte buffer.</summary>
    public string SourceName { get; }

    /// <summary>What went wrong.</summary>
    public ImageLoadFailure Failure { get; }
}
