namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// Fused scaled-dot-product attention: softmax(q·kᵀ·scale + mask)·v, computed without storing the
    /// [T, S] scores (see <see cref="IBackend.Attention"/>).
    /// </summary>
    /// <param name="q">Queries [B, H, T, D].</param>
    /// <param name="k">Keys [B, Hkv, S, D]; Hkv divides H and query head h reads kv head h / (H / Hkv).</param>
    /// <param name="v">Values [B, Hkv, S, Dv].</param>
    /// <param name="mask">Optional additive mask broadcastable to [B, H, T, S] (any float dtype; −∞ hides a key).</param>
    /// <param name="causal">Query i (absolute position <paramref name="queryOffset"/> + i) sees keys 0..queryOffset + i only.</param>
    /// <param name="queryOffset">Position of the first query (the cached length when decoding with a KV cache).</param>
    /// <param name="scale">Score scale; 1/√D by default.</param>
    /// <returns>
    /// [B, H, T, Dv] in q's dtype. Its memory is laid out as [B, T, H, Dv], so <c>Transpose(1, 2).Reshape(B, T, H·Dv)</c>
    /// (the usual next step, before the output projection) is a view. A row that sees no key is NaN.
    /// </returns>
    /// <exception cref="ArgumentException">Shapes that do not fit, mixed or non-float dtypes, a mask that does not
    /// broadcast, operands on different devices.</exception>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, Tensor? mask = null, bool causal = false, int queryOffset = 0, double? scale = null) =>
        Attend(q, k, v, mask, causal, queryOffset, scale, withLogSumExp: false, out _);

    /// <summary>
    /// As <see cref="ScaledDotProductAttention(Tensor, Tensor, Tensor, Tensor?, bool, int, double?)"/>, also giving
    /// each query row's log-sum-exp of its scores, <paramref name="logSumExp"/> [B, H, T] (F32, or F64 for F64
    /// inputs; −∞ for a row that sees no key): what a backward pass needs to recompute the probabilities.
    /// </summary>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, out Tensor logSumExp, Tensor? mask = null, bool causal = false, int queryOffset = 0, double? scale = null)
    {
        var o = Attend(q, k, v, mask, causal, queryOffset, scale, withLogSumExp: true, out var lse);
        logSumExp = lse!;
        return o;
    }

    private static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, int queryOffset, double? scale, bool withLogSumExp, out Tensor? logSumExp)
    {
        const string op = "ScaledDotProductAttention";
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        q.EnsureAlive(op); k.EnsureAlive(op); v.EnsureAlive(op); mask?.EnsureAlive(op);
        string shapes = $"q {q.ShapeString()}, k {k.ShapeString()}, v {v.ShapeString()}{(mask is null ? "" : $", mask {mask.ShapeString()}")}";
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"{op}: q, k and v must be [batch, heads, seq, dim]; got {shapes}");
        int b = q.Dim(0), h = q.Dim(1), t = q.Dim(2), d = q.Dim(3), hkv = k.Dim(1), s = k.Dim(2), dv = v.Dim(3);
        if (k.Dim(0) != b || v.Dim(0) != b)
            throw new ArgumentException($"{op}: q, k and v must have the same batch size; got {shapes}");
        if (k.Dim(3) != d)
            throw new ArgumentException($"{op}: q and k must have the same head dim; got {shapes}");
        if (v.Dim(1) != hkv || v.Dim(2) != s)
            throw new ArgumentException($"{op}: k and v must have the same heads and length; got {shapes}");
        if (hkv == 0 || h % hkv != 0)
            throw new ArgumentException($"{op}: the {h} query heads must be a multiple of the {hkv} key/value heads; got {shapes}");
        if (!q.DType.IsFloat() || k.DType != q.DType || v.DType != q.DType)
            throw new ArgumentException($"{op}: q, k and v must share one float dtype; got {q.DType.Name()}, {k.DType.Name()}, {v.DType.Name()}");
        if (k.Device != q.Device || v.Device != q.Device || (mask is not null && mask.Device != q.Device))
            throw new ArgumentException($"{op}: operands are on different devices (q {q.Device}, k {k.Device}, v {v.Device}{(mask is null ? "" : $", mask {mask.Device}")}; {shapes})");
        if (queryOffset < 0)
            throw new ArgumentOutOfRangeException(nameof(queryOffset), $"{op}: the query offset {queryOffset} must not be negative");
        double sc = scale ?? (d > 0 ? 1 / Math.Sqrt(d) : 1);
        if (!double.IsFinite(sc))
            throw new ArgumentOutOfRangeException(nameof(scale), $"{op}: the scale {sc} must be finite");

        int[] full = [b, h, t, s];
        using var scope = TensorScope.Begin();
        Tensor? m = null;
        if (mask is not null)
        {
            if (!mask.DType.IsFloat())
                throw new ArgumentException($"{op}: the mask must be an additive float mask, got {mask.DType.Name()} ({shapes})");
            if (mask.Rank > 4 || !BroadcastShapes(mask._shape, full, op).AsSpan().SequenceEqual(full))
                throw new ArgumentException($"{op}: the mask {mask.ShapeString()} does not broadcast to [B, H, T, S] = {ShapeString(full)}");
            m = mask.Expand(full);
        }
        // [B, T, H, Dv] memory seen as [B, H, T, Dv]: the heads of one position end up side by side, ready for the
        // output projection.
        var o = Empty([b, t, h, dv], q.DType, q.Device).Permute(0, 2, 1, 3);
        var lse = withLogSumExp ? Empty([b, h, t], q.DType == DType.F64 ? DType.F64 : DType.F32, q.Device) : null;
        q.Backend.Attention(q, k, v, m, causal, queryOffset, sc, o, lse);
        logSumExp = lse is null ? null : scope.Keep(lse);
        return scope.Keep(o);
    }
}
