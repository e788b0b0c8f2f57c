using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The fused decode op y = SwiGlu(x·Wgᵀ, x·Wuᵀ) (<see cref="Tensor.SwiGluLinear"/>): which operands the CUDA backend
/// sends to native/gemv.cu's swiglu_gemv kernels (<see cref="CudaBackend.PlanSwiGluGemv"/>), checked on the CPU by
/// running the plan as the kernel reads memory; and the op itself on the CPU against a float64 loop and against the
/// unfused ops. The kernel's bits are checked by the CPU emulation (tools/cuda-emu/gemv_test.cpp) and on a GPU by
/// `parrot selftest` ("swiglu linear (decode, fused)").
/// </summary>
public class CudaSwiGluGemvDispatchTests
{
    private static Tensor R(ulong seed, DType t, params int[] shape) => Tensor.Normal(shape, seed, 0, 1, t);

    private static double Silu(double v) => v / (1 + Math.Exp(-v));

    /// <summary>y[m·Ldy + n] = silu(Σ_k x·Wg)·(Σ_k x·Wu) read through the plan's strides, f32 host tensors, float64 sums.</summary>
    private static unsafe void Emulate(CudaBackend.GemvCall g, Tensor x, Tensor wg, Tensor wu, Tensor y)
    {
        float* xp = (float*)x.DataPointer, gp = (float*)wg.DataPointer, up = (float*)wu.DataPointer, yp = (float*)y.DataPointer;
        for (int m = 0; m < g.M; m++)
            for (long n = 0; n < g.N; n++)
            {
                double sg = 0, su = 0;
                for (long k = 0; k < g.K; k++) { sg += (double)xp[m * g.Ldx + k] * gp[n * g.Ldw + k]; su += (double)xp[m * g.Ldx + k] * up[n * g.Ldw + k]; }
                yp[m * g.Ldy + n] = (float)(Silu(sg) * su);
            }
    }

    private static CudaBackend.GemvCall? Plan(Tensor x, Tensor wg, Tensor wu, Tensor y, bool gemvKernel = true)
    {
        using var gT = wg.Transpose(0, 1);
        using var uT = wu.Transpose(0, 1);
        return CudaBackend.PlanSwiGluGemv(x, gT, uT, y, gemvKernel);
    }

    [Test]
    public void DecodeRowsTakeTheFusedKernelAndItsPlanComputesTheOp()
    {
        using var wg = R(1, DType.F32, 40, 24);
        using var wu = R(2, DType.F32, 40, 24);
        for (int m = 1; m <= 4; m++)
        {
            using var x = R((ulong)(3 + m), DType.F32, m, 24);
            using var y = Tensor.Full([m, 40], double.NaN, DType.F32);
            var g = Plan(x, wg, wu, y);
            Assert.That(g, Is.Not.Null, $"m {m}");
            Assert.That((g!.Value.M, g.Value.N, g.Value.K, g.Value.Ldw, g.Value.Ldy), Is.EqualTo((m, 40L, 24L, 24L, m > 1 ? 40L : 0L)), "one row has no row stride");
            Emulate(g.Value, x, wg, wu, y);
            using var want = Tensor.SwiGluLinear(x, wg, wu); // the CPU op
            var a = y.ToDoubleArray();
            var b = want.ToDoubleArray();
            for (int i = 0; i < a.Length; i++) Assert.That(a[i], Is.EqualTo(b[i]).Within(1e-4 * (1 + Math.Abs(b[i]))), $"m {m} element {i}");
        }
    }

