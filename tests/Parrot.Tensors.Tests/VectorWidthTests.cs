using System.Runtime.Intrinsics;
using Parrot.Tensors.Cpu;
using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The CPU kernels outside the matrix product at both vector widths: every test runs once with
/// <see cref="GemmOptions.ForceVector256"/> set (the Vector256 paths, which an AVX-512 machine would otherwise never
/// take) and once with it clear (Vector512 where accelerated; Vector256 again on an AVX2 machine). Lengths are odd
/// (1, 7, 15, 17, …, 1,000,003) so that every vector loop, its tail and the scalar remainder run. References are
/// float64 loops; tolerances are those of the op's own tests (ReduceTests, SoftmaxTests, NormTests, ElementwiseTests,
/// AttentionTests, BFloat16Tests): max, min, arg-reductions, comparisons, RoPE and bf16 rounding exact.
/// The switch is process-wide, so the fixture must not run beside others.
/// </summary>
[TestFixture(true)]
[TestFixture(false)]
[NonParallelizable]
public class VectorWidthTests(bool force256)
{
    private static readonly int[] Sizes = [1, 7, 15, 17, 31, 33, 255, 257, 1000, 1_000_003];
    private IDisposable? _width;

    [SetUp]
    public void SetUp() => _width = TestUtil.ForceVector256(force256);

    [TearDown]
    public void TearDown() => _width?.Dispose();

    private static double[] Normal(int n, int seed, double scale = 1)
    {
        var rng = new Random(seed);
        var r = new double[n];
        for (int i = 0; i < n; i++) r[i] = scale * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        return r;
    }

    private static Tensor Make(double[] v, DType dtype, params int[] shape) => dtype switch
    {
        DType.F32 => Tensor.FromArray(v.Select(x => (float)x).ToArray(), shape),
        DType.F64 => Tensor.FromArray(v, shape),
        _ => Tensor.FromArray(v.Select(x => (long)Math.Round(x * 1000)).ToArray(), shape),
    };

    [Test]
    public void TheSwitchPicksTheWidth() =>
        Assert.That(VectorWidth.Use512, Is.EqualTo(Vector512.IsHardwareAccelerated && !force256));

    // ---- reductions (ReduceMath, the column accumulators) ----

    private static void CheckReduce(Tensor x, ReduceOp op, int[] axes, string what)
    {
        var shape = x.Shape.ToArray();
        var reduced = new bool[shape.Length];
        foreach (var a in axes) reduced[a] = true;
        var (seed, combine) = op switch
        {
            ReduceOp.Sum or ReduceOp.Mean => (0.0, (Func<double, double, double>)((a, b) => a + b)),
            ReduceOp.SumOfSquares => (0.0, (a, b) => a + b * b),
            ReduceOp.Prod => (1.0, (a, b) => a * b),
            ReduceOp.Max => (double.NegativeInfinity, ReduceRef.Max),
            _ => (double.PositiveInfinity, ReduceRef.Min),
        };
        var (values, abs, count) = ReduceRef.Reduce(x.ToDoubleArray(), shape, reduced, seed, combine);
        if (op == ReduceOp.Mean) for (int i = 0; i < values.Length; i++) { values[i] /= count; abs[i] /= count; }
        using var y = x.Reduce(op, axes, keepDim: true);
        Func<int, double> tol = x.DType switch
        {
            _ when op is ReduceOp.Max or ReduceOp.Min => _ => 0,
            DType.F64 => i => 1e-13 * (abs[i] + Math.Abs(values[i])),
            DType.F32 when op is ReduceOp.Prod or ReduceOp.SumOfSquares => i => 1e-6 * Math.Abs(values[i]),
            DType.F32 => i => 1e-6 * abs[i] + 1e-7 * Math.Abs(values[i]),
            _ => _ => 0,
        };
        ReduceRef.AssertClose(y.ToDoubleArray(), values, tol, what);
    }

