using Parrot.Tensors.Cpu;
using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Tensors.Tests;

/// <summary>
/// MatMul against a float64 triple loop written here. Tolerances, per output element, relative to
/// S = Σ_k |a_ik·b_kj|: float32 accumulation (F32, BF16, F16 operands) 8·√K·2⁻²⁴·S, plus half an ulp of the
/// result (2⁻⁸·|c| for BF16, 2⁻¹¹·|c| for F16) when the output is rounded to 16 bits; F64 1e-12·S; integers exact.
/// Half-precision operands are compared with the product of their rounded values, which the engine must
/// reproduce up to float32 accumulation error.
/// </summary>
public class MatMulTests
{
    // ---- reference ----

    /// <summary>C = A·B for A [batchA..., M, K] and B [batchB..., K, N] with broadcast batch dims; also Σ|a·b| per element.</summary>
    private static (double[] C, double[] AbsSum, int[] Shape) Reference(double[] a, int[] aShape, double[] b, int[] bShape)
    {
        int m = aShape[^2], k = aShape[^1], n = bShape[^1];
        Assert.That(bShape[^2], Is.EqualTo(k));
        var batch = Tensor.BroadcastShapes(aShape[..^2], bShape[..^2], "reference");
        long count = 1;
        foreach (var d in batch) count *= d;
        var c = new double[count * m * n];
        var s = new double[count * m * n];
        for (long t = 0; t < count; t++)
        {
            long ia = BatchIndex(t, batch, aShape[..^2]), ib = BatchIndex(t, batch, bShape[..^2]);
            // i-p-j order, so that B is read along its rows.
            for (int i = 0; i < m; i++)
            {
                long row = (t * m + i) * n;
                for (int p = 0; p < k; p++)
                {
                    double x = a[(ia * m + i) * k + p];
                    long bRow = (ib * k + p) * n;
                    for (int j = 0; j < n; j++)
                    {
                        double y = x * b[bRow + j];
                        c[row + j] += y;
                        s[row + j] += Math.Abs(y);
                    }
                }
            }
        }
        return (c, s, [.. batch, m, n]);
    }

    /// <summary>Flat index into an operand's own batch dims of the broadcast batch index t.</summary>
    private static long BatchIndex(long t, int[] batch, int[] own)
    {
        long idx = 0, stride = 1;
        for (int d = batch.Length - 1; d >= 0; d--)
        {
            long i = t % batch[d];
            t /= batch[d];
            int od = d - (batch.Length - own.Length);
            if (od >= 0)
            {
                if (own[od] != 1) idx += i * stride;
                stride *= own[od];
            }
        }
        return idx;
    }

    private static double FloatTolerance(int k) => 8 * Math.Sqrt(Math.Max(k, 1)) * Math.Pow(2, -24);

    private static void AssertClose(Tensor actual, double[] expected, double[] absSum, double rel, double outputRel = 0)
    {
        var got = actual.ToDoubleArray();
        Assert.That(got, Has.Length.EqualTo(expected.Length));
        for (int i = 0; i < got.Length; i++)
        {
            double tol = rel * absSum[i] + outputRel * Math.Abs(expected[i]) + 1e-30;
            if (!(Math.Abs(got[i] - expected[i]) <= tol))
                Assert.Fail($"element {i} of {actual.ShapeString()}: got {got[i]:R}, expected {expected[i]:R} (tolerance {tol:G3})");
        }
    }

