namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// PyTorch's index_select: the entries <paramref name="index"/> picks along <paramref name="axis"/>,
    /// y[..., i, ...] = x[..., index[i], ...]. The result has this tensor's shape with that dimension's
    /// size replaced by the number of indices, and this tensor's dtype (any dtype works).
    /// </summary>
    /// <param name="axis">The dimension to select along (negative counts from the end).</param>
    /// <param name="index">A 1-D (or 0-d, taken as one index) int64 or int32 tensor of values in
    /// [0, Dim(axis)). As in PyTorch, negative indices are not allowed: they are out of range.</param>
    public Tensor IndexSelect(int axis, Tensor index)
    {
        const string op = "IndexSelect";
        ArgumentNullException.ThrowIfNull(index);
        EnsureAlive(op); index.EnsureAlive(op);
        int a = NormalizeAxis(axis, Rank, op);
        RequireIndex(index, op, this);
        if (index.Rank > 1)
            throw new ArgumentException($"{op}: the index must be 1-D, got {index.ShapeString()} (indexing {ShapeString()} along axis {a})");
        using var flat = index.Rank == 0 ? index.Reshape(1) : index.Alias();
        ValidateIndices(flat, _shape[a], op, (value, position) =>
            $"{op}: index {value} at position {position} is out of range for dimension {a} of size {_shape[a]} in {ShapeString()}" + NegativeNote(value));
        var shape = (int[])_shape.Clone();
        shape[a] = flat.Dim(0);
        var y = Empty(shape, DType, Device);
        if (y.Count > 0) Backend.IndexSelect(this, a, flat, y);
        return y;
    }

    /// <summary>
    /// PyTorch's gather: y[p] = x[p with coordinate <paramref name="axis"/> replaced by index[p]] for
    /// every position p of <paramref name="index"/>; e.g. for rank 3 and axis 1, y[i, j, k] = x[i, index[i, j, k], k].
    /// The result has the index's shape and this tensor's dtype.
    /// </summary>
    /// <param name="axis">The dimension the index values address (negative counts from the end).</param>
    /// <param name="index">An int64 or int32 tensor of this tensor's rank, no larger than it on the other
    /// dimensions, holding values in [0, Dim(axis)); negative indices are out of range, as in PyTorch.</param>
    public Tensor Gather(int axis, Tensor index)
    {
        const string op = "Gather";
        ArgumentNullException.ThrowIfNull(index);
        EnsureAlive(op); index.EnsureAlive(op);
        int a = NormalizeAxis(axis, Rank, op);
        RequireIndex(index, op, this);
        if (index.Rank != Rank)
            throw new ArgumentException($"{op}: index {index.ShapeString()} must have the rank of the input {ShapeString()}");
        for (int d = 0; d < Rank; d++)
            if (d != a && index._shape[d] > _shape[d])
                throw new ArgumentException($"{op}: index {index.ShapeString()} is larger than the input {ShapeString()} in dimension {d} (only dimension {a}, the gather axis, may differ)");
        ValidateIndices(index, _shape[a], op, (value, position) =>
            $"{op}: index {value} at position {position} is out of range for dimension {a} of size {_shape[a]} in {ShapeString()}" + NegativeNote(value));
        var y = Empty(index._shape, DType, Device);
        if (y.Count > 0) Backend.Gather(this, a, index, y);
        return y;
    }

    /// <summary>
    /// PyTorch's scatter_add (out of place): a copy of this tensor with src[p] added at
    /// [p with coordinate <paramref name="axis"/> replaced by index[p]] for every position p of the index.
    /// See <see cref="ScatterAddInPlace"/> for the rules.
    /// </summary>
    public Tensor ScatterAdd(int axis, Tensor index, Tensor src)
    {
        EnsureAlive("ScatterAdd");
        var y = Clone();
        try { y.ScatterAddCore(axis, index, src, "ScatterAdd"); }
        catch { y.Dispose(); throw; }
        return y;
    }

    /// <summary>
    /// PyTorch's scatter_add_, in place: this[p with coordinate <paramref name="axis"/> replaced by index[p]] += src[p]
    /// for every position p of <paramref name="index"/>. This tensor, index and src have one rank;
    /// index is no larger than src in any dimension and no larger than this tensor outside the axis;
    /// its values (int64 or int32) lie in [0, Dim(axis)) — negative ones are out of range. src has this
    /// tensor's dtype (a float or integer type, not bool). Every index is checked before anything is
    /// written. Duplicate indices accumulate, always in ascending order along the axis, so the result
    /// does not depend on the thread count. This tensor must not be a broadcast (expanded) view, nor share memory with
    /// src or the index.
    /// </summary>
    /// <returns>This tensor.</returns>
    public Tensor ScatterAddInPlace(int axis, Tensor index, Tensor src)
    {
        ScatterAddCore(axis, index, src, "ScatterAddInPlace");
        return this;
    }

    private void ScatterAddCore(int axis, Tensor index, Tensor src, string op)
    {
        ArgumentNullException.ThrowIfNull(index);
        ArgumentNullException.ThrowIfNull(src);
        EnsureAlive(op); index.EnsureAlive(op); src.EnsureAlive(op);
        int a = NormalizeAxis(axis, Rank, op);
        RequireIndex(index, op, this);
        if (src.Device != Device) throw new ArgumentException($"{op}: src is on {src.Device} but the destination is on {Device}");
        if (src.DType != DType)
            throw new ArgumentException($"{op}: src is {src.DType.Name()} {src.ShapeString()} but the destination is {DType.Name()} {ShapeString()}; convert with To() first");
        if (DType == DType.Bool) throw new ArgumentException($"{op}: not defined for bool tensors {ShapeString()}");
        if (index.Rank != Rank || src.Rank != Rank)
            throw new ArgumentException($"{op}: destination {ShapeString()}, index {index.ShapeString()} and src {src.ShapeString()} must have one rank");
        for (int d = 0; d < Rank; d++)
        {
            if (index._shape[d] > src._shape[d])
                throw new ArgumentException($"{op}: index {index.ShapeString()} is larger than src {src.ShapeString()} in dimension {d}");
            if (d != a && index._shape[d] > _shape[d])
                throw new ArgumentException($"{op}: index {index.ShapeString()} is larger than the destination {ShapeString()} in dimension {d} (only dimension {a}, the scatter axis, may differ)");
            if (_strides[d] == 0 && _shape[d] > 1)
                throw new ArgumentException($"{op}: the destination {ShapeString()} is a broadcast view (dimension {d} has stride 0); scatter into a contiguous copy");
        }
        // Read while written (on CUDA a long axis is summed key by key after a sort): the sums would depend on the order
        // of the writes, no longer the CPU's. PyTorch refuses it too.
        if (SharesMemoryWith(src))
            throw new ArgumentException($"{op}: src {src.ShapeString()} shares memory with the destination {ShapeString()}; pass a copy");
        if (SharesMemoryWith(index))
            throw new ArgumentException($"{op}: the index {index.ShapeString()} shares memory with the destination {ShapeString()}; pass a copy");
        ValidateIndices(index, _shape[a], op, (value, position) =>
            $"{op}: index {value} at position {position} is out of range for dimension {a} of size {_shape[a]} in the destination {ShapeString()}" + NegativeNote(value));
        if (index.Count > 0) Backend.ScatterAdd(this, a, index, src);
    }

    /// <summary>Whether <paramref name="other"/> lies in this tensor's storage with byte ranges that meet (a conservative overlap test).</summary>
    private bool SharesMemoryWith(Tensor other)
    {
        if (!ReferenceEquals(Storage, other.Storage) || Count == 0 || other.Count == 0) return false;
        var (lo, hi) = ByteRange();
        var (otherLo, otherHi) = other.ByteRange();
        return lo < otherHi && otherLo < hi;
    }

    /// <summary>The bytes [first, end) of the storage that this view's elements span.</summary>
    private (long First, long End) ByteRange()
    {
        long first = Offset, last = Offset;
        for (int d = 0; d < Rank; d++)
        {
            long reach = (long)(_shape[d] - 1) * _strides[d];
            if (reach < 0) first += reach; else last += reach;
        }
        return (first * ElementSize, (last + 1) * ElementSize);
    }

    /// <summary>
    /// Embedding lookup: the rows of <paramref name="weight"/> [vocab, hidden] named by <paramref name="ids"/>
    /// (int64 or int32, any shape), giving [..ids.shape, hidden] in the weight's dtype. Every id is
    /// checked before any row is read: an id outside [0, vocab) throws, naming the id, its position
    /// and the vocabulary size.
    /// </summary>
    public static Tensor Embedding(Tensor weight, Tensor ids)
    {
        const string op = "Embedding";
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(ids);
        weight.EnsureAlive(op); ids.EnsureAlive(op);
        if (weight.Rank != 2) throw new ArgumentException($"{op}: the weight must be 2-D [vocab, hidden], got {weight.ShapeString()}");
        RequireIndex(ids, op, weight);
        int vocab = weight._shape[0];
        ValidateIndices(ids, vocab, op, (value, position) =>
            $"{op}: id {value} at position {position} of the ids {ids.ShapeString()} is out of range for a vocabulary of {vocab} rows (weight {weight.ShapeString()})");
        using var scope = TensorScope.Begin();
        var flat = ids.Reshape(-1);
        var rows = Empty([flat.Dim(0), weight._shape[1]], weight.DType, weight.Device);
        if (rows.Count > 0) weight.Backend.IndexSelect(weight, 0, flat, rows);
        var shape = new int[ids.Rank + 1];
        ids._shape.CopyTo(shape, 0);
        shape[^1] = weight._shape[1];
        return scope.Keep(rows.ViewAs(shape));
    }

    private static void RequireIndex(Tensor index, string op, Tensor data)
    {
        if (index.DType is not (DType.I64 or DType.I32))
            throw new ArgumentException($"{op}: indices must be int64 or int32, got {index.DType.Name()} {index.ShapeString()}");
        if (index.Device != data.Device)
            throw new ArgumentException($"{op}: the indices are on {index.Device} but the data {data.ShapeString()} is on {data.Device}");
    }

    private static string NegativeNote(long value) =>
        value < 0 ? " (negative indices are not allowed, as in PyTorch)" : "";

    /// <summary>
    /// Checks every value of an I64/I32 index tensor lies in [0, size), before any kernel runs;
    /// throws <see cref="ArgumentOutOfRangeException"/> with the message <paramref name="describe"/>
    /// builds from the first bad value and its position. On a device whose backend checks indices there
    /// (<see cref="IDeferredIndexChecks"/>: CUDA) the check is queued instead of read back, and the same
    /// error is thrown at the first read of a value after the op (see <see cref="DeferredIndexChecks"/>);
    /// other devices' indices are checked on a host copy.
    /// </summary>
    private static unsafe void ValidateIndices(Tensor index, int size, string op, Func<long, string, string> describe)
    {
        if (index.Count == 0) return;
        if (index.Device.Kind != DeviceKind.Cpu && index.Backend is IDeferredIndexChecks deferred)
        {
            var indexShape = index._shape;
            deferred.IndexChecks.Record(index, size, null, (value, flat) => describe(value, DeferredIndexChecks.Position(flat, indexShape)));
            return;
        }
        using var host = index.Device.Kind == DeviceKind.Cpu ? index.Alias() : index.To(Device.Cpu);
        int rank = host.Rank;
        var shape = host._shape;
        var strides = host._strides;
        Span<int> at = stackalloc int[Math.Max(rank, 1)];
        at.Clear();
        bool wide = host.DType == DType.I64;
        byte* basePtr = (byte*)host.DataPointer;
        int itemSize = host.ElementSize;
        int inner = rank == 0 ? 1 : shape[rank - 1];
        long innerStride = rank == 0 ? 0 : strides[rank - 1];
        long rowOffset = 0;
        for (long done = 0; done < host.Count; done += inner)
        {
            byte* row = basePtr + rowOffset * itemSize;
            for (int i = 0; i < inner; i++)
            {
                long v = wide ? ((long*)row)[i * innerStride] : ((int*)row)[i * innerStride];
                if ((ulong)v >= (ulong)size)
                {
                    if (rank > 0) at[rank - 1] = i;
                    throw new ArgumentOutOfRangeException(nameof(index), describe(v, PositionString(at[..rank])));
                }
            }
            // Odometer over the outer dimensions.
            for (int d = rank - 2; d >= 0; d--)
            {
                if (++at[d] < shape[d]) { rowOffset += strides[d]; break; }
                at[d] = 0;
                rowOffset -= (long)(shape[d] - 1) * strides[d];
            }
        }
    }

    private static string PositionString(ReadOnlySpan<int> position) => ShapeString(position);
}
