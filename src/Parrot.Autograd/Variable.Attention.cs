using Parrot.Tensors;

namespace Parrot.Autograd;

public sealed partial class Variable
{
    /// <summary>
    /// Fused scaled-dot-product attention, softmax(q·kᵀ·scale + mask)·v with q [B, H, T, D], k [B, Hkv, S, D],
    /// v [B, Hkv, S, Dv] (grouped-query heads: Hkv divides H), an optional additive <paramref name="mask"/>
    /// broadcastable to [B, H, T, S] (a constant: no gradient), <paramref name="causal"/> masking with the first
    /// query at position <paramref name="queryOffset"/>; see <see cref="Tensor.ScaledDotProductAttention(Tensor, Tensor, Tensor, Tensor?, bool, int, double?)"/>.
    /// <para>Backward is FlashAttention's: the forward keeps only q, k, v, the output o and each row's
    /// log-sum-exp L, and the probabilities are recomputed as P = exp(s − L). With dO the output gradient:
    /// dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dO ⊙ o)), dQ = dS·K·scale, dK = dSᵀ·Q·scale. The query
    /// heads sharing a kv head are stacked as rows ([B, Hkv, group·T, ·]), so the products sum the group's
    /// contributions to dK and dV without expanding k and v. Computed in float32 (float64 for F64).</para>
    /// </summary>
    public static Variable ScaledDotProductAttention(Variable q, Variable k, Variable v, Tensor? mask = null, bool causal = false, int queryOffset = 0, double? scale = null)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        var o = Tensor.ScaledDotProductAttention(q.Value, k.Value, v.Value, out var lse, mask, causal, queryOffset, scale);
        double sc = scale ?? (q.Shape[3] > 0 ? 1 / Math.Sqrt(q.Shape[3]) : 1);
        Tensor[] saved = mask is null ? [q.Value, k.Value, v.Value, o, lse] : [q.Value, k.Value, v.Value, o, lse, mask];
        return Graph.Record("ScaledDotProductAttention", o, [q, k, v], (n, g) =>
        {
            var qt = n.Saved(0);
            int b = qt.Dim(0), h = qt.Dim(1), t = qt.Dim(2), d = qt.Dim(3);
            var kt = n.Saved(1);
            int hkv = kt.Dim(1), s = kt.Dim(2), rows = h / hkv * t;
            var vt = n.Saved(2);
            int dv = vt.Dim(3);
            var ct = qt.DType == DType.F64 ? DType.F64 : DType.F32;

            var q2 = qt.To(ct).Reshape(b, hkv, rows, d);
            var k2 = kt.To(ct);
            var v2 = vt.To(ct);
            var scores = q2.MatMul(k2.Transpose(-2, -1)) * sc;                        // [B, Hkv, rows, S]
            if (causal) scores = scores + CausalRows(h / hkv, t, s, queryOffset, ct, qt.Device);
            if (mask is not null) scores = scores + n.Saved(5).To(ct).Expand(b, h, t, s).Reshape(b, hkv, rows, s);
            var p = (scores - n.Saved(4).To(ct).Reshape(b, hkv, rows, 1)).Exp();
            var dO = g.To(ct).Reshape(b, hkv, rows, dv);
            var rowDot = (dO * n.Saved(3).To(ct).Reshape(b, hkv, rows, dv)).Sum([-1], keepDim: true);
            var dS = p * (dO.MatMul(v2.Transpose(-2, -1)) - rowDot);
            return
            [
                n.NeedsGrad(0) ? (dS.MatMul(k2) * sc).Reshape(b, h, t, d).To(qt.DType) : null,
                n.NeedsGrad(1) ? (dS.Transpose(-2, -1).MatMul(q2) * sc).To(kt.DType) : null,
                n.NeedsGrad(2) ? p.Transpose(-2, -1).MatMul(dO).To(vt.DType) : null,
            ];
        }, saved);
    }

    /// <summary>The causal mask of <paramref name="group"/> stacked heads, [group·T, S]: 0 where key j ≤ offset + i, −∞ elsewhere.</summary>
    private static Tensor CausalRows(int group, int t, int s, int offset, DType dtype, Device device)
    {
        var m = new double[(long)group * t * s];
        for (int r = 0; r < group * t; r++)
            for (int j = 0; j < s; j++)
                m[(long)r * s + j] = j <= offset + r % t ? 0 : double.NegativeInfinity;
        return Tensor.FromArray(m, group * t, s).To(dtype, device); // built on the host, moved to the tensors' device
    }
}
