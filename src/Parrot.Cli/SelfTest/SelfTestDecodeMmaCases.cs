using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// The tensor-core decode attention (native/attention_decode_mma.cu; <see cref="CudaBackend.DecodeMma"/>, off by
/// default), forced on for each row (<see cref="CudaBackend.DecodeMma"/> on, threshold 1 key) so that the next GPU run
/// proves it whatever the environment says. Every row's result is checked against the CPU and float64 as usual; on a
/// GPU the rows also compare it with the FMA decode kernel (the switch off) and throw where an element differs by more
/// than one bf16 ulp (the emulation's bound: tools/cuda-emu/decode_mma_test.cpp), and the device-position rows with the
/// eager launch per row (the same bits) and with a CUDA graph's replay (the same bits, the tickets back at 0).
/// Elsewhere (CPU, float64) the rows are the plain ops.
/// </summary>
internal static class SelfTestDecodeMmaCases
{
    internal static IEnumerable<SelfTestCase> All()
    {
        // Qwen2-7B's group (7 query heads a kv head, one 16-row tile) over 4096 keys: 64 ranges of 64 keys on 132 SMs.
        yield return new("attention decode, tensor cores, T1 GQA7 D128 S4096 = FMA kernel",
            (r, t) => [Normal(r, t, 1, 28, 1, 128), Normal(r, t, 1, 4, 4096, 128), Normal(r, t, 1, 4, 4096, 128)],
            x => NearFma(x[0], () => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, queryOffset: 4095)), Only: [DType.BF16]);
        // Head dim 64, 8 heads a kv head × 2 rows (one full tile), rows 2 keys apart inside the cache, the log-sum-exp.
        yield return new("attention decode, tensor cores, T2 GQA8 D64 S1500 lse = FMA kernel",
            (r, t) => [Normal(r, t, 2, 16, 2, 64), Normal(r, t, 2, 2, 1500, 64), Normal(r, t, 2, 2, 1500, 64)],
            x => NearFma(x[0], () =>
            {
                using var scope = TensorScope.Begin();
                var o = Tensor.ScaledDotProductAttention(x[0], x[1], x[2], out var lse, causal: true, queryOffset: 1200);
                return scope.Keep(Tensor.Concat(0, o.Contiguous().Reshape((int)o.Count), lse.To(x[0].DType).Reshape((int)lse.Count)));
            }), Only: [DType.BF16]);
        // The static step's kernel: a 2048-key cache, rows at 159, 1999 and 2047 (different range counts) against the
        // eager launch over each row's own keys (bits), then captured in a CUDA graph and replayed (bits).
        yield return new("attention at positions, tensor cores = eager and graph replay",
            (r, t) => [Normal(r, t, 3, 28, 1, 128), Normal(r, t, 3, 4, 2048, 128), Normal(r, t, 3, 4, 2048, 128), Tensor.FromArray(new long[] { 159, 1999, 2047 }, 3)],
            AtPositions, Only: [DType.BF16]);
    }

    /// <summary>Runs <paramref name="run"/> with the tensor-core kernel forced on (threshold 1 key) on a CUDA device.</summary>
    private static T WithMma<T>(Tensor on, bool mma, Func<T> run)
    {
        if (on.Backend is not CudaBackend cuda) return run();
        (bool was, int minKeys) = (cuda.DecodeMma, cuda.DecodeMmaMinKeys);
        cuda.DecodeMma = mma;
        cuda.DecodeMmaMinKeys = 1;
        try { return run(); }
        finally { (cuda.DecodeMma, cuda.DecodeMmaMinKeys) = (was, minKeys); }
    }

    /// <summary>
    /// The result with the tensor-core kernel; on a GPU also with the FMA kernel, and a throw where the two differ by
    /// more than one bf16 ulp of the larger magnitude (floored at 2^-6, as the emulation test judges).
    /// </summary>
    private static Tensor NearFma(Tensor on, Func<Tensor> run)
    {
        var o = WithMma(on, true, run);
        if (on.Backend is not CudaBackend) return o;
        using var fma = WithMma(on, false, run);
        float[] a = o.ToFloatArray(), b = fma.ToFloatArray();
        for (int i = 0; i < a.Length; i++)
        {
            double m = Math.Max(Math.Max(Math.Abs(a[i]), Math.Abs(b[i])), 1.0 / 64), ulp = Math.ScaleB(1, Math.ILogB(m) - 7);
            bool bothNaN = float.IsNaN(a[i]) && float.IsNaN(b[i]);
            if (!bothNaN && !(Math.Abs(a[i] - b[i]) <= ulp))
            {
                o.Dispose();
                throw new InvalidOperationException($"decode attention on tensor cores: element {i} is {a[i]}, the FMA kernel's {b[i]} (more than one bf16 ulp apart)");
            }
        }
        return o;
    }

    /// <summary>
    /// <see cref="Tensor.AttentionAt"/> with the tensor-core kernel against the eager attention over each row's keys
    /// (also the tensor-core kernel: same ranges, same bits) and, on a GPU, against a CUDA graph's replay of the call.
    /// </summary>
    private static Tensor AtPositions(Tensor[] x) => WithMma(x[0], true, () =>
    {
        using var scope = TensorScope.Begin();
        var o = Tensor.AttentionAt(x[0], x[1], x[2], x[3]);
        SelfTestCases.SameAsEagerPerRow(x, o, "AttentionAt on tensor cores");
        if (x[0].Backend is CudaBackend cuda)
        {
            var replayed = Tensor.Empty(o.Shape.ToArray(), o.DType, o.Device);
            void Step()
            {
                using var r = Tensor.AttentionAt(x[0], x[1], x[2], x[3]);
                replayed.CopyFrom(r);
            }
            Step(); // compiled, tickets and scratch sized, before the capture
            using var graph = cuda.Capture(Step);
            for (int i = 0; i < 2; i++)
            {
                replayed.Fill(0);
                graph.Replay();
                if (!replayed.ToFloatArray().AsSpan().SequenceEqual(o.ToFloatArray()))
                    throw new InvalidOperationException($"AttentionAt on tensor cores: replay {i} of the CUDA graph differs from the eager call");
            }
        }
        return scope.Keep(o);
    });
}
