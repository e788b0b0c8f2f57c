namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// Whether <see cref="AddRmsNormLinear"/> may run the fused kernels (native/gemv.cu, add_rms_norm_gemv_* and
    /// add_rms_norm_swiglu_gemv_*: the residual step's norm and the product that reads it in one launch, two launches
    /// fewer per decoder layer in decode). Off unless the environment variable PARROT_DECODE_NORM_GEMV is "1" when the
    /// backend is created: timed on an H200 (2026-11-27 22:47, Qwen2-7B decode from a CUDA graph) the fused kernels made
    /// the step slower, not faster — 5.53 ms/token with them against 4.85 without (the rest of the defaults alike); in
    /// the eager profile add_rms_norm_gemv took 32 µs a layer where the q/k/v gemv alone takes 14, the SwiGLU one 88
    /// where the gemv takes 69: every block computes the norm of x before its first product, after pdl_wait, so the
    /// norm's latency is paid per block wave rather than once. Off, add_rms_norm and the product launch apart (the same bits).
    /// </summary>
    public bool NormGemvKernel { get; set; } = NormGemvDefault(Environment.GetEnvironmentVariable("PARROT_DECODE_NORM_GEMV"));

    /// <summary>Launches of the fused kernels so far: `parrot selftest` checks that its fused rows took them.</summary>
    public long NormGemvLaunches => Interlocked.Read(ref _normGemvLaunches);

    private long _normGemvLaunches;

    /// <summary>The default of <see cref="NormGemvKernel"/> for a value of PARROT_DECODE_NORM_GEMV: on only for "1".</summary>
    internal static bool NormGemvDefault(string? value) => value?.Trim() == "1";

    /// <summary>
    /// The most shared memory a launch takes without cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES): 48 KiB for the
    /// kernel's static shared memory and the dynamic bytes together (a launch asking for more fails), and at most ~4
    /// blocks' worth of an SM's 228 KiB, so registers, not shared memory, bound the blocks an SM holds (as for gemv).
    /// </summary>
    internal const int NormGemvMaxShared = 48 * 1024;

    /// <summary>
    /// The fused kernels' static shared memory for <paramref name="rows"/> rows of x and <paramref name="weights"/>
    /// weights (1, or 2 for SwiGLU): gemv_sums' part[GEMV_WARPS][G][M] and AddRmsNormRows' slots[M][32], floats. It
    /// counts against <see cref="NormGemvMaxShared"/> with the normalised rows (dynamic): bf16 D ≤ 6064 at M = 4 (not
    /// 6144), f32 D ≤ 3032 at M = 4, bf16 D ≤ 8112 at M = 3 (Qwen2-72B's 8192 falls back; at 48 KiB of rows it failed to launch).
    /// </summary>
    internal static int NormGemvStaticShared(long rows, int weights) => (int)(4 * (GemvThreads / 32 * weights * rows + 32 * rows));

    /// <summary>One fused launch: the gemv plan of the product (its Ldx and XVec unused: x is the kernel's shared
    /// memory), add_rms_norm's threads per row (whose reduction order the kernel reproduces) and the shared bytes.</summary>
    internal readonly record struct NormGemvCall(GemvCall Gemv, int RowThreads, int SharedBytes);

    /// <summary>
    /// The fused launch for <see cref="AddRmsNormLinear"/>'s operands, or null when the two launches must run:
    /// <paramref name="enabled"/> (<see cref="NormGemvKernel"/> and <see cref="GemvKernel"/>: otherwise the product
    /// takes cuBLASLt, whose sums the kernel would not reproduce); x, residual, sum and the norm weight contiguous, of
    /// one dtype, f32 or bf16, as <see cref="CanAddRmsNorm"/> asks; a product <see cref="PlanGemv"/> takes for x's rows
    /// (at most <see cref="GemvMaxRows"/>; with <paramref name="upWeight"/>, <see cref="PlanSwiGluGemv"/>) with y of x's
    /// dtype; the rows and the kernel's static shared memory within <see cref="NormGemvMaxShared"/>; add_rms_norm's block <paramref name="rowThreads"/> a
    /// multiple of 32 up to 1024; and sum and y overlapping no operand (other blocks read x and residual while block 0
    /// writes sum). Pure host logic, tested on the CPU.
    /// </summary>
    internal static NormGemvCall? PlanNormGemv(Tensor x, Tensor residual, Tensor normWeight, Tensor weight, Tensor? bias, Tensor? upWeight, Tensor sum, Tensor y,
                                               bool enabled, int rowThreads)
    {
        if (!enabled || x.Rank < 1 || x.Count == 0 || weight.Rank != 2 || y.Rank != x.Rank) return null;
        if (x.DType is not (DType.F32 or DType.BF16)) return null;
        Tensor?[] all = [x, residual, normWeight, weight, bias, upWeight, sum, y];
        if (all.Any(t => t is not null && t.DType != x.DType)) return null;
        if (!x.IsContiguous || !residual.IsContiguous || !sum.IsContiguous || !normWeight.IsContiguous || !y.IsContiguous || bias is { IsContiguous: false }) return null;
        int d = x.Shape[^1], n = weight.Shape[0];
        if (!residual.Shape.SequenceEqual(x.Shape) || !sum.Shape.SequenceEqual(x.Shape) || normWeight.Rank != 1 || normWeight.Shape[0] != d) return null;
        if (weight.Shape[1] != d || y.Shape[^1] != n || !y.Shape[..^1].SequenceEqual(x.Shape[..^1]) || bias is { Rank: not 1 } || (bias is not null && bias.Shape[0] != n)) return null;
        if (upWeight is not null && (bias is not null || !upWeight.Shape.SequenceEqual(weight.Shape))) return null;
        long rows = x.Count / d;
        if (rows > GemvMaxRows) return null;
        using var x2 = x.Reshape((int)rows, d);
        using var y2 = y.Reshape((int)rows, n);
        using var wT = weight.Transpose(0, 1);
        GemvCall? plan;
        if (upWeight is null) plan = PlanGemv(x2, wT, y2);
        else
        {
            using var uT = upWeight.Transpose(0, 1);
            plan = PlanSwiGluGemv(x2, wT, uT, y2, gemvKernel: true);
        }
        if (plan is not { } g) return null;
        int vec = g.Bf16 ? 8 : 4;
        long shared = rows * ((d + vec - 1) / vec * vec) * x.DType.SizeOf();
        if (shared + NormGemvStaticShared(rows, upWeight is null ? 1 : 2) > NormGemvMaxShared) return null;
        if (rowThreads < 32 || rowThreads > 1024 || rowThreads % 32 != 0) return null;
        for (int w = all.Length - 2; w < all.Length; w++) // sum and y against every other operand (the same object too)
            for (int i = 0; i < all.Length; i++)
                if (i != w && all[i] is { } t && Overlaps(all[w]!, t)) return null;
        return new NormGemvCall(g, rowThreads, (int)shared);
    }

    /// <summary>Whether the bytes two tensors may touch (first to last element) intersect; true for negative strides.</summary>
    private static bool Overlaps(Tensor a, Tensor b)
    {
        if (a.Count == 0 || b.Count == 0) return false;
        if (Extent(a) is not var (a0, a1) || Extent(b) is not var (b0, b1)) return true;
        return a0 < b1 && b0 < a1;

        static (long, long)? Extent(Tensor t)
        {
            long last = 0;
            for (int i = 0; i < t.Rank; i++)
            {
                if (t.Strides[i] < 0) return null;
                last += (t.Shape[i] - 1) * t.Strides[i];
            }
            return (t.DataPointer, t.DataPointer + (last + 1) * t.DType.SizeOf());
        }
    }

    /// <summary>
    /// The fused kernel's grid: the row groups, capped at what the GPU holds at once (<paramref name="resident"/> blocks
    /// per SM), so the norm prologue is paid once per resident block, not once per group (Qwen2-7B: 1152 groups of
    /// q/k/v rows, 4736 of gate/up).
    /// </summary>
    internal static long NormGemvGrid(long groups, int multiprocessors, int resident) => Math.Min(groups, (long)multiprocessors * Math.Max(resident, 1));

    /// <inheritdoc/>
    /// <remarks>
    /// One launch (<see cref="PlanNormGemv"/>) where the product is a gemv: the norm in each block's prologue, bit for
    /// bit add_rms_norm's, then the gemv's sums with the same warps per row. Otherwise the launches the Tensor front-ends
    /// make: <see cref="AddRmsNorm"/>, then <see cref="MatMulEpilogue"/> with the bias (as <c>Tensor.MatMulBias</c>), or
    /// <see cref="SwiGluLinear"/> (else the two products and <see cref="SwiGlu"/>, as <c>Tensor.SwiGluLinear</c>).
    /// </remarks>
    public void AddRmsNormLinear(Tensor x, Tensor residual, Tensor normWeight, double eps, Tensor weight, Tensor? bias, Tensor? upWeight, Tensor sum, Tensor y)
    {
        if (upWeight is not null && bias is not null) throw Missing("AddRmsNormLinear", "a bias with the SwiGLU products");
        if (x.Count == 0 || y.Count == 0) return;
        int d = x.Shape[^1], n = weight.Shape[0];
        long rows = x.Count / d;
        if (PlanNormGemv(x, residual, normWeight, weight, bias, upWeight, sum, y, NormGemvKernel && GemvKernel, (int)RowBlock(d, rows)) is { } plan)
        {
            LaunchNormGemv(plan, x, residual, normWeight, eps, weight, bias, upWeight, sum, y);
            return;
        }
        using var h = Tensor.Empty(x.Shape, x.DType, Device);
        AddRmsNorm(x, residual, normWeight, eps, sum, h);
        using var h2 = h.Reshape(-1, d);
        using var y2 = y.Reshape(-1, n);
        using var wT = weight.Transpose(0, 1);
        if (upWeight is null)
        {
            MatMulEpilogue(h2, wT, y2, bias, gelu: false);
            return;
        }
        if (h2.Shape[0] <= GemvMaxRows && SwiGluLinear(h2, weight, upWeight, y2)) return;
        using var uT = upWeight.Transpose(0, 1);
        using var g = Tensor.Empty(y2.Shape, y.DType, Device);
        using var u = Tensor.Empty(y2.Shape, y.DType, Device);
        MatMul(h2, wT, g);
        MatMul(h2, uT, u);
        SwiGlu(g, u, y2);
    }

    private void LaunchNormGemv(NormGemvCall plan, Tensor x, Tensor residual, Tensor normWeight, double eps, Tensor weight, Tensor? bias, Tensor? upWeight,
                                Tensor sum, Tensor y)
    {
        var g = plan.Gemv;
        int kw = SplitOf(g); // gemv's split: the same sums
        int rowsPerBlock = GemvThreads / 32 / kw;
        long groups = (g.N + rowsPerBlock - 1) / rowsPerBlock;
        string name = "add_rms_norm_" + GemvLaunchName(upWeight is null ? "gemv" : "swiglu_gemv", g); // the lean form with GemvLean
        int resident = _kernels.ResidentBlocks("gemv.cu", name, GemvThreads, (uint)plan.SharedBytes);
        long grid = NormGemvGrid(groups, _context.MultiprocessorCount, resident);
        using var args = new KernelArgs().Ptr(x).Ptr(residual).Ptr(normWeight).Add((float)eps).Add(plan.RowThreads).Ptr(sum).Ptr(weight).Ptr(upWeight)
            .Add(g.Ldw).Ptr(y).Add(g.Ldy).Ptr(bias).Add(g.N).Add(g.K).Add(kw);
        _kernels.Launch("gemv.cu", name, checked((uint)grid), GemvThreads, args, (uint)plan.SharedBytes);
        Interlocked.Increment(ref _normGemvLaunches);
    }
}