    [Test]
    public void FullReductionsOfOddLengths([Values(DType.F32, DType.F64, DType.I64)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        foreach (int n in Sizes)
        {
            var v = Normal(n, n);
            if (n > 40) v[n - 3] = 9; // the extreme in the scalar tail of some paths, in a vector of others
            var x = Make(v, dtype, n);
            foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Mean, ReduceOp.Max, ReduceOp.Min, ReduceOp.SumOfSquares })
                if (op != ReduceOp.Mean || dtype != DType.I64) // the mean of integers is refused, as in PyTorch
                    CheckReduce(x, op, [0], $"{op} {dtype} n={n}");
        }
    }

    [Test]
    public void RowAndColumnReductionsOfMatricesAndViews([Values(DType.F32, DType.F64, DType.I64)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        foreach (var (r, c) in new[] { (3, 17), (37, 1001), (1001, 37), (5, 15), (64, 33) })
        {
            // Values near 1 so that Prod stays finite over the longest run.
            var v = Normal(r * c, r + 7 * c, 0.02).Select(e => dtype == DType.I64 ? e * 50 : 1 + e).ToArray();
            var x = Make(v, dtype, r, c);
            var t = x.Transpose(0, 1); // the strided operand: each kind of run the other way round
            foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Max, ReduceOp.Min, ReduceOp.SumOfSquares, ReduceOp.Prod })
                foreach (var axis in new[] { 0, 1 })
                {
                    if (op == ReduceOp.Prod && dtype == DType.I64) continue; // wraps: exact but not comparable in float64
                    CheckReduce(x, op, [axis], $"{op} {dtype} [{r},{c}] axis {axis}");
                    CheckReduce(t, op, [axis], $"{op} {dtype} [{r},{c}]ᵀ axis {axis}");
                }
        }
    }

    [Test]
    public void MaxAndMinPropagateNaNWhereverItIs([Values(DType.F32, DType.F64)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        foreach (int n in Sizes.Where(n => n < 100_000))
            foreach (int at in new[] { 0, n / 2, n - 1 }.Distinct())
            {
                var v = Normal(n, 3 * n + at);
                v[at] = double.NaN;
                var x = Make(v, dtype, n);
                Assert.That(x.Max(0).ToDoubleArray()[0], Is.NaN, $"max {dtype} n={n} NaN at {at}");
                Assert.That(x.Min([0], false).ToDoubleArray()[0], Is.NaN, $"min {dtype} n={n} NaN at {at}");
                v[at] = double.PositiveInfinity;
                Assert.That(Make(v, dtype, n).Max(0).ToDoubleArray()[0], Is.EqualTo(double.PositiveInfinity), $"max {dtype} n={n} +inf at {at}");
            }
    }

    [Test]
    public void ArgReductionsFindTheFirstExtreme([Values(DType.F32, DType.F64, DType.I64)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        foreach (int n in Sizes)
        {
            // Few distinct values: ties everywhere, so the first index must win.
            var v = Normal(n, 5 * n).Select(e => Math.Round(e * 2) / 2).ToArray();
            if (dtype != DType.I64 && n > 20) { v[n / 3] = double.NaN; v[n - 2] = double.NaN; }
            var x = Make(v, dtype, 1, n);
            var d = x.ToDoubleArray();
            long First(Func<double, double, bool> better, bool nanLowest)
            {
                int best = -1;
                for (int i = 0; i < n; i++)
                {
                    if (nanLowest && double.IsNaN(d[i])) continue;
                    if (!nanLowest && double.IsNaN(d[i])) return i; // ArgMax/ArgMin: NaN wins
                    if (best < 0 || better(d[i], d[best])) best = i;
                }
                return Math.Max(best, 0);
            }
            Assert.That(x.ArgMax(1).ToLongArray()[0], Is.EqualTo(First((a, b) => a > b, false)), $"argmax {dtype} n={n}");
            Assert.That(x.ArgMin(1).ToLongArray()[0], Is.EqualTo(First((a, b) => a < b, false)), $"argmin {dtype} n={n}");
            if (dtype != DType.I64)
                Assert.That(x.ArgMaxNaNLowest(1).ToLongArray()[0], Is.EqualTo(First((a, b) => a > b, true)), $"argmax NaN lowest {dtype} n={n}");
        }
    }

    // ---- softmax, layer norm ----

    [Test]
    public void SoftmaxAndLogSoftmaxOfOddRows([Values(DType.F32, DType.F64)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        foreach (int n in Sizes.Where(n => n < 1_000_000).Append(100_003))
        {
            var x = Make(Normal(3 * n, 11 * n, 3), dtype, 3, n);
            var strided = Make(Normal(3 * n, 13 * n, 3), dtype, n, 3).Transpose(0, 1);
            foreach (var (t, kind) in new[] { (x, "contiguous"), (strided, "strided") })
                foreach (bool log in new[] { false, true })
                {
                    var rows = ReduceRef.Rows(t.ToDoubleArray(), n);
                    var want = rows.SelectMany(row =>
                    {
                        double max = row.Max(), sum = row.Sum(e => Math.Exp(e - max));
                        return row.Select(e => log ? e - max - Math.Log(sum) : Math.Exp(e - max) / sum);
                    }).ToArray();
                    using var y = log ? t.LogSoftmax() : t.Softmax();
                    Func<int, double> tol = dtype == DType.F64 ? i => 1e-13 * (1 + Math.Abs(want[i]))
                        : log ? i => 1e-6 * (1 + Math.Abs(want[i])) : i => 1e-6 * want[i] + 1e-7;
                    ReduceRef.AssertClose(y.ToDoubleArray(), want, tol, $"{(log ? "log-softmax" : "softmax")} {dtype} {kind} n={n}");
                }
        }
    }

    [Test]
    public void LayerNormOfOddRows([Values(DType.F32, DType.F64)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        foreach (int n in Sizes.Where(n => n < 1_000_000).Append(100_003))
        {
            var xv = Normal(2 * n, 17 * n).Select(e => 3 + 2 * e).ToArray(); // a mean far from 0: the deviations matter
            var wv = Normal(n, 19 * n);
            var bv = Normal(n, 23 * n);
            var x = Make(xv, dtype, 2, n);
            using var y = x.LayerNorm(Make(wv, dtype, n), Make(bv, dtype, n), eps: 1e-5);
            var want = new double[2 * n];
            var xd = x.ToDoubleArray();
            var wd = Make(wv, dtype, n).ToDoubleArray();
            var bd = Make(bv, dtype, n).ToDoubleArray();
            for (int r = 0; r < 2; r++)
            {
                double mean = 0, var = 0;
                for (int i = 0; i < n; i++) mean += xd[r * n + i];
                mean /= n;
                for (int i = 0; i < n; i++) var += (xd[r * n + i] - mean) * (xd[r * n + i] - mean);
                double rstd = 1 / Math.Sqrt(var / n + 1e-5);
                for (int i = 0; i < n; i++) want[r * n + i] = (xd[r * n + i] - mean) * rstd * wd[i] + bd[i];
            }
            double rel = dtype == DType.F64 ? 1e-12 : 2e-6;
            ReduceRef.AssertClose(y.ToDoubleArray(), want, i => rel * (1 + Math.Abs(want[i])), $"layernorm {dtype} n={n}");
        }
    }

    // ---- elementwise: erf GELU, comparisons, RoPE, bf16 ----

    [Test]
    public void GeluErfAndErf()
    {
        using var scope = TensorScope.Begin();
        foreach (int n in Sizes.Where(n => n < 1_000_000).Append(10_007))
        {
            var x = Make(Normal(n, 29 * n, 3), DType.F32, n);
            var xd = x.ToDoubleArray();
            var gelu = xd.Select(v => 0.5 * v * (1 + ElementwiseTests.ErfRef(v / Math.Sqrt(2)))).ToArray();
            TestUtil.AssertClose(x.Gelu().ToDoubleArray(), gelu, 2e-6, 1e-6, $"gelu n={n}");
            var erf = xd.Select(ElementwiseTests.ErfRef).ToArray();
            TestUtil.AssertClose(x.Map(UnaryOp.Erf).ToDoubleArray(), erf, 2e-6, 2e-7, $"erf n={n}");
        }
    }

    [Test]
    public void ComparisonsGiveExactlyZeroOrOne([Values(DType.F32, DType.F64, DType.I64)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        foreach (int n in Sizes.Where(n => n < 1_000_000))
        {
            var av = Normal(n, 31 * n).Select(e => Math.Round(e * 2) / 2).ToArray(); // many equal pairs
            var bv = Normal(n, 37 * n).Select(e => Math.Round(e * 2) / 2).ToArray();
            var a = Make(av, dtype, n);
            var b = Make(bv, dtype, n);
            var ad = a.ToDoubleArray();
            var bd = b.ToDoubleArray();
            foreach (var (op, f) in new (BinaryOp, Func<double, double, bool>)[]
                     {
                         (BinaryOp.Eq, (p, q) => p == q), (BinaryOp.Ne, (p, q) => p != q), (BinaryOp.Lt, (p, q) => p < q),
                         (BinaryOp.Le, (p, q) => p <= q), (BinaryOp.Gt, (p, q) => p > q), (BinaryOp.Ge, (p, q) => p >= q),
                     })
            {
                var want = ad.Select((p, i) => f(p, bd[i]) ? 1.0 : 0.0).ToArray();
                Assert.That(Tensor.Apply(op, a, b).ToDoubleArray(), Is.EqualTo(want), $"{op} {dtype} n={n}");
            }
        }
    }

    [Test]
    public unsafe void RotateHalfIsExactlyTheRoundedProducts()
    {
        foreach (int half in new[] { 1, 7, 8, 15, 17, 32, 33, 64, 257 })
        {
            float[] x = Normal(2 * half, half).Select(e => (float)e).ToArray();
            float[] c = Normal(2 * half, half + 1).Select(e => (float)e).ToArray();
            float[] s = Normal(2 * half, half + 2).Select(e => (float)e).ToArray();
            var want = new float[2 * half];
            for (int d = 0; d < half; d++)
            {
                // Each product rounded to float32, then the sum rounded (float64 holds both products exactly).
                want[d] = (float)((double)(float)((double)x[d] * c[d]) - (float)((double)x[half + d] * s[d]));
                want[half + d] = (float)((double)(float)((double)x[half + d] * c[half + d]) + (float)((double)x[d] * s[half + d]));
            }
            var y = new float[2 * half];
            fixed (float* xp = x, cp = c, sp = s, yp = y) CpuBackend.RotateHalf(xp, cp, sp, yp, half);
            Assert.That(y, Is.EqualTo(want), $"half={half}");
            fixed (float* xp = x, cp = c, sp = s) CpuBackend.RotateHalf(xp, cp, sp, xp, half); // in place
            Assert.That(x, Is.EqualTo(want), $"half={half} in place");
        }
    }

    [Test]
    public void BFloat16SpansRoundToNearestEvenAndWidenExactly()
    {
        foreach (int n in Sizes.Where(n => n < 1_000_000).Append(100_003))
        {
            var rng = new Random(n);
            var src = new float[n];
            for (int i = 0; i < n; i++) src[i] = BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32));
            if (n > 3) { src[1] = float.NaN; src[2] = BitConverter.UInt32BitsToSingle(0x7F80_0001); src[3] = 3.0000002f; }
            var got = new ushort[n];
            BFloat16.FromFloat(src, got);
            for (int i = 0; i < n; i++)
            {
                uint bits = BitConverter.SingleToUInt32Bits(src[i]);
                if (float.IsNaN(src[i]))
                {
                    // NaN stays NaN, quiet, with its sign.
                    Assert.That((got[i] & 0x7FC0) == 0x7FC0 && (got[i] >> 15) == (bits >> 31), $"NaN 0x{bits:X8} gave 0x{got[i]:X4}, n={n}");
                    continue;
                }
                uint kept = bits >> 16, dropped = bits & 0xFFFF;
                bool up = dropped > 0x8000 || (dropped == 0x8000 && (kept & 1) == 1);
                if (got[i] != (ushort)(up ? kept + 1 : kept)) Assert.Fail($"0x{bits:X8} gave 0x{got[i]:X4}, n={n} i={i}");
            }
            var back = new float[n];
            BFloat16.ToFloat(got, back);
            for (int i = 0; i < n; i++)
                if (BitConverter.SingleToUInt32Bits(back[i]) != (uint)got[i] << 16) Assert.Fail($"widening 0x{got[i]:X4}, n={n} i={i}");
        }
    }

    // ---- attention ----

    [Test]
    public void AttentionMatchesFloat64Loop([ValueSource(typeof(AttentionTests), nameof(AttentionTests.Cases))] AttentionTests.Case c,
        [Values(DType.F32, DType.BF16)] DType dtype) => new AttentionTests().MatchesFloat64Loop(c, dtype);

    [Test]
    public void AttentionKernelExpAtEightLanes()
    {
        // As AttentionTests.KernelExpIsAccurateOverTheSoftmaxRange, for the Vector256 twin.
        var xs = Enumerable.Range(0, 20000).Select(i => -87.3f * i / 19999f).Concat([-1e-30f, -0f, -87.5f, -100f, -1e6f, float.NegativeInfinity, float.NaN]).ToArray();
        for (int i = 0; i < xs.Length; i += 8)
        {
            var chunk = new float[8];
            Array.Copy(xs, i, chunk, 0, Math.Min(8, xs.Length - i));
            var y = AttentionF32.ExpNonPositive(Vector256.Create(chunk));
            for (int j = 0; j < 8 && i + j < xs.Length; j++)
            {
                float x = chunk[j], got = y[j];
                if (float.IsNaN(x)) { Assert.That(float.IsNaN(got), $"exp({x})"); continue; }
                double want = Math.Exp(x);
                if (x < -87.33f) Assert.That(got, Is.EqualTo(0f), $"exp({x})");
                else Assert.That(got, Is.EqualTo(want).Within(2e-7 * want), $"exp({x})");
            }
        }
    }
}
