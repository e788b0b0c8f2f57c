using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Model;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// Turns an image into the vision features a Parrot model takes: the selected layer of its frozen vision
/// tower, [1+N, C] with the CLS token first. <see cref="ParrotModel"/> asks one for every image.
/// </summary>
public interface IImageEncoder : IDisposable
{
    /// <summary>Features [1+N, C] of <paramref name="image"/>; the caller owns (disposes) the tensor.</summary>
    Tensor Encode(RgbImage image);

    /// <summary>
    /// 1+N, the rows <see cref="Encode"/> gives for every image, when the encoder knows it without encoding one (a fixed
    /// input size); null when it does not say. <see cref="ParrotModel"/> uses it to check a batch's prompt lengths against
    /// the context before any image is encoded.
    /// </summary>
    int? FeatureRows => null;
}

/// <summary>
/// A CLIP vision tower with its preprocessing: the image is padded to a square when the model says so
/// (image_aspect_ratio "pad"), preprocessed as CLIP's image processor does, and run through the tower up to
/// mm_vision_select_layer.
/// </summary>
public sealed class ClipImageEncoder : IImageEncoder
{
    private readonly ClipVisionModel _tower;
    private readonly bool _ownsTower;
    private readonly Func<Tensor, Tensor> _features;

    /// <summary>
    /// An encoder over <paramref name="tower"/> (disposed with the encoder when <paramref name="ownsTower"/>).
    /// The preprocessor's output must be the tower's input size.
    /// </summary>
    public ClipImageEncoder(ClipVisionModel tower, ImagePreprocessor preprocessor, int selectLayer, bool padToSquare, bool ownsTower = true)
    {
        ArgumentNullException.ThrowIfNull(tower);
        ArgumentNullException.ThrowIfNull(preprocessor);
        int s = tower.Config.ImageSize;
        if (preprocessor.FixedOutputShape is not { } shape || shape[1] != s || shape[2] != s)
            throw new ArgumentException($"ClipImageEncoder: the preprocessor makes {(preprocessor.FixedOutputShape is { } f ? $"{f[1]}x{f[2]}" : "variable-size")} images, but the tower takes {s}x{s} (image_size)");
        _tower = tower;
        _ownsTower = ownsTower;
        Preprocessor = preprocessor;
        PadToSquare = padToSquare;
        _features = ParrotVision.Features(tower, selectLayer);
    }

    /// <summary>The preprocessing in use.</summary>
    public ImagePreprocessor Preprocessor { get; }

    /// <summary>Whether images are padded to a square first.</summary>
    public bool PadToSquare { get; }

    /// <summary>The tower's positions, 1 + its patches: every image is preprocessed to its input size.</summary>
    public int? FeatureRows => _tower.Config.NumPositions;

    /// <inheritdoc/>
    public Tensor Encode(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        using var scope = TensorScope.Begin();
        var pixels = Preprocessor.Process(image, PadToSquare).Unsqueeze(0);
        var features = _features(pixels); // [1, 1+N, C]
        return scope.Keep(features.Select(0, 0).Contiguous());
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_ownsTower) _tower.Dispose();
    }
}
