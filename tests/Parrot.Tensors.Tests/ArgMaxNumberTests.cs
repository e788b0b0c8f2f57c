using NUnit.Framework;

namespace Parrot.Tensors.Tests;

/// <summary>
/// <see cref="Tensor.ArgMaxNumber"/> (the CPU backend's ArgReduceOp.ArgMaxNumber, the greedy pick) against a float64
/// loop with the rule: the index of the largest number (NaN below every number, the lowest index on a tie, −0 = +0),
/// −1 where the row holds no number above −∞ (NaN and −∞ only). Exact. Rows of 1 to a vocabulary (the vectorised search
/// and its tail), contiguous and strided (the chunked path: a row's numbers and its −∞ in different chunks), every float
/// dtype and an integer one; and ArgMaxNaNLowest's choice wherever the answer is not −1.
/// </summary>
public class ArgMaxNumberTests
{
    private const double NaN = double.NaN, Inf = double.PositiveInfinity;

    /// <summary>The rule over one row, written out in float64: the first largest number above −∞, else −1.</summary>
    private static long Want(ReadOnlySpan<double> row)
    {
        long best = -1;
        for (int i = 0; i < row.Length; i++)
            if (row[i] > double.NegativeInfinity && (best < 0 || row[i] > row[(int)best])) best = i; // false for NaN
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
        [1, NaN, 2, 0],           // NaN loses
        [NaN, -Inf, -Inf, NaN],   // NaN and −∞ only: −1
        [NaN, NaN, NaN, NaN],     // NaN only: −1
        [-Inf, -Inf, -Inf, -Inf], // −∞ only: −1
        [0, -0.0, 0, -1],         // ±0 tie: the first (0 is a number)
        [-0.0, 0, -1, -2],
        [1, 3, 3, 2],             // a tie: the lower index
        [Inf, NaN, Inf, 5],       // +∞ is a number
        [-5, -3, -3, NaN],
        [NaN, NaN, -Inf, -7],     // the last is the only number
        [-Inf, NaN, -1e30, -Inf], // a number among −∞ and NaN
    ];

