using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Layers;

/// <summary>A Conv2d whose stride equals its kernel, as ViTs cut images into patches (weight [O, C, P, P]).</summary>
public sealed class PatchEmbedding : Module
{
    /// <summary>Kernel [out, in, P, P].</summary>
    public Variable Weight { get; }
    /// <summary>Bias [out], or null (CLIP has none).</summary>
    public Variable? Bias { get; }

    /// <summary>Creates the layer, initialised as PyTorch's Conv2d.</summary>
    public PatchEmbedding(int inChannels, int outChannels, int patch, bool bias, ulong seed = 0, DType dtype = DType.F32)
    {
        int fanIn = inChannels * patch * patch;
        Weight = AddParameter("weight", Init.LinearUniform([outChannels, inChannels, patch, patch], fanIn, Init.SeedFor(seed, "weight"), dtype));
        if (bias) Bias = AddParameter("bias", Init.LinearUniform([outChannels], fanIn, Init.SeedFor(seed, "bias"), dtype));
    }

    /// <summary>Images [B, C, H, W] → [B, O, H/P, W/P].</summary>
    public Variable Forward(Variable x) => x.PatchEmbed(Weight, Bias);
}
