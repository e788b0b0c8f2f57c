namespace Parrot.Tensors.Cuda;

/// <summary>
/// The decode step's rotary embedding, KV-cache append and attention in one launch (attention_decode.cu's
/// attention_decode_rope_bf16 / _f32) where there were two (rope.cu's rope_kv_append(_at), then the decode attention
/// kernel): one launch fewer per decoder layer and token. The same bits as the two launches: the kernel rotates q with
/// rope.cu's arithmetic (rope.cuh) and its rounding to the dtype, writes rope(k) and v into the new cache row before
/// reading it, and attends with the same ranges and sums (tools/cuda-emu/decode_test.cpp checks the bits).
/// </summary>
public sealed partial class CudaBackend
{
    /// <summary>
    /// Whether <see cref="Tensor.RopeAppendAttend"/> and <see cref="Tensor.RopeAppendAttendAt"/> take the one-kernel
    /// path where it applies (<see cref="FusedRopeAttendKernel"/>): off unless PARROT_DECODE_ROPE_FUSED is "1" when the backend
    /// is created (off: rope_kv_append(_at) and the decode attention as two launches). Timed on an H200 (2026-11-27
    /// 22:47, Qwen2-7B decode from a CUDA graph, twice each): the one launch made the step slower — 5.53 ms/token with it,
    /// 5.25–5.28 without (the norm fusion on in both), though the kernels alone take the same time (bench "decode
    /// rope+attention fused / apart": 14 / 14 µs at 160 keys, 19 / 19 at 4096); with the tensor-core kernel the one
    /// launch was 5 % faster alone (21 vs 22 µs at 4096 keys, 40 vs 42 at 32768), untimed in the model.
    /// </summary>
    public bool DecodeRopeFused { get; set; } = DecodeRopeFusedDefault(Environment.GetEnvironmentVariable("PARROT_DECODE_ROPE_FUSED"));

    /// <summary>
    /// Launches of attention_decode_rope_* (<see cref="RopeAttendLaunches"/>) and of attention_decode_mma_rope_d{D}
    /// (<see cref="RopeAttendMmaLaunches"/>) so far: `parrot selftest` checks that its fused rows took the kernel they
    /// name (else a row would compare the two launches with themselves).
    /// </summary>
    public long RopeAttendLaunches => Interlocked.Read(ref _ropeAttendLaunches);

    /// <inheritdoc cref="RopeAttendLaunches"/>
    public long RopeAttendMmaLaunches => Interlocked.Read(ref _ropeAttendMmaLaunches);

    private long _ropeAttendLaunches, _ropeAttendMmaLaunches;

    /// <summary>The default of <see cref="DecodeRopeFused"/> for a value of PARROT_DECODE_ROPE_FUSED: on only for "1".</summary>
    internal static bool DecodeRopeFusedDefault(string? value) => value?.Trim() == "1";

    /// <summary>
    /// Which one-kernel path takes a step (<see cref="RopeAttendKernel.None"/>: the two launches run it):
    /// <see cref="DecodeRopeFused"/>, the decode kernel in use for attention (<see cref="DecodeAttention"/>, cuDNN not
    /// forced), and the operands of the kernel the attention would run: where the tensor-core decode kernel takes it
    /// (<see cref="DecodeMmaTakes"/>, asked with the caches the attention gets: their alignment decides too) its fused
    /// form, attention_decode_mma_rope_d{D} (<see cref="RopeAttendMmaFits"/>), else the FMA kernel's
    /// (<see cref="RopeAttendFits"/>): <see cref="RopeAttendChoice"/>. <paramref name="atPositions"/>: the
    /// device-position op (whole tables). The op hands the answer to <see cref="RopeAppendAttend"/>, which launches that
    /// kernel without asking <see cref="DecodeMmaTakes"/> again (the fused output has q's dtype, the one asked with here).
    /// </summary>
    internal RopeAttendKernel FusedRopeAttendKernel(Tensor q, Tensor kCache, Tensor vCache, Tensor cos, Tensor sin, Tensor? mask, bool atPositions)
    {
        bool enabled = RopeAttendEnabled(DecodeRopeFused, DecodeAttention, CudnnAttentionRequired);
        if (!enabled) return RopeAttendKernel.None;
        bool mma = DecodeMmaTakes(q, kCache, vCache, mask, q);
        return RopeAttendChoice(true, mma, mma && RopeAttendMmaFits(q.Shape[2], cos, sin, atPositions),
            !mma && RopeAttendFits(q.DType, q.Shape[2], q.Shape[3], kCache.DType, cos, sin, mask is not null, atPositions));
    }

