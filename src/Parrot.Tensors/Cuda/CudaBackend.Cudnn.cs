namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    private CudnnSdpa? _cudnn;

    private CudnnSdpa CudnnAttentionEngine => _cudnn ??= new CudnnSdpa(_context);

    /// <summary>
    /// Whether <see cref="Attention"/> and <see cref="AttentionBackward"/> first try cuDNN's fused scaled-dot-product
    /// attention (cuDNN ≥ 9 backend graphs, <see cref="CudnnSdpaGraphs"/>) for the calls it takes: bf16/f16, head dims
    /// multiples of 8 (≤ 256 forward, ≤ 128 backward), no additive mask, causal at query offset 0 or S − T, any grouped
    /// heads, head-dim-contiguous operands with 16-byte rows. Forwards of up to <see cref="DecodeMaxRows"/> query rows
    /// (decoding) stay on our kernels: their key count grows every step, and each new count would build a plan. Anything
    /// else, and any cuDNN refusal while building a plan (library missing or older than 9, engine not supported), falls
    /// back to our kernels; <see cref="CudnnAttentionNote"/> says why. float32 never reaches cuDNN (it takes 16-bit types).
    /// Forwards without a log-sum-exp (inference) try it only with <see cref="CudnnAttentionInference"/>.
    /// On by default (an H200 on 2026-11-27, B4 H16 T2048 D128 bf16 causal: forward + backward 0.638 ms against our
    /// kernels' 1.880 and PyTorch's flash SDPA's 1.264); off when the environment variable PARROT_CUDNN_ATTENTION is "0"
    /// when the backend is created. The backward runs cuDNN's deterministic algorithm unless
    /// <see cref="CudnnDeterministic"/> is off, so training repeats bit for bit on cuDNN as on our kernels. Building a
    /// plan costs about a second per new problem (sizes, strides, mask; 0.7–0.8 s a plan on the H200, 1.5 s for the
    /// first with the library load); plans are kept (up to 256), and none is built while a CUDA graph capture records
    /// (<see cref="IsCapturing"/>): a call whose plan is not built yet runs on our kernels then.
    /// </summary>
    public bool CudnnAttention { get; set; } = CudnnAttentionDefault(Environment.GetEnvironmentVariable("PARROT_CUDNN_ATTENTION"));

    /// <summary>The default of <see cref="CudnnAttention"/> for a value of PARROT_CUDNN_ATTENTION: off only for "0".</summary>
    internal static bool CudnnAttentionDefault(string? value) => value?.Trim() != "0";

    /// <summary>
    /// Whether forwards that ask for no log-sum-exp — inference (prefill, vision towers, evaluation under no-grad): no
    /// backward follows — also try cuDNN when <see cref="CudnnAttention"/> is on. Off by default: cuDNN builds a plan
    /// per new problem (about 0.75 s on the H200), and inference meets new sequence lengths all the time (each new
    /// prompt length in `chat` or `serve` would wait that long), while a training run repeats a few shapes and pays once.
    /// Inference keeps our tensor-core forward (0.349 ms vs cuDNN's 0.155 at B4 H16 T2048 D128). PARROT_CUDNN_ATTENTION=1
    /// turns it on when the backend is created.
    /// </summary>
    public bool CudnnAttentionInference { get; set; } = CudnnAttentionInferenceDefault(Environment.GetEnvironmentVariable("PARROT_CUDNN_ATTENTION"));

    /// <summary>The default of <see cref="CudnnAttentionInference"/>: on only for "1".</summary>
    internal static bool CudnnAttentionInferenceDefault(string? value) => value?.Trim() == "1";

    /// <summary>
    /// Whether cuDNN's SDPA backward computes dQ deterministically (the same bits run to run, as every other kernel of
    /// this backend): the graph without the float32 dQ accumulator, which cuDNN runs on its dP-workspace engine
    /// (<see cref="CudnnSdpaGraphs.Backward"/>; cudnn-frontend's <c>set_deterministic_algorithm(true)</c>). Off, the
    /// accumulator graph measured on the H200 on 2026-11-27 (0.638 ms forward + backward at B4 H16 T2048 D128), whose
    /// engine adds key blocks' shares of dQ atomically, in whatever order they finish. On unless PARROT_CUDNN_DETERMINISTIC
    /// is "0" when the backend is created. Where the deterministic plan cannot be built (older cuDNN, no engine), or its
    /// workspace exceeds <see cref="CudnnDeterministicWorkspaceLimit"/>, the backward runs on our kernels (deterministic
    /// too) with the reason in <see cref="CudnnAttentionNote"/> — never on the atomic graph — and with
    /// <see cref="CudnnAttentionRequired"/> it throws <see cref="NotSupportedException"/> saying why.
    /// </summary>
    public bool CudnnDeterministic { get; set; } = CudnnDeterministicDefault(Environment.GetEnvironmentVariable("PARROT_CUDNN_DETERMINISTIC"));

    /// <summary>The default of <see cref="CudnnDeterministic"/> for a value of PARROT_CUDNN_DETERMINISTIC: on unless "0".</summary>
    internal static bool CudnnDeterministicDefault(string? value) => value?.Trim() != "0";

    private long _deterministicWorkspaceLimit = -1;
    private readonly string? _deterministicWorkspaceVariable = Environment.GetEnvironmentVariable("PARROT_CUDNN_DETERMINISTIC_WORKSPACE_MB");

    /// <summary>
    /// The most workspace bytes a deterministic cuDNN backward may take (it holds dS for every query and key:
    /// b·h·s_q·s_kv·2 bytes, 512 MiB at B4 H16 T2048, allocated at each call); a call over it runs on our kernels.
    /// One sixteenth of the GPU's memory (5 GiB on an H100 80GB, 8.8 GiB on an H200) unless
    /// PARROT_CUDNN_DETERMINISTIC_WORKSPACE_MB gives a count of MiB when the backend is created.
    /// </summary>
    public long CudnnDeterministicWorkspaceLimit
    {
        get => _deterministicWorkspaceLimit >= 0 ? _deterministicWorkspaceLimit
            : _deterministicWorkspaceLimit = DeterministicWorkspaceLimitDefault(_deterministicWorkspaceVariable, _context.TotalMemory);
        set => _deterministicWorkspaceLimit = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "a workspace limit is a count of bytes ≥ 0");
    }

    /// <summary>
    /// The default of <see cref="CudnnDeterministicWorkspaceLimit"/>: PARROT_CUDNN_DETERMINISTIC_WORKSPACE_MB's MiB when it
    /// is a whole number ≥ 0 (0: our kernels for every backward the deterministic graph would take), else
    /// <paramref name="deviceMemory"/> / 16.
    /// </summary>
    internal static long DeterministicWorkspaceLimitDefault(string? value, long deviceMemory) =>
        long.TryParse(value?.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long mb) && mb <= long.MaxValue >> 20
            ? mb << 20 : deviceMemory / 16;

    /// <summary>
    /// Forces the cuDNN path (for `parrot selftest` and the benchmarks): every attention call, decoding included, goes
    /// to cuDNN, and one cuDNN cannot take throws <see cref="NotSupportedException"/> saying why instead of falling back
    /// — also a call whose plan would have to be built while a CUDA graph capture records. Independent of
    /// <see cref="CudnnAttention"/>.
    /// </summary>
    public bool CudnnAttentionRequired { get; set; }

    /// <summary>Why the last attention call that tried cuDNN did not run on it (null when it did, or none tried).</summary>
    public string? CudnnAttentionNote { get; private set; }

    /// <summary>What the last call that ran on cuDNN used: version, graph style, engine index, workspace (for the benchmarks' notes).</summary>
    public string? CudnnAttentionPlan { get; private set; }

    /// <summary>
    /// The workspace bytes of the plan the last call that ran on cuDNN used (the selftest's evidence of which backward
    /// algorithm cuDNN picked: the deterministic one keeps dS for every query and key there).
    /// </summary>
    public long CudnnAttentionWorkspaceBytes { get; private set; }

    /// <summary>
    /// Which backward graph the plan the last call that ran on cuDNN used (<see cref="CudnnSdpaBackward.None"/> for a
    /// forward): the selftest's check that a backward ran the deterministic graph (<see cref="CudnnAttentionPlan"/> says
    /// the same in words).
    /// </summary>
    public CudnnSdpaBackward CudnnAttentionBackward { get; private set; }

    /// <summary>Whether cuDNN's attention can be used on this machine at all; otherwise <paramref name="reason"/> says why.</summary>
    public bool CudnnAttentionAvailable(out string reason)
    {
        reason = CudnnAttentionEngine.Unavailable ?? "";
        return reason.Length == 0;
    }

    private bool Declined(string why)
    {
        CudnnAttentionNote = why;
        if (CudnnAttentionRequired) throw new NotSupportedException($"cuDNN attention: {why}");
        return false;
    }

    /// <summary>The forward on cuDNN when it takes the call; false (after noting why) when our kernels must run it.</summary>
    private bool TryCudnnAttention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, int queryOffset, double scale, Tensor output, Tensor? logSumExp)
    {
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1], S = k.Shape[2], Dv = v.Shape[3];
        var why = CudnnSdpaProblem.Check(false, q.DType, output.DType, H, Hkv, T, S, D, Dv, mask is not null, causal, queryOffset, out var kind)
                  ?? Layouts(q, k, v, output)
                  ?? (logSumExp is null ? null : CudnnSdpaProblem.CheckStats(logSumExp.DType, logSumExp.Strides, H, T, logSumExp.DataPointer));
        if (why is not null) return Declined(why);
        var problem = new CudnnSdpaProblem(false, q.DType, B, H, Hkv, T, S, D, Dv, kind, logSumExp is not null,
            q.Strides.ToArray(), k.Strides.ToArray(), v.Strides.ToArray(), output.Strides.ToArray(), logSumExp?.Strides.ToArray() ?? []);
        var plan = CudnnAttentionEngine.Plan(problem, build: !_capturing, out why);
        if (plan is null) return Declined(why);
        var ptr = new Dictionary<long, nint>
        {
            [CudnnSdpaGraphs.UidQ] = q.DataPointer, [CudnnSdpaGraphs.UidK] = k.DataPointer, [CudnnSdpaGraphs.UidV] = v.DataPointer,
            [CudnnSdpaGraphs.UidO] = output.DataPointer,
        };
        if (logSumExp is not null) ptr[CudnnSdpaGraphs.UidStats] = logSumExp.DataPointer;
        Run(plan, ptr, scale, "cuDNN SDPA forward");
        CudnnAttentionNote = null;
        return true;
    }

    /// <summary>The backward on cuDNN when it takes the call; false (after noting why) when our kernels must run it.</summary>
    private bool TryCudnnAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor dO, Tensor logSumExp, Tensor? mask, bool causal, int queryOffset,
        double scale, Tensor? dq, Tensor? dk, Tensor? dv)
    {
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1], S = k.Shape[2], Dv = v.Shape[3];
        var why = CudnnSdpaProblem.Check(true, q.DType, o.DType, H, Hkv, T, S, D, Dv, mask is not null, causal, queryOffset, out var kind)
                  ?? Layouts(q, k, v, o)
                  ?? (logSumExp.DType != DType.F32 ? $"log-sum-exp in {logSumExp.DType.Name()}, cuDNN reads float32" : null);
        if (why is not null) return Declined(why);
        if (CudnnDeterministic && CudnnSdpa.DeterministicRefusal(_context.Major) is string blackwell) return Declined(blackwell);
        if (dq is null && dk is null && dv is null) return true;
        using var scope = TensorScope.Begin();
        // dO in q's dtype, a packed log-sum-exp, and scratch for the gradients nobody asked for (the graph writes all three).
        var g = dO.DType == q.DType ? dO : dO.To(q.DType);
        var lse = CudnnSdpaProblem.CheckStats(logSumExp.DType, logSumExp.Strides, H, T, logSumExp.DataPointer) is null ? logSumExp : logSumExp.Contiguous();
        var dqt = dq ?? Tensor.Empty([B, H, T, D], q.DType, Device);
        var dkt = dk ?? Tensor.Empty([B, Hkv, S, D], q.DType, Device);
        var dvt = dv ?? Tensor.Empty([B, Hkv, S, Dv], q.DType, Device);
        why = Layout("dO", g) ?? Layout("dQ", dqt) ?? Layout("dK", dkt) ?? Layout("dV", dvt) ?? CudnnSdpaProblem.CheckStats(lse.DType, lse.Strides, H, T, lse.DataPointer);
        if (why is not null) return Declined(why);
        var problem = new CudnnSdpaProblem(true, q.DType, B, H, Hkv, T, S, D, Dv, kind, true,
            q.Strides.ToArray(), k.Strides.ToArray(), v.Strides.ToArray(), o.Strides.ToArray(), lse.Strides.ToArray(),
            g.Strides.ToArray(), dqt.Strides.ToArray(), dkt.Strides.ToArray(), dvt.Strides.ToArray(), CudnnDeterministic);
        var plan = CudnnAttentionEngine.Plan(problem, build: !_capturing, out why, CudnnDeterministic ? CudnnDeterministicWorkspaceLimit : long.MaxValue);
        if (plan is null) return Declined(why);
        // The atomic graph's float32 dQ accumulator: cuDNN adds each key block's share into it, so it starts at zero
        // (frontends before 9.6 memset it). The deterministic graph has none.
        var accum = plan.Binds(CudnnSdpaGraphs.UidDqAccum) ? Tensor.Zeros([B, H, T, D], DType.F32, Device) : null;
        // The current frontend's graph binds rowsum(dO ⊙ O) too (float32 [B, H, T, 1] scratch the engine writes).
        var softmaxSum = plan.Binds(CudnnSdpaGraphs.UidSoftmaxSum) ? Tensor.Empty([B, H, T], DType.F32, Device) : null;
        var ptr = new Dictionary<long, nint>
        {
            [CudnnSdpaGraphs.UidQ] = q.DataPointer, [CudnnSdpaGraphs.UidK] = k.DataPointer, [CudnnSdpaGraphs.UidV] = v.DataPointer,
            [CudnnSdpaGraphs.UidO] = o.DataPointer, [CudnnSdpaGraphs.UidStats] = lse.DataPointer, [CudnnSdpaGraphs.UidDOut] = g.DataPointer,
            [CudnnSdpaGraphs.UidDq] = dqt.DataPointer, [CudnnSdpaGraphs.UidDk] = dkt.DataPointer, [CudnnSdpaGraphs.UidDv] = dvt.DataPointer,
        };
        if (accum is not null) ptr[CudnnSdpaGraphs.UidDqAccum] = accum.DataPointer;
        if (softmaxSum is not null) ptr[CudnnSdpaGraphs.UidSoftmaxSum] = softmaxSum.DataPointer;
        Run(plan, ptr, scale, "cuDNN SDPA backward");
        CudnnAttentionNote = null;
        return true;
    }

    /// <summary>What a plan is, for the benchmarks' notes (made once per plan: Run is on every attention call).</summary>
    internal static string Summary(CudnnGraphPlan plan, long version)
    {
        string dq = plan.Backward switch
        {
            CudnnSdpaBackward.Atomic => ", atomic dQ",
            CudnnSdpaBackward.Deterministic => ", deterministic dQ",
            _ => "",
        };
        string notes = plan.EngineNotes.Length > 0 ? $" ({plan.EngineNotes})" : "";
        return $"cuDNN {version}, {plan.Style} graph{dq}, engine {plan.EngineIndex}{notes}, workspace {plan.WorkspaceBytes} B";
    }

    private static string? Layouts(Tensor q, Tensor k, Tensor v, Tensor o) => Layout("Q", q) ?? Layout("K", k) ?? Layout("V", v) ?? Layout("O", o);

    private static string? Layout(string name, Tensor t) => CudnnSdpaProblem.CheckLayout(name, t.Strides, t.DataPointer, t.ElementSize);

    /// <summary>
    /// A float32 shape of at least <paramref name="bytes"/>: one dimension up to 2³¹ − 1 words, else rows of 2²⁰ words
    /// (a deterministic backward's dS workspace may pass 8 GiB under a raised limit).
    /// </summary>
    internal static int[] WorkspaceShape(long bytes)
    {
        long words = (bytes + 3) / 4;
        return words <= int.MaxValue ? [(int)words] : [checked((int)((words + (1 << 20) - 1) >> 20)), 1 << 20];
    }

    /// <summary>Executes with a workspace from the device allocator (freed after queuing: the stream orders its reuse).</summary>
    private void Run(CudnnGraphPlan plan, Dictionary<long, nint> pointers, double scale, string what)
    {
        using var workspace = plan.WorkspaceBytes > 0 ? Tensor.Empty(WorkspaceShape(plan.WorkspaceBytes), DType.F32, Device) : null;
        CudnnAttentionPlan = plan.Summary ??= Summary(plan, CudnnAttentionEngine.Version);
        CudnnAttentionWorkspaceBytes = plan.WorkspaceBytes;
        CudnnAttentionBackward = plan.Backward;
        var mark = _context.Profiler.Begin(what);
        try { CudnnAttentionEngine.Execute(plan, pointers, scale, workspace?.DataPointer ?? 0); }
        finally { _context.Profiler.End(mark); }
    }
}
