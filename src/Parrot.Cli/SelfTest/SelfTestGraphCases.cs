using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// CUDA graphs (<see cref="CudaBackend.Capture"/>): on a GPU the case records a step once and replays it; elsewhere
/// (the CPU and the float64 reference) it runs the step eagerly the same number of times, so the comparison says
/// whether a replay computes what the eager ops compute — on inputs changed after the capture, and on state the
/// step itself feeds back.
/// </summary>
internal static class SelfTestGraphCases
{
    internal static IEnumerable<SelfTestCase> All()
    {
        // x0, x1: [16, 64] inputs; x2: w [64, 64] (scaled so silu sees its bend); x3: a table [64, 64] gathered by ids.
        static Tensor[] Inputs(Random r, DType t) =>
            [Normal(r, t, 16, 64), Normal(r, t, 16, 64), Scaled(Normal(r, t, 64, 64), 0.125), Normal(r, t, 64, 64)];
        yield return new("cuda graph replay = eager (fed-back step)", Inputs, ReplayedSteps);
        yield return new("cuda graph refuses a host copy (named)", Inputs, RefusesHostCopy);
        // x0, x1: [1, 4, 64, 64] states (queries); x2, x3: keys and values [1, 2, 64, 64].
        static Tensor[] AttentionInputs(Random r, DType t) =>
            [Normal(r, t, 1, 4, 64, 64), Normal(r, t, 1, 4, 64, 64), Normal(r, t, 1, 2, 64, 64), Normal(r, t, 1, 2, 64, 64)];
        yield return new("cuda graph replay = eager (cuDNN attention)", AttentionInputs, ReplayedCudnnAttention, Only: [DType.BF16]);
        // Three sets of 3 rows of 40,000 logits: the GPU splits each row over chunks in one launch (the last chunk of a
        // row merges it, found by a ticket that must be back at 0 for the next replay).
        static Tensor[] PickInputs(Random r, DType t) => [Normal(r, t, 3, 40000), Normal(r, t, 3, 40000), Normal(r, t, 3, 40000)];
        yield return new("cuda graph replay = eager (split argmax)", PickInputs, ReplayedSplitArgMax, Exact: true);
    }

    /// <summary>
    /// ids ← argmax (NaN lowest) of a logits buffer: captured once on a GPU (after an eager run on x0), then replayed on
    /// x1, x2 and x0 copied into the buffer; the three results, concatenated, against the same picks computed eagerly
    /// elsewhere. A ticket left nonzero by a launch would let the wrong block merge a row in the next replay.
    /// </summary>
    private static Tensor ReplayedSplitArgMax(Tensor[] x)
    {
        using var logits = x[0].Clone();
        using var ids = Tensor.Zeros([x[0].Dim(0)], DType.I64, x[0].Device);
        void Step()
        {
            using var picked = logits.ArgMaxNaNLowest(1);
            ids.CopyFrom(picked);
        }
        var results = new List<Tensor>();
        try
        {
            Step();
            var cuda = x[0].Backend as CudaBackend;
            using var graph = cuda?.Capture(Step);
            foreach (var input in new[] { x[1], x[2], x[0] })
            {
                logits.CopyFrom(input);
                if (graph is null) Step();
                else graph.Replay();
                results.Add(ids.To(DType.F64));
            }
            return Tensor.Concat(0, [.. results]);
        }
        finally
        {
            foreach (var t in results) t.Dispose();
        }
    }

    /// <summary>
    /// state ← attention(state, k, v) + state (causal, grouped heads): on a GPU with cuDNN's attention required, so the
    /// eager step builds the cuDNN plan and the capture records its execution (no plan is built while recording); then
    /// the state is overwritten with x1 and the graph replayed twice, and the result must equal, bit for bit, two eager
    /// steps from x1 (throws otherwise). MISSING where cuDNN cannot run. Elsewhere the same steps eagerly.
    /// </summary>
    private static Tensor ReplayedCudnnAttention(Tensor[] x)
    {
        var state = x[0].Clone();
        void Step()
        {
            using var o = Tensor.ScaledDotProductAttention(state, x[2], x[3], causal: true);
            using var next = o + state;
            state.CopyFrom(next);
        }
        if (x[0].Backend is not CudaBackend cuda)
        {
            Step();
            state.CopyFrom(x[1]);
            Step();
            Step();
            return state;
        }
        bool was = cuda.CudnnAttentionRequired;
        cuda.CudnnAttentionRequired = true;
        try
        {
            Step();
            using (var graph = cuda.Capture(Step))
            {
                state.CopyFrom(x[1]);
                graph.Replay();
                graph.Replay();
            }
            using var replayed = state.Clone();
            state.CopyFrom(x[1]);
            Step();
            Step();
            if (!replayed.ToFloatArray().AsSpan().SequenceEqual(state.ToFloatArray()))
                throw new InvalidOperationException("the replayed cuDNN attention steps differ from the eager ones");
            return state;
        }
        finally { cuda.CudnnAttentionRequired = was; }
    }

    private static Tensor Scaled(Tensor t, double factor)
    {
        using (t) return t * factor;
    }

    /// <summary>
    /// state ← silu(state·w) + state + table[argmax(x0, −1)]: a product, elementwise ops, an argmax and an embedding (a
    /// deferred index check on the GPU), written back into the state tensor (the ids come from the fixed input x0, so
    /// a near tie rounded differently by another device's product cannot pick another row). One eager step (kernels
    /// compile, memory is allocated), then the state is overwritten with x1 and two more steps: replays on a GPU.
    /// </summary>
    private static Tensor ReplayedSteps(Tensor[] x)
    {
        var state = x[0].Clone();
        void Step()
        {
            using var h = Tensor.MatMul(state, x[2]);
            using var s = h.Map(UnaryOp.Silu);
            using var ids = x[0].ArgMax(-1);
            using var rows = Tensor.Embedding(x[3], ids);
            using var sum = s + state;
            using var next = sum + rows;
            state.CopyFrom(next);
        }
        Step();
        if (x[0].Backend is not CudaBackend cuda)
        {
            state.CopyFrom(x[1]);
            Step();
            Step();
            return state;
        }
        using var graph = cuda.Capture(Step);
        if (graph.Nodes < 6) throw new InvalidOperationException($"the captured step has {graph.Nodes} nodes; expected at least the 6 ops");
        state.CopyFrom(x[1]); // after the capture, before the replays: the graph reads the state's contents
        graph.Replay();
        graph.Replay();
        return state;
    }

    /// <summary>
    /// On a GPU: a step that reads a value to the host cannot be captured; the capture ends with an error that says so,
    /// frees what it reserved, and the device computes on. Returns x0·2 + x1 computed afterwards (on every device).
    /// </summary>
    private static Tensor RefusesHostCopy(Tensor[] x)
    {
        if (x[0].Backend is CudaBackend cuda)
        {
            try
            {
                using var g = cuda.Capture(() => { using var y = x[0] * 2.0; _ = y.ToDoubleArray(); });
                throw new InvalidOperationException("a step that copies to the host was captured without an error");
            }
            catch (InvalidOperationException e) when (e.Message.Contains("during a CUDA graph capture", StringComparison.Ordinal)) { }
            if (cuda.IsCapturing) throw new InvalidOperationException("the failed capture left the device capturing");
        }
        using var twice = x[0] * 2.0;
        return twice + x[1];
    }
}
