using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// Attention through cuDNN's fused SDPA (CudaBackend.Cudnn.cs), in bfloat16 only (cuDNN's engines take bf16/f16):
/// the device run forces the cuDNN path (<see cref="CudaBackend.CudnnAttentionRequired"/>), so a GPU whose cuDNN is
/// missing, too old or refuses the graph reports the row MISSING with cuDNN's reason instead of passing on our
/// kernels. The references (CPU in bf16 and float64) are the same as for the other attention rows.
/// </summary>
internal static class SelfTestCudnnCases
{
    internal static IEnumerable<SelfTestCase> All()
    {
        DType[] bf16 = [DType.BF16];
        // Grouped heads, causal from offset 0, 100 rows and keys (ragged against any 64- or 128-row tile).
        yield return new("attention fwd (cuDNN SDPA)", (r, t) => [Normal(r, t, 2, 4, 100, 64), Normal(r, t, 2, 2, 100, 64), Normal(r, t, 2, 2, 100, 64)],
            x => OnCudnn(x, () =>
            {
                using var scope = TensorScope.Begin();
                var o = Tensor.ScaledDotProductAttention(x[0], x[1], x[2], out var lse, causal: true);
                return scope.Keep(Tensor.Concat(0, o.Contiguous().Reshape((int)o.Count), lse.To(x[0].DType).Reshape((int)lse.Count)));
            }), Only: bf16);
        // A chunk of 64 queries after 128 cached keys: cuDNN's bottom-right causal mask.
        yield return new("attention fwd (cuDNN SDPA, offset)", (r, t) => [Normal(r, t, 1, 4, 64, 128), Normal(r, t, 1, 4, 192, 128), Normal(r, t, 1, 4, 192, 128)],
            x => OnCudnn(x, () => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, queryOffset: 128)), Only: bf16);
        // Forward and backward, head dim 128, grouped heads: o, dq, dk and dv in one vector.
        yield return new("attention fwd+bwd (cuDNN SDPA)",
            (r, t) => [Normal(r, t, 1, 4, 128, 128), Normal(r, t, 1, 2, 128, 128), Normal(r, t, 1, 2, 128, 128), Normal(r, t, 1, 4, 128, 128)],
            x => OnCudnn(x, () =>
            {
                using var scope = TensorScope.Begin();
                var o = Tensor.ScaledDotProductAttention(x[0], x[1], x[2], out var lse, causal: true);
                double scale = 1 / Math.Sqrt(x[0].Shape[3]);
                var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(x[0], x[1], x[2], o, lse, x[3], null, true, 0, scale);
                return scope.Keep(Tensor.Concat(0, o.Reshape((int)o.Count), dq!.Reshape((int)dq.Count), dk!.Reshape((int)dk.Count), dv!.Reshape((int)dv.Count)));
            }), Only: bf16);
        // The deterministic backward (the default, CudaBackend.CudnnDeterministic): two runs on the same inputs give the
        // same bits; o, dq, dk, dv against the references like the row above (see DeterministicTwice). More keys than 4×
        // the head dim: the dS workspace checked there (B·H·T·S bytes at least) then exceeds a float32 dQ buffer
        // (B·H·T·D·4 bytes) that an engine adding into dQ internally would ask for instead.
        yield return new("attention fwd+bwd (cuDNN SDPA, deterministic): two runs = same bits, vs float64",
            (r, t) => [Normal(r, t, 2, 8, 512, 64), Normal(r, t, 2, 2, 512, 64), Normal(r, t, 2, 2, 512, 64), Normal(r, t, 2, 8, 512, 64)],
            x => OnCudnn(x, () => DeterministicTwice(x), deterministic: true), Only: bf16);
        // cuDNN against our tensor-core kernels at the benchmark's shapes, GPU to GPU (see CudnnEqualsOurs).
        yield return new("cuDNN SDPA = ours B2 H16 T2048 D128", (r, t) => [Tensor.Zeros([1])], x => CudnnEqualsOurs(x, 2, 16, 16, 2048, 128), Only: bf16);
        yield return new("cuDNN SDPA = ours B1 H14 Hkv2 T512 D64", (r, t) => [Tensor.Zeros([1])], x => CudnnEqualsOurs(x, 1, 14, 2, 512, 64), Only: bf16);
    }

    /// <summary>
    /// Causal attention forward and backward, returning o, dq, dk and dv in one vector for the references. On a GPU (on
    /// cuDNN's deterministic backward, forced by the row) it throws unless the plan that ran is the graph without the dQ
    /// accumulator and its workspace holds dS (<see cref="DpWorkspaceShortfall"/>: which engine cuDNN picked), then runs
    /// the backward twice from the same o and log-sum-exp and throws when the two runs' dq, dk or dv differ in any bit;
    /// there it also runs the atomic graph
    /// (<see cref="CudaBackend.CudnnDeterministic"/> off) twice, and fails when its gradients are further than the bf16
    /// tolerance from the deterministic ones, and prints to stderr how many of its values changed between its own two
    /// runs ("selftest cuDNN SDPA deterministic ..."), for the next run's decision on the default.
    /// </summary>
    private static Tensor DeterministicTwice(Tensor[] x)
    {
        using var scope = TensorScope.Begin();
        var o = Tensor.ScaledDotProductAttention(x[0], x[1], x[2], out var lse, causal: true);
        double scale = 1 / Math.Sqrt(x[0].Shape[3]);
        Tensor[] Backward()
        {
            var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(x[0], x[1], x[2], o, lse, x[3], null, true, 0, scale);
            return [dq!, dk!, dv!];
        }
        string[] names = ["dq", "dk", "dv"];
        var first = Backward();
        // The references (CPU, bf16 and float64) run once: the contract checked is cuDNN's.
        if (x[0].Device.Kind == DeviceKind.Cuda && Backends.For(x[0].Device) is CudaBackend cuda)
        {
            if (cuda.CudnnAttentionBackward != CudnnSdpaBackward.Deterministic)
                throw new InvalidOperationException($"the backward did not run on cuDNN's deterministic graph ({cuda.CudnnAttentionPlan})");
            if (DpWorkspaceShortfall(cuda.CudnnAttentionWorkspaceBytes, x[0].Shape[0], x[0].Shape[1], x[0].Shape[2], x[1].Shape[2]) is string shortfall)
                throw new InvalidOperationException($"{shortfall} ({cuda.CudnnAttentionPlan})");
            var second = Backward();
            var changed = Enumerable.Range(0, 3).Select(i => ChangedValues(first[i], second[i])).ToArray();
            if (changed.Any(n => n > 0))
                throw new InvalidOperationException($"deterministic backward ({cuda.CudnnAttentionPlan}), two runs on the same inputs: " +
                    string.Join(", ", Enumerable.Range(0, 3).Select(i => $"{names[i]} {changed[i]} of {first[i].Count} values differ")));
            CompareAtomic(cuda, Backward, first, names);
        }
        return scope.Keep(Tensor.Concat(0, [o.Reshape((int)o.Count), .. first.Select(g => g.Reshape((int)g.Count))]));
    }

    /// <summary>The atomic graph's gradients twice, against the deterministic <paramref name="reference"/> (see <see cref="DeterministicTwice"/>).</summary>
    private static void CompareAtomic(CudaBackend cuda, Func<Tensor[]> backward, Tensor[] reference, string[] names)
    {
        bool was = cuda.CudnnDeterministic;
        Tensor[] a, b;
        cuda.CudnnDeterministic = false;
        try { (a, b) = (backward(), backward()); }
        catch (NotSupportedException e)
        {
            Console.Error.WriteLine($"selftest cuDNN SDPA deterministic ({cuda.CudnnAttentionPlan}): atomic graph not run: {e.Message.Split('\n')[0]}");
            return;
        }
        finally { cuda.CudnnDeterministic = was; }
        var errors = Enumerable.Range(0, 3).Select(i => (What: $"atomic {names[i]} vs deterministic", Error: Rel(a[i], reference[i]))).ToArray();
        string all = string.Join(", ", errors.Select(e => $"{e.What} {e.Error:G3}")) + "; atomic run to run: " +
                     string.Join(", ", Enumerable.Range(0, 3).Select(i => $"{names[i]} {ChangedValues(a[i], b[i])} of {a[i].Count} values differ"));
        Console.Error.WriteLine($"selftest cuDNN SDPA deterministic: {all}");
        if (errors.Any(e => !(e.Error <= SelfTestRunner.Bf16Tolerance))) throw new InvalidOperationException($"over {SelfTestRunner.Bf16Tolerance:G3}: {all}");
    }

    /// <summary>
    /// Why a deterministic backward plan's <paramref name="workspaceBytes"/> show that cuDNN did not pick its "dP
    /// workspace" algorithm for [B, H, T] queries over S keys, or null. That engine keeps dS (16-bit) for every query
    /// and key: b·h·s_q·s_kv·2 bytes by the frontend's estimate; half of that is the floor here, for an engine that skips
    /// the blocks above a causal diagonal (more than half remain at any T). The atomic engine asked for 256 bytes on the
    /// H200. Below the floor, two runs with the same bits at these shapes prove little: the atomic path repeated its
    /// bits at small batches where it was found to differ at large ones (karpathy/llm.c #652).
    /// </summary>
    internal static string? DpWorkspaceShortfall(long workspaceBytes, int B, int H, int T, int S)
    {
        long floor = (long)B * H * T * S;
        return workspaceBytes >= floor ? null
            : $"the deterministic graph's engine asked for a workspace of {workspaceBytes} B, under the {floor} B (half of dS for every query and key) " +
              "that cuDNN's dP-workspace algorithm keeps: not the engine this path is built for";
    }

    /// <summary>How many values of two tensors of one shape differ in any bit (read back as float64: exact for bf16, f32 and f64).</summary>
    private static long ChangedValues(Tensor a, Tensor b)
    {
        double[] x = a.ToDoubleArray(), y = b.ToDoubleArray();
        if (x.Length != y.Length) throw new InvalidOperationException($"shapes differ: {x.Length} and {y.Length} values");
        long n = 0;
        for (int i = 0; i < x.Length; i++) if (BitConverter.DoubleToInt64Bits(x[i]) != BitConverter.DoubleToInt64Bits(y[i])) n++;
        return n;
    }

    /// <summary>
    /// On a GPU: bf16 causal attention [B, H, T, D] over Hkv kv heads with seeded N(0, 1) inputs made on the device, run
    /// by cuDNN (forced: the bench's forward without the log-sum-exp, the forward with it, and the deterministic backward
    /// from that, twice: its workspace must hold dS (<see cref="DpWorkspaceShortfall"/>) and the two runs must agree in
    /// every bit; then the atomic backward twice, its run-to-run changes printed: how much the bit check could see at
    /// this shape) and by our kernels (cuDNN off: the
    /// 128-row forward, dq and dK/dV); each output of one against the other's by ‖a − b‖ / ‖b‖ (o, o without stats,
    /// lse, dq, dk, dv, and the atomic dq, dk, dv), and both against float64 on sampled rows (o, lse and dq of query rows
    /// 0, 1, T/3 and T − 1 of one head, dk and dv of keys 0, T/3 and T − 1 of one kv head, summed over its query heads).
    /// Returns the worst error ([1]); throws naming every error when one exceeds the bf16 tolerance, so a cuDNN graph that
    /// computes something else at this shape (the bench's 444 TFLOP/s forward) fails here. Elsewhere (the CPU and
    /// float64 references) [0]: the shapes are too large for the CPU references, and the row's point is cuDNN.
    /// </summary>
    private static Tensor CudnnEqualsOurs(Tensor[] x, int B, int H, int Hkv, int T, int D)
    {
        if (x[0].Device.Kind != DeviceKind.Cuda || Backends.For(x[0].Device) is not CudaBackend cuda) return Tensor.Zeros([1]);
        var dev = x[0].Device;
        double scale = 1 / Math.Sqrt(D);
        using var scope = TensorScope.Begin();
        var q = Tensor.Normal([B, H, T, D], 21, 0, 1, DType.BF16, dev);
        var k = Tensor.Normal([B, Hkv, T, D], 22, 0, 1, DType.BF16, dev);
        var v = Tensor.Normal([B, Hkv, T, D], 23, 0, 1, DType.BF16, dev);
        var dO = Tensor.Normal([B, H, T, D], 24, 0, 1, DType.BF16, dev);
        (Tensor O, Tensor Lse, Tensor Dq, Tensor Dk, Tensor Dv) Run()
        {
            var o = Tensor.Empty([B, H, T, D], DType.BF16, dev);
            var lse = Tensor.Empty([B, H, T], DType.F32, dev);
            var dq = Tensor.Empty([B, H, T, D], DType.BF16, dev);
            var dk = Tensor.Empty([B, Hkv, T, D], DType.BF16, dev);
            var dv = Tensor.Empty([B, Hkv, T, D], DType.BF16, dev);
            cuda.Attention(q, k, v, null, true, 0, scale, o, lse);
            cuda.AttentionBackward(q, k, v, o, dO, lse, null, true, 0, scale, dq, dk, dv);
            return (o, lse, dq, dk, dv);
        }
        var was = (cuda.CudnnAttention, cuda.CudnnAttentionRequired, cuda.CudnnDeterministic);
        (Tensor O, Tensor Lse, Tensor Dq, Tensor Dk, Tensor Dv) cu, repeat, atomic, atomicRepeat, ours;
        var oNoStats = Tensor.Empty([B, H, T, D], DType.BF16, dev);
        string plan;
        long workspace;
        try
        {
            (cuda.CudnnAttention, cuda.CudnnAttentionRequired, cuda.CudnnDeterministic) = (true, true, true);
            cuda.Attention(q, k, v, null, true, 0, scale, oNoStats, null); // the bench's "attention fwd cuDNN" call
            cu = Run();
            (plan, workspace) = (cuda.CudnnAttentionPlan ?? "", cuda.CudnnAttentionWorkspaceBytes);
            repeat = Run();
            cuda.CudnnDeterministic = false;
            atomic = Run();
            atomicRepeat = Run();
            (cuda.CudnnAttention, cuda.CudnnAttentionRequired) = (false, false);
            ours = Run();
        }
        finally { (cuda.CudnnAttention, cuda.CudnnAttentionRequired, cuda.CudnnDeterministic) = was; }
        if (DpWorkspaceShortfall(workspace, B, H, T, T) is string shortfall) throw new InvalidOperationException($"{shortfall} ({plan})");
        long changed = ChangedValues(cu.Dq, repeat.Dq) + ChangedValues(cu.Dk, repeat.Dk) + ChangedValues(cu.Dv, repeat.Dv);
        if (changed > 0)
            throw new InvalidOperationException($"cuDNN's deterministic backward ({plan}), two runs on the same inputs: {changed} values of dq, dk, dv differ");
        // How much the check above could see at this shape: the atomic graph's own run-to-run changes (0 means two equal
        // runs of the deterministic graph proved nothing beyond the workspace evidence).
        long atomicChanged = ChangedValues(atomic.Dq, atomicRepeat.Dq) + ChangedValues(atomic.Dk, atomicRepeat.Dk) + ChangedValues(atomic.Dv, atomicRepeat.Dv);
        var errors = new List<(string What, double Error)>
        {
            ("o", Rel(cu.O, ours.O)), ("o without stats", Rel(oNoStats, ours.O)), ("lse", Rel(cu.Lse, ours.Lse)),
            ("dq", Rel(cu.Dq, ours.Dq)), ("dk", Rel(cu.Dk, ours.Dk)), ("dv", Rel(cu.Dv, ours.Dv)),
            ("atomic dq", Rel(atomic.Dq, ours.Dq)), ("atomic dk", Rel(atomic.Dk, ours.Dk)), ("atomic dv", Rel(atomic.Dv, ours.Dv)),
        };
        var reference = new SampledAttention(q.ToFloatArray(), k.ToFloatArray(), v.ToFloatArray(), dO.ToFloatArray(), B, H, Hkv, T, D, scale);
        foreach (var (name, r) in new[] { ("cuDNN", cu), ("ours", ours) })
            foreach (var (what, e) in reference.Errors(r.O.ToFloatArray(), r.Lse.ToFloatArray(), r.Dq.ToFloatArray(), r.Dk.ToFloatArray(), r.Dv.ToFloatArray()))
                errors.Add(($"{name} {what} vs float64", e));
        errors.Add(("cuDNN o without stats vs float64", reference.Errors(oNoStats.ToFloatArray(), cu.Lse.ToFloatArray(), cu.Dq.ToFloatArray(), cu.Dk.ToFloatArray(), cu.Dv.ToFloatArray())[0].Error));
        string all = string.Join(", ", errors.Select(e => $"{e.What} {e.Error:G3}"));
        Console.Error.WriteLine($"selftest cuDNN SDPA = ours B{B} H{H} Hkv{Hkv} T{T} D{D} ({plan}; deterministic twice: same bits; " +
                                $"atomic twice: {atomicChanged} of {cu.Dq.Count + cu.Dk.Count + cu.Dv.Count} dq/dk/dv values differ): {all}");
        double worst = errors.Max(e => double.IsNaN(e.Error) ? double.PositiveInfinity : e.Error);
        if (worst > SelfTestRunner.Bf16Tolerance) throw new InvalidOperationException($"over {SelfTestRunner.Bf16Tolerance:G3}: {all}");
        return scope.Keep(Tensor.FromArray([worst], [1]));
    }

    /// <summary>‖a − b‖ / ‖b‖ over two device tensors of the same shape (read back as float32, summed in float64).</summary>
    private static double Rel(Tensor a, Tensor b) => SelfTestRunner.Error(Array.ConvertAll(a.ToFloatArray(), f => (double)f), Array.ConvertAll(b.ToFloatArray(), f => (double)f));

    /// <summary>
    /// Runs <paramref name="op"/> with the cuDNN path forced when the inputs are on a GPU (as they are for the device
    /// run), and with the deterministic backward when <paramref name="deterministic"/> (else the backend's setting).
    /// </summary>
    private static Tensor OnCudnn(Tensor[] x, Func<Tensor> op, bool deterministic = false)
    {
        if (x[0].Device.Kind != DeviceKind.Cuda || Backends.For(x[0].Device) is not CudaBackend cuda) return op();
        var was = (cuda.CudnnAttentionRequired, cuda.CudnnDeterministic);
        (cuda.CudnnAttentionRequired, cuda.CudnnDeterministic) = (true, deterministic || was.CudnnDeterministic);
        try { return op(); }
        finally { (cuda.CudnnAttentionRequired, cuda.CudnnDeterministic) = was; }
    }
}