    /// <summary>Which kernel takes a decode step's RoPE + append + attention in one launch (None: the two launches).</summary>
    internal enum RopeAttendKernel { None, Fma, TensorCores }

    /// <summary>
    /// The rule of <see cref="FusedRopeAttendKernel"/>: nothing unless <paramref name="enabled"/> (<see cref="RopeAttendEnabled"/>);
    /// where the tensor-core kernel takes the attention (<paramref name="mmaTakes"/>) its fused form if the operands fit
    /// it, else the two launches (never the FMA fused kernel: its attention would not be the bits of the tensor-core
    /// kernel the two launches run); elsewhere the FMA fused kernel if they fit it.
    /// </summary>
    internal static RopeAttendKernel RopeAttendChoice(bool enabled, bool mmaTakes, bool mmaFits, bool fmaFits) =>
        !enabled ? RopeAttendKernel.None
        : mmaTakes ? (mmaFits ? RopeAttendKernel.TensorCores : RopeAttendKernel.None)
        : fmaFits ? RopeAttendKernel.Fma : RopeAttendKernel.None;

    /// <summary>
    /// The switches' part of <see cref="FusedRopeAttendKernel"/>: the fused kernel is the decode kernel, so it runs only
    /// where the attention would run that kernel (not with PARROT_DECODE_ATTENTION=0, nor with cuDNN forced).
    /// </summary>
    internal static bool RopeAttendEnabled(bool ropeFused, bool decodeAttention, bool cudnnRequired) =>
        ropeFused && decodeAttention && !cudnnRequired;

    /// <summary>
    /// The operands the fused kernel takes: f32 or bf16 (the caches alike), one new token a row (T = 1: the kernel
    /// writes one row per kv head), an even head dim up to 128 (q, k and v alike), tables of one float dtype, no
    /// mask. The host-position op's tables must hold one row (every dim but the last of size 1: the kernel reads
    /// element d at d · last stride); the device-position op's are whole tables [rows, D] (row p at p · row stride).
    /// </summary>
    internal static bool RopeAttendFits(DType dtype, int queries, int headDim, DType cacheDType, Tensor cos, Tensor sin, bool masked, bool atPositions) =>
        (dtype == DType.F32 || dtype == DType.BF16) && cacheDType == dtype && queries == 1 && headDim % 2 == 0 && headDim <= 128
        && cos.DType == sin.DType && cos.DType.IsFloat() && !masked && (atPositions || (OneRow(cos) && OneRow(sin)));

    private static bool OneRow(Tensor t) => t.Rank >= 1 && t.Count == t.Shape[^1];

    /// <summary>Element strides and pointers of the step's new rows and tables, as attention_decode.cu's DecRope.</summary>
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    internal unsafe struct DecRope
    {
        internal ulong K, V, Cos, Sin;
        internal fixed long Ks[4], Vs[4];
        internal long CLast, SLast, CRow, SRow;
        internal int TDType;
    }

