using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The residual step fused with the product that reads its norm (<see cref="Tensor.AddRmsNormLinear"/>,
/// <see cref="Tensor.AddRmsNormSwiGlu"/>): on the CPU bit for bit the ops in sequence; which operands the CUDA backend
/// sends to native/gemv.cu's add_rms_norm_gemv kernels (<see cref="CudaBackend.PlanNormGemv"/>), checked on the CPU by
/// running the plan as the kernel reads memory, and when it falls back to the two launches. The kernel's bits are
/// checked by the CPU emulation (tools/cuda-emu/norm_gemv_test.cpp) and on a GPU by `parrot selftest` ("add rms norm
/// linear (decode, fused)" rows).
/// </summary>
public class CudaNormGemvDispatchTests
{
    private static Tensor R(ulong seed, DType t, params int[] shape) => Tensor.Normal(shape, seed, 0, 1, t);

    private static void AssertBits(Tensor got, Tensor want, string what) =>
        Assert.That(got.To(DType.F64).ToDoubleArray(), Is.EqualTo(want.To(DType.F64).ToDoubleArray()), what);

    [TestCase(DType.F32, 1, true)]
    [TestCase(DType.F32, 3, false)]
    [TestCase(DType.BF16, 1, true)]
    [TestCase(DType.BF16, 4, true)]
    [TestCase(DType.F32, 7, true)]
    public void CpuOpsEqualTheOpsInSequence(DType dt, int rows, bool bias)
    {
        const int D = 37, N = 19;
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([1, rows, D], 1, 0, 4, dt); // a residual stream larger than the update
        var res = R(2, dt, 1, rows, D);
        var gamma = Tensor.Uniform([D], 3, 0.5, 1.5).To(dt);
        var w = R(4, dt, N, D);
        var u = R(5, dt, N, D);
        var b = bias ? R(6, dt, N) : null;
        var (s1, h) = Tensor.AddRmsNorm(x, res, gamma, 1e-6);
        var rowsView = h.Reshape(-1, D);
        var linear = (b is null ? Tensor.MatMul(rowsView, w.Transpose(0, 1)) : Tensor.MatMulBias(rowsView, w.Transpose(0, 1), b)).Reshape(1, rows, N);
        var swiglu = Tensor.SwiGluLinear(rowsView, w, u).Reshape(1, rows, N);

        var (s2, y2) = Tensor.AddRmsNormLinear(x, res, gamma, 1e-6, w, b);
        Assert.That(y2.Shape.ToArray(), Is.EqualTo(new[] { 1, rows, N }));
        AssertBits(s2, s1, "sum (linear)");
        AssertBits(y2, linear, "AddRmsNorm then the Linear");
        var (s3, y3) = Tensor.AddRmsNormSwiGlu(x, res, gamma, 1e-6, w, u);
        AssertBits(s3, s1, "sum (swiglu)");
        AssertBits(y3, swiglu, "AddRmsNorm then SwiGluLinear");
        // And near float64 (a bug shared with the ops in sequence would pass the bit comparison).
        var hv = h.To(DType.F64).ToDoubleArray();
        var wv = w.To(DType.F64).ToDoubleArray();
        var bv = b?.To(DType.F64).ToDoubleArray();
        var got = y2.To(DType.F64).ToDoubleArray();
        for (int m = 0; m < rows; m++)
            for (int n = 0; n < N; n++)
            {
                double want = bv?[n] ?? 0, mag = Math.Abs(want);
                for (int k = 0; k < D; k++) { want += hv[m * D + k] * wv[n * D + k]; mag += Math.Abs(hv[m * D + k] * wv[n * D + k]); }
                Assert.That(got[m * N + n], Is.EqualTo(want).Within((dt == DType.BF16 ? 1e-2 : 1e-5) * (1 + mag)), $"[{m}, {n}]");
            }
    }

    [Test]
    public void MixedDTypesRunTheOpsApart()
    {
        using var scope = TensorScope.Begin();
        var x = R(10, DType.BF16, 2, 16);
        var res = R(11, DType.BF16, 2, 16);
        var gamma = Tensor.Ones([16], DType.F32); // a float32 norm weight: the norm's output is float32
        var w = R(12, DType.F32, 8, 16);
        var (s, y) = Tensor.AddRmsNormLinear(x, res, gamma, 1e-6, w);
        var (s1, h) = Tensor.AddRmsNorm(x, res, gamma, 1e-6);
        AssertBits(s, s1, "sum");
        AssertBits(y, Tensor.MatMul(h, w.Transpose(0, 1)), "product");
        Assert.Throws<ArgumentException>(() => Tensor.AddRmsNormLinear(x, res, gamma, 1e-6, R(13, DType.BF16, 8, 15)));
        Assert.Throws<ArgumentException>(() => Tensor.AddRmsNormSwiGlu(x, res, gamma, 1e-6, R(14, DType.BF16, 8, 16), R(15, DType.BF16, 9, 16)));
        Assert.Throws<ArgumentException>(() => Tensor.AddRmsNormLinear(x, res, gamma, 1e-6, R(16, DType.BF16, 8, 16), R(17, DType.BF16, 7)));
    }

    private sealed record Operands(Tensor X, Tensor Res, Tensor Gamma, Tensor W, Tensor? Bias, Tensor? Up, Tensor Sum, Tensor Y);

    private static Operands Make(DType dt, int rows, int d, int n, bool bias = true, bool swiglu = false, ulong seed = 20) =>
        new(R(seed, dt, rows, d), R(seed + 1, dt, rows, d), R(seed + 2, dt, d), R(seed + 3, dt, n, d), bias && !swiglu ? R(seed + 4, dt, n) : null,
            swiglu ? R(seed + 5, dt, n, d) : null, Tensor.Empty([rows, d], dt), Tensor.Full([rows, n], double.NaN, dt));

    private static CudaBackend.NormGemvCall? Plan(Operands o, bool enabled = true, int rowThreads = 256) =>
        CudaBackend.PlanNormGemv(o.X, o.Res, o.Gamma, o.W, o.Bias, o.Up, o.Sum, o.Y, enabled, rowThreads);

    /// <summary>out[m·Ldy + n] = Σ_k h[m, k]·W[n·Ldw + k] + bias[n], the kernel's reading of the plan (h: the CPU's norm).</summary>
    private static unsafe void Emulate(CudaBackend.GemvCall g, Tensor h, Tensor w, Tensor? bias, Tensor y)
    {
        float* hp = (float*)h.DataPointer, wp = (float*)w.DataPointer, yp = (float*)y.DataPointer;
        for (int m = 0; m < g.M; m++)
            for (long n = 0; n < g.N; n++)
            {
                double s = bias is null ? 0 : ((float*)bias.DataPointer)[n];
                for (long k = 0; k < g.K; k++) s += (double)hp[m * g.K + k] * wp[n * g.Ldw + k];
                yp[m * g.Ldy + n] = (float)s;
            }
    }

    [Test]
    public void DecodeRowsTakeTheFusedKernelAndItsPlanComputesTheOp()
    {
        for (int rows = 1; rows <= 4; rows++)
        {
            using var scope = TensorScope.Begin();
            var o = Make(DType.F32, rows, 24, 40);
            var p = Plan(o);
            Assert.That(p, Is.Not.Null, $"rows {rows}");
            var g = p!.Value.Gemv;
            Assert.That((g.M, g.N, g.K, g.Ldw, g.Ldy, p.Value.RowThreads, p.Value.SharedBytes), Is.EqualTo((rows, 40L, 24L, 24L, rows > 1 ? 40L : 0L, 256, rows * 24 * 4)));
            var (_, h) = Tensor.AddRmsNorm(o.X, o.Res, o.Gamma, 1e-6);
            Emulate(g, h, o.W, o.Bias, o.Y);
            var (_, want) = Tensor.AddRmsNormLinear(o.X, o.Res, o.Gamma, 1e-6, o.W, o.Bias); // the CPU op
            var a = o.Y.ToDoubleArray();
            var b = want.ToDoubleArray();
            for (int i = 0; i < a.Length; i++) Assert.That(a[i], Is.EqualTo(b[i]).Within(1e-4 * (1 + Math.Abs(b[i]))), $"rows {rows} element {i}");
        }
        using (TensorScope.Begin())
        {
            // Qwen2-7B's decode shapes: q/k/v (4608 rows with a bias) and gate/up (18944), bf16; the row padded to whole vectors.
            var qkv = Plan(Make(DType.BF16, 1, 3584, 4608), rowThreads: 1024);
            Assert.That(qkv?.SharedBytes, Is.EqualTo(3584 * 2));
            var mlp = Plan(Make(DType.BF16, 4, 3584, 18944, swiglu: true), rowThreads: 1024);
            Assert.That(mlp?.SharedBytes, Is.EqualTo(4 * 3584 * 2));
            var ragged = Make(DType.F32, 3, 1001, 8);
            var padded = R(40, DType.F32, 8, 1004).Narrow(1, 0, 1001); // gemv reads rows 16-byte aligned
            Assert.That(Plan(ragged with { W = padded })?.SharedBytes, Is.EqualTo(3 * 1004 * 4), "rows rounded up to whole 16-byte vectors");
        }
    }

    [Test]
    public void IneligibleOperandsFallBack()
    {
        using var scope = TensorScope.Begin();
        Assert.That(Plan(Make(DType.BF16, 2, 32, 64)), Is.Not.Null, "bf16 decode");
        Assert.That(Plan(Make(DType.BF16, 2, 32, 64, swiglu: true)), Is.Not.Null, "bf16 decode, SwiGLU");
        Assert.That(Plan(Make(DType.BF16, 2, 32, 64), enabled: false), Is.Null, "switched off (PARROT_DECODE_NORM_GEMV=0, or gemv off)");
        Assert.That(Plan(Make(DType.BF16, 5, 32, 64)), Is.Null, "5 rows");
        Assert.That(Plan(Make(DType.F16, 2, 32, 64)), Is.Null, "f16: no gemv kernel");
        // The shared-memory bound: bf16 3584 fits at 4 rows, f32 3584 at 3 rows, not 4.
        Assert.That(Plan(Make(DType.BF16, 4, 3584, 8), rowThreads: 1024), Is.Not.Null);
        Assert.That(Plan(Make(DType.F32, 3, 3584, 8), rowThreads: 1024), Is.Not.Null);
        Assert.That(Plan(Make(DType.F32, 4, 3584, 8), rowThreads: 1024), Is.Null, "57344 bytes of shared memory");
        // Static shared memory counts against the same 48 KiB: rows of exactly 48 KiB would fail to launch (no opt-in).
        Assert.That(Plan(Make(DType.BF16, 3, 8192, 8), rowThreads: 1024), Is.Null, "Qwen2-72B at 3 rows: 49152 bytes of rows + static");
        Assert.That(Plan(Make(DType.BF16, 4, 6144, 8, swiglu: true), rowThreads: 1024), Is.Null, "49152 bytes of rows + static");
        Assert.That(Plan(Make(DType.F32, 4, 3072, 8), rowThreads: 1024), Is.Null, "49152 bytes of rows + static");
        Assert.That(Plan(Make(DType.BF16, 4, 6064, 8, swiglu: true), rowThreads: 1024)?.SharedBytes, Is.EqualTo(4 * 6064 * 2), "48512 + 640 bytes");
        Assert.That(Plan(Make(DType.BF16, 4, 6072, 8, swiglu: true), rowThreads: 1024), Is.Null, "48576 + 640 bytes");
        Assert.That(Plan(Make(DType.BF16, 1, 32, 8), rowThreads: 48), Is.Null, "a block that is not whole warps");
        Assert.That(Plan(Make(DType.BF16, 1, 32, 8), rowThreads: 2048), Is.Null, "more threads than a block holds");
        var o = Make(DType.BF16, 2, 32, 64);
        Assert.That(Plan(o with { W = R(30, DType.F32, 64, 32) }), Is.Null, "a weight of another dtype");
        Assert.That(Plan(o with { Gamma = R(31, DType.F32, 32) }), Is.Null, "a norm weight of another dtype");
        Assert.That(Plan(o with { Up = R(32, DType.BF16, 64, 32) }), Is.Null, "a bias with the SwiGLU products");
        var wide = R(33, DType.BF16, 2, 40);
        Assert.That(Plan(o with { X = wide.Narrow(1, 0, 32) }), Is.Null, "x not contiguous");
        var odd = R(34, DType.BF16, 64 * 32 + 1);
        Assert.That(Plan(o with { W = odd.Narrow(0, 1, 64 * 32).Reshape(64, 32) }), Is.Null, "a weight not 16-byte aligned");
        // Aliasing: other blocks read x and residual while block 0 writes sum; every block writes y.
        Assert.That(Plan(o with { Sum = o.X }), Is.Null, "sum in place of x");
        Assert.That(Plan(o with { Sum = o.Res }), Is.Null, "sum in place of the residual");
        var both = R(35, DType.BF16, 4, 32);
        Assert.That(Plan(o with { X = both.Narrow(0, 0, 2), Sum = Tensor.Empty([2, 32], DType.BF16) }), Is.Not.Null, "a fresh sum");
        Assert.That(Plan(o with { X = both.Narrow(0, 0, 2), Sum = both.Narrow(0, 1, 2) }), Is.Null, "sum overlapping x");
        var yBig = Tensor.Empty([2, 64 + 64], DType.BF16);
        Assert.That(Plan(o with { Y = yBig.Narrow(1, 0, 64) }), Is.Null, "y not contiguous");
        var shared = Tensor.Empty([2 * 64], DType.BF16);
        Assert.That(Plan(o with { Y = shared.Reshape(2, 64), Res = shared.Narrow(0, 0, 64).Reshape(2, 32) }), Is.Null, "y overlapping the residual");
    }

    [TestCase(1152L, 132, 5, 660L)]
    [TestCase(4736L, 132, 4, 528L)]
    [TestCase(100L, 132, 5, 100L)]
    [TestCase(1000L, 132, 0, 132L)]
    public void TheGridIsCappedAtTheResidentBlocks(long groups, int sms, int resident, long grid) =>
        Assert.That(CudaBackend.NormGemvGrid(groups, sms, resident), Is.EqualTo(grid));

    [TestCase(null, false)]
    [TestCase("", false)]
    [TestCase("1", true)]
    [TestCase(" 1 ", true)]
    [TestCase("0", false)]
    public void OffUnlessPARROT_DECODE_NORM_GEMVIs1(string? env, bool on) => Assert.That(CudaBackend.NormGemvDefault(env), Is.EqualTo(on));
}
