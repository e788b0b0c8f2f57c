namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// Joins tensors along an existing dimension, as torch.cat: every input has the same rank and the
    /// same sizes except along <paramref name="axis"/> (sizes there may be 0). The result's dtype is the
    /// promotion of the inputs' dtypes (the rule of binary ops, <see cref="DTypeInfo.Promote"/>: floats
    /// win over integers, wider over narrower), each input converted on copy. All inputs share a device.
    /// The result is a new contiguous tensor; each input is copied into a narrowed view of it.
    /// </summary>
    public static Tensor Concat(int axis, params Tensor[] tensors)
    {
        const string op = "Concat";
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Length == 0) throw new ArgumentException($"{op}: needs at least one tensor");
        for (int i = 0; i < tensors.Length; i++)
        {
            if (tensors[i] is null) throw new ArgumentNullException(nameof(tensors), $"{op}: tensor {i} is null");
            tensors[i].EnsureAlive(op);
        }
        var first = tensors[0];
        int a = NormalizeAxis(axis, first.Rank, op);
        var dtype = first.DType;
        long total = 0;
        foreach (var t in tensors)
        {
            if (t.Device != first.Device)
                throw new ArgumentException($"{op}: tensors are on different devices ({first.Device}, {t.Device})");
            if (t.Rank != first.Rank || !SameExcept(t._shape, first._shape, a))
                throw new ArgumentException($"{op}: shapes {Shapes(tensors)} differ outside axis {a}");
            dtype = DTypeInfo.Promote(dtype, t.DType);
            total += t._shape[a];
        }
        if (total > int.MaxValue) throw new ArgumentException($"{op}: the joined axis {a} would hold {total} elements, more than a dimension can");
        var shape = (int[])first._shape.Clone();
        shape[a] = (int)total;
        var y = Empty(shape, dtype, first.Device);
        int at = 0;
        foreach (var t in tensors)
        {
            int n = t._shape[a];
            if (n == 0) continue;
            using var slot = y.Narrow(a, at, n);
            if (slot.Count > 0) y.Backend.Copy(t, slot);
            at += n;
        }
        return y;
    }

    /// <summary>
    /// <see cref="Concat"/> without a copy: when <paramref name="tensors"/> are consecutive views of one storage along
    /// <paramref name="axis"/> (one storage and dtype, equal strides, equal sizes outside the axis, each starting where
    /// the one before ends, none empty along the axis), the view over all of them (dispose it); otherwise null. A layer
    /// whose parameters are row blocks of one buffer (Attention's q/k/v projections) multiplies by the whole buffer at
    /// once this way. The result aliases the inputs: writing to it writes to them.
    /// </summary>
    public static Tensor? ConcatView(int axis, params Tensor[] tensors)
    {
        if (!AreConsecutive(axis, tensors, out int total)) return null;
        var first = tensors[0];
        int a = NormalizeAxis(axis, first.Rank, "ConcatView");
        var shape = (int[])first._shape.Clone();
        shape[a] = total;
        return first.View(shape, (long[])first._strides.Clone(), first.Offset);
    }

    /// <summary>Whether <see cref="ConcatView"/> gives a view of these tensors (no allocation: a layer's per-call check).</summary>
    public static bool AreConsecutive(int axis, params Tensor[] tensors) => AreConsecutive(axis, tensors, out _);

    private static bool AreConsecutive(int axis, Tensor[] tensors, out int total)
    {
        const string op = "ConcatView";
        ArgumentNullException.ThrowIfNull(tensors);
        total = 0;
        if (tensors.Length == 0) return false;
        var first = tensors[0] ?? throw new ArgumentNullException(nameof(tensors), $"{op}: tensor 0 is null");
        first.EnsureAlive(op);
        int a = NormalizeAxis(axis, first.Rank, op);
        long next = first.Offset, sum = 0;
        foreach (var t in tensors)
        {
            if (t is null) throw new ArgumentNullException(nameof(tensors), $"{op}: a tensor is null");
            t.EnsureAlive(op);
            if (!ReferenceEquals(t._storage, first._storage) || t.DType != first.DType || t.Rank != first.Rank || t.Offset != next
                || t._shape[a] == 0 || !SameExcept(t._shape, first._shape, a) || !t._strides.AsSpan().SequenceEqual(first._strides))
                return false;
            next += t._shape[a] * first._strides[a];
            sum += t._shape[a];
        }
        if (sum > int.MaxValue) return false;
        total = (int)sum;
        return true;
    }

    /// <summary>
    /// Stacks equally shaped tensors along a new dimension inserted at <paramref name="axis"/>
    /// (0..rank; negative counts from rank+1), as torch.stack. Dtypes are promoted as in <see cref="Concat"/>.
    /// </summary>
    public static Tensor Stack(int axis, params Tensor[] tensors)
    {
        const string op = "Stack";
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Length == 0) throw new ArgumentException($"{op}: needs at least one tensor");
        for (int i = 0; i < tensors.Length; i++)
        {
            if (tensors[i] is null) throw new ArgumentNullException(nameof(tensors), $"{op}: tensor {i} is null");
            tensors[i].EnsureAlive(op);
        }
        var first = tensors[0];
        int a = NormalizeAxis(axis, first.Rank + 1, op);
        foreach (var t in tensors)
            if (!t._shape.AsSpan().SequenceEqual(first._shape))
                throw new ArgumentException($"{op}: every tensor must have one shape, got {Shapes(tensors)}");
        using var scope = TensorScope.Begin();
        var lifted = tensors.Select(t => t.Unsqueeze(a)).ToArray();
        return scope.Keep(Concat(a, lifted));
    }

    /// <summary>
    /// Cuts this tensor along <paramref name="axis"/> into pieces of <paramref name="chunkSize"/>
    /// (the last one smaller when the size does not divide), as torch.split with an int. The pieces are
    /// views sharing this tensor's storage; dispose each. A dimension of size 0 gives one empty piece.
    /// </summary>
    public Tensor[] Split(int axis, int chunkSize)
    {
        const string op = "Split";
        EnsureAlive(op);
        int a = NormalizeAxis(axis, Rank, op);
        int n = _shape[a];
        if (chunkSize <= 0 && !(chunkSize == 0 && n == 0))
            throw new ArgumentOutOfRangeException(nameof(chunkSize), $"{op}: the chunk size must be positive, got {chunkSize} for {ShapeString()} along axis {a}");
        if (n == 0) return [Narrow(a, 0, 0)];
        int count = (n + chunkSize - 1) / chunkSize;
        var sizes = new int[count];
        for (int i = 0; i < count; i++) sizes[i] = Math.Min(chunkSize, n - i * chunkSize);
        return SplitBySizes(a, sizes);
    }

    /// <summary>
    /// Cuts this tensor along <paramref name="axis"/> into pieces of the given sizes, which must be
    /// non-negative and add up to the dimension's size (torch.split with a list). The pieces are views;
    /// dispose each. (With a single size, pass an array: <c>Split(0, new[] { n })</c>; a lone int means a chunk size.)
    /// </summary>
    public Tensor[] Split(int axis, params int[] sizes)
    {
        const string op = "Split";
        ArgumentNullException.ThrowIfNull(sizes);
        EnsureAlive(op);
        int a = NormalizeAxis(axis, Rank, op);
        long sum = 0;
        foreach (var s in sizes)
        {
            if (s < 0) throw new ArgumentOutOfRangeException(nameof(sizes), $"{op}: negative size {s} in [{string.Join(", ", sizes)}]");
            sum += s;
        }
        if (sum != _shape[a])
            throw new ArgumentException($"{op}: sizes [{string.Join(", ", sizes)}] add up to {sum}, but dimension {a} of {ShapeString()} has size {_shape[a]}");
        return SplitBySizes(a, sizes);
    }

    /// <summary>
    /// Cuts this tensor into <paramref name="chunks"/> views along <paramref name="axis"/>, as torch.chunk:
    /// each of size ceil(n / chunks), the last smaller, so fewer pieces may come back when the sizes
    /// do not allow that many (a dimension of size 0 gives <paramref name="chunks"/> empty pieces).
    /// </summary>
    public Tensor[] Chunk(int chunks, int axis = 0)
    {
        const string op = "Chunk";
        EnsureAlive(op);
        if (chunks <= 0) throw new ArgumentOutOfRangeException(nameof(chunks), $"{op}: the number of chunks must be positive, got {chunks}");
        int a = NormalizeAxis(axis, Rank, op);
        int n = _shape[a];
        if (n == 0) return SplitBySizes(a, new int[chunks]);
        int size = (int)(((long)n + chunks - 1) / chunks);
        return Split(a, size);
    }

    private Tensor[] SplitBySizes(int axis, int[] sizes)
    {
        var parts = new Tensor[sizes.Length];
        int at = 0;
        for (int i = 0; i < sizes.Length; i++)
        {
            parts[i] = Narrow(axis, at, sizes[i]);
            at += sizes[i];
        }
        return parts;
    }

    private static bool SameExcept(ReadOnlySpan<int> a, ReadOnlySpan<int> b, int axis)
    {
        for (int d = 0; d < a.Length; d++) if (d != axis && a[d] != b[d]) return false;
        return true;
    }

    private static string Shapes(Tensor[] ts) => string.Join(", ", ts.Select(t => t.ShapeString()));
}
