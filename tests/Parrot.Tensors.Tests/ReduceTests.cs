namespace Parrot.Tensors.Tests;

/// <summary>
/// Sum, Mean, Max, Min, Prod, SumOfSquares, ArgMax/ArgMin and Variance against float64 loops. Tolerances: F32 sums and means
/// within 1e-6·Σ|x| of the float64 value (measured: ~1e-8), F64 within 1e-13·Σ|x|, BF16 within one bf16 rounding
/// of the result (2^-8 relative) plus 1e-6·Σ|x|; Max/Min/ArgMax/ArgMin and integer sums exact.
/// </summary>
public class ReduceTests
{
    private static readonly ReduceOp[] Ops = [ReduceOp.Sum, ReduceOp.Mean, ReduceOp.Max, ReduceOp.Min, ReduceOp.Prod, ReduceOp.SumOfSquares];

    private static (double Seed, Func<double, double, double> Combine) Reference(ReduceOp op) => op switch
    {
        ReduceOp.Sum or ReduceOp.Mean => (0, (a, b) => a + b),
        ReduceOp.Prod => (1, (a, b) => a * b),
        ReduceOp.SumOfSquares => (0, (a, b) => a + b * b),
        ReduceOp.Max => (double.NegativeInfinity, ReduceRef.Max),
        _ => (double.PositiveInfinity, ReduceRef.Min),
    };

    /// <summary>Checks x.Reduce(op, axes, keepDim) against the float64 loop on x's values.</summary>
    private static void Check(Tensor x, ReduceOp op, int[] axes, bool keepDim, string what)
    {
        var shape = x.Shape.ToArray();
        var reduced = new bool[shape.Length];
        if (axes.Length == 0) Array.Fill(reduced, true);
        foreach (var a in axes) reduced[a < 0 ? a + shape.Length : a] = true;
        var (seed, combine) = Reference(op);
        var (values, abs, count) = ReduceRef.Reduce(x.ToDoubleArray(), shape, reduced, seed, combine);
        if (op == ReduceOp.Mean) for (int i = 0; i < values.Length; i++) { values[i] /= count; abs[i] /= count; }

        using var y = x.Reduce(op, axes, keepDim);
        var expectShape = keepDim ? shape.Select((d, i) => reduced[i] ? 1 : d).ToArray() : shape.Where((_, i) => !reduced[i]).ToArray();
        Assert.That(y.Shape.ToArray(), Is.EqualTo(expectShape), $"{what}: shape");
        Assert.That(y.DType, Is.EqualTo(x.DType.IsFloat() || op is ReduceOp.Max or ReduceOp.Min ? x.DType : DType.I64), $"{what}: dtype");
        var got = y.ToDoubleArray();
        Func<int, double> tol = x.DType switch
        {
            DType.F64 => i => 1e-13 * (abs[i] + Math.Abs(values[i])),
            DType.BF16 => i => Math.Abs(values[i]) / 256 + 1e-6 * abs[i],
            DType.F32 when op is ReduceOp.Prod or ReduceOp.SumOfSquares => i => 1e-6 * Math.Abs(values[i]),
            DType.F32 => i => 1e-6 * abs[i] + 1e-7 * Math.Abs(values[i]),
            _ => _ => 0,
        };
        if (op is ReduceOp.Max or ReduceOp.Min && x.DType != DType.BF16) tol = _ => 0;
        ReduceRef.AssertClose(got, values, tol, what);
    }

    [Test]
    public void EveryOpOverEveryAxisSetOfA3DTensor([Values(DType.F32, DType.F64, DType.BF16)] DType dtype)
    {
        int[][] axisSets = [[], [0], [1], [2], [-1], [0, 2], [2, 0], [1, 2], [0, 1], [0, 1, 2]];
        using var x = Tensor.Uniform([5, 7, 33], seed: 11, low: 0.5, high: 1.5, dtype: dtype);
        foreach (var op in Ops)
            foreach (var axes in axisSets)
                foreach (var keep in new[] { false, true })
                    Check(x, op, axes, keep, $"{op} {dtype} axes [{string.Join(",", axes)}] keep={keep}");
    }

