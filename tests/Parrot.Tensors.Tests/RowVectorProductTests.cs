using Parrot.Tensors.Cpu;
using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Tensors.Tests;

/// <summary>
/// One row times a row-major B as <see cref="RowVectorProduct"/> sums it: k in segments of
/// <see cref="RowVectorProduct.SegmentRows"/> rows, each row of B in chunks of up to 8,192 columns. Against a float64
/// loop (the tolerance of <see cref="MatMulTests"/>: 8·√k·2⁻²⁴·Σ|x·b| per element): called directly for k on both sides
/// of the segment boundaries and n on both sides of the chunk boundary and of the 8-column vector tail; and through
/// Tensor.MatMul with the Vector256 kernels forced and B of at least <see cref="RowVectorProduct.MinBytes"/> (where the
/// product takes this path), with a strided row and a B whose row stride is not n, and the same bits on 1, 2 and 3 threads
/// (threads take segments, or with one segment, k ≤ 256, parts of the columns).
/// </summary>
[NonParallelizable] // flips the process-wide width switch and thread count
public class RowVectorProductTests
{
    private IDisposable? _width;
    private int _savedWorkers;

    [SetUp]
    public void ForceVector256()
    {
        _width = TestUtil.ForceVector256(true);
        _savedWorkers = CpuParallel.Workers;
    }

    [TearDown]
    public void Restore()
    {
        _width?.Dispose();
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
    public unsafe void MatchesFloat64(int k, int n)
    {
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
            foreach (int workers in new[] { 1, 2 })
            {
                using var scope = TensorScope.Begin();
                var x = Tensor.Normal([1, k], seed: (ulong)(k + n), dtype: DType.F32);
                var b = Tensor.Normal([k, n], seed: (ulong)(k * 7 + n), dtype: dtype);
                float[] xs = x.ToFloatArray();
                var actual = new float[n];
                var scratch = new float[Math.Max(1, RowVectorProduct.ScratchFloats(k, n))];
                fixed (float* xp = xs, cp = actual, sp = scratch)
                    RowVectorProduct.Run(xp, new MatrixView(b.DataPointer, dtype, n, 1), cp, n, k, sp, workers);
                Compare(actual, x, b, $"k {k}, n {n}, {dtype}, {workers} thread(s)");
            }
    }

    [Test]
    public void StridedOperandsThroughMatMul()
    {
        using var scope = TensorScope.Begin();
        // x every other element of a longer row; B the middle 1000 columns of a [1100, 1400] matrix (row stride 1400).
        var x = Tensor.Normal([1, 2200], seed: 5).Slice(1, 0, 2200, 2);
        var b = Tensor.Normal([1100, 1400], seed: 6).Narrow(1, 200, 1000);
        Assert.That(1100L * 1000 * 4, Is.GreaterThanOrEqualTo(RowVectorProduct.MinBytes), "B must be large enough to take the path");
        Compare(Tensor.MatMul(x, b, DType.F32).ToFloatArray(), x, b, "strided x, B with row stride 1400");
    }

    [Test]
    public void SameBitsOnAnyThreadCount()
    {
        using var scope = TensorScope.Begin();
        foreach (var (k, n) in new[] { (2000, 1100), (777, 3001), (1031, 2100), (250, 8400) })
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                Assert.That((long)k * n * dtype.SizeOf(), Is.GreaterThanOrEqualTo(RowVectorProduct.MinBytes), "B must be large enough to take the path");
                var x = Tensor.Normal([1, k], seed: 11, dtype: dtype);
                var b = Tensor.Normal([k, n], seed: 12, dtype: dtype);
                var results = new List<float[]>();
                foreach (int workers in new[] { 1, 2, 3 })
                {
                    CpuParallel.Workers = workers;
                    results.Add(Tensor.MatMul(x, b, DType.F32).ToFloatArray());
                }
                Compare(results[0], x, b, $"k {k}, n {n}, {dtype}");
                Assert.That(results[1], Is.EqualTo(results[0]), $"k {k}, n {n}, {dtype}: 2 threads");
                Assert.That(results[2], Is.EqualTo(results[0]), $"k {k}, n {n}, {dtype}: 3 threads");
            }
    }

    private static void Compare(float[] actual, Tensor x, Tensor b, string what)
    {
        int k = b.Shape[0], n = b.Shape[1];
        double[] xs = x.ToDoubleArray(), bs = b.ToDoubleArray();
        double bound = 8 * Math.Sqrt(k) * Math.Pow(2, -24);
        var sum = new double[n];
        var abs = new double[n];
        for (int p = 0; p < k; p++)
            for (int j = 0; j < n; j++)
            {
                double y = xs[p] * bs[(long)p * n + j];
                sum[j] += y;
                abs[j] += Math.Abs(y);
            }
        for (int j = 0; j < n; j++)
            Assert.That(Math.Abs(actual[j] - sum[j]), Is.LessThanOrEqualTo(bound * abs[j] + 1e-30), $"{what}: column {j}");
    }
}