    /// <summary>Runs MatMul on a and b, checks the result shape and values against the reference.</summary>
    private static void CheckProduct(Tensor a, Tensor b, DType? outputDType = null)
    {
        using var c = Tensor.MatMul(a, b, outputDType);
        var (expected, abs, shape) = Reference(a.ToDoubleArray(), a.Shape.ToArray(), b.ToDoubleArray(), b.Shape.ToArray());
        Assert.That(c.Shape.ToArray(), Is.EqualTo(shape));
        Assert.That(c.DType, Is.EqualTo(outputDType ?? a.DType));
        int k = a.Shape[^1];
        switch (a.DType)
        {
            case DType.F64: AssertClose(c, expected, abs, 1e-12); break;
            case DType.I32:
            case DType.I64: Assert.That(c.ToDoubleArray(), Is.EqualTo(expected)); break;
            default:
                double outputRel = c.DType switch { DType.BF16 => Math.Pow(2, -8), DType.F16 => Math.Pow(2, -11), _ => 0 };
                AssertClose(c, expected, abs, FloatTolerance(k), outputRel);
                break;
        }
    }

    private static Tensor Random(int[] shape, ulong seed, DType dtype = DType.F32)
    {
        if (dtype.IsFloat()) return Tensor.Normal(shape, seed, dtype: dtype);
        using var f = Tensor.Uniform(shape, seed, -20, 20, DType.F64);
        return f.To(dtype);
    }

    // ---- float32 shapes ----

    [TestCase(1, 1, 1)]
    [TestCase(1, 7, 1)]
    [TestCase(7, 1, 7)]
    [TestCase(1, 17, 63)]
    [TestCase(17, 63, 65)]
    [TestCase(63, 65, 97)]
    [TestCase(97, 130, 300)]
    [TestCase(130, 17, 1)]
    [TestCase(65, 300, 7)]
    [TestCase(300, 97, 130)]
    [TestCase(7, 1000, 17)]
    [TestCase(16, 33, 129)]
    [TestCase(17, 513, 200)]
    [TestCase(6, 64, 64)]
    [TestCase(150, 600, 1100)]
    [TestCase(257, 513, 385)]
    public void Float32MatchesFloat64Reference(int m, int k, int n)
    {
        using var scope = TensorScope.Begin();
        CheckProduct(Random([m, k], 1), Random([k, n], 2));
    }

    [TestCase(1, 896, 4864)]
    [TestCase(16, 896, 4864)]
    [TestCase(16, 4864, 896)]
    public void DecodingShapes(int m, int k, int n)
    {
        using var scope = TensorScope.Begin();
        CheckProduct(Random([m, k], 3), Random([k, n], 4));
    }

    [TestCase(300, 65, 1)]
    [TestCase(500, 64, 16)]
    [TestCase(40, 100, 3)]
    public void FewColumnsManyRows(int m, int k, int n)
    {
        using var scope = TensorScope.Begin();
        CheckProduct(Random([m, k], 5), Random([k, n], 6));
        using var at = Random([k, m], 7);
        CheckProduct(at.Transpose(0, 1), Random([k, n], 8));
    }

    [TestCase(0, 5, 7)]
    [TestCase(5, 5, 0)]
    [TestCase(0, 0, 0)]
    public void EmptyDimensions(int m, int k, int n)
    {
        using var scope = TensorScope.Begin();
        var c = Tensor.MatMul(Random([m, k], 1), Random([k, n], 2));
        Assert.That(c.Shape.ToArray(), Is.EqualTo(new[] { m, n }));
    }

    [TestCase(1, 9)]
    [TestCase(4, 70)]
    [TestCase(300, 200)]
    public void ZeroDepthGivesZeros(int m, int n)
    {
        using var scope = TensorScope.Begin();
        var c = Tensor.MatMul(Tensor.Empty([m, 0]), Tensor.Empty([0, n]));
        Assert.That(c.ToFloatArray(), Is.All.EqualTo(0f));
        var c16 = Tensor.MatMul(Tensor.Empty([m, 0], DType.BF16), Tensor.Empty([0, n], DType.BF16));
        Assert.That(c16.ToFloatArray(), Is.All.EqualTo(0f));
    }

    // ---- layouts ----

