namespace Parrot.Tensors;

public sealed partial class Tensor
{
    // ---- Sum, Mean, Max, Min, Prod over any axes ----

    /// <summary>Sum over <paramref name="axes"/> (none: all). Floats keep their dtype; integers and Bool give I64, as PyTorch.</summary>
    public Tensor Sum(params int[] axes) => Reduce(ReduceOp.Sum, axes, keepDim: false);
    /// <summary>Sum over <paramref name="axes"/> (empty: all), keeping reduced axes as size 1 when <paramref name="keepDim"/>.</summary>
    public Tensor Sum(int[] axes, bool keepDim) => Reduce(ReduceOp.Sum, axes, keepDim);
    /// <summary>Sum over one axis.</summary>
    public Tensor Sum(int axis, bool keepDim) => Reduce(ReduceOp.Sum, [axis], keepDim);

    /// <summary>Mean over <paramref name="axes"/> (none: all). Float dtypes only: the mean of integers is refused, as in PyTorch (convert with To first).</summary>
    public Tensor Mean(params int[] axes) => Reduce(ReduceOp.Mean, axes, keepDim: false);
    /// <summary>Mean over <paramref name="axes"/> (empty: all), keeping reduced axes when <paramref name="keepDim"/>.</summary>
    public Tensor Mean(int[] axes, bool keepDim) => Reduce(ReduceOp.Mean, axes, keepDim);
    /// <summary>Mean over one axis.</summary>
    public Tensor Mean(int axis, bool keepDim) => Reduce(ReduceOp.Mean, [axis], keepDim);

    /// <summary>Largest value over <paramref name="axes"/> (none: all), NaN propagating; throws when a reduced set is empty.</summary>
    public Tensor Max(params int[] axes) => Reduce(ReduceOp.Max, axes, keepDim: false);
    /// <summary>Largest value over <paramref name="axes"/> (empty: all), keeping reduced axes when <paramref name="keepDim"/>.</summary>
    public Tensor Max(int[] axes, bool keepDim) => Reduce(ReduceOp.Max, axes, keepDim);
    /// <summary>Largest value over one axis.</summary>
    public Tensor Max(int axis, bool keepDim) => Reduce(ReduceOp.Max, [axis], keepDim);

    /// <summary>Smallest value over <paramref name="axes"/> (none: all), NaN propagating; throws when a reduced set is empty.</summary>
    public Tensor Min(params int[] axes) => Reduce(ReduceOp.Min, axes, keepDim: false);
    /// <summary>Smallest value over <paramref name="axes"/> (empty: all), keeping reduced axes when <paramref name="keepDim"/>.</summary>
    public Tensor Min(int[] axes, bool keepDim) => Reduce(ReduceOp.Min, axes, keepDim);
    /// <summary>Smallest value over one axis.</summary>
    public Tensor Min(int axis, bool keepDim) => Reduce(ReduceOp.Min, [axis], keepDim);

    /// <summary>Product over <paramref name="axes"/> (none: all). Floats keep their dtype; integers and Bool give I64 (wrapping).</summary>
    public Tensor Prod(params int[] axes) => Reduce(ReduceOp.Prod, axes, keepDim: false);
    /// <summary>Product over <paramref name="axes"/> (empty: all), keeping reduced axes when <paramref name="keepDim"/>.</summary>
    public Tensor Prod(int[] axes, bool keepDim) => Reduce(ReduceOp.Prod, axes, keepDim);
    /// <summary>Product over one axis.</summary>
    public Tensor Prod(int axis, bool keepDim) => Reduce(ReduceOp.Prod, [axis], keepDim);

    /// <summary>Σx² over <paramref name="axes"/> (none: all): squared L2 norms. Floats keep their dtype; integers and Bool give I64.</summary>
    public Tensor SumOfSquares(params int[] axes) => Reduce(ReduceOp.SumOfSquares, axes, keepDim: false);
    /// <summary>Σx² over <paramref name="axes"/> (empty: all), keeping reduced axes when <paramref name="keepDim"/>.</summary>
    public Tensor SumOfSquares(int[] axes, bool keepDim) => Reduce(ReduceOp.SumOfSquares, axes, keepDim);

    /// <summary>
    /// Reduces over <paramref name="axes"/> (negative counts from the end; empty: every axis). The result
    /// drops the reduced axes, or keeps them with size 1 when <paramref name="keepDim"/>. Result dtype:
    /// floats keep theirs (BF16/F16 are accumulated in float32/float64 and rounded once); Sum, Prod and
    /// SumOfSquares of integers or Bool give I64; Max and Min keep the dtype; Mean of a non-float dtype throws.
    /// </summary>
    public Tensor Reduce(ReduceOp op, int[] axes, bool keepDim)
    {
        ArgumentNullException.ThrowIfNull(axes);
        string name = op.ToString();
        EnsureAlive(name);
        var reduced = ReducedAxes(axes, name);
        DType outType = op switch
        {
            ReduceOp.Mean when !DType.IsFloat() => throw new ArgumentException($"Mean: input {ShapeString()} is {DType.Name()}; the mean is defined for float dtypes only (convert with To(DType.F32) first), as in PyTorch"),
            ReduceOp.Sum or ReduceOp.Prod or ReduceOp.SumOfSquares when !DType.IsFloat() => DType.I64,
            _ => DType,
        };
        var keepShape = (int[])_shape.Clone();
        long reducedCount = 1;
        for (int d = 0; d < Rank; d++) if (reduced[d]) { reducedCount *= _shape[d]; keepShape[d] = 1; }
        long outCount = 1;
        foreach (var s in keepShape) outCount *= s;
        if (reducedCount == 0 && outCount > 0 && op is ReduceOp.Max or ReduceOp.Min)
            throw new ArgumentException($"{name}: cannot take the {name.ToLowerInvariant()} of an empty set (axes [{string.Join(", ", axes)}] of {ShapeString()}): the operation has no identity");
        var outShape = keepDim ? keepShape : _shape.Where((_, d) => !reduced[d]).ToArray();
        var y = Empty(outShape, outType, Device);
        using var yKeep = y.ViewAs(keepShape);
        Backend.Reduce(op, this, Enumerable.Range(0, Rank).Where(d => reduced[d]).ToArray(), yKeep);
        return y;
    }

