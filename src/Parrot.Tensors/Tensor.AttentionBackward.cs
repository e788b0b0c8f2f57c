namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// The gradients of <see cref="ScaledDotProductAttention(Tensor, Tensor, Tensor, out Tensor, Tensor?, bool, int, double?)"/>
    /// given the output's gradient <paramref name="dO"/> (see <see cref="IBackend.AttentionBackward"/>): dq [B, H, T, D],
    /// dk [B, Hkv, S, D] and dv [B, Hkv, S, Dv] in q's dtype, each only when asked for (null otherwise).
    /// </summary>
    /// <param name="q">The forward's queries [B, H, T, D].</param>
    /// <param name="k">The forward's keys [B, Hkv, S, D].</param>
    /// <param name="v">The forward's values [B, Hkv, S, Dv].</param>
    /// <param name="o">The forward's output [B, H, T, Dv].</param>
    /// <param name="logSumExp">The forward's log-sum-exp [B, H, T].</param>
    /// <param name="dO">The output's gradient [B, H, T, Dv], any float dtype.</param>
    /// <param name="mask">The forward's additive mask (broadcastable to [B, H, T, S]), or null.</param>
    /// <param name="causal">Whether the forward was causal.</param>
    /// <param name="queryOffset">The forward's query offset.</param>
    /// <param name="scale">The forward's score scale (1/√D when it was left out).</param>
    /// <param name="qGrad">Whether to compute dq.</param>
    /// <param name="kGrad">Whether to compute dk.</param>
    /// <param name="vGrad">Whether to compute dv.</param>
    /// <param name="dqInto">Where to write dq (its shape, q's dtype and device, any strides, no memory shared with the
    /// operands) instead of a new tensor; it is then returned as dq, and asked for whatever <paramref name="qGrad"/> says.</param>
    /// <param name="dkInto">Likewise for dk.</param>
    /// <param name="dvInto">Likewise for dv (a gradient written straight into a packed q/k/v gradient's columns).</param>
    /// <exception cref="ArgumentException">Shapes, dtypes or devices that do not fit.</exception>
    public static (Tensor? Dq, Tensor? Dk, Tensor? Dv) ScaledDotProductAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor logSumExp, Tensor dO,
        Tensor? mask, bool causal, int queryOffset, double scale, bool qGrad = true, bool kGrad = true, bool vGrad = true,
        Tensor? dqInto = null, Tensor? dkInto = null, Tensor? dvInto = null)
    {
        const string op = "ScaledDotProductAttentionBackward";
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(logSumExp);
        ArgumentNullException.ThrowIfNull(dO);
        q.EnsureAlive(op); k.EnsureAlive(op); v.EnsureAlive(op); o.EnsureAlive(op); logSumExp.EnsureAlive(op); dO.EnsureAlive(op); mask?.EnsureAlive(op);
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"{op}: q, k and v must be [batch, heads, seq, dim]; got q {q.ShapeString()}, k {k.ShapeString()}, v {v.ShapeString()}");
        int b = q.Dim(0), h = q.Dim(1), t = q.Dim(2), d = q.Dim(3), hkv = k.Dim(1), s = k.Dim(2), dv = v.Dim(3);
        if (k.Dim(0) != b || v.Dim(0) != b || k.Dim(3) != d || v.Dim(1) != hkv || v.Dim(2) != s || hkv == 0 || h % hkv != 0)
            throw new ArgumentException($"{op}: q {q.ShapeString()}, k {k.ShapeString()}, v {v.ShapeString()} do not fit together");
        int[] outShape = [b, h, t, dv];
        if (!o._shape.AsSpan().SequenceEqual(outShape) || !dO._shape.AsSpan().SequenceEqual(outShape))
            throw new ArgumentException($"{op}: o {o.ShapeString()} and dO {dO.ShapeString()} must be {ShapeString(outShape)}");
        if (!logSumExp._shape.AsSpan().SequenceEqual([b, h, t]))
            throw new ArgumentException($"{op}: the log-sum-exp {logSumExp.ShapeString()} must be [{b}, {h}, {t}]");
        var lseType = q.DType == DType.F64 ? DType.F64 : DType.F32;
        if (!q.DType.IsFloat() || k.DType != q.DType || v.DType != q.DType || o.DType != q.DType || !dO.DType.IsFloat() || logSumExp.DType != lseType)
            throw new ArgumentException($"{op}: q, k, v and o must share one float dtype and the log-sum-exp be {lseType.Name()}; got {q.DType.Name()}, {k.DType.Name()}, {v.DType.Name()}, {o.DType.Name()}, {logSumExp.DType.Name()}");
        foreach (var x in new[] { k, v, o, logSumExp, dO })
            if (x.Device != q.Device) throw new ArgumentException($"{op}: operands are on different devices (q on {q.Device}, {x.ShapeString()} on {x.Device})");
        if (mask is not null && mask.Device != q.Device) throw new ArgumentException($"{op}: operands are on different devices (q on {q.Device}, the mask on {mask.Device})");
        if (queryOffset < 0)
            throw new ArgumentOutOfRangeException(nameof(queryOffset), $"{op}: the query offset {queryOffset} must not be negative");

        int[] full = [b, h, t, s];
        using var scope = TensorScope.Begin();
        Tensor? m = null;
        if (mask is not null)
        {
            if (!mask.DType.IsFloat() || mask.Rank > 4 || !BroadcastShapes(mask._shape, full, op).AsSpan().SequenceEqual(full))
                throw new ArgumentException($"{op}: the mask {mask.ShapeString()} ({mask.DType.Name()}) is not a float mask broadcastable to {ShapeString(full)}");
            m = mask.Expand(full);
        }
        Tensor[] operands = mask is null ? [q, k, v, o, logSumExp, dO] : [q, k, v, o, logSumExp, dO, mask];
        var dq = Output(dqInto, "dqInto", [b, h, t, d], qGrad);
        var dk = Output(dkInto, "dkInto", [b, hkv, s, d], kGrad);
        var dvv = Output(dvInto, "dvInto", [b, hkv, s, dv], vGrad);
        if (dq is null && dk is null && dvv is null) return (null, null, null);
        q.Backend.AttentionBackward(q, k, v, o, dO, logSumExp, m, causal, queryOffset, scale, dq, dk, dvv);
        return (Keep(dq, dqInto), Keep(dk, dkInto), Keep(dvv, dvInto));

        Tensor? Output(Tensor? into, string name, int[] shape, bool asked)
        {
            if (into is null) return asked ? Empty(shape, q.DType, q.Device) : null;
            into.EnsureAlive(op);
            if (!into._shape.AsSpan().SequenceEqual(shape) || into.DType != q.DType || into.Device != q.Device)
                throw new ArgumentException($"{op}: {name} {into.ShapeString()} {into.DType.Name()} on {into.Device} must be {ShapeString(shape)} {q.DType.Name()} on {q.Device}");
            if (operands.Any(x => ReferenceEquals(x.Storage, into.Storage)))
                throw new ArgumentException($"{op}: {name} shares memory with an operand");
            return into;
        }

        Tensor? Keep(Tensor? grad, Tensor? into) => grad is null || ReferenceEquals(grad, into) ? grad : scope.Keep(grad);
    }

    /// <summary>
    /// <see cref="IBackend.AttentionBackward"/> composed of tensor ops on the operands' own backend (the CPU
    /// backend's implementation, and the CUDA backend's for what its flash kernels do not cover). The query heads
    /// sharing a kv head are stacked as rows ([B, Hkv, group·T, ·]), so the products sum the group's contributions
    /// to dK and dV without expanding k and v. <paramref name="mask"/> is null or already broadcast to [B, H, T, S].
    /// </summary>
    internal static void AttentionBackwardComposite(Tensor q, Tensor k, Tensor v, Tensor o, Tensor dO, Tensor logSumExp, Tensor? mask, bool causal, int queryOffset, double scale,
        Tensor? dq, Tensor? dk, Tensor? dv)
    {
        using var scope = TensorScope.Begin();
        int b = q.Dim(0), h = q.Dim(1), t = q.Dim(2), d = q.Dim(3);
        int hkv = k.Dim(1), s = k.Dim(2), rows = h / hkv * t;
        int dvDim = v.Dim(3);
        var ct = q.DType == DType.F64 ? DType.F64 : DType.F32;

        var q2 = q.To(ct).Reshape(b, hkv, rows, d);
        var k2 = k.To(ct);
        var v2 = v.To(ct);
        var scores = q2.MatMul(k2.Transpose(-2, -1)) * scale;                         // [B, Hkv, rows, S]
        if (causal) scores = scores + CausalRows(h / hkv, t, s, queryOffset, ct, q.Device);
        if (mask is not null) scores = scores + mask.To(ct).Reshape(b, hkv, rows, s);
        var p = (scores - logSumExp.To(ct).Reshape(b, hkv, rows, 1)).Exp();
        var g = dO.To(ct).Reshape(b, hkv, rows, dvDim);
        var rowDot = (g * o.To(ct).Reshape(b, hkv, rows, dvDim)).Sum([-1], keepDim: true);
        var dS = p * (g.MatMul(v2.Transpose(-2, -1)) - rowDot);
        dq?.CopyFrom((dS.MatMul(k2) * scale).Reshape(b, h, t, d).To(q.DType));
        dk?.CopyFrom((dS.Transpose(-2, -1).MatMul(q2) * scale).To(q.DType));
        dv?.CopyFrom(p.Transpose(-2, -1).MatMul(g).To(q.DType));
    }

    /// <summary>The causal mask of <paramref name="group"/> stacked heads, [group·T, S]: 0 where key j ≤ offset + i, −∞ elsewhere.</summary>
    private static Tensor CausalRows(int group, int t, int s, int offset, DType dtype, Device device)
    {
        var m = new double[(long)group * t * s];
        for (int r = 0; r < group * t; r++)
            for (int j = 0; j < s; j++)
                m[(long)r * s + j] = j <= offset + r % t ? 0 : double.NegativeInfinity;
        using var host = FromArray(m, group * t, s);
        return host.To(dtype, device); // built on the host, moved to the tensors' device
    }
}
