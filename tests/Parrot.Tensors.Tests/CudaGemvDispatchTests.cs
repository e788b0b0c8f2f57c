using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Which matrix products the CUDA backend sends to the matrix-vector kernel (native/gemv.cu) instead of cuBLASLt,
/// checked on the CPU: the planned launch is executed by a naive loop that reads the operands' host memory exactly
/// as the kernel does (element strides Ldw, Ldx, Ldy) and compared with the CPU backend's MatMul. No GPU needed: the
/// kernel itself is checked by NVRTC (CudaKernelCompileTests) and by the CPU emulation in tools/cuda-emu (gemv_test.cpp).
/// </summary>
public class CudaGemvDispatchTests
{
    private static Tensor R(ulong seed, DType t, params int[] shape) => Tensor.Normal(shape, seed, 0, 1, t);

    /// <summary>y[m·Ldy + n] = Σ_k x[m·Ldx + k]·W[n·Ldw + k], the kernel's reading of the plan, on float32 host tensors.</summary>
    private static unsafe void Emulate(CudaBackend.GemvCall g, Tensor a, Tensor b, Tensor c)
    {
        float* x = (float*)a.DataPointer, w = (float*)b.DataPointer, y = (float*)c.DataPointer;
        for (int m = 0; m < g.M; m++)
            for (long n = 0; n < g.N; n++)
            {
                double s = 0;
                for (long k = 0; k < g.K; k++) s += (double)x[m * g.Ldx + k] * w[n * g.Ldw + k];
                y[m * g.Ldy + n] = (float)s;
            }
    }

