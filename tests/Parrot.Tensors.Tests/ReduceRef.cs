namespace Parrot.Tensors.Tests;

/// <summary>
/// Naive float64 references for the reduction-family tests: plain loops over C-order indices, written for
/// clarity, never for speed, and independent of the kernels they check.
/// </summary>
internal static class ReduceRef
{
    /// <summary>C-order strides of a shape.</summary>
    public static long[] Strides(int[] shape)
    {
        var s = new long[shape.Length];
        long acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
        return s;
    }

    /// <summary>
    /// Reduces <paramref name="data"/> (C order, <paramref name="shape"/>) over the marked axes with
    /// <paramref name="combine"/> from <paramref name="seed"/>; returns the keep-dim result in C order and the
    /// Σ|x| of each output's set (for error bounds).
    /// </summary>
    public static (double[] Values, double[] AbsSums, long Count) Reduce(double[] data, int[] shape, bool[] reduced,
        double seed, Func<double, double, double> combine)
    {
        var keep = shape.Select((d, i) => reduced[i] ? 1 : d).ToArray();
        long outCount = keep.Aggregate(1L, (a, b) => a * b);
        long count = shape.Where((_, i) => reduced[i]).Aggregate(1L, (a, b) => a * (long)b);
        var values = Enumerable.Repeat(seed, (int)outCount).ToArray();
        var abs = new double[outCount];
        var inStrides = Strides(shape);
        var outStrides = Strides(keep);
        for (long flat = 0; flat < data.Length; flat++)
        {
            long rest = flat, o = 0;
            for (int d = 0; d < shape.Length; d++)
            {
                long i = rest / inStrides[d];
                rest %= inStrides[d];
                if (!reduced[d]) o += i * outStrides[d];
            }
            values[o] = combine(values[o], data[flat]);
            abs[o] += Math.Abs(data[flat]);
        }
        return (values, abs, count);
    }

    /// <summary>Max that propagates NaN (PyTorch's rule).</summary>
    public static double Max(double a, double b) => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : Math.Max(a, b);

    /// <summary>Min that propagates NaN.</summary>
    public static double Min(double a, double b) => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : Math.Min(a, b);

    /// <summary>Splits C-order data of shape [..., n] into rows of n.</summary>
    public static double[][] Rows(double[] data, int n) =>
        n == 0 ? [] : Enumerable.Range(0, data.Length / n).Select(r => data.AsSpan(r * n, n).ToArray()).ToArray();

    /// <summary>Rounds a double to the nearest bf16 value (through float, as the engine does), returned as a double.</summary>
    public static double RoundBf16(double v) => BFloat16.ToFloat(BFloat16.FromFloat((float)v));

    /// <summary>Asserts |actual - expected| ≤ tol[i] elementwise, NaN matching NaN, with a message naming the first failure.</summary>
    public static void AssertClose(double[] actual, double[] expected, Func<int, double> tolerance, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), $"{what}: length");
        for (int i = 0; i < expected.Length; i++)
        {
            double a = actual[i], e = expected[i];
            if (double.IsNaN(e)) { Assert.That(a, Is.NaN, $"{what}: element {i} should be NaN"); continue; }
            if (double.IsInfinity(e)) { Assert.That(a, Is.EqualTo(e), $"{what}: element {i}"); continue; }
            double tol = tolerance(i);
            if (!(Math.Abs(a - e) <= tol))
                Assert.Fail($"{what}: element {i} is {a:R}, expected {e:R} (|diff| {Math.Abs(a - e):E3} > tol {tol:E3})");
        }
    }
}
