using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Layers;

/// <summary>
/// One <see cref="KvCache"/> per batch row (continuous batching): each sequence keeps its own cache, of its own
/// length, so sequences join and leave a batch at any token boundary and none is padded. The projections and the
/// MLP still see the batch as one matrix; only attention runs row by row, each over its own keys and values. The
/// caller gives each row's rotary positions (its cache length), as the rows' lengths differ. The caches belong to
/// the caller.
/// </summary>
public sealed class KvCacheRows : IKvCache
{
    private readonly KvCache[] _rows;

    /// <summary>Wraps <paramref name="rows"/>: cache r holds batch row r.</summary>
    public KvCacheRows(IEnumerable<KvCache> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        _rows = rows.ToArray();
        if (_rows.Length == 0) throw new ArgumentException("KvCacheRows: no rows");
        if (_rows.Any(r => r is null)) throw new ArgumentException("KvCacheRows: a row has no cache");
    }

    /// <summary>The rows' common length; throws when they differ (a forward over such rows needs per-row positions).</summary>
    public int Length(int layer)
    {
        int length = _rows[0].Length(layer);
        if (_rows.Any(r => r.Length(layer) != length))
            throw new InvalidOperationException("KvCacheRows: the rows hold different lengths, so there is no common one: give each row's positions");
        return length;
    }

    /// <inheritdoc/>
    public Variable Attend(int layer, Variable q, Tensor k, Tensor v, bool causal, Tensor? mask)
    {
        if (mask is not null) throw new ArgumentException("KvCacheRows: rows are never padded, so attention takes no mask");
        if (q.Shape[0] != _rows.Length || k.Dim(0) != _rows.Length)
            throw new ArgumentException($"KvCacheRows: a batch of {q.Shape[0]} rows for {_rows.Length} caches");
        if (_rows.Length == 1) return _rows[0].Attend(layer, q, k, v, causal, null);
        CheckRoom(layer, k.Dim(2));
        var o = new Variable[_rows.Length];
        for (int r = 0; r < o.Length; r++)
            o[r] = _rows[r].Attend(layer, q.Narrow(0, r, 1), k.Narrow(0, r, 1), v.Narrow(0, r, 1), causal, null);
        return Variable.Concat(0, o);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Row by row through <see cref="KvCache.AttendRope"/> (one kernel per row on a GPU for the rotations and the append).
    /// Tables [B, 1, T, headDim] (each row's positions) are split by row; tables without a batch dim serve every row.
    /// </remarks>
    public Variable AttendRope(int layer, Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, bool causal, Tensor? mask)
    {
        if (mask is not null) throw new ArgumentException("KvCacheRows: rows are never padded, so attention takes no mask");
        if (q.Dim(0) != _rows.Length || k.Dim(0) != _rows.Length)
            throw new ArgumentException($"KvCacheRows: a batch of {q.Dim(0)} rows for {_rows.Length} caches");
        if (_rows.Length == 1) return _rows[0].AttendRope(layer, q, k, v, cos, sin, causal, null);
        bool PerRow(Tensor t) => t.Rank == 4 && t.Dim(0) != 1;
        foreach (var t in new[] { cos, sin })
            if (PerRow(t) && t.Dim(0) != _rows.Length)
                throw new ArgumentException($"KvCacheRows: rotary table {t.ShapeString()} has {t.Dim(0)} rows for {_rows.Length} caches");
        CheckRoom(layer, k.Dim(2));
        var o = new Variable[_rows.Length];
        for (int r = 0; r < o.Length; r++)
        {
            using var qr = q.Narrow(0, r, 1);
            using var kr = k.Narrow(0, r, 1);
            using var vr = v.Narrow(0, r, 1);
            using var cr = PerRow(cos) ? cos.Narrow(0, r, 1) : null;
            using var sr = PerRow(sin) ? sin.Narrow(0, r, 1) : null;
            o[r] = _rows[r].AttendRope(layer, qr, kr, vr, cr ?? cos, sr ?? sin, causal, null);
        }
        return Variable.Concat(0, o);
    }

    /// <summary>
    /// Every row must take the new positions before any row stores them: a full row found after the rows before it
    /// had appended would leave those with this layer one step ahead of the others.
    /// </summary>
    private void CheckRoom(int layer, int t)
    {
        for (int r = 0; r < _rows.Length; r++)
            if (_rows[r].Length(layer) + t > _rows[r].MaxLength)
                throw new InvalidOperationException($"KvCacheRows: row {r} holds {_rows[r].Length(layer)} positions and cannot take {t} more (its maximum length is {_rows[r].MaxLength}); no row was changed");
    }
}
