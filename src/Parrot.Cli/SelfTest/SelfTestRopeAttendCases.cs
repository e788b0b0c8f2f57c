using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// A decode step's rotary embedding, KV-cache append and attention as one op (<see cref="Tensor.RopeAppendAttend"/>,
/// <see cref="Tensor.RopeAppendAttendAt"/>) at Qwen2-7B's decode shape (28 query heads, 4 kv heads, head dim 128, one
/// token, q/k/v column views of one packed projection). On a GPU the one-kernel path (attention_decode_rope_*) must
/// give the bits of the two launches it replaces (<see cref="CudaBackend.DecodeRopeFused"/> off: rope_kv_append(_at),
/// then the decode attention) in the output and in every row of both caches, or the row throws; the result (output
/// and caches) is then checked against the CPU (the ops in sequence) and float64, as every row. The "tensor cores" rows
/// do the same with the tensor-core decode kernel forced on for the row (<see cref="CudaBackend.DecodeMma"/>, threshold
/// 1 key; bf16): its fused form attention_decode_mma_rope_d{D} against rope_kv_append(_at) then attention_decode_mma;
/// the others force it off. Each row forces the fusion on and throws unless the kernel it names ran.
/// </summary>
internal static class SelfTestRopeAttendCases
{
    private const double Theta = 1_000_000.0; // Qwen2's

    /// <summary>Query heads, kv heads, head dim and new tokens a row.</summary>
    private readonly record struct Shape(int Heads, int KvHeads, int D, int T);

    private static readonly Shape Qwen7B = new(28, 4, 128, 1);

    internal static IEnumerable<SelfTestCase> All()
    {
        // 160 keys seen: one range at the default of ≥ 128 keys a range (CudaBackend.DecodeMinKeys); a cache of 200 rows.
        yield return new("rope+append+attention 7B decode (one launch = two)", (r, t) => Inputs(r, t, Qwen7B, 1, 200), x => Run(x, Qwen7B, past: 159, positions: null, mma: false));
        // The same in 5 ranges of 32 keys on a 132-SM GPU (DecodeMinKeys 32), the new key in the last: the ranges merged.
        yield return new("rope+append+attention 7B decode, 32 keys a range (one launch = two)", (r, t) => Inputs(r, t, Qwen7B, 1, 200),
            x => Run(x, Qwen7B, past: 159, positions: null, mma: false, decodeMinKeys: 32));
        // Device positions (the static step): a 1024-row cache (8 ranges allowed at 128 keys a range), rows at 159 (one
        // range) and at the last row (8).
        yield return new("rope+append+attention 7B decode at positions (one launch = two)",
            (r, t) => [.. Inputs(r, t, Qwen7B, 2, 1024), Tensor.FromArray(new long[] { 159, 1023 }, 2)], x => Run(x, Qwen7B, past: 0, positions: x[3], mma: false));
        // Tensor cores: 1921 keys seen, 30 ranges of 128 keys on a 132-SM GPU, the new key the first of range 15.
        yield return new("rope+append+attention, tensor cores (one launch = two)",
            (r, t) => Inputs(r, t, Qwen7B, 1, 2000), x => Run(x, Qwen7B, past: 1920, positions: null, mma: true), Only: [DType.BF16]);
        // Two new tokens a row, 8 query heads a kv head (a full 16-row tile), head dim 64: 1153 keys, the new keys the
        // last of one range and the first of the next.
        var gqa8 = new Shape(16, 2, 64, 2);
        yield return new("rope+append+attention, tensor cores, T2 GQA8 D64 (one launch = two)",
            (r, t) => Inputs(r, t, gqa8, 2, 1200), x => Run(x, gqa8, past: 1151, positions: null, mma: true), Only: [DType.BF16]);
        // Device positions on a 2048-row cache: rows at 1920 and at the last row.
        yield return new("rope+append+attention at positions, tensor cores (one launch = two)",
            (r, t) => [.. Inputs(r, t, Qwen7B, 2, 2048), Tensor.FromArray(new long[] { 1920, 2047 }, 2)],
            x => Run(x, Qwen7B, past: 0, positions: x[3], mma: true), Only: [DType.BF16]);
    }

    /// <summary>The packed projection [B, T, (H + 2·Hkv)·D] and the K and V caches [B, Hkv, capacity, D].</summary>
    private static Tensor[] Inputs(Random r, DType t, Shape s, int b, int capacity) =>
        [Normal(r, t, b, s.T, (s.Heads + 2 * s.KvHeads) * s.D), Normal(r, t, b, s.KvHeads, capacity, s.D), Normal(r, t, b, s.KvHeads, capacity, s.D)];