    [TestCase(1, 100, 70)]
    [TestCase(3, 100, 70)]
    [TestCase(16, 300, 129)]
    [TestCase(17, 65, 63)]
    [TestCase(130, 520, 200)]
    public void TransposedOperands(int m, int k, int n)
    {
        using var scope = TensorScope.Begin();
        var a = Random([m, k], 11);
        var b = Random([k, n], 12);
        var at = Random([k, m], 13).Transpose(0, 1);
        var bt = Random([n, k], 14).Transpose(0, 1);
        CheckProduct(at, b);
        CheckProduct(a, bt);
        CheckProduct(at, bt);
    }

    [Test]
    public void SlicedWithSteps()
    {
        using var scope = TensorScope.Begin();
        var bigA = Random([90, 400], 21);
        var bigB = Random([410, 260], 22);
        var a = bigA.Slice(0, 1, null, 2).Slice(1, 3, 303, 3);   // [45, 100], strides (800, 3)
        var b = bigB.Slice(0, 0, 200, 2).Slice(1, 5, null, 2);   // [100, 128], strides (520, 2)
        CheckProduct(a, b);
        CheckProduct(a.Narrow(0, 0, 1), b);   // skinny path, strided A row
        CheckProduct(a.Narrow(0, 0, 16), b);
        CheckProduct(b.Transpose(0, 1), a.Transpose(0, 1));
    }

    // ---- batches and 1-D operands ----

    [Test]
    public void BatchedWithBroadcastBatchDims()
    {
        using var scope = TensorScope.Begin();
        CheckProduct(Random([2, 1, 7, 33], 31), Random([3, 33, 19], 32));       // → [2, 3, 7, 19]
        CheckProduct(Random([4, 70, 65], 33), Random([65, 130], 34));           // shared B: rows folded
        CheckProduct(Random([3, 1, 90], 35), Random([3, 90, 200], 36));         // decoding batch
        CheckProduct(Random([2, 2, 3, 40, 8], 37), Random([1, 2, 1, 8, 9], 38));
        var aT = Random([5, 64, 30], 39).Transpose(1, 2);                        // [5, 30, 64] transposed
        CheckProduct(aT, Random([64, 70], 40));
        CheckProduct(Random([1, 300, 100], 41), Random([6, 100, 120], 42));     // broadcast A, larger matrices
    }

    [Test]
    public void OneDimensionalOperands()
    {
        using var scope = TensorScope.Begin();
        var v = Random([37], 51);
        var w = Random([37], 52);
        var dot = Tensor.MatMul(v, w);
        Assert.That(dot.Rank, Is.EqualTo(0));
        double expected = 0, abs = 0;
        var vd = v.ToDoubleArray();
        var wd = w.ToDoubleArray();
        for (int i = 0; i < 37; i++) { expected += vd[i] * wd[i]; abs += Math.Abs(vd[i] * wd[i]); }
        Assert.That(dot.Item(), Is.EqualTo(expected).Within(FloatTolerance(37) * abs));

        var m = Random([37, 21], 53);
        var vm = Tensor.MatMul(v, m);
        Assert.That(vm.Shape.ToArray(), Is.EqualTo(new[] { 21 }));
        var (e1, s1, _) = Reference(vd, [1, 37], m.ToDoubleArray(), [37, 21]);
        AssertClose(vm, e1, s1, FloatTolerance(37));

        var mt = Random([21, 37], 54);
        var mv = mt.MatMul(v);
        Assert.That(mv.Shape.ToArray(), Is.EqualTo(new[] { 21 }));
        var (e2, s2, _) = Reference(mt.ToDoubleArray(), [21, 37], vd, [37, 1]);
        AssertClose(mv, e2, s2, FloatTolerance(37));

        var batched = Random([4, 21, 37], 55);
        var bv = Tensor.MatMul(batched, v);
        Assert.That(bv.Shape.ToArray(), Is.EqualTo(new[] { 4, 21 }));
        var (e3, s3, _) = Reference(batched.ToDoubleArray(), [4, 21, 37], vd, [37, 1]);
        AssertClose(bv, e3, s3, FloatTolerance(37));

        var right = Random([3, 37, 5], 56);
        var vb = Tensor.MatMul(v, right);
        Assert.That(vb.Shape.ToArray(), Is.EqualTo(new[] { 3, 5 }));
        var (e4, s4, _) = Reference(vd, [1, 37], right.ToDoubleArray(), [3, 37, 5]);
        AssertClose(vb, e4, s4, FloatTolerance(37));
    }

