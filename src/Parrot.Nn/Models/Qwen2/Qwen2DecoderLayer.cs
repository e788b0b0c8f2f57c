using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Models.Qwen2;

/// <summary>One pre-norm decoder block: h + attn(norm(h)), then h + mlp(norm(h)).</summary>
public sealed class Qwen2DecoderLayer : Module
{
    /// <summary>self_attn (q/k/v with bias, o without).</summary>
    public Attention SelfAttn { get; }
    /// <summary>mlp (gate/up/down).</summary>
    public GatedSiluMlp Mlp { get; }
    /// <summary>input_layernorm.</summary>
    public RmsNorm InputLayerNorm { get; }
    /// <summary>post_attention_layernorm.</summary>
    public RmsNorm PostAttentionLayerNorm { get; }

    /// <summary>Creates a layer.</summary>
    public Qwen2DecoderLayer(Qwen2Config c, ulong seed, DType dtype)
    {
        SelfAttn = AddModule("self_attn", new Attention(c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, qkvBias: true, outBias: false, "o_proj", Init.SeedFor(seed, "self_attn"), dtype));
        Mlp = AddModule("mlp", new GatedSiluMlp(c.HiddenSize, c.IntermediateSize, Init.SeedFor(seed, "mlp"), dtype));
        InputLayerNorm = AddModule("input_layernorm", new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype));
        PostAttentionLayerNorm = AddModule("post_attention_layernorm", new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype));
    }

    /// <summary>Applies the block to h [B, T, hidden].</summary>
    public Variable Forward(Variable h, (Tensor Cos, Tensor Sin) rope, Tensor? mask, IKvCache? cache, int layerIndex)
    {
        var a = SelfAttn.Forward(InputLayerNorm.Forward(h), causal: true, rope, mask, cache, layerIndex);
        if (Graph.IsGradDisabled && cache is not null)
        {
            // Generation (a cache, nothing tracked): the residual add and the post-attention norm in one kernel on a GPU
            // (same numbers). Not for checkpointed training, whose recomputation must run the ops the backward saw.
            var (sum, normed) = Tensor.AddRmsNorm(h.Value, a.Value, PostAttentionLayerNorm.Weight.Value, PostAttentionLayerNorm.Eps);
            return new Variable(sum) + Mlp.Forward(new Variable(normed));
        }
        h = h + a;
        return h + Mlp.Forward(PostAttentionLayerNorm.Forward(h));
    }
}
