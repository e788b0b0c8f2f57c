using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Tests;

/// <summary>Linear's inference path (tensor ops without the autograd wrappers) gives the autograd path's bits.</summary>
public class LinearTests
{
    [TestCase(DType.F32, true, new[] { 5, 12 })]
    [TestCase(DType.F32, false, new[] { 2, 3, 12 })]
    [TestCase(DType.F32, true, new[] { 2, 1, 3, 12 })]
    [TestCase(DType.BF16, true, new[] { 1, 1, 12 })]
    [TestCase(DType.F32, true, new[] { 12 })] // 1-D: the autograd path in both
    public void InferenceEqualsTheTrackedPath(DType dtype, bool bias, int[] shape)
    {
        using var lin = new Linear(12, 7, bias, seed: 3, dtype);
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal(shape, 4, 0, 1, dtype);
        var tracked = lin.Forward(new Variable(x));
        Assert.That(tracked.RequiresGrad, Is.True);
        Variable inferred;
        using (Graph.NoGrad()) inferred = lin.Forward(new Variable(x));
        Assert.That(inferred.Shape.ToArray(), Is.EqualTo(shape[..^1].Append(7).ToArray()));
        Assert.That(inferred.Value.ToDoubleArray(), Is.EqualTo(tracked.Value.ToDoubleArray()));
        // A strided input (transposed): reshaped by a copy on both paths.
        if (shape.Length == 3)
        {
            var xt = Tensor.Normal([shape[0], 12, shape[1]], 5, 0, 1, dtype).Transpose(1, 2);
            var expected = lin.Forward(new Variable(xt)).Value.ToDoubleArray();
            using (Graph.NoGrad()) Assert.That(lin.Forward(new Variable(xt)).Value.ToDoubleArray(), Is.EqualTo(expected));
        }
    }

    [Test]
    public void ABiasOfAnotherDTypeTakesTheGeneralPath()
    {
        // A bf16 bias on float32 weights: product + bias with promotion, as the tracked path does.
        using var lin = new Linear(6, 4, true, seed: 1);
        var old = lin.Bias!.Value;
        lin.Bias.ReplaceValue(TensorScope.Detach(old.To(DType.BF16)));
        old.Dispose();
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([2, 3, 6], 2, 0, 1, DType.F32);
        var expected = lin.Forward(new Variable(x)).Value.ToDoubleArray();
        using var ng = Graph.NoGrad();
        var y = lin.Forward(new Variable(x));
        Assert.That(y.DType, Is.EqualTo(DType.F32));
        Assert.That(y.Value.ToDoubleArray(), Is.EqualTo(expected));
    }
}
