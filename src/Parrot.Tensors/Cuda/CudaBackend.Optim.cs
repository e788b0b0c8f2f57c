namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <inheritdoc/>
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep s) => AdamW(param, grad, m, v, s, null);

    /// <summary>
    /// AdamW as <see cref="IBackend.AdamW"/>, and when <paramref name="bf16Weights"/> is given (contiguous, param's
    /// shape, BF16) the updated float32 master weights are also written there rounded to bf16, in the same pass.
    /// </summary>
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep s, Tensor? bf16Weights)
    {
        long n = param.Count;
        if (n == 0) return;
        if (bf16Weights is not null && (bf16Weights.DType != DType.BF16 || bf16Weights.Count != n || !bf16Weights.IsContiguous))
            throw new ArgumentException($"AdamW: the bf16 copy must be a contiguous BF16 tensor of {n} elements, got {bf16Weights.DType.Name()} {bf16Weights.ShapeString()}");
        double decay = 1 - s.LearningRate * s.WeightDecay;
        double bc1 = 1 - Math.Pow(s.Beta1, s.Step), bc2 = 1 - Math.Pow(s.Beta2, s.Step);
        using var a = new KernelArgs().Add(n).Ptr(param).Ptr(grad).Add(Code(grad.DType)).Ptr(m).Ptr(v).Add(Code(param.DType))
            .Add(decay).Add(s.Beta1).Add(s.Beta2).Add(s.Epsilon).Add(s.LearningRate / bc1).Add(Math.Sqrt(bc2)).Ptr(bf16Weights);
        _kernels.Launch("adamw.cu", "adamw", _kernels.GridFor(n), 256, a);
    }

    /// <summary>One parameter for <see cref="AdamWMulti"/>: master weights, gradient, moments, optional bf16 copy.</summary>
    public readonly record struct AdamWTensor(Tensor Param, Tensor Grad, Tensor M, Tensor V, Tensor? Bf16Weights = null);

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct AdamWEntry
    {
        internal ulong P, G, M, V, Bf16;
        internal long N;
        internal int GDType, PDType;
    }

    [System.Runtime.CompilerServices.InlineArray(64)]
    private struct AdamWTable { private AdamWEntry _first; }

    /// <summary>
    /// One AdamW step over many parameters in few launches (64 tensors each), the update of
    /// <see cref="AdamW(Tensor, Tensor, Tensor, Tensor, AdamWStep, Tensor?)"/> for every entry. All entries share the
    /// step's scalars; each tensor is contiguous, as for the single-tensor form.
    /// </summary>
    public void AdamWMulti(IReadOnlyList<AdamWTensor> tensors, AdamWStep s)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        double decay = 1 - s.LearningRate * s.WeightDecay;
        double bc1 = 1 - Math.Pow(s.Beta1, s.Step), bc2 = 1 - Math.Pow(s.Beta2, s.Step);
        for (int start = 0; start < tensors.Count; start += 64)
        {
            var table = new AdamWTable();
            int count = Math.Min(64, tensors.Count - start);
            long largest = 0;
            for (int i = 0; i < count; i++)
            {
                var t = tensors[start + i];
                if (t.Bf16Weights is { } w && (w.DType != DType.BF16 || w.Count != t.Param.Count || !w.IsContiguous))
                    throw new ArgumentException($"AdamWMulti: entry {start + i}: the bf16 copy must be a contiguous BF16 tensor of {t.Param.Count} elements");
                table[i] = new AdamWEntry
                {
                    P = (ulong)t.Param.DataPointer, G = (ulong)t.Grad.DataPointer, M = (ulong)t.M.DataPointer, V = (ulong)t.V.DataPointer,
                    Bf16 = t.Bf16Weights is null ? 0 : (ulong)t.Bf16Weights.DataPointer, N = t.Param.Count,
                    GDType = Code(t.Grad.DType), PDType = Code(t.Param.DType),
                };
                largest = Math.Max(largest, t.Param.Count);
            }
            if (largest == 0) continue;
            using var a = new KernelArgs().Add(table).Add(count).Add(decay).Add(s.Beta1).Add(s.Beta2).Add(s.Epsilon).Add(s.LearningRate / bc1).Add(Math.Sqrt(bc2));
            uint blocks = (uint)Math.Clamp((largest + 255) / 256, 1, Math.Max(1, _context.MultiprocessorCount * 8 / count + 1));
            _kernels.Launch("adamw.cu", "adamw_multi", blocks, 256, a, gridY: (uint)count);
        }
    }

    /// <summary>Element strides of the attention operands, as the kernel's AttnStrides struct.</summary>
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private unsafe struct AttnStrides
    {
        internal fixed long Q[4], K[4], V[4], O[4], M[4], L[3];

        /// <summary>q's, k's, v's and o's strides (the mask's and the log-sum-exp's left 0).</summary>
        internal static AttnStrides Of(Tensor q, Tensor k, Tensor v, Tensor o)
        {
            var st = new AttnStrides();
            for (int i = 0; i < 4; i++)
            {
                st.Q[i] = q.Strides[i]; st.K[i] = k.Strides[i]; st.V[i] = v.Strides[i]; st.O[i] = o.Strides[i];
            }
            return st;
        }
    }

    /// <summary>
    /// Whether <see cref="Attention"/> and <see cref="AttentionBackward"/> may run the tensor-core kernels
    /// (native/attention_mma.cu, attention_mma_backward.cu) when the operands allow it (<see cref="UsesMmaAttention"/>). On unless the environment
    /// variable PARROT_TENSOR_CORE_ATTENTION is "0" when the backend is created. Off, bf16 takes the FMA flash
    /// kernels: for side-by-side timings (of a whole model too) and for ruling the new kernels out when a result looks wrong.
    /// </summary>
    public bool TensorCoreAttention { get; set; } = TensorCoreAttentionDefault(Environment.GetEnvironmentVariable("PARROT_TENSOR_CORE_ATTENTION"));

    /// <summary>The default of <see cref="TensorCoreAttention"/> for a value of PARROT_TENSOR_CORE_ATTENTION: off only for "0".</summary>
    internal static bool TensorCoreAttentionDefault(string? value) => value?.Trim() != "0";

    /// <summary>
    /// Whether the tensor-core forward for head dims 64 and 128 runs attention_mma_forward_m128_d64/_d128 of
    /// native/attention_mma.cu (128 query rows per block, two m16 tiles per warp, so each K/V fragment read from shared
    /// memory feeds four mmas instead of two — FlashAttention-2's split for head dim 128 —, Q in shared memory, 69632 bytes
    /// of dynamic shared memory for head dim 128) rather than the per-head-dim kernel attention_mma_forward_d{64,128}
    /// (64 rows per block; head dim 80 always takes attention_mma_forward_d80). The same tile code, the same outputs bit
    /// for bit; on an H200 (B4 H16 T2048 causal) 0.349 ms against 0.404 at head dim 128, 0.192 against 0.222 at 64. On
    /// unless PARROT_ATTENTION_FWD is "per-dim" when the backend is created; off is for A/B timings (the bench's
    /// "attention fwd per-dim" row) and for ruling the 128-row kernels out.
    /// </summary>
    public bool AttentionForwardM128 { get; set; } = AttentionForwardM128Default(Environment.GetEnvironmentVariable("PARROT_ATTENTION_FWD"));

    /// <summary>The default of <see cref="AttentionForwardM128"/> for a value of PARROT_ATTENTION_FWD: off only for "per-dim".</summary>
    internal static bool AttentionForwardM128Default(string? value) => !string.Equals(value?.Trim(), "per-dim", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// How many blocks the dK/dV kernel (attention_mma_dkdv2.cu) gives each of the <paramref name="keyBlocks"/> (batch, kv head, 64 keys):
    /// enough for about 1024 blocks (a few waves of 2–3 blocks on 100+ SMs), at most one per query head of the group.
    /// More splits cost float32 partials (written, then read by the reduce: 2·splits·B·Hkv·S·D floats each way), so a
    /// grid that is already large keeps fewer. A function of the shapes only (not of the GPU), so the sums' order and
    /// the results are the same on every card.
    /// </summary>
    internal static int DkdvSplits(int heads, int kvHeads, long keyBlocks) =>
        (int)Math.Clamp((1024 + keyBlocks - 1) / Math.Max(keyBlocks, 1), 1, heads / kvHeads);

    /// <summary>
    /// Whether <see cref="Attention"/> runs the decode kernel (native/attention_decode.cu) for up to
    /// <see cref="DecodeMaxRows"/> query rows (<see cref="UsesDecodeAttention"/>), ahead of the tiled kernels. On unless
    /// the environment variable PARROT_DECODE_ATTENTION is "0" when the backend is created; off, decoding takes the
    /// tiled kernels again (tensor cores as <see cref="TensorCoreAttention"/> says): for side-by-side timings and for
    /// ruling the decode kernel out when a result looks wrong.
    /// </summary>
    public bool DecodeAttention { get; set; } = TensorCoreAttentionDefault(Environment.GetEnvironmentVariable("PARROT_DECODE_ATTENTION"));

    /// <summary>
    /// Whether <see cref="Attention"/> tries cuDNN first for a call with <paramref name="queries"/> query rows a head: when
    /// required, or when on (<see cref="CudnnAttention"/>) for more than <see cref="DecodeMaxRows"/> rows (decoding stays on
    /// our kernels whatever <see cref="DecodeAttention"/> says) in a forward that saves the log-sum-exp for a backward
    /// (<paramref name="withLogSumExp"/>: training) or, with <paramref name="inference"/>
    /// (<see cref="CudnnAttentionInference"/>), in any forward.
    /// </summary>
    internal static bool TriesCudnnForward(bool cudnnAttention, bool inference, bool required, int queries, bool withLogSumExp) =>
        required || (cudnnAttention && queries > DecodeMaxRows && (withLogSumExp || inference));

    /// <summary>The most query rows per (batch, head) that <see cref="Attention"/> sends to the decode kernel.</summary>
    internal const int DecodeMaxRows = 8;

    /// <summary>Whether the decode kernel covers these operands: f32 or bf16 (output alike), T ≤ 8, head dims ≤ 128.</summary>
    internal static bool UsesDecodeAttention(DType dtype, DType outputDType, int queries, int headDim, int valueDim) =>
        (dtype == DType.F32 || dtype == DType.BF16) && outputDType == dtype && queries <= DecodeMaxRows && headDim <= 128 && valueDim <= 128;

    /// <summary>
    /// Whether the decode kernel may read K and V rows as vectors of E = (max head dim ≤ 64 ? 2 : 4) elements, a lane's
    /// share of a row: unit head-dim stride, head dims, the other strides and the data addresses multiples of E elements.
    /// </summary>
    internal static bool DecodeVectorLoads(DType dtype, int headDim, int valueDim, ReadOnlySpan<long> kStrides, ReadOnlySpan<long> vStrides, nint kData, nint vData)
    {
        int e = Math.Max(headDim, valueDim) <= 64 ? 2 : 4, bytes = e * dtype.SizeOf();
        if (kStrides[3] != 1 || vStrides[3] != 1 || headDim % e != 0 || valueDim % e != 0 || kData % bytes != 0 || vData % bytes != 0) return false;
        for (int i = 0; i < 3; i++)
            if (kStrides[i] % e != 0 || vStrides[i] % e != 0) return false;
        return true;
    }

    /// <summary>
    /// Fused attention forward, any strides, grouped-query heads, causal (with a query offset) and additive masks.
    /// bf16/f16 calls of more than 8 query rows that cuDNN takes run on cuDNN's fused SDPA (see <see cref="CudnnAttention"/>).
    /// Up to 8 query rows per (batch, head) in f32 or bf16 with head dims up to 128 (decoding) run the decode kernel
    /// (native/attention_decode.cu: a block per batch, kv head, 4 rows of its query group and key range, the ranges
    /// merged in the same launch; see <see cref="DecodeAttention"/> and CudaBackend.Decode.cs).
    /// Otherwise bf16 with q/k and v head dims equal to 64, 80 or 128 and K/V rows contiguous and 16-byte aligned runs a
    /// tensor-core flash kernel (native/attention_mma.cu: mma.sync m16n8k16, float32 accumulation; head dims 64 and 128
    /// 128 query rows a block, see <see cref="AttentionForwardM128"/>, head dim 80 64 rows). Other f32 and bf16 operands
    /// with head dims up to 128 run the tiled FMA flash kernel (native/attention.cu); other dtypes and head dims up to 256
    /// the simple kernel (one warp per query row). The backward is <see cref="AttentionBackward"/>.
    /// </summary>
    public unsafe void Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, int queryOffset, double scale, Tensor output, Tensor? logSumExp)
    {
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1], S = k.Shape[2], Dv = v.Shape[3];
        if (D > 256 || Dv > 256) throw Missing("Attention", $"head dims above 256 (q {D}, v {Dv})");
        long rows = (long)B * H * T;
        if (rows == 0 || Dv == 0) return;
        // cuDNN's fused attention first where it takes the call (CudaBackend.Cudnn.cs): training forwards (they save the
        // log-sum-exp); inference only when asked (a plan per new length, about a second each); up to 8 query rows a
        // head (decoding) stay on our kernels unless the cuDNN path is forced: a decode step's key count grows every step.
        if (TriesCudnnForward(CudnnAttention, CudnnAttentionInference, CudnnAttentionRequired, T, logSumExp is not null)
            && TryCudnnAttention(q, k, v, mask, causal, queryOffset, scale, output, logSumExp))
            return;
        var st = AttnStrides.Of(q, k, v, output);
        for (int i = 0; i < 4; i++) st.M[i] = mask is null ? 0 : mask.Strides[i];
        for (int i = 0; i < 3; i++) st.L[i] = logSumExp is null ? 0 : logSumExp.Strides[i];
        using var a = new KernelArgs().Ptr(q).Ptr(k).Ptr(v).Ptr(output).Add(Code(q.DType)).Ptr(mask).Add(Code(mask?.DType ?? DType.F32))
            .Ptr(logSumExp).Add(Code(logSumExp?.DType ?? DType.F32)).Add(st).Add((long)B).Add((long)H).Add((long)Hkv).Add((long)T).Add((long)S)
            .Add((long)D).Add((long)Dv).Add(causal ? 1 : 0).Add((long)queryOffset).Add(scale);
        if (DecodeAttention && UsesDecodeAttention(q.DType, output.DType, T, D, Dv))
        {
            AttentionDecode(q, k, v, mask, causal, queryOffset, scale, output, logSumExp, st);
            return;
        }
        if (TensorCoreAttention && UsesMmaAttention(q.DType, output.DType, D, Dv, k.Strides, v.Strides, k.DataPointer, v.DataPointer))
        {
            const int threads = 128; // MMA_THREADS of attention_mma.cuh
            bool m128 = AttentionForwardM128 && D is 64 or 128;
            int tileRows = m128 ? 128 : 64; // 2·MMA_BM or MMA_BM
            long blocks = (long)B * H * ((T + tileRows - 1) / tileRows);
            if (blocks > int.MaxValue) throw Missing("Attention", $"more than {int.MaxValue} query tiles ({blocks})");
            if (m128)
            {
                string name = $"attention_mma_forward_m128_d{D}";
                uint shared = (uint)MmaM128SharedBytes(D);
                _kernels.AllowDynamicShared("attention_mma.cu", name, shared);
                _kernels.Launch("attention_mma.cu", name, (uint)blocks, threads, a, shared);
            }
            else _kernels.Launch("attention_mma.cu", $"attention_mma_forward_d{D}", (uint)blocks, threads, a);
            return;
        }
        if (UsesFlashAttention(q.DType, D, Dv))
        {
            const int tileRows = 64, threads = 256; // FA_BM and FA_THREADS of attention.cu
            long blocks = (long)B * H * ((T + tileRows - 1) / tileRows);
            if (blocks > int.MaxValue) throw Missing("Attention", $"more than {int.MaxValue} query tiles ({blocks})");
            _kernels.Launch("attention.cu", "attention_flash_forward", (uint)blocks, threads, a);
            return;
        }
        const int warpsPerBlock = 4;
        uint grid = (uint)Math.Clamp((rows + warpsPerBlock - 1) / warpsPerBlock, 1, (long)_context.MultiprocessorCount * 64);
        _kernels.Launch("attention.cu", "attention_forward", grid, 32 * warpsPerBlock, a);
    }

    /// <summary>Element strides of the attention backward's operands, as the kernel's FaBwdStrides struct.</summary>
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private unsafe struct FaBwdStrides
    {
        internal AttnStrides A;
        internal fixed long DOut[4], Dq[4], Dk[4], Dv[4];
    }

    /// <summary>
    /// Fused attention backward. bf16/f16 calls cuDNN takes run on cuDNN's fused SDPA backward (see
    /// <see cref="CudnnAttention"/>). Otherwise f32 and bf16 with head dims up to 128 and a float32 log-sum-exp run flash
    /// kernels: _dq (a block per batch, head and 64 query rows; writes dQ and delta = rowsum(dO ⊙ o)), then dK/dV. bf16
    /// with head dims 64, 80 or 128 (q/k = v) and q, k, v, dO rows contiguous and 16-byte aligned take the tensor-core
    /// kernels (attention_mma_backward_dq of native/attention_mma_backward.cu, then attention_mma_backward_dkdv2_d{D}: up to a block
    /// per query head of a grouped kv head, partials summed in order; see <see cref="TensorCoreAttention"/>), the rest the
    /// FMA pair (attention_flash_backward_dq / _dkdv of native/attention.cu: a block per batch, kv head and 64 keys, summing
    /// over the group's query heads). All of them are deterministic. dO in another dtype is first rounded to q's. Other
    /// operands take the composite path (<see cref="Tensor.AttentionBackwardComposite"/>: matmuls, T × S scores).
    /// </summary>
    public unsafe void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor dO, Tensor logSumExp, Tensor? mask, bool causal, int queryOffset, double scale,
        Tensor? dq, Tensor? dk, Tensor? dv)
    {
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1], S = k.Shape[2], Dv = v.Shape[3];
        if ((CudnnAttention || CudnnAttentionRequired) && B * (long)H * T > 0 && S > 0
            && TryCudnnAttentionBackward(q, k, v, o, dO, logSumExp, mask, causal, queryOffset, scale, dq, dk, dv))
            return;
        if (!UsesFlashAttention(q.DType, D, Dv) || logSumExp.DType != DType.F32)
        {
            Tensor.AttentionBackwardComposite(q, k, v, o, dO, logSumExp, mask, causal, queryOffset, scale, dq, dk, dv);
            return;
        }
        if (dq is null && dk is null && dv is null) return;
        const int tileRows = 64; // FA_BM of attention.cu, MMA_BM and MMA_BN of attention_mma.cuh
        long qBlocks = (long)B * H * ((T + tileRows - 1) / tileRows), kBlocks = (long)B * Hkv * ((S + tileRows - 1) / tileRows);
        if (qBlocks > int.MaxValue || kBlocks > int.MaxValue) throw Missing("AttentionBackward", $"more than {int.MaxValue} tiles ({qBlocks}, {kBlocks})");
        // The dq kernel always writes dq and delta (the dk/dv kernel reads delta), so a dq nobody asked for gets scratch;
        // likewise dk and dv are written together. delta shares the log-sum-exp's layout: both contiguous [B, H, T].
        using var g = dO.DType == q.DType ? null : dO.To(q.DType);
        using var lse = logSumExp.IsContiguous ? null : logSumExp.Contiguous();
        using var delta = Tensor.Empty([B, H, T], DType.F32, Device);
        using var dqScratch = dq is null ? Tensor.Empty([B, H, T, D], q.DType, Device) : null;
        bool kv = dk is not null || dv is not null;
        using var dkScratch = kv && dk is null ? Tensor.Empty([B, Hkv, S, D], q.DType, Device) : null;
        using var dvScratch = kv && dv is null ? Tensor.Empty([B, Hkv, S, Dv], q.DType, Device) : null;
        var gg = g ?? dO;
        var l = lse ?? logSumExp;
        var dqt = dq ?? dqScratch!;
        var dkt = dk ?? dkScratch;
        var dvt = dv ?? dvScratch;
        if (B * (long)H * T == 0)
        {
            dk?.Fill(0); // no query: no gradient reaches the keys and values
            dv?.Fill(0);
            return;
        }
        var st = new FaBwdStrides();
        for (int i = 0; i < 4; i++)
        {
            st.A.Q[i] = q.Strides[i]; st.A.K[i] = k.Strides[i]; st.A.V[i] = v.Strides[i]; st.A.O[i] = o.Strides[i];
            st.A.M[i] = mask is null ? 0 : mask.Strides[i];
            st.DOut[i] = gg.Strides[i]; st.Dq[i] = dqt.Strides[i];
            st.Dk[i] = dkt is null ? 0 : dkt.Strides[i]; st.Dv[i] = dvt is null ? 0 : dvt.Strides[i];
        }
        for (int i = 0; i < 3; i++) st.A.L[i] = l.Strides[i];
        bool mma = TensorCoreAttention && UsesMmaAttention(q.DType, q.DType, D, Dv, k.Strides, v.Strides, k.DataPointer, v.DataPointer)
                   && RowsOf16Bytes(q.Strides, q.DataPointer) && RowsOf16Bytes(gg.Strides, gg.DataPointer);
        string file = mma ? "attention_mma_backward.cu" : "attention.cu", kernel = mma ? "attention_mma_backward" : "attention_flash_backward";
        uint threads = mma ? 128u : 256u; // MMA_THREADS, FA_THREADS
        using (var a = new KernelArgs().Ptr(q).Ptr(k).Ptr(v).Ptr(o).Ptr(gg).Ptr(dqt).Add(Code(q.DType)).Ptr(mask).Add(Code(mask?.DType ?? DType.F32))
            .Ptr(l).Ptr(delta).Add(st).Add((long)B).Add((long)H).Add((long)Hkv).Add((long)T).Add((long)S)
            .Add((long)D).Add((long)Dv).Add(causal ? 1 : 0).Add((long)queryOffset).Add(scale))
            _kernels.Launch(file, kernel + "_dq", (uint)qBlocks, threads, a);
        if (!kv || S == 0) return;
        if (mma)
        {
            AttentionDkdvLaunch(q, k, v, gg, dkt!, dvt!, mask, l, delta, st, causal, queryOffset, scale, kBlocks);
            return;
        }
        using (var a = new KernelArgs().Ptr(q).Ptr(k).Ptr(v).Ptr(gg).Ptr(dkt).Ptr(dvt).Add(Code(q.DType)).Ptr(mask).Add(Code(mask?.DType ?? DType.F32))
            .Ptr(l).Ptr(delta).Add(st).Add((long)B).Add((long)H).Add((long)Hkv).Add((long)T).Add((long)S)
            .Add((long)D).Add((long)Dv).Add(causal ? 1 : 0).Add((long)queryOffset).Add(scale))
            _kernels.Launch("attention.cu", "attention_flash_backward_dkdv", (uint)kBlocks, threads, a);
    }

    /// <summary>
    /// dK and dV on tensor cores (attention_mma_backward_dkdv2_d{64,80,128}, native/attention_mma_dkdv2.cu: up to a block
    /// per query head of a grouped kv head): <see cref="DkdvSplits"/> blocks per (batch, kv head, 64 keys); with more than
    /// one, float32 partials [2, splits, B, Hkv, S, D] from the device allocator and attention_mma_backward_dkdv2_reduce
    /// adds them in split order.
    /// </summary>
    private void AttentionDkdvLaunch(Tensor q, Tensor k, Tensor v, Tensor dO, Tensor dk, Tensor dv, Tensor? mask, Tensor lse, Tensor delta,
        FaBwdStrides st, bool causal, int queryOffset, double scale, long kBlocks)
    {
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1], S = k.Shape[2];
        int splits = DkdvSplits(H, Hkv, kBlocks);
        if (kBlocks * splits > int.MaxValue) throw Missing("AttentionBackward", $"more than {int.MaxValue} dK/dV blocks ({kBlocks} × {splits})");
        long plane = (long)B * Hkv * S * D;
        using var part = splits > 1 ? Tensor.Empty([ScratchLength(2 * splits * plane, "attention backward (dK/dV partials)")], DType.F32, Device) : null;
        using (var a = new KernelArgs().Ptr(q).Ptr(k).Ptr(v).Ptr(dO).Ptr(dk).Ptr(dv).Ptr(part).Ptr(mask).Add(Code(mask?.DType ?? DType.F32))
            .Ptr(lse).Ptr(delta).Add(st).Add((long)B).Add((long)H).Add((long)Hkv).Add((long)T).Add((long)S)
            .Add(causal ? 1 : 0).Add((long)queryOffset).Add(scale).Add((long)splits))
            _kernels.Launch("attention_mma_dkdv2.cu", $"attention_mma_backward_dkdv2_d{D}", (uint)(kBlocks * splits), 128u, a); // MMA_THREADS
        if (part is null) return;
        using (var a = new KernelArgs().Ptr(part).Ptr(dk).Ptr(dv).Add(st).Add((long)B).Add((long)Hkv).Add((long)S).Add((long)D)
            .Add((long)splits).Add(scale))
            _kernels.Launch("attention_mma_dkdv2.cu", "attention_mma_backward_dkdv2_reduce", _kernels.GridFor(plane), 256, a);
    }

    /// <summary>Dynamic shared memory of attention_mma_forward_m128_d{D}: MMA_M128_SMEM(D) of native/attention_mma.cu, the K and
    /// V tiles (64 rows each) and the 128 Q rows, rows of D + 8 bf16.</summary>
    internal static int MmaM128SharedBytes(int D) => (2 * 64 + 128) * (D + 8) * 2;

    /// <summary>
    /// Whether <see cref="Attention"/> can run the tensor-core kernels (attention_mma.cu) for these operands: bf16
    /// q/k/v and output, q/k and v head dims equal and one of 64, 80, 128 (the kernel's instantiations), and K and V
    /// staged by 16-byte copies: unit head-dim stride, other strides multiples of 8 elements, 16-byte aligned data.
    /// </summary>
    internal static bool UsesMmaAttention(DType dtype, DType outputDType, int headDim, int valueDim,
        ReadOnlySpan<long> kStrides, ReadOnlySpan<long> vStrides, nint kData, nint vData)
    {
        if (dtype != DType.BF16 || outputDType != DType.BF16 || headDim != valueDim || headDim is not (64 or 80 or 128)) return false;
        return RowsOf16Bytes(kStrides, kData) && RowsOf16Bytes(vStrides, vData);
    }

    /// <summary>
    /// Whether a bf16 [B, H, rows, D] operand can be staged by 16-byte copies: unit head-dim stride, other strides
    /// multiples of 8 elements, 16-byte aligned data.
    /// </summary>
    internal static bool RowsOf16Bytes(ReadOnlySpan<long> s, nint data) =>
        s[3] == 1 && s[0] % 8 == 0 && s[1] % 8 == 0 && s[2] % 8 == 0 && data % 16 == 0;

    /// <summary>Whether <see cref="Attention"/> runs the tiled flash kernel (attention_flash_forward) for these operands.</summary>
    internal static bool UsesFlashAttention(DType dtype, int headDim, int valueDim) =>
        (dtype == DType.F32 || dtype == DType.BF16) && headDim <= 128 && valueDim <= 128;
}
