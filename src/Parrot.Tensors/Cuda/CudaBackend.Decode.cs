namespace Parrot.Tensors.Cuda;

/// <summary>
/// The decode attention launchers (native/attention_decode.cu): the
/// key-range rule shared by the host-position (<see cref="Attention"/>) and device-position (<see cref="AttentionAt"/>)
/// launches, and the persistent tickets through which a launch's last block of a row group finds itself.
/// </summary>
public sealed partial class CudaBackend
{
    private const int DecodeRowsPerBlock = 4, DecodeThreads = 256; // DEC_ROWS and DEC_THREADS of attention_decode.cu

    /// <summary>The most key ranges of a row group (DEC_MAX_SPLITS of attention_decode.cu).</summary>
    internal const int DecodeMaxSplits = 256;

    /// <summary>
    /// The fewest keys a range of the decode kernel takes (<see cref="DecodeSplits"/>): 128 by default, so a 160-key
    /// cache of a 7B step runs one range per row group. Timed on an H200 (2026-11-27 23:07, the 7B step from a CUDA
    /// graph, twice each): 4.41 / 4.40 ms/token at 128 against 4.48 / 4.48 at the earlier default of 32 (one chunk of 4
    /// keys for each of a block's 8 warps); the kernel alone from a graph 7 against 9 µs at 160 keys, 13 against 14 at
    /// 4096. PARROT_DECODE_MIN_KEYS sets it when the backend is created; the benchmarks compare others in one run.
    /// The same value must serve a static step and the eager decode it is compared with (it picks their ranges).
    /// </summary>
    public int DecodeMinKeys { get; set; } = int.TryParse(Environment.GetEnvironmentVariable("PARROT_DECODE_MIN_KEYS"), out int k) && k > 0 ? k : 128;

    /// <summary>
    /// How many key ranges (one block each) the decode kernel may cut the keys of a row group into: enough blocks for
    /// two per SM (the bf16 kernel's occupancy) counting the row groups of ONE batch row (<paramref name="rowGroups"/> =
    /// Hkv · ceil(H/Hkv · T / 4)), at least <paramref name="minKeys"/> keys a range, at most
    /// <see cref="DecodeMaxSplits"/>. The kernel takes clamp(keys seen / minKeys, 1, this) ranges of the keys its rows
    /// see, so an eager launch (<paramref name="keys"/> = the keys seen) and a static one (<paramref name="keys"/> =
    /// the capacity, no fewer) arrive at the same ranges and bits, whatever the batch: the per-row count keeps a batch
    /// of rows equal to each row decoded alone.
    /// </summary>
    internal static int DecodeSplits(long rowGroups, long keys, int multiprocessors, int minKeys = 32)
    {
        minKeys = Math.Max(1, minKeys);
        rowGroups = Math.Max(1, rowGroups);
        long want = (2L * multiprocessors + rowGroups - 1) / rowGroups, most = keys / minKeys;
        return (int)Math.Clamp(Math.Min(want, most), 1, DecodeMaxSplits);
    }

    private Tensor? _decodeTickets;
    private readonly List<Tensor> _retiredDecodeTickets = new();

    /// <summary>
    /// One zeroed 32-bit ticket per row group for the decode kernel (at least <paramref name="rowGroups"/>, 64 Ki to
    /// start). The kernel leaves them zero, so they are made and zeroed once, eagerly: <see cref="Capture"/> calls this
    /// first (a buffer made inside a capture would come from its pool and have its zero fill recorded, not run). A
    /// larger request replaces the buffer but keeps the old one alive (a captured graph may still point at it); inside
    /// a capture it throws (run the step once eagerly first, as a capture needs anyway).
    /// </summary>
    internal Tensor DecodeTickets(long rowGroups = 0)
    {
        if (_decodeTickets is not null && _decodeTickets.Count >= rowGroups) return _decodeTickets;
        if (_capturing)
            throw new InvalidOperationException($"decode attention: {rowGroups} row groups need more tickets than were made before the CUDA graph capture; run the step once eagerly first");
        if (rowGroups > int.MaxValue) throw Missing("Attention", $"more than {int.MaxValue} decode row groups ({rowGroups})");
        int n = (int)Math.Max(1 << 16, rowGroups);
        var t = Tensor.Full([n], 0, DType.I32, Device);
        TensorScope.Detach(t); // lives as long as the backend
        if (_decodeTickets is not null) _retiredDecodeTickets.Add(_decodeTickets);
        return _decodeTickets = t;
    }

    /// <summary>
    /// The decode kernel (attention_decode_forward_bf16 / _f32) over B·Hkv·ceil(H/Hkv·T / 4)·splits blocks of 256
    /// threads; with several ranges their partial softmax states go to float32 scratch from the device allocator and
    /// the last block of each row group merges them (<see cref="DecodeTickets"/>).
    /// </summary>
    private void AttentionDecode(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, int queryOffset, double scale, Tensor output, Tensor? logSumExp, AttnStrides st)
    {
        if (DecodeMmaTakes(q, k, v, mask, output))
        {
            AttentionDecodeMma(q, k, v, causal, queryOffset, scale, output, logSumExp, null, st); // CudaBackend.DecodeMma.cs
            return;
        }
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1], S = k.Shape[2], Dv = v.Shape[3];
        long chunks = ((long)(H / Hkv) * T + DecodeRowsPerBlock - 1) / DecodeRowsPerBlock, groups = (long)B * Hkv * chunks;
        long visible = causal ? Math.Clamp((long)queryOffset + T, 0, S) : S;
        int splits = DecodeSplits(Hkv * chunks, visible, _context.MultiprocessorCount, DecodeMinKeys);
        if (groups * splits > int.MaxValue) throw Missing("Attention", $"more than {int.MaxValue} decode blocks ({groups} × {splits})");
        bool vec = DecodeVectorLoads(q.DType, D, Dv, k.Strides, v.Strides, k.DataPointer, v.DataPointer);
        var tickets = splits > 1 ? DecodeTickets(groups) : null;
        using var part = splits > 1 ? Tensor.Empty([ScratchLength(groups * splits * DecodeRowsPerBlock * (Dv + 2), "decode attention")], DType.F32, Device) : null;
        using var a = new KernelArgs().Ptr(q).Ptr(k).Ptr(v).Ptr(output).Ptr(mask).Add(Code(mask?.DType ?? DType.F32))
            .Ptr(logSumExp).Add(Code(logSumExp?.DType ?? DType.F32)).Add(st).Add(H).Add(Hkv).Add(T).Add(S).Add(D).Add(Dv)
            .Add(causal ? 1 : 0).Add(queryOffset).Add(scale).Add(vec ? 1 : 0).Add(splits).Add(Math.Max(1, DecodeMinKeys)).Ptr(part).Ptr(tickets);
        _kernels.Launch("attention_decode.cu", q.DType == DType.BF16 ? "attention_decode_forward_bf16" : "attention_decode_forward_f32",
            (uint)(groups * splits), DecodeThreads, a);
    }

    /// <summary>A float32 scratch length, or a named error when the problem needs more than one tensor can hold.</summary>
    private static int ScratchLength(long elements, string op) =>
        elements <= int.MaxValue ? (int)elements
            : throw new NotSupportedException($"{op}: the split partials need {elements} float32 elements, more than one scratch tensor holds ({int.MaxValue}); use fewer rows or a shorter cache per call");
}