    [Test]
    public void EdgeRowsFollowTheRule([Values(DType.F32, DType.BF16, DType.F16, DType.F64)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(EdgeRows.SelectMany(r => r).ToArray(), EdgeRows.Length, 4).To(dtype);
        var y = x.ArgMaxNumber(1);
        Assert.That(y.DType, Is.EqualTo(DType.I64));
        Assert.That(y.Shape.ToArray(), Is.EqualTo(new[] { EdgeRows.Length }));
        // F16 has no −1e30: it becomes −∞ there, and the last row holds no number.
        long last = dtype == DType.F16 ? -1 : 2;
        Assert.That(y.ToLongArray(), Is.EqualTo(new long[] { 2, -1, -1, -1, 0, 0, 1, 0, 1, 3, last }));
        Assert.That(y.ToLongArray(), Is.EqualTo(WantRows(x)));
        Assert.That(x.ArgMaxNaNLowest(1).ToLongArray()[1..4], Is.EqualTo(new long[] { 1, 0, 0 }), "ArgMaxNaNLowest is unchanged");
        // The same rows as columns: strided reads.
        var t = x.Transpose(0, 1);
        Assert.That(t.ArgMaxNumber(0).ToLongArray(), Is.EqualTo(WantRows(x)));
        Assert.That(x.ArgMaxNumber(1, keepDim: true).Shape.ToArray(), Is.EqualTo(new[] { EdgeRows.Length, 1 }));
    }

    [Test]
    public void RowsOfOne([Values(DType.F32, DType.F64, DType.BF16)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(new[] { NaN, -Inf, 0, 3, Inf }, 5, 1).To(dtype);
        Assert.That(x.ArgMaxNumber(1).ToLongArray(), Is.EqualTo(new long[] { -1, -1, 0, 0, 0 }));
    }

    /// <summary>
    /// Rows of a vocabulary and of odd lengths, values from a small set (ties everywhere) with NaN, ±∞ and ±0 sprinkled
    /// in; rows of NaN and −∞, of NaN only, of −∞ only, one whose only number is its last element, one whose only
    /// number is its first, ±0 only; and short rows drawn mostly from NaN and −∞ (some with no number, some with one).
    /// </summary>
    [Test]
    public void LongRowsFullOfTies([Values(DType.F32, DType.BF16, DType.F16, DType.F64)] DType dtype, [Values(152_064, 151_936, 1000, 67)] int n)
    {
        using var scope = TensorScope.Begin();
        const int rows = 12;
        var rng = new Random(n + 1);
        double[] set = [NaN, -Inf, Inf, -0.0, 0, 0.5, 0.5, 2];
        var v = new double[rows * n];
        for (int i = 0; i < v.Length; i++) v[i] = rng.Next(200) == 0 ? set[rng.Next(set.Length)] : Math.Round(rng.NextDouble() * 16) / 16 - 1;
        for (int i = 0; i < n; i++) v[i] = i % 3 == 0 ? NaN : -Inf;       // row 0: NaN and −∞
        for (int i = 0; i < n; i++) v[n + i] = NaN;                         // row 1: NaN only
        for (int i = 0; i < n; i++) v[2 * n + i] = i == n - 1 ? -7 : NaN;   // row 2: its last element is its only number
        for (int i = 0; i < n; i++) v[3 * n + i] = i % 2 == 0 ? -0.0 : 0;   // row 3: ±0 only
        for (int i = 0; i < n; i++) v[4 * n + i] = -Inf;                    // row 4: −∞ only
        for (int i = 0; i < n; i++) v[5 * n + i] = i == 0 ? -1e4 : i % 2 == 0 ? -Inf : NaN; // row 5: its first is its only number
        v[6 * n + n / 2] = v[6 * n + n - 1] = 3;                            // row 6: a tie far apart
        for (int r = 7; r < rows; r++)                                      // rows 7–11: NaN and −∞, a number now and then
            for (int i = 0; i < n; i++) v[r * n + i] = rng.Next(4 * n) == 0 ? -3 : rng.Next(2) == 0 ? NaN : -Inf;
        var x = Tensor.FromArray(v, rows, n).To(dtype);
        var want = WantRows(x);
        Assert.That(want[..6], Is.EqualTo(new long[] { -1, -1, n - 1, 0, -1, 0 }));
        Assert.That(want[7..], Has.Some.EqualTo(-1L), "some drawn rows hold no number");
        var got = x.ArgMaxNumber(1).ToLongArray();
        Assert.That(got, Is.EqualTo(want), "contiguous rows");
        // Wherever there is a number, ArgMaxNaNLowest's choice.
        var nanLowest = x.ArgMaxNaNLowest(1).ToLongArray();
        for (int r = 0; r < rows; r++) if (want[r] >= 0) Assert.That(got[r], Is.EqualTo(nanLowest[r]), $"row {r}");
        // Columns (strided, read in chunks), and rows of a wider tensor (contiguous, offset).
        var t = x.Transpose(0, 1).Contiguous().Transpose(0, 1);
        Assert.That(t.ArgMaxNumber(1).ToLongArray(), Is.EqualTo(want), "strided rows");
        var wide = Tensor.Zeros([rows, n + 5], dtype);
        wide.Narrow(1, 3, n).CopyFrom(x);
        Assert.That(wide.Narrow(1, 3, n).ArgMaxNumber(1).ToLongArray(), Is.EqualTo(want), "rows of a wider tensor");
    }

    [Test]
    public void IntegersAreAllNumbersSoItIsArgMax()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(new long[] { 3, 9, 9, -1, long.MinValue, long.MinValue, 5, 2 }, 2, 4);
        Assert.That(x.ArgMaxNumber(1).ToLongArray(), Is.EqualTo(x.ArgMax(1).ToLongArray()));
        Assert.That(x.To(DType.I32).ArgMaxNumber(1).ToLongArray(), Is.EqualTo(new long[] { 1, 2 }));
    }
}
