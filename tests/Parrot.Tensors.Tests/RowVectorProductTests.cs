using Parrot.Tensors.Cpu;
using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Tensors.Tests;

/// <summary>
/// One row times a row-major B with the Vector256 kernels (forced, so an AVX-512 machine runs them too), which sum k
/// in segments of <see cref="RowVectorProduct.SegmentRows"/> rows and each row of B in chunks of up to 8,192 columns:
/// k on both sides of the segment boundaries, n on both sides of the chunk boundary and of the 8-column vector tail,
/// a strided row and a B whose row stride is not n, float32 and bf16 B, against a float64 loop (tolerance of
/// <see cref="MatMulTests"/>: 8·√k·2⁻²⁴·Σ|x·b| per element); and the same bits on 1, 2 and 3 threads.
/// </summary>
public class RowVectorProductTests
{
    private bool _savedWidth;
    private int _savedWorkers;

    [SetUp]
    public void ForceVector256()
    {
        _savedWidth = GemmOptions.ForceVector256;
        _savedWorkers = CpuParallel.Workers;
        GemmOptions.ForceVector256 = true;
    }

    [TearDown]
    public void Restore()
    {
        GemmOptions.ForceVector256 = _savedWidth;
        CpuParallel.Workers = _savedWorkers;
    }

    [TestCase(1, 1)]
    [TestCase(7, 9)]
    [TestCase(255, 100)]
    [TestCase(256, 7)]
    [TestCase(257, 33)]
    [TestCase(512, 64)]
    [TestCase(513, 130)]
    [TestCase(1031, 17)]
    [TestCase(300, 8192)]
    [TestCase(260, 8199)]
    [TestCase(9, 8205)]
    public void MatchesFloat64(int k, int n)
    {
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
        {
            using var scope = TensorScope.Begin();
            var x = Tensor.Normal([1, k], seed: (ulong)(k + n), dtype: dtype);
            var b = Tensor.Normal([k, n], seed: (ulong)(k * 7 + n), dtype: dtype);
            Check(x, b, $"k {k}, n {n}, {dtype}");
        }
    }

    [Test]
    public void StridedOperands()
    {
        using var scope = TensorScope.Begin();
        // x every other element of a longer row; B the middle 300 columns of a [600, 1000] matrix (row stride 1000).
        var x = Tensor.Normal([1, 1200], seed: 5).Slice(1, 0, 1200, 2);
        var b = Tensor.Normal([600, 1000], seed: 6).Narrow(1, 350, 300);
        Check(x, b, "strided x, B with row stride 1000");
    }

    [Test]
    public void SameBitsOnAnyThreadCount()
    {
        using var scope = TensorScope.Begin();
        foreach (var (k, n) in new[] { (2000, 700), (777, 3001), (300, 1000) })
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                var x = Tensor.Normal([1, k], seed: 11, dtype: dtype);
                var b = Tensor.Normal([k, n], seed: 12, dtype: dtype);
                var results = new List<float[]>();
                foreach (int workers in new[] { 1, 2, 3 })
                {
                    CpuParallel.Workers = workers;
                    results.Add(Tensor.MatMul(x, b, DType.F32).ToFloatArray());
                }
                Assert.That(results[1], Is.EqualTo(results[0]), $"k {k}, n {n}, {dtype}: 2 threads");
                Assert.That(results[2], Is.EqualTo(results[0]), $"k {k}, n {n}, {dtype}: 3 threads");
            }
    }

    private static void Check(Tensor x, Tensor b, string what)
    {
        int k = b.Shape[0], n = b.Shape[1];
        float[] actual = Tensor.MatMul(x, b, DType.F32).ToFloatArray();
        double[] xs = x.ToDoubleArray(), bs = b.ToDoubleArray();
        double bound = 8 * Math.Sqrt(k) * Math.Pow(2, -24);
        for (int j = 0; j < n; j++)
        {
            double sum = 0, abs = 0;
            for (int p = 0; p < k; p++)
            {
                double y = xs[p] * bs[(long)p * n + j];
                sum += y;
                abs += Math.Abs(y);
            }
            Assert.That(Math.Abs(actual[j] - sum), Is.LessThanOrEqualTo(bound * abs + 1e-30), $"{what}: column {j}");
        }
    }
}