    // ---- dtypes ----

    [TestCase(1, 300, 200)]
    [TestCase(1, 896, 1100)]
    [TestCase(5, 130, 70)]
    [TestCase(16, 200, 300)]
    [TestCase(97, 600, 130)]
    public void BFloat16OperandsAccumulateInFloat32(int m, int k, int n)
    {
        using var scope = TensorScope.Begin();
        var a = Random([m, k], 61, DType.BF16);
        var b = Random([k, n], 62, DType.BF16);
        var bt = Random([n, k], 63, DType.BF16).Transpose(0, 1);
        CheckProduct(a, b);
        CheckProduct(a, b, DType.F32);
        CheckProduct(a, bt);
        CheckProduct(Random([k, m], 64, DType.BF16).Transpose(0, 1), b, DType.F32);
    }

    [TestCase(1, 100, 90)]
    [TestCase(33, 70, 65)]
    public void Float16Operands(int m, int k, int n)
    {
        using var scope = TensorScope.Begin();
        var a = Random([m, k], 71, DType.F16);
        var b = Random([k, n], 72, DType.F16);
        CheckProduct(a, b);
        CheckProduct(a, b, DType.F32);
        CheckProduct(a, Random([n, k], 73, DType.F16).Transpose(0, 1));
    }

    [TestCase(1, 1, 1)]
    [TestCase(17, 300, 65)]
    [TestCase(70, 600, 530)]
    public void Float64IsTight(int m, int k, int n)
    {
        using var scope = TensorScope.Begin();
        CheckProduct(Random([m, k], 81, DType.F64), Random([k, n], 82, DType.F64));
        CheckProduct(Random([k, m], 83, DType.F64).Transpose(0, 1), Random([2, k, n], 84, DType.F64));
    }

    [TestCase(DType.I32)]
    [TestCase(DType.I64)]
    public void IntegersAreExact(DType dtype)
    {
        using var scope = TensorScope.Begin();
        CheckProduct(Random([13, 29], 91, dtype), Random([29, 7], 92, dtype));
        CheckProduct(Random([2, 1, 5, 300], 93, dtype), Random([3, 300, 53], 94, dtype));
        CheckProduct(Random([40, 8], 95, dtype).Transpose(0, 1), Random([40, 3], 96, dtype));
    }

    [Test]
    public void IntegerOverflowWrapsLikeInt32()
    {
        using var scope = TensorScope.Begin();
        var a = Tensor.FromArray(new[] { int.MaxValue, 2 }, 1, 2);
        var b = Tensor.FromArray(new[] { 2, 1 }, 2, 1);
        Assert.That(Tensor.MatMul(a, b).ToArray<int>()[0], Is.EqualTo(unchecked(int.MaxValue * 2 + 2)));
    }

    // ---- kernels and threads ----

    [Test]
    public void Vector256FallbackIsCorrect()
    {
        using var width = TestUtil.ForceVector256(true);
        using var scope = TensorScope.Begin();
        CheckProduct(Random([1, 300], 101), Random([300, 70], 102));
        CheckProduct(Random([16, 65], 103), Random([65, 33], 104));
        CheckProduct(Random([97, 600], 105), Random([600, 130], 106));
        CheckProduct(Random([200, 70], 107).Transpose(0, 1), Random([130, 200], 108).Transpose(0, 1));
        CheckProduct(Random([7, 100], 109, DType.BF16), Random([100, 45], 110, DType.BF16));
        CheckProduct(Random([2, 1, 13, 17], 111), Random([3, 17, 5], 112));
    }

