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
        PackProjections();
    }

    /// <summary>
    /// Whether the q, k and v weights (and biases) are consecutive row blocks of one buffer, so that
    /// <see cref="Forward"/> projects with one matrix product (<see cref="Variable.SplitLinear"/>) instead of three.
    /// </summary>
    public bool IsPacked => Packed(null);

    /// <summary>
    /// Lays the q, k and v weights out as row blocks of one [q + k + v rows, hidden] buffer (and the biases of one
    /// vector), so that <see cref="Forward"/> takes one product where it took three (on a GPU a decode step's small k and
    /// v products are launch-bound; in training one large product beats three). The parameters keep their names,
    /// shapes, values and <see cref="Variable"/> objects (optimizers and state dicts see no difference); each gets a new
    /// value, a view of the buffer, and the old tensors are freed, so memory stays as it was (one layer's q/k/v more
    /// while copying). Gradients are dropped, as by <see cref="Module.To"/>. Done by the constructor and again after
    /// <see cref="Module.To"/>, <see cref="Module.CastParameters"/> and <see cref="ModelLoading.Load"/> (which give each
    /// parameter a tensor of its own); needs one dtype and device for the three weights (and for the biases). Returns
    /// whether the weights are packed now; when not, <see cref="Forward"/> takes the three products.
    /// </summary>
    public bool PackProjections()
    {
        if (IsPacked) return true;
        Variable[] ws = [QProj.Weight, KProj.Weight, VProj.Weight];
        Variable[]? bs = QProj.Bias is { } qb && KProj.Bias is { } kb && VProj.Bias is { } vb ? [qb, kb, vb] : null;
        if (bs is null && (QProj.Bias ?? KProj.Bias ?? VProj.Bias) is not null) return false;
        if (!OneDTypeAndDevice(ws) || (bs is not null && !OneDTypeAndDevice(bs))) return false;
        // Deferred initialisation (a checkpoint will overwrite the values): nothing to copy, and copying would touch every page.
        bool copy = !Init.IsDeferred;
        Pack(ws, copy);
        if (bs is not null) Pack(bs, copy);
        return true;

        static bool OneDTypeAndDevice(Variable[] ps) =>
            ps.All(p => p.DType == ps[0].DType && p.Value.Device == ps[0].Value.Device);
    }

    private static void Pack(Variable[] ps, bool copy)
    {
        var shape = ps[0].Shape.ToArray();
        shape[0] = ps.Sum(p => p.Shape[0]);
        using var buffer = TensorScope.Detach(Tensor.Empty(shape, ps[0].DType, ps[0].Value.Device));
        int at = 0;
        foreach (var p in ps)
        {
            int rows = p.Shape[0];
            var view = TensorScope.Detach(buffer.Narrow(0, at, rows));
            if (copy) view.CopyFrom(p.Value);
            var old = p.Value;
            p.ReplaceValue(view);
            old.Dispose();
            at += rows;
        }
    }

    /// <summary>Whether the projections can run as one product on an input of <paramref name="dtype"/> (null: any).</summary>
    private bool Packed(DType? dtype)
    {
        var (q, k, v) = (QProj.Weight.Value, KProj.Weight.Value, VProj.Weight.Value);
        if ((dtype is { } d && q.DType != d) || !Tensor.AreConsecutive(0, q, k, v)) return false;
        if (QProj.Bias is null && KProj.Bias is null && VProj.Bias is null) return true;
        if (QProj.Bias is not { } qb || KProj.Bias is not { } kb || VProj.Bias is not { } vb) return false;
        return qb.DType == q.DType && Tensor.AreConsecutive(0, qb.Value, kb.Value, vb.Value);
    }

    /// <summary>
    /// q, k and v projections of x [B, T, hidden] ([B, T, heads·headDim] and twice [B, T, kvHeads·headDim]): one product
    /// when packed (<see cref="PackProjections"/>; the three are column views of its output), else three.
    /// </summary>
    public (Variable Q, Variable K, Variable V) Project(Variable x)
    {
        if (!Packed(x.DType) || x.Value.Device != QProj.Weight.Value.Device) return (QProj.Forward(x), KProj.Forward(x), VProj.Forward(x));
        if (x.Shape[^1] != QProj.InFeatures)
            throw new ArgumentException($"Attention: input {x.Value.ShapeString()} does not end in hidden {QProj.InFeatures}");
        Variable[]? biases = QProj.Bias is null ? null : [QProj.Bias, KProj.Bias!, VProj.Bias!];
        var p = Variable.SplitLinear(x, [QProj.Weight, KProj.Weight, VProj.Weight], biases);
        return (p[0], p[1], p[2]);
    }

    /// <summary>
    /// The packed q, k and v weights as one [(heads + 2·kvHeads)·headDim, hidden] weight and the biases as one vector
    /// (views of the packed buffers, for the caller to dispose), the operands of <see cref="Project"/>'s one product;
    /// null unless packed for inputs of <paramref name="dtype"/> on <paramref name="device"/>. For a caller that runs
    /// that product fused with what makes its input (Qwen2's decode: the norm and the residual add), then
    /// <see cref="ForwardProjected"/>.
    /// </summary>
    public (Tensor Weight, Tensor? Bias)? PackedProjection(DType dtype, Device device)
    {
        if (!Packed(dtype) || device != QProj.Weight.Value.Device) return null;
        var w = Tensor.ConcatView(0, QProj.Weight.Value, KProj.Weight.Value, VProj.Weight.Value);
        if (w is null) return null;
        if (QProj.Bias is null) return (w, null);
        var b = Tensor.ConcatView(0, QProj.Bias.Value, KProj.Bias!.Value, VProj.Bias!.Value);
        if (b is null)
        {
            w.Dispose();
            return null;
        }
        return (w, b);
    }

    /// <inheritdoc/>
    protected override void OnParametersReplaced() => PackProjections();

    /// <summary>
    /// x [B, T, hidden] → [B, T, hidden]. <paramref name="rope"/>: cos/sin tables [T, headDim] for the
    /// positions of x; <paramref name="mask"/>: additive, broadcastable to [B, heads, T, S];
    /// <paramref name="cache"/>/<paramref name="layer"/>: append this step's keys and values and attend over all
    /// (a shared cache, or one per row: see <see cref="IKvCache"/>).
    /// </summary>
    public Variable Forward(Variable x, bool causal, (Tensor Cos, Tensor Sin)? rope = null, Tensor? mask = null, IKvCache? cache = null, int layer = 0)
    {
        if (x.Rank != 3) throw new ArgumentException($"Attention: input {x.Value.ShapeString()} must be [batch, seq, hidden]");
        // With packed weights q, k and v are column ranges of one product [B, T, (H + 2·Hkv)·D]: views with a row stride
        // of that width, which every op below takes as they are (strided kernels on the CPU and the GPU).
        var (qx, kx, vx) = Project(x);
        return Attend(qx, kx, vx, causal, rope, mask, cache, layer);
    }

    /// <summary>
    /// <see cref="Forward"/> from the packed projection [B, T, (heads + 2·kvHeads)·headDim] (x·Wᵀ + b with the operands
    /// of <see cref="PackedProjection"/>, made by the caller): q, k and v are its column ranges, as <see cref="Project"/>
    /// makes them, and the rest is <see cref="Forward"/>'s.
    /// </summary>
    public Variable ForwardProjected(Tensor projection, bool causal, (Tensor Cos, Tensor Sin)? rope = null, Tensor? mask = null, IKvCache? cache = null, int layer = 0)
    {
        ArgumentNullException.ThrowIfNull(projection);
        int q = Heads * HeadDim, kv = KvHeads * HeadDim;
        if (projection.Rank != 3 || projection.Shape[^1] != q + 2 * kv)
            throw new ArgumentException($"Attention: projection {projection.ShapeString()} must be [batch, seq, {q + 2 * kv}]");
        var parts = new Variable(projection);
        return Attend(parts.Narrow(-1, 0, q), parts.Narrow(-1, q, kv), parts.Narrow(-1, q + kv, kv), causal, rope, mask, cache, layer);
    }

    private Variable Attend(Variable qx, Variable kx, Variable vx, bool causal, (Tensor Cos, Tensor Sin)? rope, Tensor? mask, IKvCache? cache, int layer)
    {
        int b = qx.Shape[0], t = qx.Shape[1];
        var q = qx.Reshape(b, t, Heads, HeadDim).Transpose(1, 2);
        var k = kx.Reshape(b, t, KvHeads, HeadDim).Transpose(1, 2);
        var v = vx.Reshape(b, t, KvHeads, HeadDim).Transpose(1, 2);
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
