using NUnit.Framework;

namespace Parrot.Tensors.Tests;

/// <summary>
/// <see cref="Tensor.ArgMaxNaNLowest"/> (the CPU backend's ArgReduceOp.ArgMaxNaNLowest) against a float64 loop with the
/// rule: the largest value, NaN below every number (−∞ included), the lowest index on a tie, −0 = +0, a row of NaN only
/// gives 0. Exact. Rows of 1 to a vocabulary (152,064: the vectorised search and its tail), contiguous and strided
/// (the chunked path), every float dtype and an integer one.
/// </summary>
public class ArgMaxNaNLowestTests
{
    private const double NaN = double.NaN, Inf = double.PositiveInfinity;

    /// <summary>The generator's host rule (TokenSampler.ArgMax) over one row.</summary>
    private static long Want(ReadOnlySpan<double> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++)
            if (row[i] > row[best] || double.IsNaN(row[best]) && !double.IsNaN(row[i])) best = i;
        return best;
    }

    private static long[] WantRows(Tensor x)
    {
        int n = x.Dim(-1);
        var v = x.ToDoubleArray();
        return Enumerable.Range(0, v.Length / n).Select(r => Want(v.AsSpan(r * n, n))).ToArray();
    }

    private static readonly double[][] EdgeRows =
    [
        [1, NaN, 2, 0],           // NaN loses (ArgMax gives 1)
        [NaN, -Inf, -Inf, NaN],   // NaN below −∞: the first −∞
        [NaN, NaN, NaN, NaN],     // NaN only: 0
        [-Inf, -Inf, -Inf, -Inf], // a tie of −∞: 0
        [0, -0.0, 0, -1],         // ±0 tie: the first
        [-0.0, 0, -1, -2],
        [1, 3, 3, 2],             // a tie: the lower index
        [Inf, NaN, Inf, 5],
        [-5, -3, -3, NaN],
        [NaN, NaN, NaN, -Inf],    // the last is the only number
    ];

    [Test]
    public void EdgeRowsFollowTheRule([Values(DType.F32, DType.BF16, DType.F16, DType.F64)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(EdgeRows.SelectMany(r => r).ToArray(), EdgeRows.Length, 4).To(dtype);
        var y = x.ArgMaxNaNLowest(1);
        Assert.That(y.DType, Is.EqualTo(DType.I64));
        Assert.That(y.Shape.ToArray(), Is.EqualTo(new[] { EdgeRows.Length }));
        Assert.That(y.ToLongArray(), Is.EqualTo(new long[] { 2, 1, 0, 0, 0, 0, 1, 0, 1, 3 }));
        Assert.That(y.ToLongArray(), Is.EqualTo(WantRows(x)));
        Assert.That(x.ArgMax(1).ToLongArray()[0], Is.EqualTo(1), "plain ArgMax still lets NaN win");
        // The same rows as columns: strided reads.
        var t = x.Transpose(0, 1);
        Assert.That(t.ArgMaxNaNLowest(0).ToLongArray(), Is.EqualTo(WantRows(x)));
        Assert.That(x.ArgMaxNaNLowest(1, keepDim: true).Shape.ToArray(), Is.EqualTo(new[] { EdgeRows.Length, 1 }));
    }

    [Test]
    public void RowsOfOne([Values(DType.F32, DType.F64, DType.BF16)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(new[] { NaN, -Inf, 0, 3 }, 4, 1).To(dtype);
        Assert.That(x.ArgMaxNaNLowest(1).ToLongArray(), Is.EqualTo(new long[] { 0, 0, 0, 0 }));
    }

    /// <summary>
    /// Rows of a vocabulary and of odd lengths, values from a small set (ties everywhere) with NaN, ±∞ and ±0 sprinkled
    /// in; some rows with no number above −∞, one of NaN only, one whose only number is its last element.
    /// </summary>
    [Test]
    public void LongRowsFullOfTies([Values(DType.F32, DType.BF16, DType.F16, DType.F64)] DType dtype, [Values(152_064, 151_936, 1000, 67)] int n)
    {
        using var scope = TensorScope.Begin();
        const int rows = 6;
        var rng = new Random(n);
        double[] set = [NaN, -Inf, Inf, -0.0, 0, 0.5, 0.5, 2];
        var v = new double[rows * n];
        for (int i = 0; i < v.Length; i++) v[i] = rng.Next(200) == 0 ? set[rng.Next(set.Length)] : Math.Round(rng.NextDouble() * 16) / 16 - 1;
        for (int i = 0; i < n; i++) v[i] = i % 3 == 0 ? NaN : -Inf;       // row 0: nothing above −∞
        for (int i = 0; i < n; i++) v[n + i] = NaN;                         // row 1: NaN only
        for (int i = 0; i < n; i++) v[2 * n + i] = i == n - 1 ? -7 : NaN;   // row 2: its last element is its only number
        for (int i = 0; i < n; i++) v[3 * n + i] = i % 2 == 0 ? -0.0 : 0;   // row 3: ±0 only
        v[4 * n + n / 2] = v[4 * n + n - 1] = 3;                            // row 4: a tie far apart
        var x = Tensor.FromArray(v, rows, n).To(dtype);
        var want = WantRows(x);
        Assert.That(want[..4], Is.EqualTo(new long[] { 1, 0, n - 1, 0 }));
        Assert.That(x.ArgMaxNaNLowest(1).ToLongArray(), Is.EqualTo(want), "contiguous rows");
        // Columns (strided, read in chunks), and rows of a wider tensor (contiguous, offset).
        var t = x.Transpose(0, 1).Contiguous().Transpose(0, 1);
        Assert.That(t.ArgMaxNaNLowest(1).ToLongArray(), Is.EqualTo(want), "strided rows");
        var wide = Tensor.Zeros([rows, n + 5], dtype);
        wide.Narrow(1, 3, n).CopyFrom(x);
        Assert.That(wide.Narrow(1, 3, n).ArgMaxNaNLowest(1).ToLongArray(), Is.EqualTo(want), "rows of a wider tensor");
    }

    [Test]
    public void IntegersHaveNoNaNSoItIsArgMax()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(new long[] { 3, 9, 9, -1, long.MinValue, long.MinValue, 5, 2 }, 2, 4);
        Assert.That(x.ArgMaxNaNLowest(1).ToLongArray(), Is.EqualTo(x.ArgMax(1).ToLongArray()));
        Assert.That(x.To(DType.I32).ArgMaxNaNLowest(1).ToLongArray(), Is.EqualTo(new long[] { 1, 2 }));
    }
}
