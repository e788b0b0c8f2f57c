using Parrot.Tensors;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// One op checked by `parrot selftest`: seeded inputs (float inputs in the case's dtype, integer inputs as they
/// are), the op written against the <see cref="Tensor"/> API (so it runs on whatever device its inputs live on),
/// whether its result must match exactly (integer and Bool results), and a tolerance of its own where the result
/// is stored in a narrower type than the case's dtype, and the dtypes it runs in where not both float32 and bfloat16
/// (a library path that only takes 16-bit inputs, as cuDNN's attention).
/// </summary>
internal sealed record SelfTestCase(string Name, Func<Random, DType, Tensor[]> Inputs, Func<Tensor[], Tensor> Run, bool Exact = false, double? Tolerance = null,
    DType[]? Only = null)
{
    /// <summary>
    /// The first index where <paramref name="a"/> and <paramref name="b"/> hold other bits; -1 when they are the same
    /// bits. Throws when their lengths differ (two runs of one computation must give as many values). The bit-for-bit
    /// rows' comparison.
    /// </summary>
    internal static int FirstBitDifference(double[] a, double[] b)
    {
        if (a.Length != b.Length) throw new InvalidOperationException($"{a.Length} values against {b.Length}: the two runs gave results of other sizes");
        for (int i = 0; i < a.Length; i++)
            if (BitConverter.DoubleToInt64Bits(a[i]) != BitConverter.DoubleToInt64Bits(b[i])) return i;
        return -1;
    }

    /// <summary>Normal(0, 1) values of <paramref name="shape"/>, rounded to <paramref name="dtype"/>.</summary>
    internal static Tensor Normal(Random rng, DType dtype, params int[] shape)
    {
        using var f = Tensor.Normal(shape, (ulong)rng.NextInt64(), 0, 1);
        return f.To(dtype);
    }

    /// <summary>Positive values in [lo, hi), rounded to <paramref name="dtype"/>.</summary>
    internal static Tensor Positive(Random rng, DType dtype, double lo, double hi, params int[] shape)
    {
        using var f = Tensor.Uniform(shape, (ulong)rng.NextInt64(), lo, hi);
        return f.To(dtype);
    }

    /// <summary>n ids in [0, max): <paramref name="hot"/> at 7 of every 10 positions, the rest drawn uniformly.</summary>
    internal static Tensor HotIndices(Random rng, int max, int n, int hot)
    {
        var v = new long[n];
        for (int i = 0; i < n; i++) v[i] = i % 10 < 7 ? hot : rng.Next(max);
        return Tensor.FromArray(v, n);
    }

    /// <summary>Int64 values in [0, max) of <paramref name="shape"/>.</summary>
    internal static Tensor Indices(Random rng, int max, params int[] shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        var v = new long[n];
        for (long i = 0; i < n; i++) v[i] = rng.Next(max);
        return Tensor.FromArray(v, shape);
    }
}
