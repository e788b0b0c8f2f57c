using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Models.Clip;

/// <summary>One pre-LN CLIP encoder layer: x + attn(layer_norm1(x)) with full attention, then x + mlp(layer_norm2(x)).</summary>
public sealed class ClipEncoderLayer : Module
{
    /// <summary>self_attn: q/k/v/out_proj, all with biases.</summary>
    public Attention SelfAttn { get; }
    /// <summary>layer_norm1, before attention.</summary>
    public LayerNorm LayerNorm1 { get; }
    /// <summary>mlp: fc1, the activation, fc2.</summary>
    public GeluMlp Mlp { get; }
    /// <summary>layer_norm2, before the MLP.</summary>
    public LayerNorm LayerNorm2 { get; }

    /// <summary>Creates a layer.</summary>
    public ClipEncoderLayer(ClipVisionConfig c, ulong seed, DType dtype)
    {
        SelfAttn = AddModule("self_attn", new Attention(c.HiddenSize, c.NumAttentionHeads, c.NumAttentionHeads, qkvBias: true, outBias: true, "out_proj", Init.SeedFor(seed, "self_attn"), dtype));
        LayerNorm1 = AddModule("layer_norm1", new LayerNorm(c.HiddenSize, c.LayerNormEps, dtype));
        Mlp = AddModule("mlp", new GeluMlp(c.HiddenSize, c.IntermediateSize, c.Activation, Init.SeedFor(seed, "mlp"), dtype));
        LayerNorm2 = AddModule("layer_norm2", new LayerNorm(c.HiddenSize, c.LayerNormEps, dtype));
    }

    /// <summary>Applies the layer to x [B, T, C].</summary>
    public Variable Forward(Variable x)
    {
        x = x + SelfAttn.Forward(LayerNorm1.Forward(x), causal: false);
        return x + Mlp.Forward(LayerNorm2.Forward(x));
    }
}
