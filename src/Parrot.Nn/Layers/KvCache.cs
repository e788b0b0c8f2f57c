using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Layers;

/// <summary>
/// Where attention keeps the keys and values of past positions during inference: one cache shared by every row
/// of the batch (<see cref="KvCache"/>), or one per row (<see cref="KvCacheRows"/>), so that sequences of any
/// lengths step together without padding.
/// </summary>
public interface IKvCache
{
    /// <summary>Positions already stored for <paramref name="layer"/>, the same in every row (the offset of the next token).</summary>
    int Length(int layer);

    /// <summary>
    /// Appends this step's k, v [B, kvHeads, T, headDim] for <paramref name="layer"/> and returns the attention of
    /// q [B, heads, T, headDim] over everything stored, the new queries placed after the past positions.
    /// </summary>
    Variable Attend(int layer, Variable q, Tensor k, Tensor v, bool causal, Tensor? mask);

    /// <summary>
    /// <see cref="Attend"/> for inference with rotary embedding: q, k (not yet rotated) and v as the projections give
    /// them, cos/sin the tables of <see cref="Tensor.ApplyRope(Tensor, Tensor)"/>. Stores rope(k) and v, and returns the attention of
    /// rope(q). The same numbers as rotating q and k first and calling Attend; a cache may do it in fewer launches
    /// (<see cref="KvCache"/>: one kernel for the rotations and the append on a GPU). Nothing is tracked for gradients.
    /// </summary>
    Variable AttendRope(int layer, Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, bool causal, Tensor? mask)
    {
        using var kRot = k.ApplyRope(cos, sin);
        return Attend(layer, new Variable(q.ApplyRope(cos, sin)), kRot, v, causal, mask);
    }
}

/// <summary>
/// Keys and values of past positions for incremental decoding, one slot per layer, preallocated to a
/// maximum length so decoding never reallocates: each step writes its new keys/values into the next
/// positions and attends over the prefix. Used without gradients (inference).
/// </summary>
public sealed class KvCache : IKvCache, IDisposable
{
    private readonly Tensor?[] _k, _v;
    private readonly int[] _length;

    /// <summary>Longest sequence the cache can hold.</summary>
    public int MaxLength { get; }

    /// <summary>Creates an empty cache for <paramref name="layers"/> layers.</summary>
    public KvCache(int layers, int maxLength)
    {
        if (layers <= 0 || maxLength <= 0) throw new ArgumentOutOfRangeException(nameof(layers), "KvCache: layers and max length must be positive");
        _k = new Tensor?[layers];
        _v = new Tensor?[layers];
        _length = new int[layers];
        MaxLength = maxLength;
    }

    /// <summary>Positions already stored for <paramref name="layer"/> (the offset of the next token).</summary>
    public int Length(int layer = 0) => _length[layer];

    /// <summary>
    /// Appends k, v [B, kvHeads, T, headDim] for <paramref name="layer"/> and returns views of all stored
    /// keys and values [B, kvHeads, past+T, headDim] (valid until the next append; dispose them).
    /// </summary>
    public (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        var (kSlot, vSlot) = Slots(layer, k, v, "KvCache.Append");
        using (kSlot) kSlot.CopyFrom(k);
        using (vSlot) vSlot.CopyFrom(v);
        return Commit(layer, k.Dim(2));
    }

