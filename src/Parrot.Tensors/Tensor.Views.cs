namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>A new tensor over the same storage with another shape/strides/offset. The result must be disposed too.</summary>
    private Tensor View(int[] shape, long[] strides, long offset) => new(Storage, shape, strides, offset, DType, retain: true);

    /// <summary>The same data with a new shape (one size may be -1); a view when the strides allow it, otherwise a copy.</summary>
    public Tensor Reshape(params int[] shape)
    {
        EnsureAlive("Reshape");
        var target = InferShape(shape, "Reshape");
        if (TryViewStrides(target, out var strides)) return View(target, strides, Offset);
        using var c = Contiguous();
        return c.View(target, ContiguousStrides(target), c.Offset);
    }

    /// <summary>The same data with a new shape, always as a view; throws if the strides do not allow it.</summary>
    public Tensor ViewAs(params int[] shape)
    {
        EnsureAlive("View");
        var target = InferShape(shape, "View");
        if (!TryViewStrides(target, out var strides))
            throw new InvalidOperationException($"View: a tensor {ShapeString()} with strides [{string.Join(", ", _strides.ToArray())}] cannot be viewed as {ShapeString(target)} without copying; use Reshape");
        return View(target, strides, Offset);
    }

    /// <summary>The same data with a new shape as a view, or null when the strides do not allow one (no copy either way).</summary>
    public Tensor? TryViewAs(params int[] shape)
    {
        EnsureAlive("View");
        var target = InferShape(shape, "View");
        return TryViewStrides(target, out var strides) ? View(target, strides, Offset) : null;
    }

    /// <summary>Flattens dimensions start..end (inclusive) into one.</summary>
    public Tensor Flatten(int start = 0, int end = -1)
    {
        EnsureAlive("Flatten");
        if (Rank == 0) return Reshape(1);
        int s = NormalizeAxis(start, Rank, "Flatten"), e = NormalizeAxis(end, Rank, "Flatten");
        if (s > e) throw new ArgumentException($"Flatten: start axis {start} is after end axis {end}");
        var shape = new List<int>();
        for (int i = 0; i < s; i++) shape.Add(_shape[i]);
        int m = 1;
        for (int i = s; i <= e; i++) m *= _shape[i];
        shape.Add(m);
        for (int i = e + 1; i < Rank; i++) shape.Add(_shape[i]);
        return Reshape(shape.ToArray());
    }

    /// <summary>
    /// The dimensions from the largest stride to the smallest (ties keep their order): the order in which this view's
    /// memory nests them. For the transposed head split x.Reshape(B, T, H, D).Transpose(1, 2): [0, 2, 1, 3].
    /// </summary>
    public int[] DimensionsByStride()
    {
        EnsureAlive("DimensionsByStride");
        var order = Enumerable.Range(0, Rank).ToArray();
        var strides = _strides;
        // A stable sort (insertion): equal strides (size-1 or broadcast dimensions) keep C order.
        for (int i = 1; i < order.Length; i++)
            for (int j = i; j > 0 && strides[order[j]] > strides[order[j - 1]]; j--)
                (order[j], order[j - 1]) = (order[j - 1], order[j]);
        return order;
    }

    /// <summary>
    /// An uninitialised tensor of <paramref name="shape"/> whose memory is dense in the dimension order
    /// <paramref name="layout"/> (outermost first; null or the identity: C order, contiguous).
    /// </summary>
    public static Tensor EmptyInLayout(int[] shape, int[]? layout, DType dtype, Device? device = null)
    {
        if (layout is null || layout.Select((d, i) => d == i).All(x => x)) return Empty(shape, dtype, device);
        if (layout.Length != shape.Length || layout.Order().Where((d, i) => d != i).Any())
            throw new ArgumentException($"EmptyInLayout: [{string.Join(", ", layout)}] is not an order of the {shape.Length} dimensions of {ShapeString(shape)}");
        using var dense = Empty(layout.Select(d => shape[d]).ToArray(), dtype, device);
        var back = new int[layout.Length];
        for (int j = 0; j < layout.Length; j++) back[layout[j]] = j;
        return dense.Permute(back);
    }

    /// <summary>Reorders the dimensions: result dim i is this tensor's dim <paramref name="order"/>[i].</summary>
    public Tensor Permute(params int[] order)
    {
        EnsureAlive("Permute");
        if (order.Length != Rank) throw new ArgumentException($"Permute: {order.Length} axes given for a tensor of rank {Rank} {ShapeString()}");
        var seen = new bool[Rank];
        var shape = new int[Rank];
        var strides = new long[Rank];
        for (int i = 0; i < Rank; i++)
        {
            int a = NormalizeAxis(order[i], Rank, "Permute");
            if (seen[a]) throw new ArgumentException($"Permute: axis {order[i]} repeated in [{string.Join(", ", order)}]");
            seen[a] = true;
            shape[i] = _shape[a];
            strides[i] = _strides[a];
        }
        return View(shape, strides, Offset);
    }

    /// <summary>Swaps two dimensions (a view).</summary>
    public Tensor Transpose(int axis0 = -2, int axis1 = -1)
    {
        EnsureAlive("Transpose");
        int a = NormalizeAxis(axis0, Rank, "Transpose"), b = NormalizeAxis(axis1, Rank, "Transpose");
        var order = new int[Rank];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        (order[a], order[b]) = (order[b], order[a]);
        return Permute(order);
    }

    /// <summary>Elements start..start+length-1 along <paramref name="axis"/> (a view).</summary>
    public Tensor Narrow(int axis, int start, int length)
    {
        EnsureAlive("Narrow");
        int a = NormalizeAxis(axis, Rank, "Narrow");
        if (start < 0) start += _shape[a];
        if (start < 0 || length < 0 || (long)start + length > _shape[a])
            throw new ArgumentOutOfRangeException(nameof(start), $"Narrow: range [{start}, {(long)start + length}) is outside dimension {a} of size {_shape[a]} in {ShapeString()}");
        var shape = (int[])_shape.Clone();
        shape[a] = length;
        return View(shape, (long[])_strides.Clone(), Offset + (length == 0 ? 0 : start * _strides[a]));
    }

    /// <summary>Python-style slice start:end:step along <paramref name="axis"/> (a view; negative indices count from the end, step &gt; 0).</summary>
    public Tensor Slice(int axis, int? start = null, int? end = null, int step = 1)
    {
        EnsureAlive("Slice");
        int a = NormalizeAxis(axis, Rank, "Slice");
        if (step <= 0) throw new ArgumentException($"Slice: step must be positive, got {step}");
        int size = _shape[a];
        int s = Clamp(start ?? 0), e = Clamp(end ?? size);
        int len = e > s ? (e - s + step - 1) / step : 0;
        var shape = (int[])_shape.Clone();
        var strides = (long[])_strides.Clone();
        shape[a] = len;
        strides[a] = _strides[a] * step;
        return View(shape, strides, Offset + (len == 0 ? 0 : s * _strides[a]));

        int Clamp(int i) => Math.Clamp(i < 0 ? i + size : i, 0, size);
    }

    /// <summary>Index <paramref name="index"/> along <paramref name="axis"/>, dropping that dimension (a view).</summary>
    public Tensor Select(int axis, int index)
    {
        EnsureAlive("Select");
        int a = NormalizeAxis(axis, Rank, "Select");
        int i = index < 0 ? index + _shape[a] : index;
        if (i < 0 || i >= _shape[a])
            throw new ArgumentOutOfRangeException(nameof(index), $"Select: index {index} is out of range for dimension {a} of size {_shape[a]} in {ShapeString()}");
        var shape = _shape.Where((_, d) => d != a).ToArray();
        var strides = _strides.Where((_, d) => d != a).ToArray();
        return View(shape, strides, Offset + i * _strides[a]);
    }

    /// <summary>Broadcasts size-1 dimensions (and new leading ones) to <paramref name="shape"/> without copying; -1 keeps a size.</summary>
    public Tensor Expand(params int[] shape)
    {
        EnsureAlive("Expand");
        if (shape.Length < Rank) throw new ArgumentException($"Expand: cannot expand {ShapeString()} to fewer dimensions {ShapeString(shape)}");
        var outShape = new int[shape.Length];
        var strides = new long[shape.Length];
        int lead = shape.Length - Rank;
        for (int i = 0; i < shape.Length; i++)
        {
            int src = i - lead;
            int want = shape[i];
            if (src < 0)
            {
                if (want < 0) throw new ArgumentException($"Expand: -1 is not allowed for the new leading dimension {i} in {ShapeString(shape)}");
                outShape[i] = want; strides[i] = 0;
                continue;
            }
            int have = _shape[src];
            if (want == -1 || want == have) { outShape[i] = have; strides[i] = _strides[src]; }
            else if (have == 1 && want >= 0) { outShape[i] = want; strides[i] = 0; }
            else throw new ArgumentException($"Expand: cannot expand {ShapeString()} to {ShapeString(shape)}: dimension {src} has size {have}");
        }
        return View(outShape, strides, Offset);
    }

    /// <summary>Removes size-1 dimensions: all of them, or just <paramref name="axis"/>.</summary>
    public Tensor Squeeze(int? axis = null)
    {
        EnsureAlive("Squeeze");
        if (axis is int ax)
        {
            int a = NormalizeAxis(ax, Rank, "Squeeze");
            if (_shape[a] != 1) return View((int[])_shape.Clone(), (long[])_strides.Clone(), Offset);
            return View(_shape.Where((_, d) => d != a).ToArray(), _strides.Where((_, d) => d != a).ToArray(), Offset);
        }
        return View(_shape.Where(d => d != 1).ToArray(), _strides.Where((_, d) => _shape[d] != 1).ToArray(), Offset);
    }

    /// <summary>Inserts a size-1 dimension at <paramref name="axis"/> (0..rank; negative counts from rank+1).</summary>
    public Tensor Unsqueeze(int axis)
    {
        EnsureAlive("Unsqueeze");
        int a = NormalizeAxis(axis, Rank + 1, "Unsqueeze");
        var shape = new List<int>(_shape);
        var strides = new List<long>(_strides);
        long st = a < Rank ? _strides[a] * _shape[a] : 1;
        shape.Insert(a, 1);
        strides.Insert(a, st);
        return View(shape.ToArray(), strides.ToArray(), Offset);
    }

    /// <summary>This tensor if already contiguous (as a new view that must be disposed), else a contiguous copy.</summary>
    public Tensor Contiguous()
    {
        EnsureAlive("Contiguous");
        if (IsContiguous) return View((int[])_shape.Clone(), (long[])_strides.Clone(), Offset);
        return Clone();
    }

    /// <summary>A contiguous copy with its own storage.</summary>
    public Tensor Clone()
    {
        EnsureAlive("Clone");
        var t = Empty(_shape, DType, Device);
        Backend.Copy(this, t);
        return t;
    }

    /// <summary>A new reference to this tensor's view (shares storage; dispose it separately).</summary>
    public Tensor Alias()
    {
        EnsureAlive("Alias");
        return View((int[])_shape.Clone(), (long[])_strides.Clone(), Offset);
    }

    private int[] InferShape(int[] shape, string op)
    {
        int infer = -1;
        long known = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException($"{op}: only one dimension can be -1 in {ShapeString(shape)}");
                infer = i;
            }
            else if (shape[i] < 0) throw new ArgumentException($"{op}: invalid size {shape[i]} in {ShapeString(shape)}");
            else known *= shape[i];
        }
        var result = (int[])shape.Clone();
        if (infer >= 0)
        {
            if (known == 0 || Count % known != 0)
                throw new ArgumentException($"{op}: cannot reshape {ShapeString()} ({Count} elements) to {ShapeString(shape)}");
            result[infer] = (int)(Count / known);
        }
        else if (known != Count)
            throw new ArgumentException($"{op}: cannot reshape {ShapeString()} ({Count} elements) to {ShapeString(shape)}");
        return result;
    }

    /// <summary>
    /// Strides that view this tensor's memory as <paramref name="target"/> without copying, if they exist:
    /// the target dims must split/merge groups of this tensor's dims that are contiguous with each other.
    /// </summary>
    private bool TryViewStrides(int[] target, out long[] strides)
    {
        if (Count == 0 || IsContiguous) { strides = ContiguousStrides(target); return true; } // the usual case, no search
        strides = new long[target.Length];
        // Walk both shapes from the right, matching chunks of equal element counts.
        int kept = 0;
        for (int d = 0; d < Rank; d++) if (_shape[d] != 1) kept++;
        var src = new int[kept];
        for (int d = 0, k = 0; d < Rank; d++) if (_shape[d] != 1) src[k++] = d;
        int si = src.Length - 1, ti = target.Length - 1;
        while (ti >= 0 || si >= 0)
        {
            if (ti >= 0 && target[ti] == 1) { strides[ti] = ti + 1 < target.Length ? strides[ti + 1] * target[ti + 1] : 1; ti--; continue; }
            if (si < 0 || ti < 0) return false;
            // Gather a chunk of source dims that are mutually contiguous and a chunk of target dims with the same count.
            long srcCount = _shape[src[si]], baseStride = _strides[src[si]];
            int sj = si;
            long tgtCount = target[ti];
            int tj = ti;
            while (srcCount != tgtCount)
            {
                if (srcCount < tgtCount)
                {
                    if (sj == 0) return false;
                    int prev = src[sj - 1], cur = src[sj];
                    if (_strides[prev] != _strides[cur] * _shape[cur]) return false;
                    sj--; srcCount *= _shape[src[sj]];
                }
                else
                {
                    if (tj == 0) return false;
                    tj--; tgtCount *= target[tj];
                }
            }
            long st = baseStride;
            for (int k = ti; k >= tj; k--) { strides[k] = st; st *= target[k]; }
            si = sj - 1; ti = tj - 1;
        }
        return true;
    }
}
