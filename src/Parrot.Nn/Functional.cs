using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn;

/// <summary>Stateless building blocks shared by layers.</summary>
public static class Functional
{
    /// <summary>
    /// softmax(q·kᵀ·scale + mask)·v for q [B, H, T, D], k and v [B, Hkv, S, D] (Hkv divides H: grouped-query
    /// heads share keys/values). <paramref name="causal"/>: query i (absolute position queryOffset + i) sees
    /// keys 0..queryOffset+i. <paramref name="mask"/>: additive, broadcastable to [B, H, T, S]. The fused op
    /// (<see cref="Variable.ScaledDotProductAttention"/>): no scores stored, no copies of shared kv heads.
    /// </summary>
    public static Variable ScaledDotProductAttention(Variable q, Variable k, Variable v, bool causal, Tensor? mask = null, int queryOffset = 0, double? scale = null)
    {
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"ScaledDotProductAttention: q {q.Value.ShapeString()}, k {k.Value.ShapeString()}, v {v.Value.ShapeString()} must be [B, heads, seq, dim]");
        return Variable.ScaledDotProductAttention(q, k, v, mask, causal, queryOffset, scale);
    }

    /// <summary>
    /// The same attention composed from primitive ops (kv heads expanded, scores materialised, mask added,
    /// softmax, product): the reference the fused op is tested against.
    /// </summary>
    public static Variable ScaledDotProductAttentionComposite(Variable q, Variable k, Variable v, bool causal, Tensor? mask = null, int queryOffset = 0, double? scale = null)
    {
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"ScaledDotProductAttention: q {q.Value.ShapeString()}, k {k.Value.ShapeString()}, v {v.Value.ShapeString()} must be [B, heads, seq, dim]");
        int b = q.Shape[0], h = q.Shape[1], t = q.Shape[2], d = q.Shape[3];
        int hkv = k.Shape[1], s = k.Shape[2];
        if (k.Shape[0] != b || v.Shape[0] != b || k.Shape[3] != d || v.Shape[1] != hkv || v.Shape[2] != s || hkv == 0 || h % hkv != 0)
            throw new ArgumentException($"ScaledDotProductAttention: incompatible q {q.Value.ShapeString()}, k {k.Value.ShapeString()}, v {v.Value.ShapeString()}");
        if (h != hkv)
        {
            int rep = h / hkv;
            k = k.Unsqueeze(2).Expand(b, hkv, rep, s, d).Reshape(b, h, s, d);
            v = v.Unsqueeze(2).Expand(b, hkv, rep, s, v.Shape[3]).Reshape(b, h, s, v.Shape[3]);
        }
        var scores = q.MatMul(k.Transpose(-2, -1)) * (scale ?? 1 / Math.Sqrt(d));
        if (causal)
        {
            using var cm = CausalMask(t, s, queryOffset, scores.DType, scores.Value.Device);
            scores = scores + new Variable(cm);
        }
        if (mask is not null) scores = scores + new Variable(mask);
        return scores.Softmax(-1).MatMul(v);
    }

    /// <summary>An additive [T, S] mask: 0 where key j ≤ offset + i, −∞ elsewhere.</summary>
    public static Tensor CausalMask(int t, int s, int offset, DType dtype = DType.F32, Device? device = null)
    {
        var m = new float[t * s];
        for (int i = 0; i < t; i++)
            for (int j = 0; j < s; j++)
                m[i * s + j] = j <= offset + i ? 0f : float.NegativeInfinity;
        using var f = Tensor.FromArray(m, t, s);
        return f.To(dtype, device);
    }
}
