using Parrot.Tensors;
using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Tensors.Tests;

/// <summary>Helpers shared by the tensor tests: float64 references and comparisons.</summary>
internal static class TestUtil
{
    /// <summary>Asserts |actual - expected| ≤ atol + rtol·|expected| elementwise (NaN must match NaN, infinities exactly).</summary>
    public static void AssertClose(double[] actual, double[] expected, double rtol, double atol, string what = "")
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), $"{what}: length");
        for (int i = 0; i < actual.Length; i++)
        {
            double a = actual[i], e = expected[i];
            if (double.IsNaN(e)) { Assert.That(double.IsNaN(a), Is.True, $"{what}[{i}]: expected NaN, got {a}"); continue; }
            if (double.IsInfinity(e)) { Assert.That(a, Is.EqualTo(e), $"{what}[{i}]"); continue; }
            double tol = atol + rtol * Math.Abs(e);
            if (!(Math.Abs(a - e) <= tol))
                Assert.Fail($"{what}[{i}]: got {a:R}, expected {e:R} (|diff| {Math.Abs(a - e):E3} > tol {tol:E3})");
        }
    }

    /// <summary>
    /// Sets <see cref="GemmOptions.ForceVector256"/> until the returned scope is disposed, then puts back what was there
    /// (<c>using var width = TestUtil.ForceVector256(true);</c>), so that a test of either width leaves the switch as found.
    /// </summary>
    public static IDisposable ForceVector256(bool force256)
    {
        var scope = new WidthScope(GemmOptions.ForceVector256);
        GemmOptions.ForceVector256 = force256;
        return scope;
    }

    private sealed class WidthScope(bool saved) : IDisposable
    {
        public void Dispose() => GemmOptions.ForceVector256 = saved;
    }

    /// <summary>C-order multi-index of a flat index.</summary>
    public static int[] Unflatten(long flat, int[] shape)
    {
        var idx = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--) { idx[d] = (int)(flat % shape[d]); flat /= shape[d]; }
        return idx;
    }

    /// <summary>Flat C-order index of a multi-index.</summary>
    public static long Flatten(int[] idx, int[] shape)
    {
        long f = 0;
        for (int d = 0; d < shape.Length; d++) f = f * shape[d] + idx[d];
        return f;
    }

    /// <summary>Value at a broadcast index: dims of size 1 in <paramref name="shape"/> read index 0, leading dims are dropped.</summary>
    public static double AtBroadcast(double[] data, int[] shape, int[] outIdx)
    {
        int lead = outIdx.Length - shape.Length;
        long f = 0;
        for (int d = 0; d < shape.Length; d++) f = f * shape[d] + (shape[d] == 1 ? 0 : outIdx[d + lead]);
        return data[f];
    }

    /// <summary>bf16 rounding of every value (through float32), as the reference for BF16 results.</summary>
    public static double[] RoundBf16(double[] v) => v.Select(x => (double)BFloat16.ToFloat(BFloat16.FromFloat((float)x))).ToArray();
}
