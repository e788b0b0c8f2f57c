using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Layers;

/// <summary>
/// Multi-head self-attention with grouped-query heads (kv heads divide the query heads), optional rotary
/// embedding, causal or full masking, an additive mask and a KV cache. Names q_proj, k_proj, v_proj and
/// o_proj (Qwen2) or out_proj (CLIP) are chosen by the model.
/// </summary>
public sealed class Attention : Module
{
    /// <summary>Query projection.</summary>
    public Linear QProj { get; }
    /// <summary>Key projection.</summary>
    public Linear KProj { get; }
    /// <summary>Value projection.</summary>
    public Linear VProj { get; }
    /// <summary>Output projection.</summary>
    public Linear OProj { get; }
    /// <summary>Query heads.</summary>
    public int Heads { get; }
    /// <summary>Key/value heads.</summary>
    public int KvHeads { get; }
    /// <summary>Width of one head.</summary>
    public int HeadDim { get; }

    /// <summary>Creates the layer.</summary>
    public Attention(int hidden, int heads, int kvHeads, bool qkvBias, bool outBias, string outName = "o_proj", ulong seed = 0, DType dtype = DType.F32)
    {
        if (heads <= 0 || hidden % heads != 0) throw new ArgumentException($"Attention: hidden {hidden} is not divisible by {heads} heads");
        if (kvHeads <= 0 || heads % kvHeads != 0) throw new ArgumentException($"Attention: {heads} query heads are not a multiple of {kvHeads} kv heads");
        Heads = heads; KvHeads = kvHeads; HeadDim = hidden / heads;
        QProj = AddModule("q_proj", new Linear(hidden, heads * HeadDim, qkvBias, Init.SeedFor(seed, "q_proj"), dtype));
        KProj = AddModule("k_proj", new Linear(hidden, kvHeads * HeadDim, qkvBias, Init.SeedFor(seed, "k_proj"), dtype));
        VProj = AddModule("v_proj", new Linear(hidden, kvHeads * HeadDim, qkvBias, Init.SeedFor(seed, "v_proj"), dtype));
        OProj = AddModule(outName, new Linear(heads * HeadDim, hidden, outBias, Init.SeedFor(seed, outName), dtype));
    }

    /// <summary>
    /// x [B, T, hidden] → [B, T, hidden]. <paramref name="rope"/>: cos/sin tables [T, headDim] for the
    /// positions of x; <paramref name="mask"/>: additive, broadcastable to [B, heads, T, S];
    /// <paramref name="cache"/>/<paramref name="layer"/>: append this step's keys and values and attend over all
    /// (a shared cache, or one per row: see <see cref="IKvCache"/>).
    /// </summary>
    public Variable Forward(Variable x, bool causal, (Tensor Cos, Tensor Sin)? rope = null, Tensor? mask = null, IKvCache? cache = null, int layer = 0)
    {
        if (x.Rank != 3) throw new ArgumentException($"Attention: input {x.Value.ShapeString()} must be [batch, seq, hidden]");
        int b = x.Shape[0], t = x.Shape[1];
        var q = QProj.Forward(x).Reshape(b, t, Heads, HeadDim).Transpose(1, 2);
        var k = KProj.Forward(x).Reshape(b, t, KvHeads, HeadDim).Transpose(1, 2);
        var v = VProj.Forward(x).Reshape(b, t, KvHeads, HeadDim).Transpose(1, 2);
        if (cache is not null && Graph.IsGradDisabled && rope is var (c, s))
        {
            // Inference into a cache: the cache rotates q and k and stores k and v in one step (one kernel on a GPU
            // where there were four launches; decode is host-bound). The same numbers as the path below.
            var a = cache.AttendRope(layer, q.Value, k.Value, v.Value, c, s, causal, mask);
            return OProj.Forward(a.Transpose(1, 2).Reshape(b, t, Heads * HeadDim));
        }
        if (rope is var (cos, sin))
        {
            q = q.ApplyRope(cos, sin);
            k = k.ApplyRope(cos, sin);
        }
        Variable o;
        if (cache is not null)
        {
            if (!Graph.IsGradDisabled && (q.RequiresGrad || k.RequiresGrad)) throw new InvalidOperationException("Attention: the KV cache is for inference; open Graph.NoGrad()");
            o = cache.Attend(layer, q, k.Value, v.Value, causal, mask);
        }
        else o = Functional.ScaledDotProductAttention(q, k, v, causal, mask);
        return OProj.Forward(o.Transpose(1, 2).Reshape(b, t, Heads * HeadDim));
    }
}