    [Test]
    public void RowLengthsThatAreNotMultiplesOfTheVectorWidth([Values(1, 7, 17, 33, 1000, 4097)] int n,
        [Values(DType.F32, DType.F64, DType.I64)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var x = dtype == DType.I64
            ? Tensor.Normal([3, n], seed: (ulong)n, std: 3e5).To(DType.I64) // sums of squares stay below 2^53, exact in the float64 reference
            : Tensor.Normal([3, n], seed: (ulong)n, dtype: dtype);
        foreach (var op in Ops.Where(o => o != ReduceOp.Prod && (dtype != DType.I64 || o != ReduceOp.Mean)))
        {
            Check(x, op, [1], false, $"{op} rows of {n}");
            Check(x, op, [0], false, $"{op} columns of {n}");
            Check(x, op, [], false, $"{op} all of {n}");
        }
    }

    [Test]
    public void NonAdjacentAxesOfAPermuted4DTensor([Values(DType.F32, DType.BF16, DType.I32)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var source = dtype == DType.I32
            ? (Tensor.Uniform([6, 5, 4, 7], seed: 3, low: -50, high: 50, dtype: DType.F32)).To(DType.I32)
            : Tensor.Normal([6, 5, 4, 7], seed: 3, dtype: dtype);
        var x = source.Permute(2, 0, 3, 1); // [4, 6, 7, 5], no dim contiguous in order
        Assert.That(x.IsContiguous, Is.False);
        foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Max, ReduceOp.Min })
        {
            Check(x, op, [0, 2], false, $"{op} {dtype} permuted axes [0,2]");
            Check(x, op, [0, 2], true, $"{op} {dtype} permuted axes [0,2] keep");
            Check(x, op, [1, 3], false, $"{op} {dtype} permuted axes [1,3]");
            Check(x, op, [3], false, $"{op} {dtype} permuted axis 3");
        }
        if (dtype != DType.I32) Check(x, ReduceOp.Mean, [0, 2], true, "mean permuted");
    }

    [Test]
    public void SlicedWithStepTransposedAndBroadcastInputs()
    {
        using var scope = TensorScope.Begin();
        var big = Tensor.Normal([40, 50], seed: 5);
        var stepped = big.Slice(0, 1, 39, step: 3).Slice(1, 2, null, step: 2); // [13, 24]
        var transposed = big.Transpose(0, 1);
        var broadcast = Tensor.Normal([1, 37], seed: 6).Expand(9, 37);
        foreach (var op in Ops.Where(o => o != ReduceOp.Prod))
            foreach (var (t, name) in new[] { (stepped, "stepped"), (transposed, "transposed"), (broadcast, "broadcast") })
                foreach (var axes in new[] { new[] { 0 }, new[] { 1 }, Array.Empty<int>() })
                    Check(t, op, axes, false, $"{op} {name} [{string.Join(",", axes)}]");
    }

