using Parrot.Tensors;
using static Parrot.Tensors.Tests.TestUtil;

namespace Parrot.Tensors.Tests;

public class ElementwiseTests
{
    /// <summary>erf by Simpson integration of 2/√π·e^{-t²} (independent of the engine's series/rational forms).</summary>
    internal static double ErfRef(double x)
    {
        int n = 4000;
        double h = x / n, s = 1 + Math.Exp(-x * x);
        for (int i = 1; i < n; i++) s += (i % 2 == 1 ? 4 : 2) * Math.Exp(-(i * h) * (i * h));
        return 2 / Math.Sqrt(Math.PI) * s * h / 3;
    }

    private static double Sig(double x) => 1 / (1 + Math.Exp(-x));

    private static readonly (UnaryOp op, Func<double, double> f, double lo, double hi)[] UnaryCases =
    [
        (UnaryOp.Neg, x => -x, -5, 5),
        (UnaryOp.Abs, Math.Abs, -5, 5),
        (UnaryOp.Exp, Math.Exp, -20, 20),
        (UnaryOp.Log, Math.Log, 1e-3, 100),
        (UnaryOp.Sqrt, Math.Sqrt, 0, 100),
        (UnaryOp.Rsqrt, x => 1 / Math.Sqrt(x), 1e-2, 100),
        (UnaryOp.Tanh, Math.Tanh, -8, 8),
        (UnaryOp.Sigmoid, Sig, -30, 30),
        (UnaryOp.Silu, x => x * Sig(x), -30, 30),
        (UnaryOp.GeluErf, x => 0.5 * x * (1 + ErfRef(x / Math.Sqrt(2))), -8, 8),
        (UnaryOp.GeluTanh, x => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))), -8, 8),
        (UnaryOp.QuickGelu, x => x * Sig(1.702 * x), -30, 30),
        (UnaryOp.Relu, x => Math.Max(x, 0), -5, 5),
        (UnaryOp.Sin, Math.Sin, -10, 10),
        (UnaryOp.Cos, Math.Cos, -10, 10),
        (UnaryOp.Square, x => x * x, -100, 100),
        (UnaryOp.Reciprocal, x => 1 / x, 0.01, 100),
        (UnaryOp.Erf, ErfRef, -5, 5),
    ];

    public static IEnumerable<TestCaseData> UnaryOps() => UnaryCases.Select(c => new TestCaseData(c.op).SetName($"Unary_{c.op}"));

    /// <summary>Per-dtype tolerances: float32 within a few ulp (absolute near zero), bf16 one bf16 rounding of the result, float64 near exact.</summary>
    private static (double rtol, double atol) Tolerance(DType dt, UnaryOp op) => dt switch
    {
        DType.F64 => (1e-12, op is UnaryOp.GeluErf or UnaryOp.GeluTanh ? 1e-13 : 1e-14),
        // GELU's 1 + erf(x) (or 1 + tanh) cancels for negative x, as in PyTorch's float kernel: the
        // absolute error is about |x|·ulp(1).
        DType.F32 => (op is UnaryOp.Sin or UnaryOp.Cos ? 1e-6 : 2e-6, op is UnaryOp.GeluErf or UnaryOp.GeluTanh ? 1e-6 : 2e-7),
        _ => (8e-3, 1e-6),
    };

    [TestCaseSource(nameof(UnaryOps))]
    public void UnaryMatchesFloat64Reference(UnaryOp op)
    {
        var c = UnaryCases.Single(u => u.op == op);
        foreach (var dt in new[] { DType.F32, DType.F64, DType.BF16 })
        foreach (var n in new[] { 1, 7, 17, 33, 1000, 70_001 }) // the last crosses the parallel threshold and the row chunk size
        {
            using var scope = TensorScope.Begin();
            var x = Tensor.Uniform([n], seed: (ulong)(n + (int)op), low: c.lo, high: c.hi, dtype: dt);
            var y = x.Map(op);
            Assert.That(y.DType, Is.EqualTo(dt));
            var xs = x.ToDoubleArray();
            var expected = xs.Select(c.f).ToArray();
            if (dt == DType.BF16) expected = RoundBf16(expected);
            var (rtol, atol) = Tolerance(dt, op);
            AssertClose(y.ToDoubleArray(), expected, rtol, atol, $"{op} {dt.Name()} n={n}");
        }
    }

    /// <summary>
    /// The float32 sigmoid (and silu, quick_gelu on it) at the edges, in the vector body and the scalar tail alike:
    /// ±∞ give 1 and 0, NaN stays NaN, far-negative inputs give (almost) 0 without overflow, large positive ones 1.
    /// </summary>
    [Test]
    public void Float32SigmoidAtTheEdges()
    {
        float[] edges = [float.PositiveInfinity, float.NegativeInfinity, float.NaN, -100f, -88f, -87f, 100f, 20f, -20f, 0f, -0f];
        // Nine copies: the first eight values of each copy fill a vector, the rest land in the tail.
        var xs = Enumerable.Repeat(edges, 9).SelectMany(e => e).ToArray();
        using var scope = TensorScope.Begin();
        var y = Tensor.FromArray(xs).Map(UnaryOp.Sigmoid).ToArray<float>();
        var silu = Tensor.FromArray(xs).Map(UnaryOp.Silu).ToArray<float>();
        for (int i = 0; i < xs.Length; i++)
        {
            double x = xs[i];
            if (float.IsNaN(xs[i])) { Assert.That(float.IsNaN(y[i]) && float.IsNaN(silu[i]), $"x = NaN at {i}"); continue; }
            double expected = double.IsPositiveInfinity(x) ? 1 : double.IsNegativeInfinity(x) ? 0 : 1 / (1 + Math.Exp(-x));
            Assert.That(y[i], Is.EqualTo(expected).Within(Math.Max(2e-6 * expected, 1e-37)), $"sigmoid({x}) at {i}");
            if (!double.IsInfinity(x)) Assert.That(silu[i], Is.EqualTo(x * expected).Within(Math.Max(2e-6 * Math.Abs(x * expected), 1e-35)), $"silu({x}) at {i}");
        }
    }

    [TestCaseSource(nameof(UnaryOps))]
    public void UnaryOnNonContiguousViews(UnaryOp op)
    {
        var c = UnaryCases.Single(u => u.op == op);
        using var scope = TensorScope.Begin();
        var baseT = Tensor.Uniform([37, 129], seed: 99, low: c.lo, high: c.hi);
        var views = new[] { baseT.Transpose(), baseT.Slice(1, 3, 120, 5), baseT.Narrow(0, 2, 11).Slice(0, step: 2) };
        foreach (var v in views)
        {
            var y = v.Map(op);
            Assert.That(y.Shape.ToArray(), Is.EqualTo(v.Shape.ToArray()));
            var expected = v.ToDoubleArray().Select(c.f).ToArray();
            var (rtol, atol) = Tolerance(DType.F32, op);
            AssertClose(y.ToDoubleArray(), expected, rtol, atol, $"{op} view {v.ShapeString()}");
        }
    }

    [Test]
    public void UnaryOnIntegersKeepsOrPromotesType()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(new long[] { -3, 0, 5, long.MinValue + 1 });
        Assert.That(x.Abs().ToArray<long>(), Is.EqualTo(new long[] { 3, 0, 5, long.MaxValue }));
        Assert.That(x.Neg().ToArray<long>(), Is.EqualTo(new long[] { 3, 0, -5, long.MaxValue }));
        Assert.That(x.Relu().ToArray<long>(), Is.EqualTo(new long[] { 0, 0, 5, 0 }));
        var i = Tensor.FromArray(new int[] { 0, 1, 2 });
        var e = i.Exp();
        Assert.That(e.DType, Is.EqualTo(DType.F32));
        AssertClose(e.ToDoubleArray(), [1, Math.E, Math.E * Math.E], 1e-6, 0);
        var b = Tensor.FromArray(new bool[] { true });
        Assert.Throws<ArgumentException>(() => b.Exp());
    }

    private static readonly (BinaryOp op, Func<double, double, double> f)[] BinaryCases =
    [
        (BinaryOp.Add, (a, b) => a + b),
        (BinaryOp.Sub, (a, b) => a - b),
        (BinaryOp.Mul, (a, b) => a * b),
        (BinaryOp.Div, (a, b) => a / b),
        (BinaryOp.Pow, Math.Pow),
        (BinaryOp.Maximum, Math.Max),
        (BinaryOp.Minimum, Math.Min),
        (BinaryOp.Eq, (a, b) => a == b ? 1 : 0),
        (BinaryOp.Ne, (a, b) => a != b ? 1 : 0),
        (BinaryOp.Lt, (a, b) => a < b ? 1 : 0),
        (BinaryOp.Le, (a, b) => a <= b ? 1 : 0),
        (BinaryOp.Gt, (a, b) => a > b ? 1 : 0),
        (BinaryOp.Ge, (a, b) => a >= b ? 1 : 0),
    ];

    public static IEnumerable<TestCaseData> BinaryOps() => BinaryCases.Select(c => new TestCaseData(c.op).SetName($"Binary_{c.op}"));

    private static readonly (int[] a, int[] b)[] BroadcastShapes =
    [
        ([5], [5]), ([1], [9]), ([], [4, 3]), ([3, 1, 5], [4, 1]), ([2, 3, 4], [3, 1]), ([1, 4099], [3, 1]), ([513, 260], [260]), ([0, 3], [1, 3]),
    ];

    [TestCaseSource(nameof(BinaryOps))]
    public void BinaryBroadcastsAndMatchesReference(BinaryOp op)
    {
        var f = BinaryCases.Single(c => c.op == op).f;
        foreach (var dt in new[] { DType.F32, DType.F64, DType.BF16, DType.I32, DType.I64 })
        foreach (var (sa, sb) in BroadcastShapes)
        {
            using var scope = TensorScope.Begin();
            // Small integers in floats too, so comparisons see equal values; positive bases for pow.
            double lo = op == BinaryOp.Pow ? 0.5 : -4, hi = op == BinaryOp.Pow ? 3 : 4;
            var a = RoundedUniform(sa, 11, lo, hi, dt, integers: dt.IsInteger() || op >= BinaryOp.Eq);
            var b = RoundedUniform(sb, 12, op == BinaryOp.Div ? 1 : lo, hi, dt, integers: dt.IsInteger() || op >= BinaryOp.Eq);
            if (op == BinaryOp.Div && !dt.IsFloat()) b = RoundedUniform(sb, 12, 1, 4, dt, integers: true);
            var y = Tensor.Apply(op, a, b);
            var shape = Tensor.BroadcastShapes(sa, sb, "test");
            Assert.That(y.Shape.ToArray(), Is.EqualTo(shape));
            var ad = a.ToDoubleArray(); var bd = b.ToDoubleArray();
            var expected = new double[y.Count];
            for (long i = 0; i < y.Count; i++)
            {
                var idx = Unflatten(i, shape);
                expected[i] = f(AtBroadcast(ad, sa, idx), AtBroadcast(bd, sb, idx));
            }
            var expectedType = op.IsComparison() ? DType.Bool : op == BinaryOp.Div && !dt.IsFloat() ? DType.F32 : dt;
            Assert.That(y.DType, Is.EqualTo(expectedType), $"{op} {dt}");
            if (expectedType == DType.BF16) expected = RoundBf16(expected);
            if (expectedType == DType.F32 && dt.IsInteger()) expected = expected.Select(v => (double)(float)v).ToArray<double>();
            double rtol = expectedType switch { DType.F64 => 1e-14, DType.F32 => op == BinaryOp.Pow ? 2e-6 : 1e-7, DType.BF16 => 8e-3, _ => 0 };
            AssertClose(y.ToDoubleArray(), expected, rtol, 0, $"{op} {dt.Name()} {Tensor.FormatShape(sa)}·{Tensor.FormatShape(sb)}");
        }
    }

    private static Tensor RoundedUniform(int[] shape, ulong seed, double lo, double hi, DType dt, bool integers)
    {
        using var u = Tensor.Uniform(shape, seed, lo, hi, DType.F64);
        if (!integers) return u.To(dt);
        var v = u.ToDoubleArray().Select(x => Math.Round(x)).ToArray();
        using var r = Tensor.FromArray(v, shape.Length == 0 ? [] : shape);
        return r.To(dt);
    }

    [Test]
    public void BinaryOnNonContiguousOperandsAndLargeSizes()
    {
        using var scope = TensorScope.Begin();
        var a = Tensor.Normal([700, 901], seed: 1);
        var b = Tensor.Normal([901, 700], seed: 2).Transpose();
        var y = a * b + 1.5;
        var ad = a.ToDoubleArray(); var bd = b.ToDoubleArray();
        var expected = ad.Select((v, i) => (double)(float)((float)(v * bd[i]) + 1.5f)).ToArray();
        AssertClose(y.ToDoubleArray(), expected, 1e-7, 0, "a*b+1.5");
        var s = a.Slice(0, 1, null, 3) - b.Slice(0, 1, null, 3);
        var sd = s.ToDoubleArray();
        Assert.That(sd.Length, Is.EqualTo(233 * 901));
        Assert.That(sd[5], Is.EqualTo((double)(float)(ad[901 + 5] - bd[901 + 5])));
    }

    [Test]
    public void TypePromotionFollowsPyTorch()
    {
        Assert.That(DTypeInfo.Promote(DType.I32, DType.F32), Is.EqualTo(DType.F32));
        Assert.That(DTypeInfo.Promote(DType.BF16, DType.F16), Is.EqualTo(DType.F32));
        Assert.That(DTypeInfo.Promote(DType.BF16, DType.I64), Is.EqualTo(DType.BF16));
        Assert.That(DTypeInfo.Promote(DType.U8, DType.I32), Is.EqualTo(DType.I32));
        Assert.That(DTypeInfo.Promote(DType.Bool, DType.U8), Is.EqualTo(DType.U8));
        using var scope = TensorScope.Begin();
        var i = Tensor.FromArray(new int[] { 1, 2 });
        var f = Tensor.FromArray(new float[] { 0.5f, 0.25f });
        Assert.That((i + f).DType, Is.EqualTo(DType.F32));
        Assert.That((i * 2).DType, Is.EqualTo(DType.I32));
        Assert.That((i * 2.5).DType, Is.EqualTo(DType.F32));
        Assert.That((i * 2.5).ToArray<float>(), Is.EqualTo(new float[] { 2.5f, 5f }));
        var bf = f.To(DType.BF16);
        Assert.That((bf * 3).DType, Is.EqualTo(DType.BF16));
    }

    [Test]
    public void ScalarOperatorsOnBothSides()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(new float[] { 1, 2, 4 });
        Assert.That((10 - x).ToArray<float>(), Is.EqualTo(new float[] { 9, 8, 6 }));
        Assert.That((8 / x).ToArray<float>(), Is.EqualTo(new float[] { 8, 4, 2 }));
        Assert.That((2 * x + 1).ToArray<float>(), Is.EqualTo(new float[] { 3, 5, 9 }));
        Assert.That((-x).ToArray<float>(), Is.EqualTo(new float[] { -1, -2, -4 }));
        Assert.That(x.Pow(2).ToArray<float>(), Is.EqualTo(new float[] { 1, 4, 16 }));
    }

    [Test]
    public void MaximumAndMinimumPropagateNaN()
    {
        using var scope = TensorScope.Begin();
        var a = Tensor.FromArray(new float[] { float.NaN, 1, 2 });
        var b = Tensor.FromArray(new float[] { 0, float.NaN, 3 });
        var mx = a.Maximum(b).ToArray<float>();
        Assert.That(float.IsNaN(mx[0]) && float.IsNaN(mx[1]) && mx[2] == 3, Is.True);
        var mn = a.Minimum(b).ToArray<float>();
        Assert.That(float.IsNaN(mn[0]) && float.IsNaN(mn[1]) && mn[2] == 2, Is.True);
    }

    [Test]
    public void WhereBroadcastsAllThree()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([4, 1, 6], seed: 5);
        var cond = x.Gt(Tensor.Scalar(0));
        var a = Tensor.Arange(6, DType.F32);
        var b = Tensor.Full([3, 1], -1);
        var y = Tensor.Where(cond, a, b);
        Assert.That(y.Shape.ToArray(), Is.EqualTo(new[] { 4, 3, 6 }));
        var xd = x.ToDoubleArray(); var yd = y.ToDoubleArray();
        for (int i = 0; i < 4; i++) for (int j = 0; j < 3; j++) for (int k = 0; k < 6; k++)
            Assert.That(yd[(i * 3 + j) * 6 + k], Is.EqualTo(xd[i * 6 + k] > 0 ? k : -1));
        Assert.Throws<ArgumentException>(() => Tensor.Where(x, a, b), "non-bool condition");
    }

    [Test]
    public void ShapeMismatchNamesOpAndShapes()
    {
        using var scope = TensorScope.Begin();
        var a = Tensor.Zeros([2, 3]);
        var b = Tensor.Zeros([4]);
        var ex = Assert.Throws<ArgumentException>(() => _ = a + b)!;
        Assert.That(ex.Message, Does.Contain("Add").And.Contain("[2, 3]").And.Contain("[4]"));
    }

    [Test]
    public void DisposedTensorThrowsNamingTheOp()
    {
        var a = Tensor.Zeros([2]);
        a.Dispose();
        a.Dispose(); // idempotent
        var ex = Assert.Throws<ObjectDisposedException>(() => a.Exp())!;
        Assert.That(ex.Message, Does.Contain("Exp"));
        using var b = Tensor.Zeros([2]);
        Assert.Throws<ObjectDisposedException>(() => _ = a + b);
    }
}
