using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Autograd.Tests;

/// <summary>
/// Variable.SplitLinear (several Linear layers on one input as one product, outputs as views, gradients gathered into
/// one buffer): finite differences in float64 with the weights packed in one buffer, apart, and with an output nobody
/// uses; and the same numbers as one Linear per weight (x·Wᵀ + b with MatMul) in float32.
/// </summary>
public class SplitLinearTests
{
    private static readonly int[] Rows = [5, 2, 3];
    private const int K = 4;

    private static Tensor R(ulong seed, params int[] shape) => TensorScope.Detach(Tensor.Normal(shape, seed, dtype: DType.F64));

    /// <summary>The three weights (then the three biases) as consecutive row views of one buffer each.</summary>
    private static Tensor[] Packed(Tensor weights, Tensor biases)
    {
        var r = new List<Tensor>();
        foreach (var buffer in new[] { weights, biases })
            for (int i = 0, at = 0; i < Rows.Length; at += Rows[i], i++) r.Add(TensorScope.Detach(buffer.Narrow(0, at, Rows[i])));
        return [.. r];
    }

    [Test]
    public void PackedWeightsAndBiasesMatchFiniteDifferences()
    {
        using var scope = TensorScope.Begin();
        var views = Packed(R(2, Rows.Sum(), K), R(3, Rows.Sum()));
        Assert.That(Tensor.AreConsecutive(0, views[0], views[1], views[2]), Is.True, "the test must exercise the view path");
        // Concat along the last axis routes each output's gradient through its own rule (and the gather).
        GradCheck.Check(v => Variable.Concat(-1, Variable.SplitLinear(v[0], v[1..4], v[4..7])), [R(1, 2, 3, K), .. views]);
    }

    [Test]
    public void SeparateWeightsWithoutBiasesMatchFiniteDifferences()
    {
        using var scope = TensorScope.Begin();
        GradCheck.Check(v => Variable.Concat(-1, Variable.SplitLinear(v[0], v[1..4])), [R(1, 3, K), R(2, 5, K), R(3, 2, K), R(4, 3, K)]);
    }

    [Test]
    public void AnOutputWithoutAGradientGivesItsWeightZeros()
    {
        using var scope = TensorScope.Begin();
        var views = Packed(R(2, Rows.Sum(), K), R(3, Rows.Sum()));
        // The middle output is unused: its region of the gathered gradient must be zero, not left over memory.
        GradCheck.Check(v =>
        {
            var p = Variable.SplitLinear(v[0], v[1..4], v[4..7]);
            return Variable.Concat(-1, p[2], p[0] * p[0]);
        }, [R(1, 2, 1, 3, K), .. views]);
        var x = new Variable(R(1, 3, K), requiresGrad: true);
        var ws = views[..3].Select(t => new Variable(t, requiresGrad: true)).ToArray();
        var bs = views[3..].Select(t => new Variable(t, requiresGrad: true)).ToArray();
        var parts = Variable.SplitLinear(x, ws, bs);
        parts[0].Sum().Backward();
        Assert.That(ws[1].Grad!.ToDoubleArray(), Is.All.EqualTo(0.0));
        Assert.That(bs[2].Grad!.ToDoubleArray(), Is.All.EqualTo(0.0));
        Assert.That(ws[0].Grad!.ToDoubleArray().Any(g => g != 0), Is.True);
    }

