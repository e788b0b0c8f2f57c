namespace Parrot.Tensors.Cuda;

/// <summary>
/// The decode step's rotary embedding, KV-cache append and attention in one launch where the tensor-core decode kernel
/// takes the attention (attention_decode_mma.cu's attention_decode_mma_rope_d64 / _d128; <see cref="DecodeMma"/>):
/// the bits of the two launches it replaces (rope.cu's rope_kv_append(_at), then attention_decode_mma(_at)_d{D}): the
/// kernel rotates q with rope.cu's arithmetic and bf16 rounding (rope.cuh), the blocks whose key range holds a new row
/// write rope(k) and v there before they stage a tile, and the attention takes the same ranges and sums
/// (tools/cuda-emu/decode_mma_rope_test.cpp checks the bits, the caches included).
/// </summary>
public sealed partial class CudaBackend
{
    /// <summary>
    /// The operands the tensor-core fused kernel takes beyond the attention's own (<see cref="UsesDecodeMma"/>): 1 to 8
    /// new tokens a row (the decode path's rows, <see cref="DecodeMaxRows"/>: the two launches' attention runs the
    /// tensor-core kernel only there), tables of one float dtype; the host-position op's tables hold the new rows'
    /// positions alone (<see cref="NewRowTables"/>), the device-position op's are whole tables (checked by the op).
    /// </summary>
    internal static bool RopeAttendMmaFits(int queries, Tensor cos, Tensor sin, bool atPositions) =>
        queries is >= 1 and <= DecodeMaxRows && cos.DType == sin.DType && cos.DType.IsFloat()
        && (atPositions || (NewRowTables(cos, queries) && NewRowTables(sin, queries)));

    /// <summary>
    /// Whether a host-position table is the <paramref name="queries"/> new rows' alone: [.., rows, D] with every other
    /// dim of size 1 and rows 1 (one rotation for every query) or <paramref name="queries"/>, so that the kernel finds
    /// query t's element d at t · <see cref="NewRowStride"/> + d · last stride.
    /// </summary>
    internal static bool NewRowTables(Tensor t, int queries)
    {
        if (t.Rank < 1) return false;
        long rows = t.Rank >= 2 ? t.Shape[^2] : 1;
        return (rows == 1 || rows == queries) && t.Count == rows * t.Shape[^1];
    }

    /// <summary>The element stride between the new rows of a <see cref="NewRowTables"/> table (0 for one row: broadcast).</summary>
    internal static long NewRowStride(Tensor t) => t.Rank >= 2 && t.Shape[^2] > 1 ? t.Strides[^2] : 0;

    /// <summary>
    /// One launch of attention_decode_mma_rope_d{D} (<see cref="RopeAppendAttend"/> where <see cref="DecodeMmaTakes"/>
    /// said yes). q [B, H, T, D] and k, v [B, Hkv, T, D] as the projections give them (any strides). Host position
    /// (<paramref name="positions"/> null): <paramref name="kCache"/>/<paramref name="vCache"/> are the caches' first
    /// past + T rows, the new rows last, cos/sin the new rows' tables, <paramref name="causal"/> as the op was asked.
    /// Device positions: whole caches and tables, causal, the grid sized for the capacity. Splits, tickets and scratch
    /// as <see cref="AttentionDecodeMma"/> chooses them for the same call, so the ranges and the bits are its.
    /// </summary>
    internal unsafe void RopeAppendAttendMma(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor? positions, Tensor kCache, Tensor vCache,
                                      bool causal, double scale, Tensor output)
    {
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = kCache.Shape[1], S = kCache.Shape[2];
        if ((long)B * H * T == 0) return;
        long chunks = ((long)(H / Hkv) * T + DecodeMmaRows - 1) / DecodeMmaRows, groups = (long)B * Hkv * chunks;
        // AttentionDecodeMma's keys: the host form's every row sees the S = past + T keys (causal or not); the device
        // form is sized by the capacity.
        int splits = DecodeMmaSplits(Hkv * chunks, S, _context.MultiprocessorCount);
        if (groups * splits > int.MaxValue) throw Missing("RopeAppendAttend", $"more than {int.MaxValue} decode blocks ({groups} × {splits})");
        var st = AttnStrides.Of(q, kCache, vCache, output);
        // whole tables: row pos + t at that row's stride; the new rows' tables: row t
        var rp = RopeOperands(k, v, cos, sin, positions is null ? NewRowStride(cos) : cos.Strides[0], positions is null ? NewRowStride(sin) : sin.Strides[0]);
        var tickets = splits > 1 ? DecodeTickets(groups) : null;
        using var part = splits > 1 ? Tensor.Empty([ScratchLength(groups * splits * DecodeMmaRows * (D + 2), "decode attention with rope on tensor cores")], DType.F32, Device) : null;
        string name = $"attention_decode_mma_rope_d{D}";
        uint shared = (uint)DecodeMmaSharedBytes(D);
        _kernels.AllowDynamicShared("attention_decode_mma.cu", name, shared);
        using var a = new KernelArgs().Ptr(q).Ptr(kCache).Ptr(vCache).Ptr(output).Add(st).Add(H).Add(Hkv).Add(T).Add(S)
            .Add(positions is null ? (causal ? 1 : 0) : 1).Add(positions is null ? S - T : 0).Add(scale).Add(splits).Add(DecodeMmaRangeKeys)
            .Ptr(part).Ptr(tickets).Ptr(positions).Add(Code(positions?.DType ?? DType.I64)).Add(rp);
        _kernels.Launch("attention_decode_mma.cu", name, (uint)(groups * splits), DecodeMmaThreads, a, shared);
        Interlocked.Increment(ref _ropeAttendMmaLaunches); // CudaBackend.DecodeRope.cs
    }
}
