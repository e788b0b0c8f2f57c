using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Autograd.Tests;

/// <summary>Every backward rule against central finite differences in float64.</summary>
public class GradCheckTests
{
    private static Tensor R(ulong seed, params int[] shape) => TensorScope.Detach(Tensor.Normal(shape, seed, dtype: DType.F64));
    private static Tensor U(ulong seed, double lo, double hi, params int[] shape) => TensorScope.Detach(Tensor.Uniform(shape, seed, lo, hi, DType.F64));

    private static void Check(Func<Variable[], Variable> f, params Tensor[] inputs)
    {
        using var scope = TensorScope.Begin();
        GradCheck.Check(f, inputs, eps: 1e-6, atol: 1e-7, rtol: 1e-5);
    }

    public static IEnumerable<TestCaseData> Unary()
    {
        yield return new TestCaseData("Neg", (Func<Variable, Variable>)(x => x.Neg()), -2.0, 2.0);
        yield return new TestCaseData("Abs", (Func<Variable, Variable>)(x => x.Abs()), 0.1, 2.0);
        yield return new TestCaseData("Exp", (Func<Variable, Variable>)(x => x.Exp()), -2.0, 2.0);
        yield return new TestCaseData("Log", (Func<Variable, Variable>)(x => x.Log()), 0.2, 3.0);
        yield return new TestCaseData("Sqrt", (Func<Variable, Variable>)(x => x.Sqrt()), 0.2, 3.0);
        yield return new TestCaseData("Rsqrt", (Func<Variable, Variable>)(x => x.Rsqrt()), 0.2, 3.0);
        yield return new TestCaseData("Tanh", (Func<Variable, Variable>)(x => x.Tanh()), -2.0, 2.0);
        yield return new TestCaseData("Sigmoid", (Func<Variable, Variable>)(x => x.Sigmoid()), -3.0, 3.0);
        yield return new TestCaseData("Silu", (Func<Variable, Variable>)(x => x.Silu()), -3.0, 3.0);
        yield return new TestCaseData("GeluErf", (Func<Variable, Variable>)(x => x.Gelu()), -3.0, 3.0);
        yield return new TestCaseData("GeluTanh", (Func<Variable, Variable>)(x => x.Gelu(true)), -3.0, 3.0);
        yield return new TestCaseData("QuickGelu", (Func<Variable, Variable>)(x => x.QuickGelu()), -3.0, 3.0);
        yield return new TestCaseData("Relu", (Func<Variable, Variable>)(x => x.Relu()), 0.1, 2.0);
        yield return new TestCaseData("Sin", (Func<Variable, Variable>)(x => x.Sin()), -3.0, 3.0);
        yield return new TestCaseData("Cos", (Func<Variable, Variable>)(x => x.Cos()), -3.0, 3.0);
        yield return new TestCaseData("Square", (Func<Variable, Variable>)(x => x.Square()), -2.0, 2.0);
        yield return new TestCaseData("Reciprocal", (Func<Variable, Variable>)(x => x.Reciprocal()), 0.3, 2.0);
        yield return new TestCaseData("Erf", (Func<Variable, Variable>)(x => x.Erf()), -2.0, 2.0);
        yield return new TestCaseData("PowScalar", (Func<Variable, Variable>)(x => x.Pow(2.5)), 0.3, 2.0);
    }

    [TestCaseSource(nameof(Unary))]
    public void UnaryRules(string name, Func<Variable, Variable> f, double lo, double hi)
    {
        Check(v => f(v[0]), U(1, lo, hi, 3, 5));
        // A non-contiguous input: every other column of a transposed matrix.
        var baseT = U(2, lo, hi, 6, 4);
        Check(v => f(v[0]), baseT.Transpose().Slice(1, step: 2));
    }

    public static IEnumerable<TestCaseData> Binary()
    {
        int[][][] shapes = [[[3, 4], [3, 4]], [[3, 1, 4], [2, 1]], [[4], [2, 3, 4]], [[], [3]]];
        foreach (var op in new[] { BinaryOp.Add, BinaryOp.Sub, BinaryOp.Mul, BinaryOp.Div, BinaryOp.Pow, BinaryOp.Maximum, BinaryOp.Minimum })
            foreach (var s in shapes)
                yield return new TestCaseData(op, s[0], s[1]).SetName($"Binary_{op}_{Tensor.FormatShape(s[0])}_{Tensor.FormatShape(s[1])}");
    }

