using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Tests;

/// <summary>
/// Functional.ScaledDotProductAttention (the fused op the layers use) against Functional.ScaledDotProductAttentionComposite,
/// values and gradients, in float64 (within 1e-12) on the shapes the Attention layer passes: a padding mask, a causal
/// offset, grouped-query heads.
/// </summary>
public class FunctionalAttentionTests
{
    [TestCase(4, 2, 5, 5, 0, true)]
    [TestCase(14, 2, 3, 8, 5, true)]
    [TestCase(3, 3, 4, 6, 0, false)]
    public void FusedMatchesComposite(int heads, int kvHeads, int t, int s, int offset, bool padding)
    {
        using var scope = TensorScope.Begin();
        var mask = padding
            ? Tensor.FromArray(Enumerable.Range(0, 2 * s).Select(i => i >= 2 * s - 1 ? double.NegativeInfinity : 0).ToArray(), 2, 1, 1, s)
            : null;
        Tensor[] inputs = [Tensor.Normal([2, heads, t, 8], 1, dtype: DType.F64), Tensor.Normal([2, kvHeads, s, 8], 2, dtype: DType.F64), Tensor.Normal([2, kvHeads, s, 8], 3, dtype: DType.F64)];
        var a = inputs.Select(x => new Variable(x, requiresGrad: true)).ToArray();
        var b = inputs.Select(x => new Variable(x, requiresGrad: true)).ToArray();
        var fused = Functional.ScaledDotProductAttention(a[0], a[1], a[2], causal: true, mask, offset);
        var composite = Functional.ScaledDotProductAttentionComposite(b[0], b[1], b[2], causal: true, mask, offset);
        Assert.That(fused.Value.ToDoubleArray(), Is.EqualTo(composite.Value.ToDoubleArray()).Within(1e-12));
        var seed = Tensor.Normal(fused.Shape, 4, dtype: DType.F64);
        fused.Backward(seed);
        composite.Backward(seed);
        for (int i = 0; i < 3; i++)
            Assert.That(a[i].Grad!.ToDoubleArray(), Is.EqualTo(b[i].Grad!.ToDoubleArray()).Within(1e-12), $"gradient of input {i}");
    }
}
