namespace Parrot.Tensors.Tests;

/// <summary>
/// The GEMM's vectorised packing of a B whose columns are contiguous (x · Wᵀ): packing only moves elements, so
/// the product must equal, bit for bit, the same product with B copied to row-major first. Sizes cover whole
/// 16×16 transposes, k tails (k not a multiple of 16 or above one 512 block), partial panels (columns not a
/// multiple of 16 or of 64), and bf16 weights. Every m is above the skinny kernels' limit (64 rows for x · Wᵀ with
/// the Vector256 kernels, whose dot tiles read B in place and sum in another order), so both products pack.
/// </summary>
public class TransposedPackingTests
{
    [TestCase(70, 53, 229)]
    [TestCase(66, 16, 16)]
    [TestCase(65, 527, 130)]
    [TestCase(128, 896, 300)]
    [TestCase(97, 33, 7)]
    public void EqualsTheProductWithRowMajorB(int m, int k, int n)
    {
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
        {
            using var scope = TensorScope.Begin();
            var x = Tensor.Normal([m, k], seed: 1, dtype: dtype);
            var wt = Tensor.Normal([n, k], seed: 2, dtype: dtype).Transpose(0, 1);
            // The transposed product first: the pack buffers are reused, and must not still hold the right panel.
            var actual = Tensor.MatMul(x, wt, DType.F32).ToFloatArray();
            var expected = Tensor.MatMul(x, wt.Contiguous(), DType.F32).ToFloatArray();
            Assert.That(actual, Is.EqualTo(expected), $"{m}x{k}x{n} {dtype}");
        }
    }
}