    /// <summary>
    /// The skinny kernels (m ≤ 16 rows, with the Vector256 kernels up to 32 for x · W and 64 for x · Wᵀ, or n ≤ 16 columns through the
    /// transposed product) of both vector widths, whatever the machine: every tile form and tail, k up to 1031, B
    /// row-major and column-major (x · Wᵀ), float32 and bf16 B.
    /// Each width must also give the same bits on 1, 2 and 3 threads.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void SkinnyKernelsMatchReference(bool vector256)
    {
        using var width = TestUtil.ForceVector256(vector256);
        int savedWorkers = CpuParallel.Workers;
        try
        {
            using var scope = TensorScope.Begin();
            ulong seed = 900;
            foreach (int m in new[] { 1, 2, 3, 4, 5, 6, 8, 9, 16, 32, 40 })
                foreach (var (k, n) in new[] { (1, 9), (7, 17), (8, 8), (63, 65), (64, 130), (65, 200), (130, 63), (257, 7), (600, 13), (1031, 9) })
                    foreach (var dtype in new[] { DType.F32, DType.BF16 })
                    {
                        var a = Random([m, k], seed++, dtype);
                        CheckProduct(a, Random([k, n], seed++, dtype));                        // B row-major
                        CheckProduct(a, Random([n, k], seed++, dtype).Transpose(0, 1));        // B column-major: x · Wᵀ
                        CheckProduct(Random([n, k], seed++, dtype), a.Transpose(0, 1));        // n ≤ 16: the transposed product
                    }
            // Big enough to be split between threads in grabs (≥ 512 KiB of B).
            foreach (var (m, k, n, transposed) in new[] { (1, 300, 1000, false), (1, 300, 1000, true), (3, 257, 700, true), (6, 200, 900, true), (16, 130, 1100, false), (32, 200, 900, false) })
            {
                var a = Random([m, k], seed++);
                var b = transposed ? Random([n, k], seed++).Transpose(0, 1) : Random([k, n], seed++);
                CheckProduct(a, b);
                var results = new List<float[]>();
                foreach (int workers in new[] { 1, 2, 3 })
                {
                    CpuParallel.Workers = workers;
                    results.Add(Tensor.MatMul(a, b).ToFloatArray());
                }
                Assert.That(results[1], Is.EqualTo(results[0]), $"[{m}, {k}]·[{k}, {n}] on 2 threads");
                Assert.That(results[2], Is.EqualTo(results[0]), $"[{m}, {k}]·[{k}, {n}] on 3 threads");
            }
        }
        finally { CpuParallel.Workers = savedWorkers; }
    }

