namespace Parrot.Tensors.Cuda;

/// <summary>
/// The tensor-core decode attention for long caches (native/attention_decode_mma.cu; docs/cuda.md "Decode attention on
/// tensor cores"): an alternative to the FMA decode kernel behind a switch that is off until a GPU has timed it.
/// </summary>
public sealed partial class CudaBackend
{
    /// <summary>
    /// Whether decode attention takes the tensor-core kernel where it applies (<see cref="UsesDecodeMma"/>: bf16, head
    /// dims 64 or 128, no mask, K/V as 16-byte rows, a cache of at least <see cref="DecodeMmaMinKeys"/> keys). Off unless
    /// PARROT_DECODE_MMA is "1" when the backend is created (built without a GPU, untimed); the selftest and bench rows
    /// set it per call.
    /// </summary>
    public bool DecodeMma { get; set; } = DecodeMmaDefault(Environment.GetEnvironmentVariable("PARROT_DECODE_MMA"));

    /// <summary>The default of <see cref="DecodeMma"/> for a value of PARROT_DECODE_MMA: on only for "1".</summary>
    internal static bool DecodeMmaDefault(string? value) => value?.Trim() == "1";

    /// <summary>
    /// The fewest keys of the K tensor (the eager decode: the keys seen; the static step: the cache's capacity, as its
    /// launch cannot read the positions) for which <see cref="DecodeMma"/> takes the tensor-core kernel: 1024 unless
    /// PARROT_DECODE_MMA_MIN_KEYS gives another positive count. A guess to be timed: the FMA kernel was bound by its
    /// per-key reductions at 32768 keys (72 µs against SDPA's 49); where the two cross is unmeasured.
    /// </summary>
    public int DecodeMmaMinKeys { get; set; } = DecodeMmaMinKeysDefault(Environment.GetEnvironmentVariable("PARROT_DECODE_MMA_MIN_KEYS"));

    /// <summary>The default of <see cref="DecodeMmaMinKeys"/> for a value of PARROT_DECODE_MMA_MIN_KEYS: 1024 unless a positive count.</summary>
    internal static int DecodeMmaMinKeysDefault(string? value) => int.TryParse(value?.Trim(), out int n) && n > 0 ? n : 1024;

    /// <summary>The most key ranges of a row group (DMMA_MAX_SPLITS of attention_decode_mma.cu).</summary>
    internal const int DecodeMmaMaxSplits = 256;

    /// <summary>Query rows of a block (DMMA_ROWS: one m16 tile) and its threads (MMA_THREADS).</summary>
    internal const int DecodeMmaRows = 16, DecodeMmaThreads = 128;

    /// <summary>
    /// The fewest keys a range of the tensor-core kernel takes: one tile of 64 (DMMA_BN), so that every warp has 16
    /// keys of it. Fixed (not <see cref="DecodeMinKeys"/>, which sizes the FMA kernel's ranges of 8 warps × 4 keys).
    /// </summary>
    internal const int DecodeMmaRangeKeys = 64;

    /// <summary>
    /// How many key ranges (one block each) the tensor-core kernel may cut a row group's keys into: two blocks per SM
    /// counting one batch row's <paramref name="rowGroups"/> (Hkv · ceil(H/Hkv · T / 16)), at least
    /// <see cref="DecodeMmaRangeKeys"/> keys a range, at most <see cref="DecodeMmaMaxSplits"/>. The rule of
    /// <see cref="DecodeSplits"/> (the kernel takes clamp(keys seen / 64, 1, this) ranges), so the static launch (sized
    /// by the capacity) and the eager one (by the keys seen) give a row the same ranges and bits. Two per SM, not the
    /// three that fit at head dim 64 (at 128 its 102 KiB of shared memory allow two): the last block of a row group merges
    /// every range's 16 × D floats alone, so fewer ranges keep that tail short; a guess to be timed.
    /// </summary>
    internal static int DecodeMmaSplits(long rowGroups, long keys, int multiprocessors)
    {
        rowGroups = Math.Max(1, rowGroups);
        long want = (2L * multiprocessors + rowGroups - 1) / rowGroups, most = keys / DecodeMmaRangeKeys;
        return (int)Math.Clamp(Math.Min(want, most), 1, DecodeMmaMaxSplits);
    }

    /// <summary>Dynamic shared memory of the kernel for head dim <paramref name="d"/> (DMMA_SMEM: three stages of 64-key K and V tiles).</summary>
    internal static int DecodeMmaSharedBytes(int d) => 3 * 2 * 64 * (d + 8) * 2;

    /// <summary>The kernel's static shared memory (DmmaShared: 912 bytes per ptxas), rounded up: it counts against the block's limit with the dynamic bytes.</summary>
    internal const int DecodeMmaStaticShared = 1024;