    [Test]
    public void ColumnStrategyShapesIncludingSplitReductions()
    {
        using var scope = TensorScope.Begin();
        // Sum over axis 0 keeps the contiguous dim: outputs accumulate whole rows, four at a time (301 rows
        // leave a remainder), in column blocks of 4096 (5000 columns leave a ragged second block).
        Check(Tensor.Normal([301, 2500], seed: 7), ReduceOp.Sum, [0], false, "sum axis 0 of [301, 2500]");
        Check(Tensor.Normal([301, 2500], seed: 7), ReduceOp.Max, [0], true, "max axis 0 of [301, 2500]");
        Check(Tensor.Uniform([301, 2500], seed: 7, low: 0.9, high: 1.1), ReduceOp.Prod, [0], false, "prod axis 0 of [301, 2500]");
        Check(Tensor.Normal([41, 5000], seed: 17), ReduceOp.Sum, [0], false, "sum axis 0 of [41, 5000]");
        Check(Tensor.Normal([41, 5000], seed: 17, dtype: DType.BF16), ReduceOp.Min, [0], false, "min axis 0 of bf16 [41, 5000]");
        Check(Tensor.Normal([41, 5000], seed: 17, std: 1000).To(DType.I64), ReduceOp.Max, [0], false, "max axis 0 of i64 [41, 5000]");
        Check(Tensor.Normal([41, 5000], seed: 17, std: 1000).To(DType.I64), ReduceOp.Sum, [0], false, "sum axis 0 of i64 [41, 5000]");
        // Few outputs and a long reduction: the reduced range is split between the cores.
        Check(Tensor.Normal([20001, 16], seed: 8), ReduceOp.Sum, [0], false, "sum axis 0 of [20001, 16]");
        Check(Tensor.Normal([20001, 16], seed: 8), ReduceOp.Min, [0], false, "min axis 0 of [20001, 16]");
        Check(Tensor.Normal([20001, 16], seed: 8), ReduceOp.SumOfSquares, [0], false, "sum of squares axis 0 of [20001, 16]");
        Check(Tensor.Normal([301, 2500], seed: 7, dtype: DType.F64), ReduceOp.SumOfSquares, [0], false, "sum of squares axis 0 of f64 [301, 2500]");
        Check(Tensor.Normal([20001, 16], seed: 8, dtype: DType.F64), ReduceOp.Mean, [0], false, "mean axis 0 of f64 [20001, 16]");
        // Very short reduced runs with many outputs (pairs) go through strided column loads.
        Check(Tensor.Normal([40000, 3], seed: 9), ReduceOp.Sum, [1], false, "sum of triples");
        Check(Tensor.Normal([40000, 3], seed: 9, dtype: DType.BF16), ReduceOp.Max, [1], false, "max of bf16 triples");
        // A middle axis: outer kept, reduced, inner kept contiguous.
        Check(Tensor.Normal([3, 50, 40], seed: 10), ReduceOp.Mean, [1], false, "mean over the middle axis");
    }

    [Test]
    public void SixteenMillionElementSumAndMeanMatchFloat64()
    {
        const int n = 1 << 24;
        using var x = Tensor.Uniform([n], seed: 12);
        var data = x.ToArray<float>();
        double reference = 0;
        foreach (var v in data) reference += v;
        using var sum = x.Sum();
        using var mean = x.Mean();
        Assert.That(Math.Abs(sum.Item() - reference) / reference, Is.LessThan(1e-6), "sum");
        Assert.That(Math.Abs(mean.Item() - reference / n) / (reference / n), Is.LessThan(1e-6), "mean");
        // Rows of 4096 (the benchmark's second shape) and a column sum of the same data.
        using var m = x.ViewAs(4096, 4096);
        using var rows = m.Sum(1);
        using var cols = m.Sum(0);
        var rowSums = rows.ToArray<float>();
        var colSums = cols.ToArray<float>();
        for (int r = 0; r < 4096; r += 511)
        {
            double rr = 0, cc = 0;
            for (int c = 0; c < 4096; c++) { rr += data[r * 4096 + c]; cc += data[c * 4096 + r]; }
            Assert.That(Math.Abs(rowSums[r] - rr) / rr, Is.LessThan(1e-6), $"row {r}");
            Assert.That(Math.Abs(colSums[r] - cc) / cc, Is.LessThan(1e-6), $"column {r}");
        }
    }

    [Test]
    public void MaxAndMinPropagateNaNAndSumsToo()
    {
        var values = Enumerable.Range(0, 1000).Select(i => (float)Math.Sin(i)).ToArray();
        values[637] = float.NaN;
        using var x = Tensor.FromArray(values, 10, 100);
        using var max = x.Max(1);
        using var min = x.Min(1);
        using var sum = x.Sum(1);
        using var all = x.Max();
        for (int r = 0; r < 10; r++)
        {
            bool nanRow = r == 6;
            Assert.That(double.IsNaN(max.ToDoubleArray()[r]), Is.EqualTo(nanRow), $"max row {r}");
            Assert.That(double.IsNaN(min.ToDoubleArray()[r]), Is.EqualTo(nanRow), $"min row {r}");
            Assert.That(double.IsNaN(sum.ToDoubleArray()[r]), Is.EqualTo(nanRow), $"sum row {r}");
        }
        Assert.That(all.Item(), Is.NaN);
        // A NaN anywhere in a 1M-element vector (a chunk far from the start) is still found.
        using var big = Tensor.Normal([1 << 20], seed: 4);
        using var bigMax0 = big.Max();
        Assert.That(bigMax0.Item(), Is.Not.NaN);
        var data = big.ToArray<float>();
        data[987_654] = float.NaN;
        using var withNaN = Tensor.FromArray(data);
        using var bigMax = withNaN.Max();
        using var bigMin = withNaN.Min();
        Assert.That(bigMax.Item(), Is.NaN);
        Assert.That(bigMin.Item(), Is.NaN);
    }