    /// <summary>
    /// The step, and on a GPU the checks: the fused path forced on (<see cref="CudaBackend.DecodeRopeFused"/>) with the
    /// tensor-core decode kernel forced on (<paramref name="mma"/>: <see cref="CudaBackend.DecodeMma"/>, threshold 1 key)
    /// or off (the FMA fused kernel, whatever PARROT_DECODE_MMA says), the kernel the row names must have run (its
    /// launch counter moved: otherwise the row would compare the two launches with themselves), then the two launches
    /// (<see cref="CudaBackend.DecodeRopeFused"/> off) must give the same bits.
    /// </summary>
    private static Tensor Run(Tensor[] x, Shape s, int past, Tensor? positions, bool mma, int? decodeMinKeys = null)
    {
        using var scope = TensorScope.Begin();
        if (x[0].Backend is not CudaBackend cuda)
        {
            var (oc, kcc, vcc) = Step(x, s, past, positions);
            return scope.Keep(Flat(oc, kcc, vcc));
        }
        (bool fused, bool was, int minKeys, int decodeKeys) = (cuda.DecodeRopeFused, cuda.DecodeMma, cuda.DecodeMmaMinKeys, cuda.DecodeMinKeys);
        try
        {
            (cuda.DecodeRopeFused, cuda.DecodeMma, cuda.DecodeMmaMinKeys, cuda.DecodeMinKeys) = (true, mma, mma ? 1 : minKeys, decodeMinKeys ?? decodeKeys);
            long Launches() => mma ? cuda.RopeAttendMmaLaunches : cuda.RopeAttendLaunches;
            long before = Launches();
            var (o, kc, vc) = Step(x, s, past, positions);
            if (Launches() == before)
                throw new InvalidOperationException($"rope+append+attention: {(mma ? "attention_decode_mma_rope_d" + s.D : "attention_decode_rope_*")} did not run " +
                    "(PARROT_DECODE_ATTENTION=0, cuDNN attention required, or the operands not eligible)");
            cuda.DecodeRopeFused = false;
            var (o2, kc2, vc2) = Step(x, s, past, positions);
            Same(o, o2, "the output");
            Same(kc, kc2, "the K cache");
            Same(vc, vc2, "the V cache");
            return scope.Keep(Flat(o, kc, vc));
        }
        finally { (cuda.DecodeRopeFused, cuda.DecodeMma, cuda.DecodeMmaMinKeys, cuda.DecodeMinKeys) = (fused, was, minKeys, decodeKeys); }
    }

    private static Tensor Flat(Tensor o, Tensor kc, Tensor vc) => Tensor.Concat(0, o.Contiguous().Reshape(-1), kc.Reshape(-1), vc.Reshape(-1));

    /// <summary>One step into copies of the caches: the output [B, H, T, D] and the caches after it.</summary>
    private static (Tensor O, Tensor K, Tensor V) Step(Tensor[] x, Shape s, int past, Tensor? positions)
    {
        int b = x[0].Shape[0], D = s.D, T = s.T;
        Tensor Heads_(int start, int heads) => x[0].Narrow(2, start * D, heads * D).Reshape(b, T, heads, D).Transpose(1, 2);
        var (q, k, v) = (Heads_(0, s.Heads), Heads_(s.Heads, s.KvHeads), Heads_(s.Heads + s.KvHeads, s.KvHeads));
        var kc = x[1].Clone();
        var vc = x[2].Clone();
        if (positions is null)
        {
            var (cos, sin) = Tensor.RopeTables(past, T, D, Theta, x[0].Device);
            return (Tensor.RopeAppendAttend(q, k, v, cos, sin, kc.Narrow(2, 0, past + T), vc.Narrow(2, 0, past + T), causal: true), kc, vc);
        }
        var (wc, ws) = Tensor.RopeTables(0, kc.Shape[2], D, Theta, x[0].Device);
        return (Tensor.RopeAppendAttendAt(q, k, v, wc, ws, positions, kc, vc), kc, vc);
    }

    private static void Same(Tensor a, Tensor b, string what)
    {
        var (x, y) = (a.ToFloatArray(), b.ToFloatArray());
        for (int i = 0; i < x.Length; i++)
            if (BitConverter.SingleToInt32Bits(x[i]) != BitConverter.SingleToInt32Bits(y[i]))
                throw new InvalidOperationException($"rope+append+attention in one launch: {what} differs from the two launches' at element {i}: {x[i]:R} vs {y[i]:R}");
    }
}
