namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    /// <remarks>
    /// Row by row: the positions are read where they lie (host memory), and each row runs <see cref="Rope"/> into a view
    /// of qRot and of the cache at its position (the tables narrowed to its rows) and <see cref="Copy"/> of v: the same
    /// element arithmetic as <see cref="Tensor.RopeAppend"/>, so the same bits. Views only, no allocation. A new row
    /// outside the cache does what the GPU kernel does (rope_kv_append_at): no cache element written, its qRot NaN — a
    /// continuous batch's idle slot sits there on purpose (its host count keeps it out of the room check).
    /// </remarks>
    public void RopeAppendAt(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor positions, Tensor kCache, Tensor vCache, Tensor qRot)
    {
        int b = q.Shape[0], t = q.Shape[2], capacity = kCache.Shape[2];
        for (int r = 0; r < b; r++)
        {
            long p = PositionAt(positions, r);
            if (p >= 0 && p + t <= capacity) RopeAppendRows(q, k, v, cos, sin, kCache, vCache, qRot, r, (int)p, 0, t);
            else
                for (int i = 0; i < t; i++)
                {
                    if (p + i >= 0 && p + i < capacity) RopeAppendRows(q, k, v, cos, sin, kCache, vCache, qRot, r, (int)(p + i), i, 1);
                    else using (var row = qRot.Narrow(0, r, 1)) using (var qi = row.Narrow(2, i, 1)) Fill(qi, double.NaN);
                }
        }
    }

    /// <summary>Rows <paramref name="t0"/> .. t0 + count − 1 of batch row <paramref name="r"/> at cache rows <paramref name="p"/> ..: rope into qRot and the cache, v copied.</summary>
    private void RopeAppendRows(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor kCache, Tensor vCache, Tensor qRot, int r, int p, int t0, int count)
    {
        using var c = cos.Narrow(0, p, count);
        using var s = sin.Narrow(0, p, count);
        using var qb = q.Narrow(0, r, 1);
        using var yb = qRot.Narrow(0, r, 1);
        using var qr = qb.Narrow(2, t0, count);
        using var yr = yb.Narrow(2, t0, count);
        using (var cq = c.Expand(qr.Shape.ToArray()))
        using (var sq = s.Expand(qr.Shape.ToArray()))
            Rope(qr, cq, sq, yr);
        using var kb = k.Narrow(0, r, 1);
        using var vb = v.Narrow(0, r, 1);
        using var kr = kb.Narrow(2, t0, count);
        using var vr = vb.Narrow(2, t0, count);
        using var kRow = kCache.Narrow(0, r, 1);
        using var vRow = vCache.Narrow(0, r, 1);
        using var kSlot = kRow.Narrow(2, p, count);
        using var vSlot = vRow.Narrow(2, p, count);
        using (var ck = c.Expand(kr.Shape.ToArray()))
        using (var sk = s.Expand(kr.Shape.ToArray()))
            Rope(kr, ck, sk, kSlot);
        Copy(vr, vSlot);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Row by row through <see cref="Attention"/> over the row's first positions[b] + T keys (views; T rows running past
    /// the cache's end see all of it). A row whose position is outside the cache (negative, or at or past its capacity:
    /// an idle slot) sees no key and gives NaN, as on a GPU, which reads none of its cache.
    /// </remarks>
    public void AttentionAt(Tensor q, Tensor kCache, Tensor vCache, Tensor positions, double scale, Tensor output)
    {
        int b = q.Shape[0], t = q.Shape[2], capacity = kCache.Shape[2];
        for (int r = 0; r < b; r++)
        {
            long p = PositionAt(positions, r);
            using var oRow = output.Narrow(0, r, 1);
            long seen = Math.Min(p + t, capacity);
            if (p < 0 || p >= capacity) { Fill(oRow, double.NaN); continue; }
            using var qr = q.Narrow(0, r, 1);
            using var kRow = kCache.Narrow(0, r, 1);
            using var vRow = vCache.Narrow(0, r, 1);
            using var kr = kRow.Narrow(2, 0, (int)seen);
            using var vr = vRow.Narrow(2, 0, (int)seen);
            Attention(qr, kr, vr, null, causal: true, queryOffset: (int)Math.Min(p, int.MaxValue - t), scale, oRow, null);
        }
    }

    /// <summary>Position <paramref name="row"/> of a contiguous int32/int64 [B] tensor, read in place (this backend's memory, or a test device's host memory).</summary>
    internal static unsafe long PositionAt(Tensor positions, int row) =>
        positions.DType == DType.I32 ? ((int*)positions.DataPointer)[row] : ((long*)positions.DataPointer)[row];
}
