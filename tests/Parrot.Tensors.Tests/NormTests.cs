namespace Parrot.Tensors.Tests;

/// <summary>
/// LayerNorm and RmsNorm against float64 loops. Tolerances: F32 within 2e-6·(1 + |y|), F64 within 1e-12·(1 + |y|),
/// BF16 within one bf16 rounding (2^-8·|y|) plus 1e-5. RmsNorm on bf16 is checked bit for bit against an
/// emulation of Hugging Face's Qwen2RMSNorm order of float32 operations.
/// </summary>
public class NormTests
{
    private static double[] LayerNormRef(double[] x, int d, double[]? w, double[]? b, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / d; r++)
        {
            var row = x.AsSpan(r * d, d);
            double mean = 0, var = 0;
            foreach (var v in row) mean += v;
            mean /= d;
            foreach (var v in row) var += (v - mean) * (v - mean);
            var /= d;
            for (int i = 0; i < d; i++)
                y[r * d + i] = (row[i] - mean) / Math.Sqrt(var + eps) * (w?[i] ?? 1) + (b?[i] ?? 0);
        }
        return y;
    }

    private static Func<int, double> Tolerance(DType dtype, double[] expected) => dtype switch
    {
        DType.F64 => i => 1e-12 * (1 + Math.Abs(expected[i])),
        DType.BF16 => i => Math.Abs(expected[i]) / 256 + 1e-5,
        _ => i => 2e-6 * (1 + Math.Abs(expected[i])),
    };

    [Test]
    public void LayerNormWithAndWithoutAffine([Values(DType.F32, DType.F64, DType.BF16)] DType dtype)
    {
        foreach (var d in new[] { 1, 7, 17, 33, 1000, 4100 })
        {
            using var scope = TensorScope.Begin();
            var x = Tensor.Normal([6, d], seed: (ulong)d, mean: 3, std: 2, dtype: dtype);
            var w = Tensor.Normal([d], seed: 100, mean: 1, std: 0.2, dtype: dtype);
            var b = Tensor.Normal([d], seed: 101, std: 0.5, dtype: dtype);
            var xs = x.ToDoubleArray();
            foreach (var (wt, bt) in new (Tensor?, Tensor?)[] { (w, b), (null, null), (w, null), (null, b) })
            {
                var expected = LayerNormRef(xs, d, wt?.ToDoubleArray(), bt?.ToDoubleArray(), 1e-5);
                var y = x.LayerNorm(wt, bt);
                Assert.That(y.DType, Is.EqualTo(dtype));
                ReduceRef.AssertClose(y.ToDoubleArray(), expected, Tolerance(dtype, expected), $"layernorm {dtype} d={d} w={wt is not null} b={bt is not null}");
            }
        }
    }

    [Test]
    public void LayerNormOnViewsWithMixedDtypeAffine()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([40, 5, 3], seed: 7).Permute(1, 2, 0); // rows of 40 read with a stride
        var w = Tensor.Normal([80], seed: 8, mean: 1, std: 0.1, dtype: DType.BF16).Slice(0, 0, null, 2);
        var b = Tensor.Normal([40], seed: 9, dtype: DType.F64);
        var expected = LayerNormRef(x.ToDoubleArray(), 40, w.ToDoubleArray(), b.ToDoubleArray(), 1e-6);
        var y = x.LayerNorm(w, b, eps: 1e-6);
        Assert.That(y.Shape.ToArray(), Is.EqualTo(new[] { 5, 3, 40 }));
        ReduceRef.AssertClose(y.ToDoubleArray(), expected, Tolerance(DType.F32, expected), "layernorm on views");
        // A constant row has zero variance: the output is bias (the eps keeps it finite).
        var flat = Tensor.Full([2, 8], 5.0).LayerNorm(null, Tensor.Full([8], 0.5));
        Assert.That(flat.ToDoubleArray(), Is.All.EqualTo(0.5));
    }

    // ---- RmsNorm ----

    /// <summary>bf16 round-to-nearest-even written out independently of the engine.</summary>
    private static float Bf16(float v)
    {
        uint u = BitConverter.SingleToUInt32Bits(v);
        if (float.IsNaN(v)) return v;
        uint lsb = (u >> 16) & 1;
        return BitConverter.UInt32BitsToSingle((u + 0x7FFF + lsb) & 0xFFFF0000u);
    }

    /// <summary>
    /// Qwen2RMSNorm in bf16, operation by operation in float32: variance = mean(x²) (sum exact here, then a
    /// float division), h = x · rsqrt(variance + eps), h.to(bf16), weight · h rounded to bf16. With
    /// <paramref name="castFirst"/> false it skips the cast of h, the order a careless port would use.
    /// </summary>
    private static float[] HfRmsNormBf16(float[] x, float[] w, int d, float eps, bool castFirst)
    {
        var y = new float[x.Length];
        for (int r = 0; r < x.Length / d; r++)
        {
            double ss = 0;
            for (int i = 0; i < d; i++) ss += (double)x[r * d + i] * x[r * d + i];
            float variance = (float)ss / d;
            float rstd = 1f / MathF.Sqrt(variance + eps);
            for (int i = 0; i < d; i++)
            {
                float h = x[r * d + i] * rstd;
                if (castFirst) h = Bf16(h);
                y[r * d + i] = Bf16(w[i] * h);
            }
        }
        return y;
    }

    [Test]
    public void RmsNormBf16MatchesHuggingFaceBitForBit()
    {
        const int d = 896;
        // Values k/8 with |k| ≤ 32: their squares and sums are exact in float32, so the variance has one
        // possible float32 value and any difference left is in the order of the final operations.
        var rng = new Random(1234);
        var xs = Enumerable.Range(0, 5 * d).Select(_ => rng.Next(-32, 33) / 8f).ToArray();
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(xs, 5, d).To(DType.BF16);
        var w = Tensor.Normal([d], seed: 77, mean: 1, std: 0.3, dtype: DType.BF16);
        var wf = w.ToFloatArray();
        var y = x.RmsNorm(w, 1e-6);
        Assert.That(y.DType, Is.EqualTo(DType.BF16));
        var got = y.ToFloatArray();
        var hf = HfRmsNormBf16(xs, wf, d, 1e-6f, castFirst: true);
        var careless = HfRmsNormBf16(xs, wf, d, 1e-6f, castFirst: false);
        Assert.That(got, Is.EqualTo(hf), "bit-identical to HF's order");
        int differ = hf.Zip(careless).Count(p => p.First != p.Second);
        Assert.That(differ, Is.GreaterThan(20), "the data is sensitive to the order (else this test proves nothing)");
    }

    [Test]
    public void RmsNormBf16RandomInputsAgreeWithTheEmulation()
    {
        const int d = 1536;
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([16, d], seed: 5, std: 3, dtype: DType.BF16);
        var w = Tensor.Normal([d], seed: 6, mean: 1, std: 0.5, dtype: DType.BF16);
        var got = x.RmsNorm(w, 1e-6).ToFloatArray();
        var hf = HfRmsNormBf16(x.ToFloatArray(), w.ToFloatArray(), d, 1e-6f, castFirst: true);
        int exact = 0;
        for (int i = 0; i < got.Length; i++)
        {
            if (got[i] == hf[i]) { exact++; continue; }
            Assert.That(Math.Abs(got[i] - hf[i]), Is.LessThanOrEqualTo(Math.Abs(hf[i]) / 128), $"element {i}");
        }
        Assert.That(exact, Is.GreaterThanOrEqualTo(got.Length * 999 / 1000), "bit-identical almost everywhere");
    }

    private static double[] RmsRef(double[] x, int d, double[] w, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / d; r++)
        {
            double ss = 0;
            for (int i = 0; i < d; i++) ss += x[r * d + i] * x[r * d + i];
            double rstd = 1 / Math.Sqrt(ss / d + eps);
            for (int i = 0; i < d; i++) y[r * d + i] = w[i] * (x[r * d + i] * rstd);
        }
        return y;
    }

    [Test]
    public void RmsNormFloat32AndFloat64OnViews([Values(DType.F32, DType.F64)] DType dtype)
    {
        foreach (var d in new[] { 1, 7, 17, 33, 1000, 4100 })
        {
            using var scope = TensorScope.Begin();
            var x = Tensor.Normal([d, 5], seed: (ulong)d, std: 2, dtype: dtype).Transpose(0, 1);
            var w = Tensor.Normal([d], seed: 3, mean: 1, std: 0.2, dtype: dtype);
            var expected = RmsRef(x.ToDoubleArray(), d, w.ToDoubleArray(), 1e-6);
            var y = x.RmsNorm(w);
            Assert.That(y.DType, Is.EqualTo(dtype));
            ReduceRef.AssertClose(y.ToDoubleArray(), expected, Tolerance(dtype, expected), $"rmsnorm {dtype} d={d}");
            var yc = x.Contiguous().RmsNorm(w);
            ReduceRef.AssertClose(yc.ToDoubleArray(), expected, Tolerance(dtype, expected), $"rmsnorm contiguous {dtype} d={d}");
        }
    }

    [Test]
    public void RmsNormPromotesMixedDtypes()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([3, 64], seed: 1, dtype: DType.BF16);
        var w = Tensor.Normal([64], seed: 2, mean: 1, std: 0.1);
        var y = x.RmsNorm(w, 1e-5);
        Assert.That(y.DType, Is.EqualTo(DType.F32), "bf16 input times f32 weight is f32, as in PyTorch");
        // HF: h is rounded to bf16 (the input dtype) and then multiplied by the float32 weight in float32.
        var xf = x.ToFloatArray();
        var wf = w.ToFloatArray();
        var got = y.ToFloatArray();
        for (int r = 0; r < 3; r++)
        {
            double ss = 0;
            for (int i = 0; i < 64; i++) ss += (double)xf[r * 64 + i] * xf[r * 64 + i];
            float rstd = 1f / MathF.Sqrt((float)ss / 64 + 1e-5f);
            for (int i = 0; i < 64; i++)
                Assert.That(got[r * 64 + i], Is.EqualTo(wf[i] * Bf16(xf[r * 64 + i] * rstd)), $"row {r} element {i}");
        }
    }

    [Test]
    public void NormsRejectBadInput()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Zeros([4, 8]);
        var e1 = Assert.Throws<ArgumentException>(() => x.LayerNorm(Tensor.Ones([7]), null));
        Assert.That(e1!.Message, Does.Contain("LayerNorm").And.Contain("[7]").And.Contain("[4, 8]"));
        var e2 = Assert.Throws<ArgumentException>(() => x.RmsNorm(Tensor.Ones([8, 1])));
        Assert.That(e2!.Message, Does.Contain("RmsNorm"));
        Assert.Throws<ArgumentException>(() => x.RmsNorm(Tensor.Ones([8], DType.I32)));
        Assert.Throws<ArgumentException>(() => Tensor.Zeros([4, 8], DType.I64).LayerNorm(null, null));
        Assert.Throws<ArgumentException>(() => Tensor.Scalar(1).RmsNorm(Tensor.Ones([1])));
        var w = Tensor.Ones([8]);
        w.Dispose();
        Assert.Throws<ObjectDisposedException>(() => x.RmsNorm(w));
        Assert.That(Tensor.Zeros([0, 8]).LayerNorm(null, null).Shape.ToArray(), Is.EqualTo(new[] { 0, 8 }));
    }
}