    [Test]
    public void IntegerAndBoolReductions()
    {
        using var scope = TensorScope.Begin();
        var ints = Tensor.FromArray(new int[] { 3, -7, 11, 2, 2, 9, -4, 0, 5, 1, 8, -6 }, 3, 4);
        var sum = ints.Sum(1);
        Assert.That(sum.DType, Is.EqualTo(DType.I64));
        Assert.That(sum.ToArray<long>(), Is.EqualTo(new long[] { 9, 7, 8 }));
        Assert.That(ints.Max(0).ToArray<int>(), Is.EqualTo(new[] { 5, 9, 11, 2 }));
        Assert.That(ints.Min().ToArray<int>(), Is.EqualTo(new[] { -7 }));
        Assert.That(ints.Prod(0).ToArray<long>(), Is.EqualTo(new long[] { 3 * 2 * 5, -7 * 9 * 1, 11 * -4 * 8, 2 * 0 * -6 }));
        Assert.That(ints.SumOfSquares(0).ToArray<long>(), Is.EqualTo(new long[] { 9 + 4 + 25, 49 + 81 + 1, 121 + 16 + 64, 4 + 0 + 36 }));
        var flags = Tensor.FromArray(new[] { true, false, true, true, false, true }, 2, 3);
        var count = flags.Sum(1);
        Assert.That(count.DType, Is.EqualTo(DType.I64));
        Assert.That(count.ToArray<long>(), Is.EqualTo(new long[] { 2, 2 }));
        Assert.That(flags.Max(1).ToArray<bool>(), Is.EqualTo(new[] { true, true }));
        Assert.That(flags.Min(1).ToArray<bool>(), Is.EqualTo(new[] { false, false }));
        var bytes = Tensor.FromArray(new byte[] { 200, 100, 255, 1 });
        Assert.That(bytes.Sum().ToArray<long>(), Is.EqualTo(new long[] { 556 }));
        Assert.That(bytes.Max().ToArray<byte>(), Is.EqualTo(new byte[] { 255 }));
        // Large int64 sum across the split full reduction, exact.
        var longs = Tensor.Arange(300_000);
        Assert.That(longs.Sum().ToArray<long>()[0], Is.EqualTo(300_000L * 299_999 / 2));
        var ex = Assert.Throws<ArgumentException>(() => ints.Mean(0));
        Assert.That(ex!.Message, Does.Contain("Mean").And.Contain("int32"));
    }

