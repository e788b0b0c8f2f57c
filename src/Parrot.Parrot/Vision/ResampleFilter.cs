namespace Parrot.Parrot.Vision;

/// <summary>
/// PIL's resampling filters, numbered as PIL numbers them (the <c>resample</c> value of a Hugging Face
/// preprocessor_config.json: 3 = bicubic for CLIP).
/// </summary>
public enum ResampleFilter
{
    /// <summary>Nearest neighbour (PIL 0).</summary>
    Nearest = 0,
    /// <summary>Lanczos, a = 3 (PIL 1).</summary>
    Lanczos = 1,
    /// <summary>Triangle filter (PIL 2).</summary>
    Bilinear = 2,
    /// <summary>Cubic convolution with a = −0.5 (PIL 3).</summary>
    Bicubic = 3,
    /// <summary>Box filter (PIL 4).</summary>
    Box = 4,
    /// <summary>Hamming-windowed sinc (PIL 5).</summary>
    Hamming = 5,
}