    /// <summary>
    /// Whether the tensor-core kernel takes a decode attention: <paramref name="on"/> (<see cref="DecodeMma"/>),
    /// <paramref name="keys"/> (the K tensor's length: the keys of an eager call, the capacity of a static
    /// one) at least <paramref name="minKeys"/>; bf16 q/k/v and output; q/k and v head dims equal, 64 or 128; no mask; K
    /// and V with unit head-dim stride, the other strides multiples of 8 elements and 16-byte aligned data (its
    /// cp.async copies 16-byte chunks of rows). Any T ≤ 8 and group size (rows are cut into tiles of 16). And the block's
    /// shared memory (<see cref="DecodeMmaSharedBytes"/> + <see cref="DecodeMmaStaticShared"/>) within
    /// <paramref name="sharedPerBlock"/>, the device's opt-in limit: head dim 128 needs ~103 KiB, more than the 99 KiB
    /// of sm_86/sm_89/sm_120, where the launch would fail (cuFuncSetAttribute refuses the size) instead of falling back.
    /// </summary>
    internal static bool UsesDecodeMma(bool on, int minKeys, long keys, DType dtype, DType kvDType, DType outputDType, int headDim, int valueDim,
                                       bool masked, ReadOnlySpan<long> kStrides, ReadOnlySpan<long> vStrides, nint kData, nint vData, int sharedPerBlock)
    {
        if (!on || keys < minKeys || masked) return false;
        if (dtype != DType.BF16 || kvDType != DType.BF16 || outputDType != DType.BF16 || headDim != valueDim || headDim is not (64 or 128)) return false;
        if (DecodeMmaSharedBytes(headDim) + DecodeMmaStaticShared > sharedPerBlock) return false;
        if (kStrides[3] != 1 || vStrides[3] != 1 || kData % 16 != 0 || vData % 16 != 0) return false;
        for (int i = 0; i < 3; i++)
            if (kStrides[i] % 8 != 0 || vStrides[i] % 8 != 0) return false;
        return true;
    }

    /// <summary><see cref="UsesDecodeMma"/> with this backend's switches, for the K/V tensors given.</summary>
    private bool DecodeMmaTakes(Tensor q, Tensor k, Tensor v, Tensor? mask, Tensor output) =>
        UsesDecodeMma(DecodeMma, DecodeMmaMinKeys, k.Shape[2], q.DType, k.DType == v.DType ? k.DType : DType.F32, output.DType,
            q.Shape[3], v.Shape[3], mask is not null, k.Strides, v.Strides, k.DataPointer, v.DataPointer, _context.MaxSharedPerBlockOptin);

    /// <summary>
    /// One launch of attention_decode_mma_d{D} (host position) or attention_decode_mma_at_d{D} (<paramref name="positions"/>
    /// set: whole caches, the grid sized for the capacity): B·Hkv·ceil(H/Hkv·T / 16)·splits blocks of 128 threads, float32
    /// scratch and the decode tickets when a row group has several ranges.
    /// </summary>
    private void AttentionDecodeMma(Tensor q, Tensor k, Tensor v, bool causal, int queryOffset, double scale, Tensor output, Tensor? logSumExp,
                                    Tensor? positions, AttnStrides st)
    {
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1], S = k.Shape[2];
        long chunks = ((long)(H / Hkv) * T + DecodeMmaRows - 1) / DecodeMmaRows, groups = (long)B * Hkv * chunks;
        // The keys a row sees (eager), or the capacity (device positions): the most ranges the launch allows.
        long keys = positions is not null ? S : causal ? Math.Clamp((long)queryOffset + T, 0, S) : S;
        int splits = DecodeMmaSplits(Hkv * chunks, keys, _context.MultiprocessorCount);
        if (groups * splits > int.MaxValue) throw Missing("Attention", $"more than {int.MaxValue} decode blocks ({groups} × {splits})");
        var tickets = splits > 1 ? DecodeTickets(groups) : null;
        using var part = splits > 1 ? Tensor.Empty([ScratchLength(groups * splits * DecodeMmaRows * (D + 2), "decode attention on tensor cores")], DType.F32, Device) : null;
        string name = positions is null ? $"attention_decode_mma_d{D}" : $"attention_decode_mma_at_d{D}";
        uint shared = (uint)DecodeMmaSharedBytes(D);
        _kernels.AllowDynamicShared("attention_decode_mma.cu", name, shared);
        using var a = new KernelArgs().Ptr(q).Ptr(k).Ptr(v).Ptr(output);
        if (positions is null)
            a.Ptr(logSumExp).Add(Code(logSumExp?.DType ?? DType.F32)).Add(st).Add(H).Add(Hkv).Add(T).Add(S).Add(causal ? 1 : 0).Add(queryOffset).Add(scale)
                .Add(splits).Add(DecodeMmaRangeKeys).Ptr(part).Ptr(tickets);
        else
            a.Add(st).Add(H).Add(Hkv).Add(T).Add(S).Add(scale).Add(splits).Add(DecodeMmaRangeKeys).Ptr(part).Ptr(tickets).Ptr(positions).Add(Code(positions.DType));
        _kernels.Launch("attention_decode_mma.cu", name, (uint)(groups * splits), DecodeMmaThreads, a, shared);
    }
}