    /// <summary>
    /// The cache's views [B, kvHeads, T, headDim] at the next T positions of <paramref name="layer"/> (allocating the
    /// layer's tensors on first use, in k's and v's dtypes and device), after checking that k, v fit; nothing is stored yet.
    /// </summary>
    private (Tensor KSlot, Tensor VSlot) Slots(int layer, Tensor k, Tensor v, string op)
    {
        if (k.Rank != 4 || !k.Shape.SequenceEqual(v.Shape)) throw new ArgumentException($"{op}: k {k.ShapeString()} and v {v.ShapeString()} must both be [B, heads, T, headDim]");
        int t = k.Dim(2), past = _length[layer];
        if (past + t > MaxLength) throw new InvalidOperationException($"KvCache: {past} + {t} positions exceed the maximum length {MaxLength}");
        if (_k[layer] is null)
        {
            _k[layer] = TensorScope.Detach(Tensor.Zeros([k.Dim(0), k.Dim(1), MaxLength, k.Dim(3)], k.DType, k.Device));
            _v[layer] = TensorScope.Detach(Tensor.Zeros([k.Dim(0), k.Dim(1), MaxLength, k.Dim(3)], v.DType, v.Device));
        }
        var kc = _k[layer]!; var vc = _v[layer]!;
        if (kc.Dim(0) != k.Dim(0) || kc.Dim(1) != k.Dim(1) || kc.Dim(3) != k.Dim(3))
            throw new ArgumentException($"{op}: k {k.ShapeString()} does not match the cache {kc.ShapeString()}");
        return (kc.Narrow(2, past, t), vc.Narrow(2, past, t));
    }

    /// <summary>Counts <paramref name="t"/> stored positions more and returns views of everything stored (dispose them).</summary>
    private (Tensor K, Tensor V) Commit(int layer, int t)
    {
        int length = _length[layer] += t;
        return (_k[layer]!.Narrow(2, 0, length), _v[layer]!.Narrow(2, 0, length));
    }

    /// <inheritdoc/>
    public Variable Attend(int layer, Variable q, Tensor k, Tensor v, bool causal, Tensor? mask)
    {
        int past = _length[layer];
        var (kAll, vAll) = Append(layer, k, v);
        return Functional.ScaledDotProductAttention(q, new Variable(kAll), new Variable(vAll), causal, mask, queryOffset: past);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// The rotations, the append into the cache's slots and the attention are one <see cref="Tensor.RopeAppendAttend"/>
    /// (on a GPU: one kernel for a decode step, else one for the rotations and the append and one for the attention);
    /// operands of mixed dtypes take the ops apart.
    /// </remarks>
    public Variable AttendRope(int layer, Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, bool causal, Tensor? mask)
    {
        int past = _length[layer];
        var (kSlot, vSlot) = Slots(layer, k, v, "KvCache.AttendRope");
        using (kSlot) using (vSlot)
        {
            if (q.DType != k.DType || v.DType != k.DType || kSlot.DType != k.DType || vSlot.DType != k.DType)
            {
                // Mixed dtypes: the cache converts on the copy, as Append does.
                using (var kRot = k.ApplyRope(cos, sin)) kSlot.CopyFrom(kRot);
                vSlot.CopyFrom(v);
                var (kStored, vStored) = Commit(layer, k.Dim(2));
                return Functional.ScaledDotProductAttention(new Variable(q.ApplyRope(cos, sin)), new Variable(kStored), new Variable(vStored), causal, mask, queryOffset: past);
            }
        }
        var (kAll, vAll) = Commit(layer, k.Dim(2));
        try
        {
            using (kAll) using (vAll) return new Variable(Tensor.RopeAppendAttend(q, k, v, cos, sin, kAll, vAll, causal, mask));
        }
        catch
        {
            _length[layer] = past; // nothing was stored
            throw;
        }
    }

    /// <summary>
    /// Views [B, kvHeads, Length(layer), headDim] of the keys and values stored for <paramref name="layer"/>
    /// (valid until the next append; dispose them); null while nothing is stored.
    /// </summary>
    public (Tensor K, Tensor V)? Stored(int layer) =>
        _k[layer] is { } k && _length[layer] > 0 ? (k.Narrow(2, 0, _length[layer]), _v[layer]!.Narrow(2, 0, _length[layer])) : null;

    /// <summary>Forgets every stored position (keeps the memory).</summary>
    public void Clear() => Array.Clear(_length);

    /// <summary>Drops the last positions so that <paramref name="length"/> remain, in every layer.</summary>
    public void Truncate(int length)
    {
        for (int i = 0; i < _length.Length; i++) _length[i] = Math.Min(_length[i], Math.Max(0, length));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var t in _k) t?.Dispose();
        foreach (var t in _v) t?.Dispose();
        Array.Clear(_k); Array.Clear(_v);
    }
}
