using Parrot.Tensors;
using Parrot.Tensors.Cpu;
using static Parrot.Tensors.Tests.TestUtil;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The fused training ops of the backend contract (IBackend.Training.cs) on the CPU backend, against float64
/// loops written from the formulas: F32 and F64 inputs, BF16 rounded once, contiguous and strided operands.
/// </summary>
public class TrainingOpsTests
{
    private const int Rows = 6, N = 37;

    /// <summary>[rows, n] values; strided: a transposed view of an [n, rows] tensor (last-axis stride ≠ 1).</summary>
    private static Tensor Input(ulong seed, DType dt, bool strided, int rows = Rows, int n = N, double mean = 0)
    {
        if (!strided) return Tensor.Normal([rows, n], seed, mean, 1, DType.F64).To(dt);
        using var t = Tensor.Normal([n, rows], seed, mean, 1, DType.F64).To(dt);
        return t.Transpose(0, 1);
    }

    private static (double Rtol, double Atol) Tol(DType dt) => dt switch
    {
        DType.F64 => (1e-12, 1e-12),
        DType.F32 => (2e-5, 2e-6),
        _ => (8e-3, 2e-3), // one bf16 rounding of a float32 result (2^-9 relative) plus float32 work on bf16 inputs
    };

    private static double[] Rounded(double[] v, DType dt) => dt switch
    {
        DType.BF16 => RoundBf16(v),
        DType.F32 => v.Select(a => (double)(float)a).ToArray(),
        _ => v,
    };

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16, DType.F64 })
            foreach (bool strided in new[] { false, true })
                yield return new TestCaseData(dt, strided).SetArgDisplayNames(dt.Name(), strided ? "strided" : "contiguous");
    }

    [TestCaseSource(nameof(Cases))]
    public void RmsNormBackwardMatchesFloat64Formula(DType dt, bool strided)
    {
        using var scope = TensorScope.Begin();
        var x = Input(1, dt, strided);
        var w = Tensor.Normal([N], 2, 1, 0.2, DType.F64).To(dt);
        var dy = Input(3, dt, !strided);
        const double eps = 1e-6;
        var (dx, dw) = Tensor.RmsNormBackward(x, w, eps, dy, weightGrad: true);
        Assert.That(dx.DType, Is.EqualTo(dt));
        Assert.That(dw!.DType, Is.EqualTo(dt == DType.F64 ? DType.F64 : DType.F32));

        double[] xs = x.ToDoubleArray(), ws = w.ToDoubleArray(), gs = dy.ToDoubleArray();
        var wantDx = new double[Rows * N];
        var wantDw = new double[N];
        for (int r = 0; r < Rows; r++)
        {
            double ss = 0, dot = 0;
            for (int j = 0; j < N; j++) { double v = xs[r * N + j]; ss += v * v; dot += ws[j] * gs[r * N + j] * v; }
            double rr = 1 / Math.Sqrt(ss / N + eps);
            for (int j = 0; j < N; j++)
            {
                wantDx[r * N + j] = rr * ws[j] * gs[r * N + j] - xs[r * N + j] * rr * rr * rr * dot / N;
                wantDw[j] += gs[r * N + j] * xs[r * N + j] * rr;
            }
        }
        var (rtol, atol) = Tol(dt);
        AssertClose(dx.ToDoubleArray(), wantDx, rtol, atol, "dx");
        AssertClose(dw.ToDoubleArray(), wantDw, dt == DType.F64 ? 1e-12 : 2e-5, dt == DType.F64 ? 1e-12 : 2e-5, "dweight");
    }

    [TestCaseSource(nameof(Cases))]
    public void LayerNormBackwardMatchesFloat64Formula(DType dt, bool strided)
    {
        foreach (bool withWeight in new[] { true, false })
        {
            using var scope = TensorScope.Begin();
            var x = Input(4, dt, strided, mean: 3); // an offset mean: the centring matters
            var w = withWeight ? Tensor.Normal([N], 5, 1, 0.2, DType.F64).To(dt) : null;
            var dy = Input(6, dt, !strided);
            const double eps = 1e-5;
            var (dx, dw, db) = Tensor.LayerNormBackward(x, w, eps, dy, weightGrad: true, biasGrad: true);

            double[] xs = x.ToDoubleArray(), gs = dy.ToDoubleArray();
            double[] ws = w?.ToDoubleArray() ?? Enumerable.Repeat(1.0, N).ToArray();
            var wantDx = new double[Rows * N];
            var wantDw = new double[N];
            var wantDb = new double[N];
            for (int r = 0; r < Rows; r++)
            {
                double mu = 0, var = 0;
                for (int j = 0; j < N; j++) mu += xs[r * N + j];
                mu /= N;
                for (int j = 0; j < N; j++) var += (xs[r * N + j] - mu) * (xs[r * N + j] - mu);
                double rr = 1 / Math.Sqrt(var / N + eps), mg = 0, mgx = 0;
                for (int j = 0; j < N; j++)
                {
                    double xh = (xs[r * N + j] - mu) * rr, g = gs[r * N + j] * ws[j];
                    mg += g / N; mgx += g * xh / N;
                    wantDw[j] += gs[r * N + j] * xh;
                    wantDb[j] += gs[r * N + j];
                }
                for (int j = 0; j < N; j++)
                {
                    double xh = (xs[r * N + j] - mu) * rr, g = gs[r * N + j] * ws[j];
                    wantDx[r * N + j] = rr * (g - mg - xh * mgx);
                }
            }
            var (rtol, atol) = Tol(dt);
            AssertClose(dx.ToDoubleArray(), wantDx, rtol, atol, $"dx (weight: {withWeight})");
            double acc = dt == DType.F64 ? 1e-12 : 2e-5;
            AssertClose(dw!.ToDoubleArray(), wantDw, acc, acc, "dweight");
            AssertClose(db!.ToDoubleArray(), wantDb, acc, acc, "dbias");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void SoftmaxBackwardMatchesFloat64Formula(DType dt, bool strided)
    {
        foreach (bool log in new[] { false, true })
        {
            using var scope = TensorScope.Begin();
            var x = Input(7, dt, strided);
            var y = log ? x.LogSoftmax(-1) : x.Softmax(-1);
            var dy = Input(8, dt, !strided);
            var dx = y.SoftmaxBackward(dy, -1, log);
            double[] ys = y.ToDoubleArray(), gs = dy.ToDoubleArray();
            var want = new double[Rows * N];
            for (int r = 0; r < Rows; r++)
            {
                double s = 0;
                for (int j = 0; j < N; j++) s += log ? gs[r * N + j] : gs[r * N + j] * ys[r * N + j];
                for (int j = 0; j < N; j++)
                    want[r * N + j] = log ? gs[r * N + j] - Math.Exp(ys[r * N + j]) * s : ys[r * N + j] * (gs[r * N + j] - s);
            }
            var (rtol, atol) = Tol(dt);
            AssertClose(dx.ToDoubleArray(), want, rtol, atol, log ? "log-softmax dx" : "softmax dx");
        }
    }

    [Test]
    public void SoftmaxBackwardAlongAFirstAxisEqualsTheTransposedLastAxis()
    {
        using var scope = TensorScope.Begin();
        var y = Tensor.Normal([9, 4], 9).Softmax(0);
        var dy = Tensor.Normal([9, 4], 10);
        var along0 = y.SoftmaxBackward(dy, 0, log: false).ToDoubleArray();
        var viaT = y.Transpose(0, 1).Contiguous().SoftmaxBackward(dy.Transpose(0, 1).Contiguous(), -1, log: false).Transpose(0, 1).Contiguous().ToDoubleArray();
        Assert.That(along0, Is.EqualTo(viaT));
    }

    public static IEnumerable<TestCaseData> CrossEntropyCases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16, DType.F64 })
            foreach (var red in new[] { LossReduction.Mean, LossReduction.Sum, LossReduction.None })
                yield return new TestCaseData(dt, red).SetArgDisplayNames(dt.Name(), red.ToString());
    }

    [TestCaseSource(nameof(CrossEntropyCases))]
    public void CrossEntropyBackwardMatchesSoftmaxMinusOneHot(DType dt, LossReduction reduction)
    {
        using var scope = TensorScope.Begin();
        const int rows = 7, classes = 23;
        var logits = Input(11, dt, strided: true, rows, classes);
        long[] t = [3, -100, 0, 22, 5, -100, 17];
        var targets = Tensor.FromArray(t, rows);
        var (loss, lse) = Tensor.CrossEntropyWithLogSumExp(logits, targets, -100, reduction);
        var plain = Tensor.CrossEntropy(logits, targets, -100, reduction);
        Assert.That(loss.ToDoubleArray(), Is.EqualTo(plain.ToDoubleArray()), "the forward with log-sum-exp gives the same loss");
        var dloss = reduction == LossReduction.None ? Tensor.Normal([rows], 12, dtype: loss.DType) : Tensor.Full([], 0.7, loss.DType);
        var dl = Tensor.CrossEntropyBackward(logits, targets, -100, reduction, lse, dloss);
        Assert.That(dl.DType, Is.EqualTo(dt));

        double[] z = logits.ToDoubleArray(), g = dloss.ToDoubleArray(), lses = lse.ToDoubleArray();
        int counted = t.Count(v => v != -100);
        var want = new double[rows * classes];
        for (int r = 0; r < rows; r++)
        {
            double m = double.NegativeInfinity, s = 0;
            for (int j = 0; j < classes; j++) m = Math.Max(m, z[r * classes + j]);
            for (int j = 0; j < classes; j++) s += Math.Exp(z[r * classes + j] - m);
            Assert.That(lses[r], Is.EqualTo(m + Math.Log(s)).Within(1e-5 * Math.Abs(m + Math.Log(s)) + 1e-6), $"log-sum-exp of row {r}");
            if (t[r] == -100) continue;
            double scale = reduction switch { LossReduction.Mean => g[0] / counted, LossReduction.Sum => g[0], _ => g[r] };
            for (int j = 0; j < classes; j++)
                want[r * classes + j] = (Math.Exp(z[r * classes + j] - m) / s - (j == t[r] ? 1 : 0)) * scale;
        }
        var (rtol, atol) = Tol(dt);
        AssertClose(dl.ToDoubleArray(), want, rtol, dt == DType.F64 ? 1e-12 : atol, "dlogits");
    }

    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    [TestCase(DType.F64)]
    public void EmbeddingBackwardSumsEachRowInAscendingTokenOrder(DType dt)
    {
        using var scope = TensorScope.Begin();
        const int vocab = 11, dim = 9;
        long[] ids = [4, 0, 4, 10, 4, 3, 0, 4, 4, 7, 10, 4];
        var idT = Tensor.FromArray(ids, 3, 4);
        var dy = Tensor.Normal([3, 4, dim], 13, dtype: DType.F64).To(dt == DType.F64 ? DType.F64 : DType.F32);
        var dw = Tensor.EmbeddingBackward(idT, dy, vocab, dt);
        Assert.That(dw.Shape.ToArray(), Is.EqualTo(new[] { vocab, dim }));
        Assert.That(dw.DType, Is.EqualTo(dt));
        // The contract: per row, ascending token order in float32 (float64 for F64), rounded once.
        var g = dy.ToDoubleArray();
        var want = new double[vocab * dim];
        for (int v = 0; v < vocab; v++)
            for (int j = 0; j < dim; j++)
            {
                float f = 0; double d = 0;
                for (int k = 0; k < ids.Length; k++)
                    if (ids[k] == v) { f += (float)g[k * dim + j]; d += g[k * dim + j]; }
                want[v * dim + j] = dt == DType.F64 ? d : f;
            }
        Assert.That(dw.ToDoubleArray(), Is.EqualTo(Rounded(want, dt)), "bit for bit");
    }

    [Test]
    public void EmbeddingBackwardDoesNotDependOnTheThreadCount()
    {
        int saved = CpuParallel.Workers;
        try
        {
            using var scope = TensorScope.Begin();
            const int vocab = 300, dim = 64, tokens = 4000;
            var ids = Tensor.Uniform([tokens], 14, 0, 1, DType.F64).ToDoubleArray().Select(u => (long)(u * u * vocab)).ToArray(); // skewed: a few heavy rows
            var idT = Tensor.FromArray(ids, tokens);
            var dy = Tensor.Normal([tokens, dim], 15);
            CpuParallel.Workers = 1;
            var one = Tensor.EmbeddingBackward(idT, dy, vocab, DType.F32).ToFloatArray();
            CpuParallel.Workers = 2;
            var two = Tensor.EmbeddingBackward(idT, dy, vocab, DType.F32).ToFloatArray();
            Assert.That(two, Is.EqualTo(one));
        }
        finally { CpuParallel.Workers = saved; }
    }

    [Test]
    public void EmbeddingBackwardAddsIntoAnExistingGradientAndRefusesBadIds()
    {
        using var scope = TensorScope.Begin();
        var dw = Tensor.Full([3, 2], 1.0);
        var dy = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 2, 2);
        dw.Backend.EmbeddingBackward(Tensor.FromArray(new long[] { 2, 2 }, 2), dy, dw);
        Assert.That(dw.ToFloatArray(), Is.EqualTo(new float[] { 1, 1, 1, 1, 5, 7 }));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => dw.Backend.EmbeddingBackward(Tensor.FromArray(new long[] { 1, 3 }, 2), dy, dw));
        Assert.That(ex!.Message, Does.Contain("id 3 at position 1"));
        Assert.Throws<ArgumentException>(() => Tensor.EmbeddingBackward(Tensor.FromArray(new long[] { 1, 2, 0 }, 3), dy, 3, DType.F32));
    }

    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    [TestCase(DType.F64)]
    public void SwiGluEqualsSiluTimesUpBitForBit(DType dt)
    {
        using var scope = TensorScope.Begin();
        var gate = Input(16, dt, strided: true, 5, 300);
        var up = Input(17, dt, strided: false, 5, 300);
        var fused = Tensor.SwiGlu(gate, up);
        var composite = gate.Silu() * up;
        Assert.That(fused.ToDoubleArray(), Is.EqualTo(composite.ToDoubleArray()));
    }

    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    [TestCase(DType.F64)]
    public void SwiGluBackwardMatchesFloat64Formula(DType dt)
    {
        using var scope = TensorScope.Begin();
        var gate = Input(18, dt, strided: true, 4, 700);
        var up = Input(19, dt, strided: false, 4, 700);
        var dy = Input(20, dt, strided: true, 4, 700);
        var (dg, du) = Tensor.SwiGluBackward(dy, gate, up);
        double[] g = gate.ToDoubleArray(), u = up.ToDoubleArray(), d = dy.ToDoubleArray();
        var wantG = new double[g.Length];
        var wantU = new double[g.Length];
        for (int i = 0; i < g.Length; i++)
        {
            double s = 1 / (1 + Math.Exp(-g[i]));
            wantU[i] = d[i] * g[i] * s;
            wantG[i] = d[i] * u[i] * s * (1 + g[i] * (1 - s));
        }
        var (rtol, atol) = Tol(dt);
        AssertClose(dg.ToDoubleArray(), wantG, rtol, atol, "dgate");
        AssertClose(du.ToDoubleArray(), wantU, rtol, atol, "dup");
    }

    [Test]
    public void FrontEndsRefuseMismatchedShapes()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([3, 4], 1);
        var w = Tensor.Ones([4]);
        Assert.Throws<ArgumentException>(() => Tensor.RmsNormBackward(x, w, 1e-6, Tensor.Normal([3, 5], 2), true));
        Assert.Throws<ArgumentException>(() => Tensor.RmsNormBackward(x, Tensor.Ones([5]), 1e-6, x, true));
        Assert.Throws<ArgumentException>(() => Tensor.LayerNormBackward(x, null, 1e-5, Tensor.Normal([4, 3], 2), false, false));
        Assert.Throws<ArgumentException>(() => x.SoftmaxBackward(Tensor.Normal([3], 2), -1, false));
        Assert.Throws<ArgumentException>(() => Tensor.SwiGlu(x, Tensor.Normal([3, 5], 2)));
        Assert.Throws<ArgumentException>(() => Tensor.SwiGluBackward(Tensor.Normal([3, 5], 2), x, x));
        var bad = Assert.Throws<ArgumentException>(() => x.Backend.RmsNormBackward(x, w, 1e-6, x, Tensor.Empty([3, 4]), Tensor.Zeros([3])));
        Assert.That(bad!.Message, Does.Contain("dweight"));
    }
}
