using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Autograd.Tests;

public class EngineTests
{
    // Tensors leaked by earlier tests (a GradCheck's inputs, say) are freed by their finalizers at an
    // arbitrary moment; let that happen before taking the baseline.
    private static void SettleFinalizers()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    [Test]
    public void GradientsAccumulateUntilZeroed()
    {
        using var scope = TensorScope.Begin();
        var x = new Variable(Tensor.FromArray(new double[] { 1, 2, 3 }), requiresGrad: true);
        (x * x).Sum().Backward();
        (x * x).Sum().Backward();
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 4, 8, 12 }));
        x.ZeroGrad();
        Assert.That(x.Grad, Is.Null);
        (x * 3).Sum().Backward();
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 3, 3, 3 }));
    }

    [Test]
    public void SharedSubexpressionsSumTheirGradients()
    {
        using var scope = TensorScope.Begin();
        var x = new Variable(Tensor.FromArray(new double[] { 2 }), requiresGrad: true);
        var y = x * x;              // used twice below
        var z = (y + y * x).Sum();  // z = x² + x³, dz/dx = 2x + 3x² = 16
        z.Backward();
        Assert.That(x.Grad!.Item(), Is.EqualTo(16));
    }

    [Test]
    public void NoGradDetachAndFrozenParameters()
    {
        using var scope = TensorScope.Begin();
        var w = new Variable(Tensor.Ones([3]), requiresGrad: true);
        var frozen = new Variable(Tensor.Ones([3]), requiresGrad: false);
        using (Graph.NoGrad())
        {
            var y = w * 2;
            Assert.That(y.RequiresGrad, Is.False);
            Assert.That(y.IsLeaf, Is.True);
        }
        var z = (w * frozen).Sum();
        z.Backward();
        Assert.That(frozen.Grad, Is.Null);
        Assert.That(w.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 1, 1, 1 }));
        var d = (w * 5).Detach();
        Assert.That(d.RequiresGrad, Is.False);
        Assert.Throws<InvalidOperationException>(() => d.Backward());
        Assert.Throws<ArgumentException>(() => (w * 2).Backward()); // not a scalar and no seed
        Assert.Throws<InvalidOperationException>(() => (w * 2).RequiresGrad = false);
        Assert.Throws<ArgumentException>(() => new Variable(Tensor.Zeros([2], DType.I64), requiresGrad: true));
    }

    [Test]
    public void SecondBackwardThroughTheSameGraphIsAClearError()
    {
        using var scope = TensorScope.Begin();
        var x = new Variable(Tensor.FromArray(new double[] { 1, 2 }), requiresGrad: true);
        var y = (x * x).Sum();
        y.Backward();
        var ex = Assert.Throws<InvalidOperationException>(() => y.Backward())!;
        Assert.That(ex.Message, Does.Contain("Mul"));
    }

    [Test]
    [NonParallelizable]
    public void SavedActivationsAreReleasedByBackwardAndMemoryIsFlat()
    {
        using var w = Tensor.Normal([64, 64], seed: 1);
        var wv = new Variable(w, requiresGrad: true);
        SettleFinalizers();
        long start = MemoryStats.CpuBytesInUse;
        for (int step = 0; step < 100; step++)
        {
            using var scope = TensorScope.Begin();
            var x = new Variable(Tensor.Normal([8, 64], seed: (ulong)step));
            var h = x.MatMul(wv).Tanh().MatMul(wv).Sigmoid();
            h.Mean().Backward();
            wv.ZeroGrad();
        }
        Assert.That(MemoryStats.CpuBytesInUse, Is.EqualTo(start));
    }

    [Test]
    public void TheCastRuleReturnsTheGradientInTheInputDtype()
    {
        using var scope = TensorScope.Begin();
        var x = new Variable(Tensor.FromArray(new double[] { 1.5, -2 }), requiresGrad: true);
        (x.To(DType.F32) * 2).Sum().Backward();
        Assert.That(x.Grad!.DType, Is.EqualTo(DType.F64));
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(new double[] { 2, 2 }));
    }

    [Test]
    public void CheckpointGivesIdenticalGradientsWithLessSavedMemory()
    {
        using var scope = TensorScope.Begin();
        var w1 = new Variable(Tensor.Normal([32, 32], 1, dtype: DType.F64), requiresGrad: true);
        var w2 = new Variable(Tensor.Normal([32, 32], 2, dtype: DType.F64), requiresGrad: true);
        var x = new Variable(Tensor.Normal([16, 32], 3, dtype: DType.F64), requiresGrad: true);
        Variable Block(Variable[] v) => v[0].MatMul(w1).Gelu().MatMul(w2).Tanh();

        Block([x]).Square().Sum().Backward();
        var g1 = w1.Grad!.ToArray<double>(); var g2 = w2.Grad!.ToArray<double>(); var gx = x.Grad!.ToArray<double>();
        w1.ZeroGrad(); w2.ZeroGrad(); x.ZeroGrad();

        Checkpoint.Run(Block, x).Square().Sum().Backward();
        Assert.That(w1.Grad!.ToArray<double>(), Is.EqualTo(g1));
        Assert.That(w2.Grad!.ToArray<double>(), Is.EqualTo(g2));
        Assert.That(x.Grad!.ToArray<double>(), Is.EqualTo(gx));

        // With a constant input, parameter gradients still flow through the recomputation.
        w1.ZeroGrad(); w2.ZeroGrad();
        var c = new Variable(x.Value);
        Checkpoint.Run(Block, c).Square().Sum().Backward();
        Assert.That(w1.Grad!.ToArray<double>(), Is.Not.Null);
    }
}

public class GradCheckSelfTests
{
    [Test]
    public void GradCheckRejectsAWrongRule()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([4], 1, dtype: DType.F64);
        // A deliberately wrong derivative for sin (says cos·1.01): the checker must notice.
        Func<Variable[], Variable> wrong = v => Graph.Record("BadSin", v[0].Value.Sin(), [v[0]], (n, g) => [g * n.Saved(0).Cos() * 1.01], v[0].Value);
        Assert.Throws<GradCheckException>(() => GradCheck.Check(wrong, [x]));
        Assert.DoesNotThrow(() => GradCheck.Check(v => v[0].Sin(), [x]));
    }
}
