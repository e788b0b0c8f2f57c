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
        // Generation (a cache, nothing tracked): the fused residual steps, the same numbers as below. Not for
        // checkpointed training, whose recomputation must run the ops the backward saw.
        if (Graph.IsGradDisabled && cache is not null)
            return new Variable(Forward(new ResidualStream(h.Value), rope, mask, cache, layerIndex).Resolve());
        var a = SelfAttn.Forward(InputLayerNorm.Forward(h), causal: true, rope, mask, cache, layerIndex);
        h = h + a;
        return h + Mlp.Forward(PostAttentionLayerNorm.Forward(h));
    }

    /// <summary>
    /// The block in inference (no gradients; a cache): takes the stream with the previous layer's add pending and
    /// returns its own MLP output pending, so each residual add runs in one kernel with the norm after it
    /// (<see cref="ResidualStream.Normalize"/>): the input norm takes the previous layer's add, the post-attention norm
    /// this layer's attention add, and the next layer (or the model's final norm) this layer's MLP add. The products that
    /// read the two norms join those ops (<see cref="ResidualStream.NormalizeLinear"/> for the packed q/k/v projection,
    /// <see cref="ResidualStream.NormalizeSwiGlu"/> for the MLP's gate and up): in decode on a GPU, one kernel each. Bit for bit
    /// what <see cref="Forward(Variable, ValueTuple{Tensor, Tensor}, Tensor?, IKvCache?, int)"/> computes with gradients.
    /// </summary>
    public ResidualStream Forward(ResidualStream x, (Tensor Cos, Tensor Sin) rope, Tensor? mask, IKvCache cache, int layerIndex)
    {
        ArgumentNullException.ThrowIfNull(cache);
        if (!Graph.IsGradDisabled) throw new InvalidOperationException("Qwen2DecoderLayer: the residual-stream forward is for inference (Graph.NoGrad)");
        var dtype = x.Hidden.DType;
        var device = x.Hidden.Device;
        Tensor h, a;
        if (SelfAttn.PackedProjection(dtype, device) is var (w, b))
        {
            // The input norm and the packed q/k/v product in one op (decode: one kernel with the residual add).
            Tensor qkv;
            using (w)
            using (b)
                (h, qkv) = x.NormalizeLinear(InputLayerNorm, w, b);
            a = SelfAttn.ForwardProjected(qkv, causal: true, rope, mask, cache, layerIndex).Value;
        }
        else
        {
            Tensor normed;
            (h, normed) = x.Normalize(InputLayerNorm);
            a = SelfAttn.Forward(new Variable(normed), causal: true, rope, mask, cache, layerIndex).Value;
        }
        var stream = new ResidualStream(h, a);
        var (gate, up) = (Mlp.GateProj.Weight.Value, Mlp.UpProj.Weight.Value);
        if (gate.DType != dtype || up.DType != dtype || gate.Device != device || up.Device != device)
        {
            var (h3, normed3) = stream.Normalize(PostAttentionLayerNorm);
            return new ResidualStream(h3, Mlp.Forward(new Variable(normed3)).Value);
        }
        // The post-attention norm, the gate and up products and SwiGLU in one op (decode: one kernel with the add).
        var (h2, gated) = stream.NormalizeSwiGlu(PostAttentionLayerNorm, gate, up);
        return new ResidualStream(h2, Mlp.DownProj.Forward(new Variable(gated)).Value);
    }
}