    [Test]
    public void IneligibleOperandsFallBack()
    {
        using var wg = R(10, DType.BF16, 64, 32);
        using var wu = R(11, DType.BF16, 64, 32);
        using var x = R(12, DType.BF16, 2, 32);
        using var y = Tensor.Empty([2, 64], DType.BF16);
        Assert.That(Plan(x, wg, wu, y), Is.Not.Null, "bf16 decode");
        Assert.That(Plan(x, wg, wu, y, gemvKernel: false), Is.Null, "gemv kernel off: the products take cuBLASLt, whose sums the fused kernel would not reproduce");
        using var y32 = Tensor.Empty([2, 64], DType.F32);
        Assert.That(Plan(x, wg, wu, y32), Is.Null, "y of another dtype than x");
        using var x5 = R(13, DType.BF16, 5, 32);
        using var y5 = Tensor.Empty([5, 64], DType.BF16);
        Assert.That(Plan(x5, wg, wu, y5), Is.Null, "5 rows");
        using var wu32 = R(14, DType.F32, 64, 32);
        Assert.That(Plan(x, wg, wu32, y), Is.Null, "weights of two dtypes");
        // An up weight whose rows are further apart than the gate's: one kernel has one row stride.
        using var wide = R(15, DType.BF16, 64, 40);
        using var wuPad = wide.Narrow(1, 0, 32);
        Assert.That(Plan(x, wg, wuPad, y), Is.Null, "weights of two row strides");
        // A weight starting 2 bytes past a 16-byte boundary.
        using var big = R(16, DType.BF16, 65 * 32 + 1);
        using var wuOdd = big.Narrow(0, 1, 64 * 32).Reshape(64, 32);
        Assert.That(Plan(x, wg, wuOdd, y), Is.Null, "a weight not 16-byte aligned");
        using var xT = R(17, DType.BF16, 32, 2);
        using var xCols = xT.Transpose(0, 1);
        Assert.That(Plan(xCols, wg, wu, y), Is.Null, "x not contiguous along K");
    }

    /// <summary>The op on the CPU: bit for bit the unfused ops (what GatedSiluMlp ran before), and near a float64 loop.</summary>
    [TestCase(DType.F32, 1)]
    [TestCase(DType.F32, 3)]
    [TestCase(DType.BF16, 1)]
    [TestCase(DType.BF16, 4)]
    [TestCase(DType.F32, 7)]
    public void CpuOpEqualsTheUnfusedOpsAndAFloat64Loop(DType dt, int rows)
    {
        const int K = 37, N = 19;
        using var wg = R(20, dt, N, K);
        using var wu = R(21, dt, N, K);
        using var x = R(22, dt, 1, rows, K);
        using var y = Tensor.SwiGluLinear(x, wg, wu);
        Assert.That(y.Shape.ToArray(), Is.EqualTo(new[] { 1, rows, N }));
        using var gT = wg.Transpose(0, 1);
        using var uT = wu.Transpose(0, 1);
        using var x2 = x.Reshape(-1, K);
        using var g = Tensor.MatMul(x2, gT);
        using var u = Tensor.MatMul(x2, uT);
        using var s = Tensor.SwiGlu(g, u);
        Assert.That(y.ToDoubleArray(), Is.EqualTo(s.ToDoubleArray()), "the unfused ops");
        var xv = x.ToDoubleArray();
        var gv = wg.ToDoubleArray();
        var uv = wu.ToDoubleArray();
        var got = y.ToDoubleArray();
        double tol = dt == DType.BF16 ? 2e-2 : 1e-5;
        for (int m = 0; m < rows; m++)
            for (int n = 0; n < N; n++)
            {
                double sg = 0, su = 0;
                for (int k = 0; k < K; k++) { sg += xv[m * K + k] * gv[n * K + k]; su += xv[m * K + k] * uv[n * K + k]; }
                double want = Silu(sg) * su;
                Assert.That(got[m * N + n], Is.EqualTo(want).Within(tol * (1 + Math.Abs(want)) * (1 + Math.Abs(su))), $"[{m}, {n}]");
            }
    }

    [Test]
    public void RejectsMismatchedOperands()
    {
        using var wg = R(30, DType.F32, 8, 16);
        using var wu = R(31, DType.F32, 9, 16);
        using var x = R(32, DType.F32, 1, 16);
        Assert.Throws<ArgumentException>(() => Tensor.SwiGluLinear(x, wg, wu).Dispose());
        using var wuBf = R(33, DType.BF16, 8, 16);
        Assert.Throws<ArgumentException>(() => Tensor.SwiGluLinear(x, wg, wuBf).Dispose());
        using var x15 = R(34, DType.F32, 1, 15);
        using var wu8 = R(35, DType.F32, 8, 16);
        Assert.Throws<ArgumentException>(() => Tensor.SwiGluLinear(x15, wg, wu8).Dispose());
    }
}
