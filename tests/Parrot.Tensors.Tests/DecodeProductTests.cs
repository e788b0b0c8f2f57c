using Parrot.Tensors.Cpu;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The decode path of a linear layer, x [M, K] · Wᵀ (M = 1, or a few sequences decoding together) with W [N, K] row-major (a column-major B: the
/// dot kernels of the skinny GEMM, split over threads in grabs), against a float64 loop written here. Tolerance per element: 8·√K·2⁻²⁴·Σ|x·w| (float32 accumulation).
/// </summary>
public class DecodeProductTests
{
    private static void CheckRowTimesTransposed(int k, int n, DType wType, int threads, int rows = 1)
    {
        int saved = CpuParallel.Workers;
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([rows, k], 11);
        var w = Tensor.Normal([n, k], 12, dtype: wType);
        var xv = x.ToDoubleArray();
        var wv = w.ToDoubleArray(); // bf16 weights as the values they hold
        try
        {
            CpuParallel.Workers = threads;
            var c = (wType == DType.F32 ? Tensor.MatMul(x, w.Transpose(0, 1)) : Tensor.MatMul(x.To(wType), w.Transpose(0, 1), DType.F32)).ToDoubleArray();
            Assert.That(c, Has.Length.EqualTo(rows * n));
            var xr = wType == DType.F32 ? xv : x.To(wType).ToDoubleArray();
            double tol = 8 * Math.Sqrt(k) * Math.Pow(2, -24);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < n; j++)
                {
                    double sum = 0, abs = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double y = xr[(long)i * k + p] * wv[(long)j * k + p];
                        sum += y;
                        abs += Math.Abs(y);
                    }
                    Assert.That(Math.Abs(c[(long)i * n + j] - sum), Is.LessThanOrEqualTo(tol * abs + 1e-30), $"row {i} of {rows}, column {j} of {n}, k {k}, {wType}, {threads} threads");
                }
        }
        finally { CpuParallel.Workers = saved; }
    }

    // Qwen2-0.5B's decode shapes (q, k/v, o, gate/up, down), and k and n tails that are not whole vectors or four-column tiles.
    [TestCase(896, 896)]
    [TestCase(896, 128)]
    [TestCase(896, 4864)]
    [TestCase(4864, 896)]
    [TestCase(1000, 37)]
    [TestCase(71, 300)]
    [TestCase(15, 9)]
    public void OneRowTimesTransposedWeightMatchesFloat64(int k, int n)
    {
        CheckRowTimesTransposed(k, n, DType.F32, 1);
        CheckRowTimesTransposed(k, n, DType.F32, 2);
    }

    // A few sequences decoding together (continuous batching): up to four rows go one column at a time, more in
    // four-column tiles; k and n with tails.
    [TestCase(2, 896, 4864)]
    [TestCase(3, 71, 37)]
    [TestCase(4, 896, 130)]
    [TestCase(5, 1000, 37)]
    [TestCase(8, 896, 301)]
    [TestCase(16, 15, 9)]
    public void SeveralRowsTimesTransposedWeightMatchFloat64(int rows, int k, int n)
    {
        CheckRowTimesTransposed(k, n, DType.F32, 2, rows);
        CheckRowTimesTransposed(k, n, DType.BF16, 2, rows);
    }

    [TestCase(896, 1152)]
    [TestCase(100, 70)]
    public void Bf16WeightsMatchFloat64(int k, int n) => CheckRowTimesTransposed(k, n, DType.BF16, 2);

    [TestCase(896, 4864)]
    [TestCase(896, 128)]
    public void DecodeProductDoesNotDependOnThreadCount(int k, int n)
    {
        int saved = CpuParallel.Workers;
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([1, k], 21);
        var wt = Tensor.Normal([n, k], 22).Transpose(0, 1);
        try
        {
            CpuParallel.Workers = 1;
            var one = Tensor.MatMul(x, wt).ToFloatArray();
            CpuParallel.Workers = 2;
            var two = Tensor.MatMul(x, wt).ToFloatArray();
            CpuParallel.Workers = 3;
            var three = Tensor.MatMul(x, wt).ToFloatArray();
            Assert.That(two, Is.EqualTo(one));
            Assert.That(three, Is.EqualTo(one));
        }
        finally { CpuParallel.Workers = saved; }
    }
}
