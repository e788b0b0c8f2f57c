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
/// and caches) is then checked against the CPU (the ops in sequence) and float64, as every row.
/// </summary>
internal static class SelfTestRopeAttendCases
{
    private const int Heads = 28, KvHeads = 4, D = 128;
    private const double Theta = 1_000_000.0; // Qwen2's

    internal static IEnumerable<SelfTestCase> All()
    {
        // 160 keys seen: 5 ranges of 32 on a 132-SM GPU, the new key in the last; a cache of 200 rows.
        yield return new("rope+append+attention 7B decode (one launch = two)", (r, t) => Inputs(r, t, 1, 200), x => Run(x, past: 159, positions: null));
        // Device positions (the static step): a 1024-row cache (32 ranges allowed), rows at 159 and at the last row.
        yield return new("rope+append+attention 7B decode at positions (one launch = two)",
            (r, t) => [.. Inputs(r, t, 2, 1024), Tensor.FromArray(new long[] { 159, 1023 }, 2)], x => Run(x, past: 0, positions: x[3]));
    }

    /// <summary>The packed projection [B, 1, (H + 2·Hkv)·D] and the K and V caches [B, Hkv, capacity, D].</summary>
    private static Tensor[] Inputs(Random r, DType t, int b, int capacity) =>
        [Normal(r, t, b, 1, (Heads + 2 * KvHeads) * D), Normal(r, t, b, KvHeads, capacity, D), Normal(r, t, b, KvHeads, capacity, D)];

    private static Tensor Run(Tensor[] x, int past, Tensor? positions)
    {
        using var scope = TensorScope.Begin();
        var (o, kc, vc) = Step(x, past, positions);
        if (x[0].Backend is CudaBackend cuda)
        {
            bool fused = cuda.DecodeRopeFused;
            cuda.DecodeRopeFused = false;
            try
            {
                var (o2, kc2, vc2) = Step(x, past, positions);
                Same(o, o2, "the output");
                Same(kc, kc2, "the K cache");
                Same(vc, vc2, "the V cache");
            }
            finally { cuda.DecodeRopeFused = fused; }
        }
        return scope.Keep(Tensor.Concat(0, o.Contiguous().Reshape(-1), kc.Reshape(-1), vc.Reshape(-1)));
    }

    /// <summary>One step into copies of the caches: the output [B, H, 1, D] and the caches after it.</summary>
    private static (Tensor O, Tensor K, Tensor V) Step(Tensor[] x, int past, Tensor? positions)
    {
        int b = x[0].Shape[0];
        Tensor Heads_(int start, int heads) => x[0].Narrow(2, start * D, heads * D).Reshape(b, 1, heads, D).Transpose(1, 2);
        var (q, k, v) = (Heads_(0, Heads), Heads_(Heads, KvHeads), Heads_(Heads + KvHeads, KvHeads));
        var kc = x[1].Clone();
        var vc = x[2].Clone();
        if (positions is null)
        {
            var (cos, sin) = Tensor.RopeTables(past, 1, D, Theta, x[0].Device);
            return (Tensor.RopeAppendAttend(q, k, v, cos, sin, kc.Narrow(2, 0, past + 1), vc.Narrow(2, 0, past + 1), causal: true), kc, vc);
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
