namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// Whether <see cref="MatMulEpilogue"/> may run the matrix-vector kernel (native/gemv.cu) for products of at most
    /// <see cref="GemvMaxRows"/> rows by a weight's transposed view (<see cref="PlanGemv"/>): decode, where cuBLASLt
    /// reached 0.4–0.8 of the copy bandwidth on the q/k/v/o shapes of Qwen2-7B. On unless the environment variable
    /// PARROT_CUDA_GEMV is "0" when the backend is created; off, every product takes cuBLASLt (side-by-side timings).
    /// </summary>
    public bool GemvKernel { get; set; } = GemvDefault(Environment.GetEnvironmentVariable("PARROT_CUDA_GEMV"));

    /// <summary>The default of <see cref="GemvKernel"/> for a value of PARROT_CUDA_GEMV: off only for "0".</summary>
    internal static bool GemvDefault(string? value) => value?.Trim() != "0";

    /// <summary>
    /// Whether bf16 products take the lean forms of the gemv and fused SwiGLU kernels (gemv_lean_bf16_*,
    /// swiglu_gemv_lean_bf16_*: each step's x vectors loaded as each is used, not all ahead — the same sums in the same
    /// order, so the same bits; ptxas sm_90: 55 instead of 96 registers at M = 1, 9 blocks an SM instead of 5, so more
    /// weight loads in flight). Off unless PARROT_GEMV_LEAN is "1" when the backend is created: built 2026-11-27
    /// after the last GPU call of that session, untimed (the 7B decode products ran at 0.49–0.78 of the copy bandwidth,
    /// the fused SwiGLU, 24 warps an SM, at 0.90–0.94).
    /// </summary>
    public bool GemvLean { get; set; } = GemvLeanDefault(Environment.GetEnvironmentVariable("PARROT_GEMV_LEAN"));

    /// <summary>Launches of the lean kernels so far: `parrot selftest` checks that its lean rows took them.</summary>
    public long GemvLeanLaunches => Interlocked.Read(ref _gemvLeanLaunches);

    private long _gemvLeanLaunches;

    /// <summary>The kernel name of a launch of <paramref name="family"/> here, counting the lean ones.</summary>
    private string GemvLaunchName(string family, GemvCall g)
    {
        if (g.Bf16 && GemvLean) Interlocked.Increment(ref _gemvLeanLaunches);
        return GemvKernelName(family, g.Bf16, g.M, GemvLean);
    }

    /// <summary>The default of <see cref="GemvLean"/> for a value of PARROT_GEMV_LEAN: on only for "1".</summary>
    internal static bool GemvLeanDefault(string? value) => value?.Trim() == "1";

    /// <summary>The kernel name of a gemv launch (<paramref name="family"/> "gemv" or "swiglu_gemv"): the lean form for bf16 when <see cref="GemvLean"/>.</summary>
    internal static string GemvKernelName(string family, bool bf16, int m, bool lean) =>
        $"{family}_{(bf16 && lean ? "lean_" : "")}{(bf16 ? "bf16" : "f32")}_{m}";

    /// <summary>
    /// Bytes of weight the gemv and fused SwiGLU kernels may prefetch into L2 per launch before their programmatic wait
    /// (native/gemv.cu's prefetch_l2; <see cref="GemvPrefetchSteps"/> turns it into steps per warp): with programmatic
    /// launches the product's resident blocks then stream its weight into L2 while the kernels before it (a norm, RoPE,
    /// the decode attention, which leave the memory idle) still run. 0 (none) unless PARROT_GEMV_PREFETCH gives MiB
    /// (1 to 1024) when the backend is created: built 2026-11-28 without a GPU, untimed (the 7B q/o products ran at 0.49
    /// of the copy bandwidth alone, the packed q/k/v at 0.55). The results are the same bits with any budget.
    /// </summary>
    public long GemvPrefetchBytes { get; set; } = GemvPrefetchDefault(Environment.GetEnvironmentVariable("PARROT_GEMV_PREFETCH"));

    /// <summary>The default of <see cref="GemvPrefetchBytes"/> for a value of PARROT_GEMV_PREFETCH (MiB; 0 when unset or out of 1..1024).</summary>
    internal static long GemvPrefetchDefault(string? value) =>
        int.TryParse(value?.Trim(), out int mib) && mib >= 1 && mib <= 1024 ? mib * 1024L * 1024 : 0;

    /// <summary>Launches with a prefetch (pf &gt; 0) so far: `parrot selftest` checks that its prefetch rows took one.</summary>
    public long GemvPrefetchLaunches => Interlocked.Read(ref _gemvPrefetchLaunches);

    private long _gemvPrefetchLaunches;

    /// <summary>
    /// The steps of its slice of W each warp of a gemv launch prefetches into L2 beyond the ones its first loop step
    /// loads (GEMV_UNROLL_G(M, G) of native/gemv.cu): as many as <paramref name="budgetBytes"/> allows when each of
    /// the <paramref name="residentBlocks"/> blocks that run at once (4 warps, 512 bytes of each of the
    /// <paramref name="weights"/> weights per warp and step) prefetches that many, at most the rest of the slice
    /// (K over <paramref name="kw"/> warps, 32 lanes × 16 bytes a step). 0 without a budget. Pure host logic, tested on the CPU.
    /// </summary>
    internal static int GemvPrefetchSteps(long budgetBytes, long residentBlocks, int m, int weights, int kw, long k, bool bf16)
    {
        if (budgetBytes <= 0 || residentBlocks <= 0) return 0;
        long step = 32L * (bf16 ? 8 : 4);
        long sliceSteps = (k + kw * step - 1) / (kw * step);
        int unroll = (m == 1 ? 8 : 4) / (weights == 2 ? 2 : 1);
        long rest = sliceSteps - unroll;
        if (rest <= 0) return 0;
        long perStep = residentBlocks * (GemvThreads / 32) * 512L * weights;
        return (int)Math.Min(rest, budgetBytes / perStep);
    }

    /// <summary>The prefetch steps of a launch of <paramref name="name"/> over <paramref name="blocks"/> blocks here (0 without <see cref="GemvPrefetchBytes"/>).</summary>
    private int PrefetchOf(string name, GemvCall g, int weights, int kw, long blocks)
    {
        if (GemvPrefetchBytes <= 0) return 0;
        long resident = Math.Min(blocks, (long)_kernels.ResidentBlocks("gemv.cu", name, GemvThreads, 0) * _context.MultiprocessorCount);
        int pf = GemvPrefetchSteps(GemvPrefetchBytes, resident, g.M, weights, kw, g.K, g.Bf16);
        if (pf > 0) Interlocked.Increment(ref _gemvPrefetchLaunches);
        return pf;
    }

    /// <summary>Rows of x the kernel takes (one instantiation each: gemv_{bf16,f32}_{1..4}).</summary>
    internal const int GemvMaxRows = 4;

    /// <summary>GEMV_THREADS of native/gemv.cu: 4 warps per block.</summary>
    internal const int GemvThreads = 128;

    /// <summary>
    /// One launch of the gemv kernel: y[m, n] = Σ_k x[m, k]·W[n, k] for m &lt; M, with W's row stride Ldw, x's row
    /// stride Ldx (XVec: x's rows 16-byte aligned, read by vectors), y's row stride Ldy, all in elements.
    /// </summary>
    internal readonly record struct GemvCall(int M, long N, long K, long Ldw, long Ldx, long Ldy, bool XVec, bool Bf16);

    /// <summary>
    /// The gemv launch computing row-major c = a·b, or null when the product is not one: c's rows (its leading dims
    /// folded into M, at most <see cref="GemvMaxRows"/>) at one stride apart, a's rows likewise, with unit stride
    /// along K; b one matrix for every row (batch strides 0 or batch dims of size 1) that is the transposed view of
    /// a row-major [N, K] weight (b.Strides[^2] = 1, row stride ldw = b.Strides[^1] ≥ K) whose data and rows are
    /// 16-byte aligned; c with unit stride along N; dtypes bf16·bf16 → bf16 or f32, f32·f32 → f32. Pure host
    /// logic, tested on the CPU.
    /// </summary>
    internal static GemvCall? PlanGemv(Tensor a, Tensor b, Tensor c)
    {
        int r = c.Rank;
        if (r < 2 || a.Rank != r || b.Rank != r) return null;
        long N = c.Shape[r - 1], K = a.Shape[r - 1];
        if (N < 1 || K < 1) return null;
        bool bf16 = a.DType == DType.BF16;
        if (a.DType != b.DType || !(bf16 || a.DType == DType.F32)) return null;
        if (!(c.DType == DType.F32 || (bf16 && c.DType == DType.BF16))) return null;
        long rows = 1;
        for (int d = 0; d < r - 1; d++) rows *= c.Shape[d];
        if (rows < 1 || rows > GemvMaxRows) return null;
        // Row i's offsets (C order over c's leading dims): b's must all be 0, a's and c's evenly spaced.
        long ldx = 0, ldy = 0;
        for (long i = 0; i < rows; i++)
        {
            long rest = i, offA = 0, offB = 0, offC = 0;
            for (int d = r - 2; d >= 0; d--)
            {
                long idx = rest % c.Shape[d];
                rest /= c.Shape[d];
                offA += idx * a.Strides[d]; offC += idx * c.Strides[d];
                if (d < r - 2) offB += idx * b.Strides[d];
            }
            if (offB != 0) return null;
            if (i == 1) { ldx = offA; ldy = offC; }
            if (offA != i * ldx || offC != i * ldy) return null;
        }
        if (ldx < 0 || (rows > 1 && ldy < N)) return null; // x rows may repeat (a broadcast x); y rows must not overlap
        if (K > 1 && a.Strides[r - 1] != 1) return null;
        if (N > 1 && c.Strides[r - 1] != 1) return null;
        int vec = bf16 ? 8 : 4;
        if (K > 1 && b.Strides[r - 2] != 1) return null;
        long ldw = N > 1 ? b.Strides[r - 1] : (K + vec - 1) / vec * vec;
        if (ldw < K || ldw % vec != 0 || b.DataPointer % 16 != 0) return null;
        bool xvec = a.DataPointer % 16 == 0 && (rows == 1 || ldx % vec == 0);
        return new GemvCall((int)rows, N, K, ldw, ldx, ldy, xvec, bf16);
    }

    /// <summary>
    /// Warps per row of W (1, 2 or 4; a block holds 4 / kw rows): doubled while the rows give fewer than
    /// <paramref name="warpsPerSm"/> warps per SM and each warp keeps at least one full step of K (32 lanes × one
    /// 16-byte vector), so few rows (N = 512) still spread over every SM.
    /// </summary>
    internal static int GemvSplit(long n, long k, bool bf16, int multiprocessors, int warpsPerSm = DefaultGemvWarpsPerSm)
    {
        long step = 32L * (bf16 ? 8 : 4);
        int kw = 1;
        while (kw < GemvThreads / 32 && n * kw < (long)warpsPerSm * multiprocessors && k >= 2L * kw * step) kw *= 2;
        return kw;
    }

    /// <summary>The split of <paramref name="g"/> on this device (<see cref="GemvSplit(long, long, bool, int, int)"/> with <see cref="GemvWarpsPerSm"/>).</summary>
    private int SplitOf(GemvCall g) => GemvSplit(g.N, g.K, g.Bf16, _context.MultiprocessorCount, GemvWarpsPerSm);

    /// <summary>
    /// Warps per row of W the gemv kernel takes for an N × K weight on this device, with <see cref="GemvWarpsPerSm"/>
    /// or the target <paramref name="warpsPerSm"/> (benchmarks name the split in their rows).
    /// </summary>
    public int GemvSplitFor(long n, long k, bool bf16, int? warpsPerSm = null) =>
        GemvSplit(n, k, bf16, _context.MultiprocessorCount, warpsPerSm ?? GemvWarpsPerSm);

    /// <summary>The warps per SM below which <see cref="GemvSplit(long, long, bool, int, int)"/> splits K further: 32.</summary>
    internal const int DefaultGemvWarpsPerSm = 32;

    /// <summary>
    /// The target of <see cref="GemvSplit(long, long, bool, int, int)"/>: <see cref="DefaultGemvWarpsPerSm"/> unless PARROT_GEMV_WARPS_PER_SM gives
    /// a count from 8 to 1024 when the backend is created. A tuning switch for side-by-side timings (on an H200 the 7B
    /// down product, N 3584 × K 18944, ran at 0.78 of the copy bandwidth with kw = 2 — 2.7 waves of resident warps, so
    /// its last wave is short — where the SwiGLU product, 7 waves, ran at 0.94); results change in the last bits with kw.
    /// </summary>
    public int GemvWarpsPerSm { get; set; } = GemvWarpsPerSmDefault(Environment.GetEnvironmentVariable("PARROT_GEMV_WARPS_PER_SM"));

    /// <summary>The default of <see cref="GemvWarpsPerSm"/> for a value of PARROT_GEMV_WARPS_PER_SM.</summary>
    internal static int GemvWarpsPerSmDefault(string? value) =>
        int.TryParse(value?.Trim(), out int n) && n >= 8 && n <= 1024 ? n : DefaultGemvWarpsPerSm;

    /// <summary>Runs <paramref name="g"/> (from <see cref="PlanGemv"/>) on a, b, c with the optional bias (c's dtype) and GELU.</summary>
    private void LaunchGemv(GemvCall g, Tensor a, Tensor b, Tensor c, Tensor? bias, bool gelu)
    {
        int kw = SplitOf(g);
        long blocks = (g.N + GemvThreads / 32 / kw - 1) / (GemvThreads / 32 / kw);
        string name = GemvLaunchName("gemv", g);
        using var args = new KernelArgs().Ptr(b).Add(g.Ldw).Ptr(a).Add(g.Ldx).Add(g.XVec ? 1 : 0).Ptr(c).Add(g.Ldy).Add(Code(c.DType))
            .Ptr(bias).Add(gelu ? 1 : 0).Add(g.N).Add(g.K).Add(kw).Add(PrefetchOf(name, g, 1, kw, blocks));
        _kernels.Launch("gemv.cu", name, checked((uint)blocks), GemvThreads, args);
    }

    /// <summary>
    /// The fused launch for y = SwiGLU(x·Wgᵀ, x·Wuᵀ) (native/gemv.cu, swiglu_gemv_*), or null when the unfused path
    /// must run: both products must be ones <see cref="PlanGemv"/> takes, with the same plan (so one kernel reads
    /// both weights with one row stride), and <see cref="GemvKernel"/> on (otherwise the products take cuBLASLt,
    /// whose sums the kernel would not reproduce). <paramref name="gateT"/> and <paramref name="upT"/> are the
    /// weights' transposed views, as MatMul sees them. Pure host logic, tested on the CPU.
    /// </summary>
    internal static GemvCall? PlanSwiGluGemv(Tensor x, Tensor gateT, Tensor upT, Tensor y, bool gemvKernel)
    {
        if (!gemvKernel || x.DType != y.DType) return null;
        if (PlanGemv(x, gateT, y) is not { } g || PlanGemv(x, upT, y) is not { } u || g != u) return null;
        return g;
    }

    /// <summary>
    /// y = silu(x·Wgᵀ) ⊙ (x·Wuᵀ) in one launch for decode (at most <see cref="GemvMaxRows"/> rows of x after folding
    /// its leading dims): x [..., K], the weights [N, K] as a Linear layer stores them (same dtype as x, bf16 or
    /// f32), y [..., N] of x's dtype. The result is bit for bit that of the two products and <see cref="SwiGlu"/>
    /// run apart on this backend. Returns false, writing nothing, when the operands are not eligible (the rules of
    /// <see cref="PlanSwiGluGemv"/>); the caller then runs the products and SwiGlu itself.
    /// </summary>
    public bool SwiGluLinear(Tensor x, Tensor gateWeight, Tensor upWeight, Tensor y)
    {
        int r = x.Rank;
        if (r < 2 || y.Rank != r || gateWeight.Rank != 2 || upWeight.Rank != 2 || y.Count == 0) return false;
        using var gT = gateWeight.Transpose(0, 1);
        using var uT = upWeight.Transpose(0, 1);
        GemvCall? plan;
        if (r == 2) plan = PlanSwiGluGemv(x, gT, uT, y, GemvKernel);
        else
        {
            // MatMul's view of a 2-D weight against batched rows: broadcast over the leading dims.
            int[] shape = [.. x.Shape[..^2], gT.Shape[0], gT.Shape[1]];
            using var gE = gT.Expand(shape);
            using var uE = uT.Expand(shape);
            plan = PlanSwiGluGemv(x, gE, uE, y, GemvKernel);
        }
        if (plan is not { } g) return false;
        int kw = SplitOf(g);
        long blocks = (g.N + GemvThreads / 32 / kw - 1) / (GemvThreads / 32 / kw);
        string name = GemvLaunchName("swiglu_gemv", g);
        using var args = new KernelArgs().Ptr(gateWeight).Ptr(upWeight).Add(g.Ldw).Ptr(x).Add(g.Ldx).Add(g.XVec ? 1 : 0).Ptr(y).Add(g.Ldy)
            .Add(Code(y.DType)).Add(g.N).Add(g.K).Add(kw).Add(PrefetchOf(name, g, 2, kw, blocks));
        _kernels.Launch("gemv.cu", name, checked((uint)blocks), GemvThreads, args);
        return true;
    }
}