    [TestCase(true, true)]
    [TestCase(false, true)]
    [TestCase(true, false)]
    public void EqualsOneLinearPerWeightInFloat32(bool packed, bool bias)
    {
        using var scope = TensorScope.Begin();
        int n = Rows.Sum();
        var wAll = Tensor.Normal([n, K], 7, 0, 0.5, DType.F32);
        var bAll = Tensor.Normal([n], 8, 0, 0.5, DType.F32);
        Tensor[] Split(Tensor t) => Rows.Select((r, i) => packed ? t.Narrow(0, Rows[..i].Sum(), r) : t.Narrow(0, Rows[..i].Sum(), r).Clone()).ToArray();
        var xt = Tensor.Normal([2, 3, K], 9, 0, 1, DType.F32);
        var seeds = Rows.Select((r, i) => Tensor.Normal([2, 3, r], 20 + (ulong)i, 0, 1, DType.F32)).ToArray();

        (double[] Out, double[][] Grads) Run(bool fused)
        {
            var x = new Variable(xt, requiresGrad: true);
            var ws = Split(wAll).Select(t => new Variable(t, requiresGrad: true)).ToArray();
            var bs = bias ? Split(bAll).Select(t => new Variable(t, requiresGrad: true)).ToArray() : null;
            // k's weight frozen: its gradient is not asked for, the others' still are.
            ws[1].RequiresGrad = false;
            var outs = fused
                ? Variable.SplitLinear(x, ws, bs)
                : ws.Select((w, i) => bs is null ? x.MatMul(w.Transpose()) : x.MatMul(w.Transpose()) + bs[i]).ToArray();
            Variable loss = (outs[0] * seeds[0]).Sum();
            for (int i = 1; i < outs.Length; i++) loss = loss + (outs[i] * seeds[i]).Sum();
            loss.Backward();
            Assert.That(ws[1].Grad, Is.Null);
            var grads = new List<double[]> { x.Grad!.ToDoubleArray(), ws[0].Grad!.ToDoubleArray(), ws[2].Grad!.ToDoubleArray() };
            if (bs is not null) grads.AddRange(bs.Select(b => b.Grad!.ToDoubleArray()));
            return (outs.SelectMany(o => o.Value.ToDoubleArray()).ToArray(), grads.ToArray());
        }

        var a = Run(fused: true);
        var b = Run(fused: false);
        Assert.That(a.Out, Is.EqualTo(b.Out).Within(1e-6));
        for (int i = 0; i < a.Grads.Length; i++) Assert.That(a.Grads[i], Is.EqualTo(b.Grads[i]).Within(1e-5), $"gradient {i}");
    }

    [Test]
    public void InferenceGivesViewsOfOneProduct()
    {
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var views = Packed(R(2, Rows.Sum(), K), R(3, Rows.Sum()));
        var x = new Variable(R(1, 3, K), requiresGrad: true);
        var parts = Variable.SplitLinear(x, views[..3].Select(t => new Variable(t)).ToArray(), views[3..].Select(t => new Variable(t)).ToArray());
        Assert.That(parts.All(p => p.IsLeaf && ReferenceEquals(p.Value.Storage, parts[0].Value.Storage)), Is.True);
        Assert.That(parts.Select(p => p.Shape[1]), Is.EqualTo(Rows));
        Assert.That(parts[1].Value.Strides[0], Is.EqualTo(Rows.Sum()), "a view of the [3, 10] product");
        using var expected = x.Value.MatMul(views[1].Transpose()) + views[4];
        Assert.That(parts[1].Value.ToDoubleArray(), Is.EqualTo(expected.ToDoubleArray()).Within(1e-12));
    }

    [Test]
    public void MixedDTypesAndBadShapesAreErrors()
    {
        using var scope = TensorScope.Begin();
        var x = new Variable(Tensor.Ones([2, K]));
        var w = new Variable(Tensor.Ones([3, K]));
        Assert.That(() => Variable.SplitLinear(x, [w, new Variable(Tensor.Ones([3, K], DType.F64))]), Throws.ArgumentException.With.Message.Contains("dtype"));
        Assert.That(() => Variable.SplitLinear(x, [w, new Variable(Tensor.Ones([3, K + 1]))]), Throws.ArgumentException.With.Message.Contains("[n > 0, 4]"));
        Assert.That(() => Variable.SplitLinear(x, [w], [new Variable(Tensor.Ones([2]))]), Throws.ArgumentException.With.Message.Contains("bias 0"));
    }
}