    [Test]
    public void EmptyReducedSetsGiveIdentitiesOrThrow()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Zeros([3, 0, 4]);
        Assert.That(x.Sum(1).ToDoubleArray(), Is.EqualTo(new double[12]));
        Assert.That(x.Prod(1).ToDoubleArray(), Is.All.EqualTo(1.0));
        Assert.That(x.SumOfSquares(1).ToDoubleArray(), Is.EqualTo(new double[12]));
        Assert.That(x.Mean(1).ToDoubleArray(), Is.All.NaN);
        Assert.That(x.Sum().Item(), Is.EqualTo(0));
        var ex = Assert.Throws<ArgumentException>(() => x.Max(1));
        Assert.That(ex!.Message, Does.Contain("Max").And.Contain("[3, 0, 4]"));
        Assert.Throws<ArgumentException>(() => x.Min());
        Assert.Throws<ArgumentException>(() => x.ArgMax(1));
        // Reducing a non-empty axis of a tensor with an empty kept axis gives an empty result, no error.
        var maxOverNonEmpty = x.Max(2);
        Assert.That(maxOverNonEmpty.Shape.ToArray(), Is.EqualTo(new[] { 3, 0 }));
        Assert.That(x.ArgMax(2).Shape.ToArray(), Is.EqualTo(new[] { 3, 0 }));
        // Size-1 and 0-d tensors.
        var scalar = Tensor.Scalar(2.5);
        Assert.That(scalar.Sum().Item(), Is.EqualTo(2.5));
        Assert.That(scalar.Sum().Rank, Is.EqualTo(0));
        var single = Tensor.Full([1, 1, 1], 4.0);
        Assert.That(single.Mean([0, 2], keepDim: true).Shape.ToArray(), Is.EqualTo(new[] { 1, 1, 1 }));
        Assert.That(single.Max(1).Item(), Is.EqualTo(4.0));
    }

    [Test]
    public void BadAxesAndDisposedTensorsThrowNamingTheOp()
    {
        using var x = Tensor.Zeros([2, 3]);
        var e1 = Assert.Throws<ArgumentOutOfRangeException>(() => x.Sum(2));
        Assert.That(e1!.Message, Does.Contain("Sum"));
        var e2 = Assert.Throws<ArgumentException>(() => x.Max(0, 0));
        Assert.That(e2!.Message, Does.Contain("Max").And.Contain("twice"));
        Assert.Throws<ArgumentOutOfRangeException>(() => x.ArgMin(-3));
        var dead = Tensor.Zeros([4]);
        dead.Dispose();
        var e3 = Assert.Throws<ObjectDisposedException>(() => dead.Mean());
        Assert.That(e3!.Message, Does.Contain("Mean"));
        Assert.Throws<ObjectDisposedException>(() => dead.ArgMax(0));
        Assert.Throws<ObjectDisposedException>(() => dead.Variance([0]));
        using var b = Tensor.Zeros([3], DType.Bool);
        Assert.Throws<ArgumentException>(() => b.ArgMax(0));
    }

    // ---- ArgMax / ArgMin ----

    private static long[] ArgRef(double[] data, int[] shape, int axis, bool max)
    {
        int n = shape[axis];
        long inner = shape.Skip(axis + 1).Aggregate(1L, (a, b) => a * b);
        long outer = shape.Take(axis).Aggregate(1L, (a, b) => a * b);
        var result = new long[outer * inner];
        for (long o = 0; o < outer; o++)
            for (long i = 0; i < inner; i++)
            {
                int best = 0;
                for (int k = 1; k < n; k++)
                {
                    double v = data[(o * n + k) * inner + i], b = data[(o * n + best) * inner + i];
                    if (double.IsNaN(b)) break;
                    if (double.IsNaN(v) || (max ? v > b : v < b)) best = k;
                }
                result[o * inner + i] = best;
            }
        return result;
    }

    [Test]
    public void ArgMaxAndArgMinWithTiesNaNAndViews([Values(DType.F32, DType.F64, DType.BF16, DType.I32)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        // Values from a small set of integers: plenty of ties, which must resolve to the first index.
        var x = Tensor.Uniform([9, 7, 33], seed: 21, low: -4, high: 4).Map(UnaryOp.Abs).To(dtype == DType.I32 ? DType.I32 : DType.F32).To(DType.I32).To(dtype);
        foreach (var axis in new[] { 0, 1, 2 })
            foreach (var max in new[] { true, false })
            {
                var y = max ? x.ArgMax(axis) : x.ArgMin(axis);
                Assert.That(y.DType, Is.EqualTo(DType.I64));
                Assert.That(y.ToLongArray(), Is.EqualTo(ArgRef(x.ToDoubleArray(), x.Shape.ToArray(), axis, max)), $"{dtype} axis {axis} max={max}");
            }
        var t = x.Permute(2, 0, 1).Slice(0, 1, null, 2);
        Assert.That(t.ArgMax(0, keepDim: true).ToLongArray(), Is.EqualTo(ArgRef(t.ToDoubleArray(), t.Shape.ToArray(), 0, true)));
        Assert.That(t.ArgMax(0, keepDim: true).Shape.ToArray(), Is.EqualTo(new[] { 1, 9, 7 }));
    }

    [Test]
    public void ArgMaxNaNWinsAndLongStridedRowsKeepTheFirstTie()
    {
        using var scope = TensorScope.Begin();
        var row = Enumerable.Range(0, 70).Select(i => (float)(i % 5)).ToArray();
        row[40] = float.NaN; row[50] = float.NaN;
        var x = Tensor.FromArray(row);
        Assert.That(x.ArgMax(0).ToLongArray(), Is.EqualTo(new long[] { 40 }));
        Assert.That(x.ArgMin(0).ToLongArray(), Is.EqualTo(new long[] { 40 }));
        // Columns of 10000 read with a stride go through chunks of 4096: the max appears in two chunks.
        var data = new float[10000 * 3];
        data[100 * 3 + 1] = 9; data[9000 * 3 + 1] = 9; // column 1: first max at 100
        data[5000 * 3 + 2] = -1; data[7000 * 3 + 2] = float.NaN; // column 2: NaN at 7000 wins both ways
        var m = Tensor.FromArray(data, 10000, 3);
        Assert.That(m.ArgMax(0).ToLongArray(), Is.EqualTo(new long[] { 0, 100, 7000 }));
        Assert.That(m.ArgMin(0).ToLongArray(), Is.EqualTo(new long[] { 0, 0, 7000 }));
        // -0 and +0 are equal: the first one wins.
        var zeros = Tensor.FromArray(new[] { -1f, -0f, 0f, -2f });
        Assert.That(zeros.ArgMax(0).ToLongArray(), Is.EqualTo(new long[] { 1 }));
        // Whole-tensor flat index, and a long contiguous row (vectorised search).
        var flat = Tensor.FromArray(new[] { 1f, 5f, 3f, 5f, 0f, -9f }, 2, 3);
        Assert.That(flat.ArgMax().ToLongArray(), Is.EqualTo(new long[] { 1 }));
        Assert.That(flat.ArgMin().ToLongArray(), Is.EqualTo(new long[] { 5 }));
        var big = Tensor.Normal([151_936], seed: 30);
        var bigData = big.ToArray<float>();
        Assert.That(big.ArgMax(0).ToLongArray()[0], Is.EqualTo(Array.IndexOf(bigData, bigData.Max())));
    }

    // ---- Variance ----

    [Test]
    public void VarianceWithCorrectionsOverAnyAxes([Values(DType.F32, DType.F64, DType.BF16)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([6, 5, 4, 7], seed: 40, mean: 3, std: 2, dtype: dtype).Permute(3, 1, 0, 2);
        var data = x.ToDoubleArray();
        var shape = x.Shape.ToArray();
        foreach (var axes in new[] { new[] { 0, 2 }, new[] { 3 }, Array.Empty<int>() })
            foreach (var correction in new[] { 0, 1, 2 })
            {
                var reduced = new bool[4];
                if (axes.Length == 0) Array.Fill(reduced, true);
                foreach (var a in axes) reduced[a] = true;
                var (sums, _, count) = ReduceRef.Reduce(data, shape, reduced, 0, (a, b) => a + b);
                var means = sums.Select(s => s / count).ToArray();
                // Second pass: squared deviations from each output's mean.
                var keep = shape.Select((d, i) => reduced[i] ? 1 : d).ToArray();
                var inS = ReduceRef.Strides(shape); var outS = ReduceRef.Strides(keep);
                var sq = new double[means.Length];
                for (long f = 0; f < data.Length; f++)
                {
                    long rest = f, o = 0;
                    for (int d = 0; d < 4; d++) { long i = rest / inS[d]; rest %= inS[d]; if (!reduced[d]) o += i * outS[d]; }
                    sq[o] += (data[f] - means[o]) * (data[f] - means[o]);
                }
                var expected = sq.Select(s => s / Math.Max(0, count - correction)).ToArray();
                var got = x.Variance(axes, correction, keepDim: true);
                Assert.That(got.Shape.ToArray(), Is.EqualTo(keep));
                Assert.That(got.DType, Is.EqualTo(dtype));
                double rel = dtype switch { DType.F64 => 1e-12, DType.F32 => 1e-5, _ => 1.0 / 128 };
                ReduceRef.AssertClose(got.ToDoubleArray(), expected, i => rel * expected[i], $"variance {dtype} [{string.Join(",", axes)}] c={correction}");
            }
        // N - correction ≤ 0: 0/0 = NaN for one element (PyTorch gives NaN too).
        Assert.That(Tensor.Full([1], 2.0).Variance([0]).Item(), Is.NaN);
        Assert.Throws<ArgumentException>(() => Tensor.Zeros([3], DType.I64).Variance([0]));
    }
}