    /// <summary>
    /// A row of x · Wᵀ has the same bits whatever the number of rows in the product, from one row up to the skinny
    /// limit (16 with AVX-512, 64 with the Vector256 kernels, <c>SkinnySgemm256.MaxDotRows</c>): the CPU's continuous
    /// batch promises each sequence the bits it gets alone, and the selftest's static-slots batch (8 rows) against the
    /// eager batch (down to 1 row) relies on it.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void SkinnyRowsDoNotDependOnTheRowCount(bool vector256)
    {
        using var width = TestUtil.ForceVector256(vector256);
        using var scope = TensorScope.Begin();
        int rows = GemmOptions.UseVector512 ? 16 : 64;
        foreach (var (k, n) in new[] { (896, 130), (1031, 21), (77, 37), (8, 9) })
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                var x = Random([rows, k], 990, dtype);
                var wt = Random([n, k], 991, dtype).Transpose(0, 1);
                var all = Tensor.MatMul(x, wt).ToFloatArray();
                for (int m = 1; m <= rows; m++)
                {
                    var part = Tensor.MatMul(x.Narrow(0, 0, m), wt).ToFloatArray();
                    Assert.That(part, Is.EqualTo(all[..(m * n)]), $"k {k}, n {n}, {dtype} weights: the first {m} rows alone");
                }
            }
    }

    /// <summary>
    /// The AVX-512 skinny kernels' x · Wᵀ called directly, so that a machine without AVX-512 runs them too (Vector512
    /// in software, float32 weights: the bf16 widening is an AVX-512 instruction): every m from 1 to 16 gives each row
    /// the bits of the 16-row product, and matches the float64 loop. On an AVX-512 machine the test above checks the
    /// same through Tensor.MatMul.
    /// </summary>
    [Test]
    public unsafe void Vector512SkinnyRowsDoNotDependOnTheRowCount()
    {
        foreach (var (k, n) in new[] { (200, 37), (35, 9), (16, 4) })
        {
            var rng = new Random(k + n);
            float[] x = Enumerable.Range(0, 16 * k).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            float[] w = Enumerable.Range(0, n * k).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            var all = new float[16 * n];
            fixed (float* xp = x, wp = w, cp = all)
            {
                var wt = new MatrixView((nint)wp, DType.F32, 1, k); // Wᵀ: element (p, j) at j·k + p
                SkinnySgemm.Run(xp, k, wt, cp, n, 16, k, 0, n);
                for (int m = 1; m <= 16; m++)
                {
                    var part = new float[m * n];
                    fixed (float* pp = part) SkinnySgemm.Run(xp, k, wt, pp, n, m, k, 0, n);
                    Assert.That(part, Is.EqualTo(all[..(m * n)]), $"k {k}, n {n}: the first {m} rows alone");
                }
            }
            for (int i = 0; i < 16; i++)
                for (int j = 0; j < n; j++)
                {
                    double sum = 0, abs = 0;
                    for (int p = 0; p < k; p++) { double y = (double)x[i * k + p] * w[j * k + p]; sum += y; abs += Math.Abs(y); }
                    Assert.That(Math.Abs(all[i * n + j] - sum), Is.LessThanOrEqualTo(1e-6 * abs + 1e-30), $"k {k}, n {n}: ({i}, {j}) against float64");
                }
        }
    }

    /// <summary>
    /// The packed product with transposed operands (A stored [k, m], B stored [n, k] as for x · Wᵀ), which pack
    /// through in-register transposes (16 × 16 with AVX-512, 8 × 8 with AVX), at sizes with tails in every
    /// dimension and k past one packed block; float32 and bf16. Every m is above the skinny limit (64 rows for x · Wᵀ
    /// with the Vector256 kernels), so the transposed B packs rather than being read in place by the dot tiles.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void PackedTransposedOperandsMatchReference(bool vector256)
    {
        using var width = TestUtil.ForceVector256(vector256);
        using var scope = TensorScope.Begin();
        ulong seed = 950;
        foreach (var (m, k, n) in new[] { (65, 9, 17), (72, 16, 32), (104, 100, 33), (97, 600, 130), (130, 1031, 71) })
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                var aT = Random([k, m], seed++, dtype).Transpose(0, 1);
                var bT = Random([n, k], seed++, dtype).Transpose(0, 1);
                CheckProduct(aT, bT);
                CheckProduct(Random([m, k], seed++, dtype), bT);
                CheckProduct(aT, Random([k, n], seed++, dtype));
            }
    }

    [TestCase(1, 896, 4864)]
    [TestCase(16, 896, 1000)]
    [TestCase(300, 520, 700)]
    [TestCase(700, 300, 40)]
    public void ResultDoesNotDependOnThreadCount(int m, int k, int n)
    {
        int saved = CpuParallel.Workers;
        using var scope = TensorScope.Begin();
        var a = Random([m, k], 121);
        var b = Random([k, n], 122);
        try
        {
            CpuParallel.Workers = 1;
            var one = Tensor.MatMul(a, b).ToFloatArray();
            CpuParallel.Workers = 2;
            var two = Tensor.MatMul(a, b).ToFloatArray();
            CpuParallel.Workers = 3;
            var three = Tensor.MatMul(a, b).ToFloatArray();
            Assert.That(two, Is.EqualTo(one));
            Assert.That(three, Is.EqualTo(one));
        }
        finally { CpuParallel.Workers = saved; }
    }

    [Test]
    public void BatchSpreadOverThreadsMatchesReference()
    {
        using var scope = TensorScope.Begin();
        CheckProduct(Random([12, 20, 30], 131), Random([12, 30, 25], 132));
        CheckProduct(Random([12, 1, 64], 133), Random([12, 64, 64], 134));
    }

    // ---- bad input ----

    [Test]
    public void InnerDimensionMismatchNamesOpAndShapes()
    {
        using var a = Tensor.Zeros([3, 4]);
        using var b = Tensor.Zeros([5, 6]);
        var e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(a, b));
        Assert.That(e!.Message, Does.Contain("MatMul").And.Contain("[3, 4]").And.Contain("[5, 6]"));
        using var v = Tensor.Zeros([5]);
        e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(a, v));
        Assert.That(e!.Message, Does.Contain("MatMul").And.Contain("[5]"));
    }

    [Test]
    public void BatchMismatchNamesOpAndShapes()
    {
        using var a = Tensor.Zeros([2, 3, 4]);
        using var b = Tensor.Zeros([3, 4, 5]);
        var e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(a, b));
        Assert.That(e!.Message, Does.Contain("MatMul").And.Contain("[2, 3, 4]").And.Contain("[3, 4, 5]"));
    }

    [Test]
    public void ScalarOperandIsRejected()
    {
        using var s = Tensor.Scalar(2);
        using var b = Tensor.Zeros([3]);
        var e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(s, b));
        Assert.That(e!.Message, Does.Contain("MatMul").And.Contain("[]"));
    }

    [Test]
    public void MixedOrUnsupportedDtypesAreRejected()
    {
        using var f = Tensor.Zeros([2, 2]);
        using var i = Tensor.Zeros([2, 2], DType.I32);
        var e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(f, i));
        Assert.That(e!.Message, Does.Contain("MatMul").And.Contain("float32").And.Contain("int32"));
        using var bo = Tensor.Zeros([2, 2], DType.Bool);
        e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(bo, bo));
        Assert.That(e!.Message, Does.Contain("MatMul").And.Contain("bool"));
        e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(f, f, DType.BF16));
        Assert.That(e!.Message, Does.Contain("MatMul").And.Contain("bfloat16"));
    }

    [Test]
    public void DisposedOperandIsRejected()
    {
        var a = Tensor.Zeros([2, 2]);
        using var b = Tensor.Zeros([2, 2]);
        a.Dispose();
        var e = Assert.Throws<ObjectDisposedException>(() => Tensor.MatMul(a, b));
        Assert.That(e!.Message, Does.Contain("MatMul"));
    }

    [Test]
    public void BackendRejectsInconsistentShapes()
    {
        using var a = Tensor.Zeros([2, 3]);
        using var b = Tensor.Zeros([4, 5]);
        using var c = Tensor.Zeros([2, 5]);
        var e = Assert.Throws<ArgumentException>(() => a.Backend.MatMul(a, b, c));
        Assert.That(e!.Message, Does.Contain("MatMul"));
    }

    [Test]
    public void DoesNotLeakTensorMemory()
    {
        using var a = Random([3, 40, 30], 141);
        using var b = Random([30, 20], 142);
        using var v = Random([30], 143);
        using var a16 = a.To(DType.BF16);
        using var b16 = b.To(DType.BF16);
        using (Tensor.MatMul(a, b)) { }
        using (Tensor.MatMul(a, v)) { }
        long before = MemoryStats.CpuBytesInUse;
        for (int i = 0; i < 50; i++)
        {
            using (Tensor.MatMul(a, b)) { }
            using (Tensor.MatMul(a, v)) { }
            using (Tensor.MatMul(a16, b16)) { }
        }
        Assert.That(MemoryStats.CpuBytesInUse, Is.EqualTo(before));
    }
}