    /// <summary>
    /// One launch of the fused kernel <paramref name="kernel"/> names (<see cref="FusedRopeAttendKernel"/>'s answer for
    /// these operands): attention_decode_rope_bf16 / _f32 for <see cref="RopeAttendKernel.Fma"/>, or for
    /// <see cref="RopeAttendKernel.TensorCores"/> <see cref="RopeAppendAttendMma"/> instead. q [B, H, 1, D] and k,
    /// v [B, Hkv, 1, D] as the projections give them (any strides); output [B, H, 1, D]. Host position
    /// (<paramref name="positions"/> null): <paramref name="kCache"/>/<paramref name="vCache"/> are the caches' first
    /// past + 1 rows and the new row is the last; cos/sin its table row. Device positions: whole caches and tables, the
    /// grid sized for the capacity as <see cref="AttentionAt"/>'s. Splits, vector loads, tickets and scratch as the
    /// decode attention's launchers (<see cref="AttentionDecode"/>, <see cref="AttentionAt"/>) choose them for the same
    /// cache, so the ranges, the order of sums and the bits are theirs.
    /// </summary>
    internal unsafe void RopeAppendAttend(RopeAttendKernel kernel, Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor? positions, Tensor kCache, Tensor vCache,
                                          bool causal, double scale, Tensor output)
    {
        if (kernel == RopeAttendKernel.TensorCores)
        {
            RopeAppendAttendMma(q, k, v, cos, sin, positions, kCache, vCache, causal, scale, output); // CudaBackend.DecodeMmaRope.cs
            return;
        }
        if (kernel != RopeAttendKernel.Fma) throw new ArgumentOutOfRangeException(nameof(kernel), $"RopeAppendAttend: no fused kernel ({kernel}) takes these operands");
        int B = q.Shape[0], H = q.Shape[1], D = q.Shape[3], Hkv = kCache.Shape[1], S = kCache.Shape[2];
        if ((long)B * H == 0 || D == 0) return;
        long chunks = ((long)(H / Hkv) + DecodeRowsPerBlock - 1) / DecodeRowsPerBlock, groups = (long)B * Hkv * chunks;
        int splits = DecodeSplits(Hkv * chunks, S, _context.MultiprocessorCount, DecodeMinKeys);
        if (groups * splits > int.MaxValue) throw Missing("RopeAppendAttend", $"more than {int.MaxValue} decode blocks ({groups} × {splits})");
        var st = AttnStrides.Of(q, kCache, vCache, output);
        // whole tables: row p at p · row stride; one row: the pointer is that row's
        var rp = RopeOperands(k, v, cos, sin, positions is null ? 0 : cos.Strides[0], positions is null ? 0 : sin.Strides[0]);
        bool vec = DecodeVectorLoads(q.DType, D, D, kCache.Strides, vCache.Strides, kCache.DataPointer, vCache.DataPointer);
        var tickets = splits > 1 ? DecodeTickets(groups) : null;
        using var part = splits > 1 ? Tensor.Empty([ScratchLength(groups * splits * DecodeRowsPerBlock * (D + 2), "decode attention with rope")], DType.F32, Device) : null;
        using var a = new KernelArgs().Ptr(q).Ptr(kCache).Ptr(vCache).Ptr(output).Add(st).Add(H).Add(Hkv).Add(S).Add(D)
            .Add(positions is null ? S - 1 : 0).Add(scale).Add(vec ? 1 : 0).Add(splits).Add(Math.Max(1, DecodeMinKeys)).Ptr(part).Ptr(tickets)
            .Ptr(positions).Add(Code(positions?.DType ?? DType.I64)).Add(rp);
        _kernels.Launch("attention_decode.cu", q.DType == DType.BF16 ? "attention_decode_rope_bf16" : "attention_decode_rope_f32", (uint)(groups * splits), DecodeThreads, a);
        Interlocked.Increment(ref _ropeAttendLaunches);
    }

    /// <summary>
    /// The new rows' k and v and the cos/sin tables as the fused decode kernels read them (DecRope): pointers, k's and
    /// v's strides, the tables' last stride and dtype, and <paramref name="cosRow"/>/<paramref name="sinRow"/>, the
    /// elements between two table rows the kernel steps by.
    /// </summary>
    private static unsafe DecRope RopeOperands(Tensor k, Tensor v, Tensor cos, Tensor sin, long cosRow, long sinRow)
    {
        var rp = new DecRope
        {
            K = (ulong)k.DataPointer, V = (ulong)v.DataPointer, Cos = (ulong)cos.DataPointer, Sin = (ulong)sin.DataPointer,
            CLast = cos.Strides[^1], SLast = sin.Strides[^1], TDType = Code(cos.DType), CRow = cosRow, SRow = sinRow,
        };
        for (int i = 0; i < 4; i++)
        {
            rp.Ks[i] = k.Strides[i]; rp.Vs[i] = v.Strides[i];
        }
        return rp;
    }
}