    /// <summary>Plans c = a·b (b broadcast over a's batch dims as MatMul expands it), runs the plan, compares with MatMul.</summary>
    private static CudaBackend.GemvCall PlanAndCheck(Tensor a, Tensor b, Tensor? cView = null)
    {
        var batch = a.Shape[..^2];
        using var be = b.Rank == a.Rank ? b.Alias() : b.Expand([.. batch, b.Dim(-2), b.Dim(-1)]);
        using var expected = Tensor.MatMul(a, b);
        using var owned = cView is null ? Tensor.Full(expected.Shape.ToArray(), double.NaN, DType.F32) : null;
        var c = cView ?? owned!;
        var g = CudaBackend.PlanGemv(a, be, c);
        Assert.That(g, Is.Not.Null, "the product should take the gemv kernel");
        Emulate(g!.Value, a, be, c);
        var want = expected.ToDoubleArray();
        var got = c.ToDoubleArray();
        for (int i = 0; i < want.Length; i++) Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-4 * (1 + Math.Abs(want[i]))), $"element {i}");
        return g.Value;
    }

    private static CudaBackend.GemvCall? Plan(Tensor a, Tensor b, DType? cType = null)
    {
        var batch = a.Shape[..^2];
        using var be = b.Rank == a.Rank ? b.Alias() : b.Expand([.. batch, b.Dim(-2), b.Dim(-1)]);
        using var c = Tensor.Empty([.. batch, a.Dim(-2), b.Dim(-1)], cType ?? a.DType);
        return CudaBackend.PlanGemv(a, be, c);
    }

    [Test]
    public void DecodeRowsTimesAWeightsTransposedViewTakeTheKernel()
    {
        using var w = R(1, DType.F32, 40, 24); // [N, K]
        using var wt = w.Transpose(0, 1);
        for (int m = 1; m <= 4; m++)
        {
            using var x = R(2, DType.F32, m, 24);
            var g = PlanAndCheck(x, wt);
            Assert.That((g.M, g.N, g.K, g.Ldw, g.XVec, g.Bf16), Is.EqualTo((m, 40L, 24L, 24L, true, false)));
        }
    }

    [Test]
    public void LeadingDimsFoldIntoRows()
    {
        using var w = R(3, DType.F32, 33, 16);
        using var wt = w.Transpose(0, 1);
        using var x3 = R(4, DType.F32, 2, 1, 16); // [batch 2, T 1, K]: decode of two sequences
        Assert.That(PlanAndCheck(x3, wt).M, Is.EqualTo(2));
        using var x4 = R(5, DType.F32, 2, 2, 16);
        Assert.That(PlanAndCheck(x4, wt).M, Is.EqualTo(4));
        // The last position of each of 3 sequences of a [3, 5, K] activation: rows 5·K apart.
        using var full = R(6, DType.F32, 3, 5, 16);
        using var last = full.Narrow(1, 4, 1);
        var g = PlanAndCheck(last, wt);
        Assert.That((g.M, g.Ldx), Is.EqualTo((3, 80L)));
        // c written into a strided view: rows of a wider buffer.
        using var wide = Tensor.Full([2, 50], double.NaN, DType.F32);
        using var cView = wide.Narrow(1, 0, 33);
        using var x2 = R(7, DType.F32, 2, 16);
        Assert.That(PlanAndCheck(x2, wt, cView).Ldy, Is.EqualTo(50));
    }

    [Test]
    public void PaddedWeightRowsAndUnalignedXStillTakeTheKernel()
    {
        using var wPad = R(8, DType.F32, 20, 24);  // rows of 24, the weight the first 21 columns
        using var w = wPad.Narrow(1, 0, 21);
        using var wt = w.Transpose(0, 1);
        using var xFull = R(9, DType.F32, 3, 22);
        using var x = xFull.Narrow(1, 1, 21);      // rows start one element in: x read element by element
        var g = PlanAndCheck(x, wt);
        Assert.That((g.Ldw, g.Ldx, g.XVec), Is.EqualTo((24L, 22L, false)));
    }

    [Test]
    public void Bf16ToBf16OrFloat32AndFloat32ToFloat32AreTheDTypes()
    {
        using var w = R(10, DType.BF16, 64, 32);
        using var wt = w.Transpose(0, 1);
        using var x = R(11, DType.BF16, 1, 32);
        Assert.That(Plan(x, wt)?.Bf16, Is.True);
        Assert.That(Plan(x, wt, DType.F32), Is.Not.Null, "f32 output of bf16 inputs");
        using var w32 = R(12, DType.F32, 64, 32);
        using var wt32 = w32.Transpose(0, 1);
        using var x32 = R(13, DType.F32, 1, 32);
        Assert.That(Plan(x32, wt32, DType.BF16), Is.Null, "f32 inputs to bf16 output");
        using var w16 = R(14, DType.F16, 64, 32);
        using var wt16 = w16.Transpose(0, 1);
        using var x16 = R(15, DType.F16, 1, 32);
        Assert.That(Plan(x16, wt16), Is.Null, "f16");
        using var w64 = R(16, DType.F64, 64, 32);
        using var wt64 = w64.Transpose(0, 1);
        using var x64 = R(17, DType.F64, 1, 32);
        Assert.That(Plan(x64, wt64), Is.Null, "f64");
        using var c32 = Tensor.Empty([1, 64], DType.F32);
        Assert.That(CudaBackend.PlanGemv(x, wt32, c32), Is.Null, "mixed input dtypes");
    }

    [Test]
    public void OtherProductsStayOnCublas()
    {
        using var w = R(20, DType.BF16, 64, 32);
        using var wt = w.Transpose(0, 1);
        using var x5 = R(21, DType.BF16, 5, 32);
        Assert.That(Plan(x5, wt), Is.Null, "5 rows");
        using var x23 = R(22, DType.BF16, 2, 3, 32);
        Assert.That(Plan(x23, wt), Is.Null, "6 rows after folding");
        using var kn = R(23, DType.BF16, 32, 64);
        using var x1 = R(24, DType.BF16, 1, 32);
        Assert.That(Plan(x1, kn), Is.Null, "b row-major [K, N], not a transposed weight");
        using var ws = R(25, DType.BF16, 2, 64, 32);
        using var wst = ws.Transpose(1, 2);
        using var xb = R(26, DType.BF16, 2, 1, 32);
        Assert.That(Plan(xb, wst), Is.Null, "a different weight per batch");
        using var xt = R(27, DType.BF16, 32, 2);
        using var xtt = xt.Transpose(0, 1);
        Assert.That(Plan(xtt, wt), Is.Null, "x not contiguous along K");
        using var cBuf = Tensor.Empty([64, 2], DType.BF16);
        using var cCol = cBuf.Narrow(1, 0, 1);
        using var cT = cCol.Transpose(0, 1); // [1, 64], 2 elements apart
        Assert.That(CudaBackend.PlanGemv(x1, wt, cT), Is.Null, "y not contiguous along N");
        using var wOdd = R(28, DType.BF16, 64, 36);
        using var wOddK = wOdd.Narrow(1, 0, 32);
        using var wOddT = wOddK.Transpose(0, 1);
        Assert.That(Plan(x1, wOddT), Is.Null, "weight rows 36 bf16 apart (not 16-byte multiples)");
        using var wShift = R(29, DType.BF16, 64, 40);
        using var wShiftK = wShift.Narrow(1, 1, 32);
        using var wShiftT = wShiftK.Transpose(0, 1);
        Assert.That(Plan(x1, wShiftT), Is.Null, "weight data 2 bytes past a 16-byte boundary");
        using var wAligned = wShift.Narrow(1, 8, 32);
        using var wAlignedT = wAligned.Transpose(0, 1);
        Assert.That(Plan(x1, wAlignedT), Is.Not.Null, "8 bf16 in: aligned again");
        using var yOne = Tensor.Empty([1, 64], DType.BF16);
        using var yRows = yOne.Expand(2, 64); // both rows at one address
        using var x2 = R(30, DType.BF16, 2, 32);
        Assert.That(CudaBackend.PlanGemv(x2, wt, yRows), Is.Null, "y rows overlapping");
    }

    [TestCase(null, false)]
    [TestCase("0", false)]
    [TestCase("1", true)]
    [TestCase(" 1 ", true)]
    public void LeanKernelsOnlyWithPARROT_GEMV_LEAN1(string? env, bool on) => Assert.That(CudaBackend.GemvLeanDefault(env), Is.EqualTo(on));

    [Test]
    public void LeanNamesAreBf16Only()
    {
        Assert.That(CudaBackend.GemvKernelName("gemv", true, 1, lean: false), Is.EqualTo("gemv_bf16_1"));
        Assert.That(CudaBackend.GemvKernelName("gemv", true, 3, lean: true), Is.EqualTo("gemv_lean_bf16_3"));
        Assert.That(CudaBackend.GemvKernelName("swiglu_gemv", true, 4, lean: true), Is.EqualTo("swiglu_gemv_lean_bf16_4"));
        Assert.That(CudaBackend.GemvKernelName("gemv", false, 2, lean: true), Is.EqualTo("gemv_f32_2"), "no lean f32 kernels");
        var source = Parrot.Tensors.Cuda.KernelSources.Read("gemv.cu");
        foreach (var family in new[] { "gemv", "swiglu_gemv" })
            for (int m = 1; m <= CudaBackend.GemvMaxRows; m++)
                foreach (bool lean in new[] { false, true })
                {
                    Assert.That(source, Does.Contain($"void {CudaBackend.GemvKernelName(family, true, m, lean)}("), "the kernel exists in native/gemv.cu");
                    Assert.That(source, Does.Contain($"void add_rms_norm_{CudaBackend.GemvKernelName(family, true, m, lean)}("), "the fused norm's form too");
                    Assert.That(CudaKernels.ProgrammaticKernels, Does.Contain(CudaBackend.GemvKernelName(family, true, m, lean)));
                    Assert.That(CudaKernels.ProgrammaticKernels, Does.Contain("add_rms_norm_" + CudaBackend.GemvKernelName(family, true, m, lean)));
                }
    }

    [TestCase(null, 32)]
    [TestCase("64", 64)]
    [TestCase(" 128 ", 128)]
    [TestCase("4", 32)]
    [TestCase("many", 32)]
    public void WarpsPerSmTargetIs32UnlessAPlausibleCount(string? env, int expected) =>
        Assert.That(CudaBackend.GemvWarpsPerSmDefault(env), Is.EqualTo(expected));

    [Test]
    public void KIsSplitOverWarpsOnlyWhenRowsAreFew()
    {
        // The Qwen2-7B decode shapes on an H100/H200 (132 SMs): k/v (512 rows) split 4 ways, q/o 2, the rest not.
        Assert.That(CudaBackend.GemvSplit(512, 3584, true, 132), Is.EqualTo(4));
        Assert.That(CudaBackend.GemvSplit(3584, 3584, true, 132), Is.EqualTo(2));
        Assert.That(CudaBackend.GemvSplit(3584, 18944, true, 132), Is.EqualTo(2));
        Assert.That(CudaBackend.GemvSplit(18944, 3584, true, 132), Is.EqualTo(1));
        Assert.That(CudaBackend.GemvSplit(152064, 3584, true, 132), Is.EqualTo(1));
        Assert.That(CudaBackend.GemvSplit(7, 64, true, 132), Is.EqualTo(1), "K of one warp step is not split");
        Assert.That(CudaBackend.GemvSplit(7, 512, false, 132), Is.EqualTo(4), "f32: 128 elements per warp step, one each");
        Assert.That(CudaBackend.GemvSplit(7, 500, false, 132), Is.EqualTo(2), "f32: 4 warps would leave the last without a full step");
        Assert.That(CudaBackend.GemvSplit(3584, 18944, true, 132, warpsPerSm: 64), Is.EqualTo(4), "PARROT_GEMV_WARPS_PER_SM=64: the 7B down product in 4");
        Assert.That(CudaBackend.GemvSplit(4608, 3584, true, 132, warpsPerSm: 64), Is.EqualTo(2), "q/k/v packed");
        Assert.That(CudaBackend.GemvSplit(4608, 3584, true, 132, warpsPerSm: 128), Is.EqualTo(4));
        Assert.That(CudaBackend.GemvSplit(18944, 3584, true, 132, warpsPerSm: 128), Is.EqualTo(1), "enough rows: not split");
    }

    [Test]
    public void TheKernelIsOnUnlessTheEnvironmentSaysZero()
    {
        Assert.That(CudaBackend.GemvDefault(null), Is.True);
        Assert.That(CudaBackend.GemvDefault("1"), Is.True);
        Assert.That(CudaBackend.GemvDefault(" 0 "), Is.False);
    }

    [Test, Category("GPU")]
    public void OnAGpuTheKernelMatchesCublasAndTheFloat64Product()
    {
        if (!CudaBackend.IsAvailable(out var why)) Assert.Ignore($"no GPU: {why}");
        var dev = new Device(DeviceKind.Cuda);
        var cuda = (CudaBackend)Backends.For(dev);
        bool was = cuda.GemvKernel;
        static double RelError(double[] got, double[] want)
        {
            double d = 0, w = 0;
            for (int i = 0; i < want.Length; i++) { d += (got[i] - want[i]) * (got[i] - want[i]); w += want[i] * want[i]; }
            return Math.Sqrt(d / w);
        }
        try
        {
            foreach (var (m, n, k, dt) in new[] { (1, 512, 3584, DType.BF16), (4, 1000, 1000, DType.BF16), (3, 7, 8, DType.F32), (2, 513, 1012, DType.F32) })
            {
                using var xh = R(30, dt, m, k);
                using var wh = R(31, dt, n, k);
                using var x64 = xh.To(DType.F64);
                using var w64 = wh.To(DType.F64);
                using var w64t = w64.Transpose(0, 1);
                using var want = Tensor.MatMul(x64, w64t);
                using var x = xh.To(dev);
                using var w = wh.To(dev);
                using var wt = w.Transpose(0, 1);
                using (var probe = Tensor.Empty([m, n], dt, dev)) Assert.That(CudaBackend.PlanGemv(x, wt, probe), Is.Not.Null, $"{m}x{n}x{k} {dt.Name()}");
                cuda.GemvKernel = true;
                using var gemv = Tensor.MatMul(x, wt);
                cuda.GemvKernel = false;
                using var lt = Tensor.MatMul(x, wt);
                double tol = dt == DType.BF16 ? 1e-2 : 1e-5;
                var reference = want.ToDoubleArray();
                Assert.That(RelError(gemv.ToDoubleArray(), reference), Is.LessThan(tol), $"gemv {m}x{n}x{k} {dt.Name()} vs float64");
                Assert.That(RelError(lt.ToDoubleArray(), reference), Is.LessThan(tol), $"cuBLASLt {m}x{n}x{k} {dt.Name()} vs float64");
            }
        }
        finally
        {
            cuda.GemvKernel = was;
        }
    }

    [Test]
    public void LauncherConstantsMatchTheKernelFile()
    {
        string src = KernelSources.Read("gemv.cu");
        Assert.That(src, Does.Match($@"#define GEMV_THREADS {CudaBackend.GemvThreads}\b"));
        Assert.That(src, Does.Match(@"#define GEMV_WARPS \(GEMV_THREADS / 32\)"));
        foreach (var t in new[] { "bf16", "f32" })
            for (int m = 1; m <= CudaBackend.GemvMaxRows; m++)
                Assert.That(src, Does.Contain($"extern \"C\" __global__ void gemv_{t}_{m}(GEMV_PARAMS)"));
        // LaunchGemv passes: w, ldw, x, ldx, xvec, y, ldy, ydt, bias, gelu, N, K, kw, pf; SwiGluLinear the same less bias
        // and gelu, with two weights.
        Assert.That(src, Does.Contain("#define GEMV_PARAMS const void* w, i64 ldw, const void* x, i64 ldx, int xvec, void* y, i64 ldy, int ydt, const void* bias, int gelu, i64 N, i64 K, int kw, int pf\n"));
        Assert.That(src, Does.Contain("#define SWIGLU_GEMV_PARAMS const void* wg, const void* wu, i64 ldw, const void* x, i64 ldx, int xvec, void* y, i64 ldy, int ydt, i64 N, i64 K, int kw, int pf\n"));
        // GemvPrefetchSteps mirrors the first loop step's loads per lane.
        Assert.That(src, Does.Contain("#define GEMV_UNROLL(M) ((M) == 1 ? 8 : 4)"));
        Assert.That(src, Does.Contain("#define GEMV_UNROLL_G(M, G) ((G) == 1 ? GEMV_UNROLL(M) : GEMV_UNROLL(M) / 2)"));
    }

    [TestCase(null, 0L)]
    [TestCase("0", 0L)]
    [TestCase("16", 16L << 20)]
    [TestCase(" 32 ", 32L << 20)]
    [TestCase("2048", 0L)]
    [TestCase("lots", 0L)]
    public void PrefetchIsOffUnlessPARROT_GEMV_PREFETCHGivesMiB(string? env, long bytes) =>
        Assert.That(CudaBackend.GemvPrefetchDefault(env), Is.EqualTo(bytes));

    /// <summary>The benchmark records' prefetch_mib (<see cref="CudaBackend.DecodeSwitches"/>) shows a budget exactly: a shift by 20 showed half a MiB as 0 (off) and 1 MiB + 1 KiB as 1.</summary>
    [TestCase(0L, "0")]
    [TestCase(64L << 20, "64")]
    [TestCase(1L << 19, "0.5")]
    [TestCase((1L << 20) + 1024, "1.0009765625")]
    [TestCase(1L, "0.00000095367431640625")]
    public void PrefetchMibIsExact(long bytes, string shown) =>
        Assert.That(CudaBackend.PrefetchMib(bytes), Is.EqualTo(shown));

    [Test]
    public void PrefetchStepsFillTheBudgetUpToTheSlicesEnd()
    {
        const long MiB = 1L << 20;
        // Qwen2-7B's o product (N 3584, K 3584, bf16, m 1, kw 1): 14 steps a warp, 8 loaded by the first step, so at
        // most 6 prefetched; 660 resident blocks prefetch 660 × 4 × 512 bytes a step.
        Assert.That(CudaBackend.GemvPrefetchSteps(16 * MiB, 660, m: 1, weights: 1, kw: 1, k: 3584, bf16: true), Is.EqualTo(6));
        Assert.That(CudaBackend.GemvPrefetchSteps(4 * MiB, 660, 1, 1, 1, 3584, true), Is.EqualTo(4 * MiB / (660 * 4 * 512)));
        // The fused SwiGLU reads two weights: twice the bytes a step, 4 steps by the first loop step at m 1.
        Assert.That(CudaBackend.GemvPrefetchSteps(16 * MiB, 792, 1, 2, 1, 3584, true), Is.EqualTo(16 * MiB / (792 * 4 * 512 * 2)));
        Assert.That(CudaBackend.GemvPrefetchSteps(1024 * MiB, 792, 1, 2, 1, 3584, true), Is.EqualTo(14 - 4));
        // m 2..4: 4 loads a step (2 for two weights); f32 covers half the elements a step.
        Assert.That(CudaBackend.GemvPrefetchSteps(1024 * MiB, 10, 4, 1, 1, 3584, false), Is.EqualTo(28 - 4));
        Assert.That(CudaBackend.GemvPrefetchSteps(1024 * MiB, 10, 2, 1, 2, 3584, true), Is.EqualTo(7 - 4));
        // Nothing past the first step (K within it), no budget, or a budget below one step: none.
        Assert.That(CudaBackend.GemvPrefetchSteps(1024 * MiB, 10, 1, 1, 1, 2048, true), Is.EqualTo(0));
        Assert.That(CudaBackend.GemvPrefetchSteps(0, 660, 1, 1, 1, 3584, true), Is.EqualTo(0));
        Assert.That(CudaBackend.GemvPrefetchSteps(MiB, 660, 1, 1, 1, 3584, true), Is.EqualTo(0));
    }
    [Test]
    public void ADotProductTakesTheKernelWithEmptyTrailingSlices()
    {
        // x[K]·w[K] is [1, K]·[K, 1]: N = 1, so ldw is padded and a K of no whole vectors is taken; 4 warps split K
        // and the last one's slice starts past K (tools/cuda-emu/gemv_test.cpp checks the kernel on exactly this).
        using var x = R(30, DType.F32, 1, 513);
        using var v = R(31, DType.F32, 513, 1);
        var g = PlanAndCheck(x, v);
        Assert.That((g.M, g.N, g.K, g.Ldw), Is.EqualTo((1, 1L, 513L, 516L)));
        int kw = CudaBackend.GemvSplit(g.N, g.K, g.Bf16, multiprocessors: 132);
        Assert.That(kw, Is.EqualTo(4));
        long step = 32 * 4, slice = (g.K + kw * step - 1) / (kw * step) * step;
        Assert.That((kw - 1) * slice, Is.GreaterThanOrEqualTo(g.K), "a slice past K: the case the kernel must leave empty");
    }
}