    /// <summary>Marks the reduced axes: the normalised <paramref name="axes"/>, or every axis when none are given.</summary>
    private bool[] ReducedAxes(int[] axes, string op)
    {
        var reduced = new bool[Rank];
        if (axes.Length == 0) { Array.Fill(reduced, true); return reduced; }
        foreach (var axis in axes)
        {
            int a = NormalizeAxis(axis, Rank, op);
            if (reduced[a]) throw new ArgumentException($"{op}: axis {axis} appears twice in [{string.Join(", ", axes)}] for {ShapeString()}");
            reduced[a] = true;
        }
        return reduced;
    }

    // ---- ArgMax, ArgMin ----

    /// <summary>Index (I64) of the largest value along <paramref name="axis"/>; ties give the first index, NaN wins (PyTorch's rule).</summary>
    public Tensor ArgMax(int axis, bool keepDim = false) => ArgReduce(ArgReduceOp.ArgMax, axis, keepDim);

    /// <summary>
    /// Index (I64) of the largest value along <paramref name="axis"/> with NaN below every number, −∞ included; ties
    /// give the first index, -0 = +0, and a run of NaN only gives 0: the generator's greedy pick (values compared in
    /// this tensor's dtype).
    /// </summary>
    public Tensor ArgMaxNaNLowest(int axis, bool keepDim = false) => ArgReduce(ArgReduceOp.ArgMaxNaNLowest, axis, keepDim);

    /// <summary>
    /// <see cref="ArgMaxNaNLowest(int, bool)"/>'s index where it is a number above −∞, else −1: a run with no number
    /// (NaN and −∞ only) gives −1 instead of an index (the greedy pick's "no token can be chosen"). Integers: ArgMax.
    /// </summary>
    public Tensor ArgMaxNumber(int axis, bool keepDim = false) => ArgReduce(ArgReduceOp.ArgMaxNumber, axis, keepDim);

    /// <summary>Index (I64) of the smallest value along <paramref name="axis"/>; ties give the first index, NaN wins.</summary>
    public Tensor ArgMin(int axis, bool keepDim = false) => ArgReduce(ArgReduceOp.ArgMin, axis, keepDim);

    /// <summary>Flat index (0-d I64) of the largest value of the whole tensor, in C order.</summary>
    public Tensor ArgMax() { EnsureAlive("ArgMax"); using var flat = Reshape(-1); return flat.ArgMax(0); }

    /// <summary>Flat index (0-d I64) of the smallest value of the whole tensor, in C order.</summary>
    public Tensor ArgMin() { EnsureAlive("ArgMin"); using var flat = Reshape(-1); return flat.ArgMin(0); }

    private Tensor ArgReduce(ArgReduceOp op, int axis, bool keepDim)
    {
        string name = op.ToString();
        EnsureAlive(name);
        if (DType == DType.Bool) throw new ArgumentException($"{name}: not defined for bool tensors {ShapeString()}");
        int a = NormalizeAxis(axis, Rank, name);
        var keepShape = (int[])_shape.Clone();
        keepShape[a] = 1;
        long outCount = 1;
        foreach (var s in keepShape) outCount *= s;
        if (_shape[a] == 0 && outCount > 0)
            throw new ArgumentException($"{name}: axis {axis} of {ShapeString()} is empty, so there is no index to return");
        var outShape = keepDim ? keepShape : _shape.Where((_, d) => d != a).ToArray();
        var y = Empty(outShape, DType.I64, Device);
        using var yKeep = y.ViewAs(keepShape);
        Backend.ArgReduce(op, this, a, yKeep);
        return y;
    }

    // ---- Variance ----

    /// <summary>
    /// Variance over <paramref name="axes"/> (empty: all) with PyTorch's correction: Σ(x - mean)² / max(0, N - correction)
    /// (1: the unbiased sample variance; 0: the population variance; N - correction ≤ 0 gives inf or NaN, as PyTorch).
    /// Two passes (mean, then squared deviations from it), BF16/F16 computed in float32. Float dtypes only.
    /// </summary>
    public Tensor Variance(int[] axes, int correction = 1, bool keepDim = false)
    {
        ArgumentNullException.ThrowIfNull(axes);
        EnsureAlive("Variance");
        if (!DType.IsFloat()) throw new ArgumentException($"Variance: input {ShapeString()} is {DType.Name()}; float dtypes only, as in PyTorch");
        var reduced = ReducedAxes(axes, "Variance");
        long count = 1;
        for (int d = 0; d < Rank; d++) if (reduced[d]) count *= _shape[d];
        using var scope = TensorScope.Begin();
        var x = DType.IsHalfStorage() ? To(DType.F32) : this;
        var mean = x.Mean(axes, keepDim: true);
        var deviation = x - mean;
        var sum = deviation.SumOfSquares(axes, keepDim);
        var variance = sum / Math.Max(0, count - correction);
        return scope.Keep(variance.DType == DType ? variance : variance.To(DType));
    }

    /// <summary>Variance over one axis (see <see cref="Variance(int[], int, bool)"/>).</summary>
    public Tensor Variance(int axis, int correction = 1, bool keepDim = false) => Variance([axis], correction, keepDim);
}
