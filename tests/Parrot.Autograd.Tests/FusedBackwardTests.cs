using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Autograd.Tests;

/// <summary>
/// The backward rules that run on the backends' fused training ops (norms, softmax, cross-entropy, embedding,
/// SwiGLU): finite differences in float64, and, in F32/BF16/F64, the previous composite rules (copied below,
/// run in float64) as the reference.
/// </summary>
public class FusedBackwardTests
{
    private static Tensor R(ulong seed, params int[] shape) => TensorScope.Detach(Tensor.Normal(shape, seed, dtype: DType.F64));

    private static void Check(Func<Variable[], Variable> f, params Tensor[] inputs)
    {
        using var scope = TensorScope.Begin();
        GradCheck.Check(f, inputs, eps: 1e-6, atol: 1e-7, rtol: 1e-5);
    }

    // ---- finite differences (float64) ----

    [Test]
    public void SwiGluGradCheck() => Check(v => Variable.SwiGlu(v[0], v[1]), R(1, 3, 5), R(2, 3, 5));

    [Test]
    public void EmbeddingGradCheck()
    {
        var ids = TensorScope.Detach(Tensor.FromArray(new long[] { 2, 0, 2, 4, 2, 1 }, 2, 3));
        Check(v => Variable.Embedding(v[0], ids).Square(), R(3, 5, 4)); // rows 3 is unused: its gradient is 0
    }

    [TestCase(LossReduction.Mean)]
    [TestCase(LossReduction.Sum)]
    [TestCase(LossReduction.None)]
    public void CrossEntropyGradCheck(LossReduction reduction)
    {
        var targets = TensorScope.Detach(Tensor.FromArray(new long[] { 3, -100, 0, 5 }, 4));
        Check(v => Variable.CrossEntropy(v[0], targets, -100, reduction), R(4, 4, 6));
    }

    [Test]
    public void CrossEntropyOverLeadingDimsGradCheck()
    {
        var targets = TensorScope.Detach(Tensor.FromArray(new long[] { 1, 2, -100, 0, 2, 1 }, 2, 3));
        Check(v => Variable.CrossEntropy(v[0], targets), R(5, 2, 3, 4));
    }

    [Test]
    public void LayerNormWithoutAffineGradCheck() => Check(v => v[0].LayerNorm(null, null), R(6, 3, 7));

    [Test]
    public void LayerNormWithWeightOnlyGradCheck() => Check(v => v[0].LayerNorm(v[1], null), R(7, 3, 7), R(8, 7));

    [Test]
    public void LayerNormWithBiasOnlyGradCheck() => Check(v => v[0].LayerNorm(null, v[1]), R(9, 3, 7), R(10, 7));

