using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Models.Clip;

/// <summary>
/// CLIP's patch and position embeddings: pixels [B, channels, S, S] are cut into P × P patches by a bias-free
/// stride-P convolution (patch_embedding), the patches are laid out in row-major order, the learned
/// class_embedding is put in front, and position_embedding's rows [1 + N, C] are added.
/// </summary>
public sealed class ClipVisionEmbeddings : Module
{
    private readonly ClipVisionConfig _config;

    /// <summary>class_embedding [C], the CLS token.</summary>
    public Variable ClassEmbedding { get; }
    /// <summary>patch_embedding (weight [C, channels, P, P], no bias).</summary>
    public PatchEmbedding PatchEmbedding { get; }
    /// <summary>position_embedding (weight [1 + N, C]).</summary>
    public Embedding PositionEmbedding { get; }

    /// <summary>Creates the embeddings (weights as Hugging Face initialises them).</summary>
    public ClipVisionEmbeddings(ClipVisionConfig config, ulong seed, DType dtype)
    {
        _config = config;
        int c = config.HiddenSize;
        ClassEmbedding = AddParameter("class_embedding", Init.Normal([c], 1 / Math.Sqrt(c), Init.SeedFor(seed, "class_embedding"), dtype));
        PatchEmbedding = AddModule("patch_embedding", new PatchEmbedding(config.NumChannels, c, config.PatchSize, bias: false, Init.SeedFor(seed, "patch_embedding"), dtype));
        PositionEmbedding = AddModule("position_embedding", new Embedding(config.NumPositions, c, Init.SeedFor(seed, "position_embedding"), 0.02, dtype));
    }

    /// <summary>Pixels [B, channels, S, S] → tokens [B, 1 + N, C] (pixels are converted to the weights' dtype, as HF does, and copied to their device).</summary>
    public Variable Forward(Variable pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        int s = _config.ImageSize;
        if (pixels.Rank != 4 || pixels.Shape[1] != _config.NumChannels || pixels.Shape[2] != s || pixels.Shape[3] != s)
            throw new ArgumentException($"ClipVisionEmbeddings: pixel values {pixels.Value.ShapeString()} must be [batch, {_config.NumChannels}, {s}, {s}]");
        int b = pixels.Shape[0], c = _config.HiddenSize;
        var weight = PatchEmbedding.Weight;
        if (pixels.Value.Device != weight.Value.Device) pixels = pixels.To(weight.Value.Device); // pixels made on the host
        if (pixels.DType != weight.DType) pixels = pixels.To(weight.DType);
        var patches = PatchEmbedding.Forward(pixels);                          // [B, C, S/P, S/P]
        var tokens = patches.Reshape(b, c, _config.NumPatches).Transpose(1, 2); // [B, N, C]
        var cls = ClassEmbedding.Reshape(1, 1, c).Expand(b, 1, c);
        return Variable.Concat(1, cls, tokens) + PositionEmbedding.Weight;
    }
}
