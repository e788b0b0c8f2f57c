namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    /// <remarks>
    /// Row by row: the positions are read where they lie (host memory), and each row runs <see cref="Rope"/> into a view
    /// of qRot and of the cache at its position (the tables narrowed to its rows) and <see cref="Copy"/> of v: the same
    /// element arithmetic as <see cref="Tensor.RopeAppend"/>, so the same bits. Views only, no allocation.
    /// </remarks>
    public void RopeAppendAt(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor positions, Tensor kCache, Tensor vCache, Tensor qRot)
    {
        int b = q.Shape[0], t = q.Shape[2], capacity = kCache.Shape[2];
        for (int r = 0; r < b; r++)
        {
            int p = PositionAt(positions, r, t, capacity, "RopeAppendAt");
            if (t == 0) continue;
            using var c = cos.Narrow(0, p, t);
            using var s = sin.Narrow(0, p, t);
            using var qr = q.Narrow(0, r, 1);
            using var yr = qRot.Narrow(0, r, 1);
            using (var cq = c.Expand(qr.Shape.ToArray()))
            using (var sq = s.Expand(qr.Shape.ToArray()))
                Rope(qr, cq, sq, yr);
            using var kr = k.Narrow(0, r, 1);
            using var vr = v.Narrow(0, r, 1);
            using var kRow = kCache.Narrow(0, r, 1);
            using var vRow = vCache.Narrow(0, r, 1);
            using var kSlot = kRow.Narrow(2, p, t);
            using var vSlot = vRow.Narrow(2, p, t);
            using (var ck = c.Expand(kr.Shape.ToArray()))
            using (var sk = s.Expand(kr.Shape.ToArray()))
                Rope(kr, ck, sk, kSlot);
            Copy(vr, vSlot);
        }
    }

    /// <inheritdoc/>
    /// <remarks>Row by row through <see cref="Attention"/> over the row's first positions[b] + T keys (views).</remarks>
    public void AttentionAt(Tensor q, Tensor kCache, Tensor vCache, Tensor positions, double scale, Tensor output)
    {
        int b = q.Shape[0], t = q.Shape[2], capacity = kCache.Shape[2];
        for (int r = 0; r < b; r++)
        {
            int p = PositionAt(positions, r, t, capacity, "AttentionAt");
            using var qr = q.Narrow(0, r, 1);
            using var oRow = output.Narrow(0, r, 1);
            using var kRow = kCache.Narrow(0, r, 1);
            using var vRow = vCache.Narrow(0, r, 1);
            using var kr = kRow.Narrow(2, 0, p + t);
            using var vr = vRow.Narrow(2, 0, p + t);
            Attention(qr, kr, vr, null, causal: true, queryOffset: p, scale, oRow, null);
        }
    }

    /// <summary>
    /// Position <paramref name="row"/> of a contiguous int32/int64 [B] tensor, read in place (this backend's memory, or
    /// a test device's host memory); its <paramref name="t"/> rows must lie inside the cache.
    /// </summary>
    internal static unsafe int PositionAt(Tensor positions, int row, int t, int capacity, string op)
    {
        long p = positions.DType == DType.I32 ? ((int*)positions.DataPointer)[row] : ((long*)positions.DataPointer)[row];
        if (p < 0 || p + t > capacity)
            throw new InvalidOperationException($"{op}: batch row {row} is at position {p}; its {t} new positions do not fit the cache of {capacity}");
        return (int)p;
    }
}