    [Test]
    public void RmsNormOnAStridedInputGradCheck() => Check(v => v[0].Transpose(0, 1).RmsNorm(v[1]), R(11, 6, 3), R(12, 6));

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(2)]
    public void IndexSelectWithRepeatsGradCheck(int axis)
    {
        var idx = TensorScope.Detach(Tensor.FromArray(new long[] { 2, 0, 2, 2 }, 4));
        Check(v => v[0].IndexSelect(axis, idx).Square(), R(15, 3, 4, 3));
    }

    [Test]
    public void SoftmaxAlongTheFirstAxisGradCheck() => Check(v => v[0].Softmax(0), R(13, 4, 3));

    [Test]
    public void LogSoftmaxAlongAMiddleAxisGradCheck() => Check(v => v[0].LogSoftmax(1), R(14, 2, 4, 3));

    // ---- against the previous composite rules, in every compute dtype ----

    /// <summary>The rules as they were before the fused ops (the composition of tensor ops), run in float64.</summary>
    private static class Previous
    {
        public static (Tensor Dx, Tensor Dw) RmsNorm(Tensor x, Tensor w, Tensor g, double eps)
        {
            var r = ((x * x).Mean([-1], keepDim: true) + eps).Rsqrt();
            var xhat = x * r;
            var gw = g * w;
            var m = (gw * xhat).Mean([-1], keepDim: true);
            return (r * (gw - xhat * m), (g * xhat).Sum(Enumerable.Range(0, g.Rank - 1).ToArray()));
        }

        public static (Tensor Dx, Tensor Dw, Tensor Db) LayerNorm(Tensor x, Tensor w, Tensor g, double eps)
        {
            var mu = x.Mean([-1], keepDim: true);
            var xc = x - mu;
            var rstd = ((xc * xc).Mean([-1], keepDim: true) + eps).Rsqrt();
            var xhat = xc * rstd;
            var dxhat = g * w;
            var m1 = dxhat.Mean([-1], keepDim: true);
            var m2 = (dxhat * xhat).Mean([-1], keepDim: true);
            var lead = Enumerable.Range(0, g.Rank - 1).ToArray();
            return (rstd * (dxhat - m1 - xhat * m2), (g * xhat).Sum(lead), g.Sum(lead));
        }

        public static Tensor Softmax(Tensor y, Tensor g, int axis) => y * (g - (g * y).Sum([axis], keepDim: true));

        public static Tensor LogSoftmax(Tensor y, Tensor g, int axis) => g - y.Exp() * g.Sum([axis], keepDim: true);

        public static Tensor CrossEntropy(Tensor z, Tensor t, Tensor g, int ignoreIndex)
        {
            var p = z.Softmax(-1);
            var valid = t.Ne(Tensor.Scalar(ignoreIndex, DType.I64)).To(DType.F64).Unsqueeze(1);
            var safeT = Tensor.Where(t.Ne(Tensor.Scalar(ignoreIndex, DType.I64)), t, Tensor.Scalar(0, DType.I64)).Unsqueeze(1);
            var oneHot = Tensor.Zeros(p.Shape, DType.F64).ScatterAdd(1, safeT, valid);
            return (p * valid - oneHot) * (g / valid.Sum());
        }

        public static Tensor Embedding(Tensor ids, Tensor g, int vocab)
        {
            var idx = ids.Reshape(-1);
            int dim = g.Shape[^1];
            var rows = g.Reshape(-1, dim);
            return Tensor.Zeros([vocab, dim], DType.F64).ScatterAdd(0, idx.Unsqueeze(1).Expand(idx.Dim(0), dim), rows);
        }

        public static (Tensor Dg, Tensor Du) SwiGlu(Tensor gate, Tensor up, Tensor g)
        {
            // Silu's rule and Mul's rule composed.
            var sig = gate.Sigmoid();
            return (g * up * (sig * (1 + gate * (1 - sig))), g * gate.Silu());
        }
    }

    private static (double Rtol, double Atol) Tol(DType dt) => dt switch
    {
        DType.F64 => (1e-11, 1e-12),
        DType.F32 => (1e-4, 1e-5),
        _ => (2e-2, 2e-2), // bf16 activations, gradients rounded to bf16
    };

    private static void Close(Tensor actual, Tensor expected, DType dt, string what)
    {
        var (rtol, atol) = Tol(dt);
        double[] a = actual.ToDoubleArray(), e = expected.ToDoubleArray();
        Assert.That(a.Length, Is.EqualTo(e.Length), what);
        double scale = e.Max(Math.Abs);
        for (int i = 0; i < a.Length; i++)
            Assert.That(a[i], Is.EqualTo(e[i]).Within(atol * Math.Max(scale, 1) + rtol * Math.Abs(e[i])), $"{what} ({dt.Name()}) at {i}");
    }

    /// <summary>Inputs rounded to dt (so both sides see the same values), as dt and as float64.</summary>
    private static (Tensor AsDt, Tensor AsF64) In(ulong seed, DType dt, params int[] shape)
    {
        var t = Tensor.Normal(shape, seed, dtype: DType.F64).To(dt);
        return (t, t.To(DType.F64));
    }

    private static readonly DType[] Types = [DType.F32, DType.BF16, DType.F64];

    [TestCaseSource(nameof(Types))]
    public void RmsNormRuleMatchesThePreviousComposite(DType dt)
    {
        using var scope = TensorScope.Begin();
        var (x, x64) = In(20, dt, 3, 5, 16);
        var (w, w64) = In(21, dt, 16);
        var (g, g64) = In(22, dt, 3, 5, 16);
        var xv = new Variable(x, true); var wv = new Variable(w, true);
        xv.RmsNorm(wv, 1e-6).Backward(g);
        var (dx, dw) = Previous.RmsNorm(x64, w64, g64, 1e-6);
        Close(xv.Grad!, dx, dt, "dx");
        Close(wv.Grad!, dw, dt, "dweight");
        Assert.That(xv.Grad!.DType, Is.EqualTo(dt));
    }

    [TestCaseSource(nameof(Types))]
    public void LayerNormRuleMatchesThePreviousComposite(DType dt)
    {
        using var scope = TensorScope.Begin();
        var (x, x64) = In(23, dt, 4, 24);
        var (w, w64) = In(24, dt, 24);
        var (b, _) = In(25, dt, 24);
        var (g, g64) = In(26, dt, 4, 24);
        var xv = new Variable(x, true); var wv = new Variable(w, true); var bv = new Variable(b, true);
        xv.LayerNorm(wv, bv).Backward(g);
        var (dx, dw, db) = Previous.LayerNorm(x64, w64, g64, 1e-5);
        Close(xv.Grad!, dx, dt, "dx");
        Close(wv.Grad!, dw, dt, "dweight");
        Close(bv.Grad!, db, dt, "dbias");
    }

    [TestCaseSource(nameof(Types))]
    public void SoftmaxRulesMatchThePreviousComposite(DType dt)
    {
        using var scope = TensorScope.Begin();
        var (x, _) = In(27, dt, 5, 9);
        var (g, g64) = In(28, dt, 5, 9);
        foreach (int axis in new[] { 1, 0 })
        {
            var v1 = new Variable(x, true);
            var y1 = v1.Softmax(axis); y1.Backward(g);
            Close(v1.Grad!, Previous.Softmax(y1.Value.To(DType.F64), g64, axis), dt, $"softmax axis {axis}");
            var v2 = new Variable(x, true);
            var y2 = v2.LogSoftmax(axis); y2.Backward(g);
            Close(v2.Grad!, Previous.LogSoftmax(y2.Value.To(DType.F64), g64, axis), dt, $"log-softmax axis {axis}");
        }
    }

    [TestCaseSource(nameof(Types))]
    public void CrossEntropyRuleMatchesThePreviousComposite(DType dt)
    {
        using var scope = TensorScope.Begin();
        var (z, z64) = In(29, dt, 6, 50);
        var t = Tensor.FromArray(new long[] { 7, -100, 49, 0, 13, 13 }, 6);
        var zv = new Variable(z, true);
        Variable.CrossEntropy(zv, t, -100).Backward(Tensor.Full([], 1.3, dt == DType.F64 ? DType.F64 : DType.F32));
        Close(zv.Grad!, Previous.CrossEntropy(z64, t, Tensor.Full([], 1.3, DType.F64), -100), dt, "dlogits");
        Assert.That(zv.Grad!.DType, Is.EqualTo(dt));
    }

    [TestCaseSource(nameof(Types))]
    public void EmbeddingRuleMatchesThePreviousComposite(DType dt)
    {
        using var scope = TensorScope.Begin();
        var (w, _) = In(30, dt, 12, 8);
        var ids = Tensor.FromArray(new long[] { 3, 3, 11, 0, 3, 7, 11, 3 }, 2, 4);
        var (g, g64) = In(31, dt, 2, 4, 8);
        var wv = new Variable(w, true);
        Variable.Embedding(wv, ids).Backward(g);
        Close(wv.Grad!, Previous.Embedding(ids, g64, 12), dt, "dweight");
        Assert.That(wv.Grad!.DType, Is.EqualTo(dt));
    }

    [TestCaseSource(nameof(Types))]
    public void IndexSelectRuleMatchesThePreviousComposite(DType dt)
    {
        using var scope = TensorScope.Begin();
        var (x, _) = In(35, dt, 5, 6, 7);
        var index = Tensor.FromArray(new int[] { 4, 1, 4, 0, 4 }, 5);
        var (g, g64) = In(36, dt, 5, 5, 7);
        var xv = new Variable(x, true);
        xv.IndexSelect(1, index).Backward(g);
        // Previously: zeros.ScatterAdd(axis, index expanded to the gradient's shape, g).
        var full = index.To(DType.I64).Reshape(1, 5, 1).Expand(5, 5, 7);
        Close(xv.Grad!, Tensor.Zeros([5, 6, 7], DType.F64).ScatterAdd(1, full, g64), dt, "dx");
        Assert.That(xv.Grad!.DType, Is.EqualTo(dt));
    }

    [TestCaseSource(nameof(Types))]
    public void SwiGluRuleMatchesThePreviousComposite(DType dt)
    {
        using var scope = TensorScope.Begin();
        var (gate, gate64) = In(32, dt, 3, 40);
        var (up, up64) = In(33, dt, 3, 40);
        var (g, g64) = In(34, dt, 3, 40);
        var gv = new Variable(gate, true); var uv = new Variable(up, true);
        var y = Variable.SwiGlu(gv, uv);
        Assert.That(y.Value.ToDoubleArray(), Is.EqualTo((gate.Silu() * up).ToDoubleArray()), "forward, bit for bit");
        y.Backward(g);
        var (dg, du) = Previous.SwiGlu(gate64, up64, g64);
        Close(gv.Grad!, dg, dt, "dgate");
        Close(uv.Grad!, du, dt, "dup");
    }
}