    [TestCaseSource(nameof(Binary))]
    public void BinaryRulesWithBroadcasting(BinaryOp op, int[] sa, int[] sb)
    {
        // Positive bases for pow and well-separated values for max/min (no ties within ε).
        var a = op == BinaryOp.Pow ? U(3, 0.5, 2, sa) : R(3, sa);
        var b = op is BinaryOp.Div or BinaryOp.Pow ? U(4, 0.5, 2, sb) : R(4, sb);
        Check(v => Variable.Apply(op, v[0], v[1]), a, b);
    }

    [Test]
    public void MaximumSplitsTiesEvenly()
    {
        using var scope = TensorScope.Begin();
        var a = new Variable(Tensor.FromArray(new double[] { 1, 2, 3 }), true);
        var b = new Variable(Tensor.FromArray(new double[] { 1, 5, 0 }), true);
        a.Maximum(b).Sum().Backward();
        Assert.That(a.Grad!.ToArray<double>(), Is.EqualTo(new[] { 0.5, 0, 1 }));
        Assert.That(b.Grad!.ToArray<double>(), Is.EqualTo(new[] { 0.5, 1, 0 }));
    }

    [Test]
    public void ViewRules()
    {
        var x = R(5, 2, 3, 4);
        Check(v => v[0].Reshape(4, 6) * v[0].Reshape(4, 6), x);
        Check(v => v[0].Permute(2, 0, 1).Exp(), x);
        Check(v => v[0].Transpose(0, 2).Sin(), x);
        Check(v => v[0].Narrow(2, 1, 2).Square(), x);
        Check(v => v[0].Slice(2, 0, null, 2).Square(), x);
        Check(v => v[0].Select(1, -1).Square(), x);
        Check(v => v[0].Narrow(1, 0, 1).Expand(2, 5, 4).Square(), x);
        Check(v => v[0].Unsqueeze(1).Squeeze(1).Flatten().Square(), x);
        Check(v => v[0].Transpose().Contiguous().Square(), x);
    }

    [Test]
    public void ReductionRules()
    {
        var x = R(6, 3, 4, 5);
        Check(v => v[0].Sum([1], false).Square(), x);
        Check(v => v[0].Sum([0, 2], true).Square(), x);
        Check(v => v[0].Sum().Square(), x);
        Check(v => v[0].Mean([2], false).Square(), x);
        Check(v => v[0].Mean([0, 1], true).Square(), x);
        Check(v => v[0].Max([1], false).Square(), x);
        Check(v => v[0].Min([0, 2], true).Square(), x);
        Check(v => v[0].Variance([2], 1).Sqrt(), x);
        Check(v => v[0].Variance([0, 1], 0, keepDim: true), x);
        Check(v => v[0].Transpose(0, 2).Sum([0]).Square(), x);
    }

    [Test]
    public void SoftmaxAndNormRules()
    {
        var x = R(7, 3, 6);
        Check(v => v[0].Softmax(-1), x);
        Check(v => v[0].Softmax(0), x);
        Check(v => v[0].LogSoftmax(-1), x);
        Check(v => v[0].Transpose().LogSoftmax(-1), x);
        var w = R(8, 6); var b = R(9, 6);
        Check(v => v[0].LayerNorm(v[1], v[2], 1e-5), x, w, b);
        Check(v => v[0].LayerNorm(null, null, 1e-5), x);
        Check(v => v[0].RmsNorm(v[1], 1e-6), x, w);
        Check(v => v[0].Transpose().RmsNorm(v[1], 1e-6), R(10, 4, 3), R(11, 4));
    }

    [Test]
    public void CrossEntropyRule()
    {
        using var scope = TensorScope.Begin();
        var t = Tensor.FromArray(new long[] { 2, -100, 0, 4 });
        var z = R(12, 4, 5);
        foreach (var red in new[] { LossReduction.Mean, LossReduction.Sum, LossReduction.None })
            GradCheck.Check(v => Variable.CrossEntropy(v[0], t, -100, red), [z]);
    }

    [Test]
    public void MatMulRules()
    {
        Check(v => v[0].MatMul(v[1]), R(13, 3, 4), R(14, 4, 5));
        Check(v => v[0].MatMul(v[1]), R(15, 2, 1, 3, 4), R(16, 3, 4, 2));
        Check(v => v[0].MatMul(v[1]), R(17, 4), R(18, 4, 3));
        Check(v => v[0].MatMul(v[1]), R(19, 2, 3, 4), R(20, 4));
        Check(v => v[0].Transpose().MatMul(v[1].Transpose()), R(21, 4, 3), R(22, 5, 4));
        // Linear's form: a batch of rows times a transposed weight (folded into one product, the weight's gradient
        // computed in the weight's own layout).
        Check(v => v[0].MatMul(v[1].Transpose()), R(41, 2, 3, 4), R(42, 5, 4));
        Check(v => v[0].Transpose(0, 1).MatMul(v[1].Transpose()), R(43, 3, 2, 4), R(44, 5, 4));
    }

    [Test]
    public void FoldedMatMulWithEmptyInnerOrBatchDims()
    {
        using var scope = TensorScope.Begin();
        // K = 0: the rows of the folded product cannot be inferred from zero elements; the result is zeros.
        var x = new Variable(Tensor.Zeros([2, 3, 0], DType.F64, Device.Cpu), requiresGrad: true);
        var w = new Variable(Tensor.Zeros([0, 5], DType.F64, Device.Cpu), requiresGrad: true);
        var y = x.MatMul(w);
        Assert.That(y.Shape.ToArray(), Is.EqualTo(new[] { 2, 3, 5 }));
        Assert.That(y.Value.ToArray<double>(), Is.All.EqualTo(0.0));
        // An empty batch: no rows, a zero weight gradient.
        var e = new Variable(Tensor.Zeros([0, 3, 4], DType.F64, Device.Cpu), requiresGrad: true);
        var v = new Variable(Tensor.Ones([4, 5], DType.F64, Device.Cpu), requiresGrad: true);
        var z = e.MatMul(v);
        Assert.That(z.Shape.ToArray(), Is.EqualTo(new[] { 0, 3, 5 }));
        z.Sum().Backward();
        Assert.That(v.Grad!.ToArray<double>(), Is.All.EqualTo(0.0));
    }

    [Test]
    public void MatMulBiasRule()
    {
        Check(v => v[0].MatMulBias(v[1].Transpose(), v[2]), R(47, 6, 4), R(48, 5, 4), R(49, 5));
        Check(v => v[0].MatMulBias(v[1], v[2]), R(50, 3, 4), R(51, 4, 2), R(52, 2));
    }

    [Test]
    public void TransposedWeightGetsAContiguousGradient()
    {
        using var scope = TensorScope.Begin();
        var x = new Variable(R(45, 2, 3, 4));
        var w = new Variable(R(46, 5, 4), requiresGrad: true);
        x.MatMul(w.Transpose()).Sum().Backward();
        Assert.That(w.Grad!.IsContiguous, Is.True, "an optimizer would otherwise copy it every step");
        // dW[o, i] = Σ over the 6 rows of x[r, i]
        var xs = x.Value.ToArray<double>();
        var gw = w.Grad.ToArray<double>();
        for (int o = 0; o < 5; o++)
            for (int i = 0; i < 4; i++)
            {
                double want = 0;
                for (int r = 0; r < 6; r++) want += xs[r * 4 + i];
                Assert.That(gw[o * 4 + i], Is.EqualTo(want).Within(1e-12));
            }
    }

    [Test]
    public void IndexingAndJoinRules()
    {
        using var scope = TensorScope.Begin();
        var ids = Tensor.FromArray(new long[] { 1, 3, 1, 0, 3, 3 }, 2, 3);
        Check(v => Variable.Embedding(v[0], ids), R(23, 5, 4));
        var idx = Tensor.FromArray(new long[] { 2, 0, 2 });
        Check(v => v[0].IndexSelect(1, idx), R(24, 3, 4));
        var gidx = Tensor.FromArray(new long[] { 0, 2, 1, 1, 0, 0 }, 2, 3);
        Check(v => v[0].Gather(1, gidx), R(25, 2, 4));
        Check(v => Variable.Concat(1, v[0], v[1].Square()), R(26, 2, 3), R(27, 2, 2));
        Check(v => Variable.Stack(0, v[0], v[1]).Exp(), R(28, 3), R(29, 3));
        Check(v => { var p = v[0].Split(0, 1, 2); return p[0].Sum() * p[1].Sum(); }, R(30, 3, 2));
        var (cos, sin) = Tensor.RopeTables(0, 5, 4, 10000.0);
        Check(v => v[0].ApplyRope(cos.To(DType.F64), sin.To(DType.F64)), R(31, 2, 3, 5, 4));
        Check(v => v[0].PatchEmbed(v[1], v[2]), R(32, 2, 3, 4, 6), R(33, 5, 3, 2, 2), R(34, 5));
        var cond = Tensor.FromArray(new bool[] { true, false, true });
        Check(v => Variable.Where(cond, v[0], v[1]), R(35, 2, 3), R(36, 3));
        Check(v => v[0].To(DType.F64) * v[0], R(37, 3));
    }
}
