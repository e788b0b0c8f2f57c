using Parrot.Autograd;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// The graph-ready decode step (<see cref="Qwen2StaticDecoder"/>: ids, positions and RoPE rows on the device, the
/// argmax written back there) on the chosen device, for a tiny Qwen2 and a batch of two prompts of different lengths:
/// <list type="bullet">
/// <item>"static decode step = eager decode": six greedy steps each way on the same device; every step and row, the
/// static step's token must equal the eager KV-cache decode's (the generator's session) and their logits must be the
/// same bits, else the case throws (a failure naming the step and row). Exact: on a GPU too, since a cache this short gives the decode kernel one key split either way
/// (tools/cuda-emu shows the device-position kernels equal the host-position ones at equal splits).</item>
/// <item>"static decode step logits (forced ids)": the static step's logits over six steps fed fixed ids (written into
/// <see cref="Qwen2StaticDecoder.Ids"/> between steps), against float64 and the CPU like every case.</item>
/// <item>"…, programmatic launches (forced ids)" and "… programmatic = plain launches": the graph replayed with
/// programmatic dependent launch on (<see cref="CudaBackend.ProgrammaticLaunches"/>; Hopper and newer, otherwise the
/// plain rows again): its logits against float64 and the CPU, and bit for bit those of plain launches.</item>
/// <item>"generate session, static step = eager session": the generator's session (what `generate`, `chat` and the API
/// run) forced onto the static step (on a CUDA device replayed from a graph from its second step) against the eager
/// session, fed the same ids: the same logits bits at the prefill and six steps. "generate, static step = eager
/// (greedy, sampled)": whole generations through <c>Generator</c>, the same tokens both ways.</item>
/// <item>"generate, greedy on the device = greedy from the logits": the greedy path of both sessions (the argmax taken on
/// the device, ids read back: <see cref="global::Parrot.Parrot.Inference.IGreedyDecodingSession"/>, what greedy
/// generate/chat/eval run) against the host's pick from the eager session's logits, step by step, and whole generations
/// through <c>Generator</c> against the same model with its sessions' greedy path hidden.</item>
/// <item>"greedy pick on the device (ties, NaN, ±∞) = host argmax": <see cref="global::Parrot.Nn.GreedyToken"/> over
/// vocabulary-long rows full of ties (the GPU splits such rows into chunks), NaNs and infinities, against a host loop
/// with the generator's rule (the lowest id on a tie, NaN below everything; −1 for a row with no number, which the
/// generator refuses).</item>
/// </list>
/// </summary>
internal static partial class SelfTestDecodeCases
{
    private const int Steps = 6;
    private static readonly int[] Lengths = [6, 3];

    private static readonly Qwen2Config TinyLm = new()
    {
        VocabSize = 96, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, RopeTheta = 10000,
    };

    internal static IEnumerable<SelfTestCase> All()
    {
        yield return new("static decode step = eager decode", Inputs, p => SameAsEager(p, graph: false), Exact: true);
        yield return new("static decode step logits (forced ids)", Inputs, p => ForcedLogits(p, graph: false));
        // The same with the step captured into a CUDA graph at its second run and replayed after (GraphedStep; on
        // other devices eager, the rows above again).
        yield return new("static decode step, CUDA graph = eager decode", Inputs, p => SameAsEager(p, graph: true), Exact: true);
        yield return new("static decode step, CUDA graph (forced ids)", Inputs, p => ForcedLogits(p, graph: true));
        // Programmatic dependent launch (the default on Hopper and newer, PARROT_PDL=0 off; elsewhere these are the rows
        // above again): the graph's kernels overlap their predecessors' tails and wait on the GPU; a missing wait would
        // read a stale x. Forced on, and against the same graph forced off.
        yield return new("static decode step, CUDA graph, programmatic launches (forced ids)", Inputs, p => Programmatic(p, () => ForcedLogits(p, graph: true)));
        yield return new("static decode step, CUDA graph, programmatic = plain launches", Inputs, ProgrammaticSameAsPlain, Exact: true);
        // The decode fusions are off by default since they were timed (PARROT_DECODE_NORM_GEMV=1, PARROT_DECODE_ROPE_FUSED=1
        // turn them on), so no row above runs them inside the model: forced on with programmatic launches, against the
        // same graph with both off and plain launches (the default before 2026-11-27 22:46 and the A/B scripts' variant).
        yield return new("static decode step, CUDA graph, fusions + programmatic = plain", Inputs, FusedProgrammaticSameAsPlain, Exact: true);
        yield return new("generate session, static step = eager session", Inputs, SessionSameAsEager, Exact: true);
        yield return new("generate, static step = eager (greedy, sampled)", Inputs, GenerateSameAsEager, Exact: true);
        yield return new("generate, greedy on the device = greedy from the logits", Inputs, GreedyOnDeviceSameAsLogits, Exact: true);
        yield return new("greedy pick on the device (ties, NaN, ±∞) = host argmax", PickInputs, GreedyPickSameAsHost, Exact: true);
        // SelfTestDecodeCases.Candidates.cs: top-k sampling from TopK's candidates read back instead of the row.
        yield return new("top-k sampling from device candidates = full row", Inputs, CandidatesSameAsFullRow, Exact: true);
        yield return new("sampling with repetition penalty from device candidates = full row", Inputs, PenaltyCandidatesSameAsFullRow, Exact: true);
        yield return new("top-p sampling from device candidates + row sum = full row", Inputs, TopPCandidatesSameAsFullRow, Exact: true);
        // SelfTestDecodeCases.Temperature.cs: plain temperature from the device's chunk sums and one chunk.
        yield return new("temperature sampling from device chunk sums = full row", Inputs, TemperatureChunksSameAsFullRow, Exact: true);
        // SelfTestDecodeCases.Escalation.cs: a second, larger TopK for rows the first candidates do not decide.
        yield return new("top-p sampling, escalated candidates = full row", Inputs, EscalatedCandidatesSameAsFullRow, Exact: true);
    }

    private static Tensor GreedyOnDeviceSameAsLogits(Tensor[] p)
    {
        var (model, prompts) = Setup(p);
        using (model)
        {
            var flags = new List<double>();
            var inputs = prompts.Select(x => new global::Parrot.Parrot.Inference.GenerationPrompt(x)).ToArray();
            foreach (bool staticStep in new[] { false, true })
            {
                string path = staticStep ? "static step" : "eager";
                using (var reference = Wrap(model, false).Start(inputs, Steps))
                using (var session = Wrap(model, staticStep).Start(inputs, Steps))
                {
                    var greedy = (global::Parrot.Parrot.Inference.IGreedyDecodingSession)session;
                    var logits = reference.Prefill();
                    var ids = greedy.PrefillGreedy();
                    for (int s = 0; ; s++)
                    {
                        for (int r = 0; r < prompts.Length; r++)
                        {
                            if (ids[r] != HostPick(logits[r]))
                                throw new InvalidOperationException($"greedy on the device ({path}): step {s}, row {r}: id {ids[r]}, the host's pick from the logits {HostPick(logits[r])}");
                            flags.Add(1);
                        }
                        if (s == Steps) break;
                        logits = reference.Step(ids);
                        ids = greedy.StepGreedy(ids);
                    }
                }
                var options = new global::Parrot.Parrot.Inference.GenerationOptions { MaxNewTokens = Steps + 1 };
                var want = new global::Parrot.Parrot.Inference.Generator(global::Parrot.Parrot.Inference.Generator.LogitsOnly(Wrap(model, staticStep)), endOfSequenceIds: []).Generate(inputs, options);
                var got = new global::Parrot.Parrot.Inference.Generator(Wrap(model, staticStep), endOfSequenceIds: []).Generate(inputs, options);
                for (int r = 0; r < prompts.Length; r++)
                {
                    if (!got[r].Tokens.SequenceEqual(want[r].Tokens))
                        throw new InvalidOperationException($"generate ({path}), row {r}: greedy on the device gave [{string.Join(", ", got[r].Tokens)}], from the logits [{string.Join(", ", want[r].Tokens)}]");
                    flags.Add(1);
                }
            }
            return Tensor.FromArray(flags.ToArray(), flags.Count);
        }
    }

    /// <summary>Rows of a vocabulary's length (151,936) with values from a small set (ties everywhere), NaN and ±∞ sprinkled in.</summary>
    private static Tensor[] PickInputs(Random r, DType t)
    {
        const int rows = 4, vocab = 151936;
        double[] set = [double.NaN, double.NegativeInfinity, -1, 0.5, 2, 2];
        var v = new double[rows * vocab];
        for (int i = 0; i < v.Length; i++) v[i] = r.Next(1000) == 0 ? set[r.Next(set.Length)] : r.NextDouble();
        for (int i = 0; i < vocab; i++) v[i] = i % 3 == 0 ? double.NaN : double.NegativeInfinity; // row 0: no number above −∞
        v[2 * vocab + 7] = double.PositiveInfinity;
        v[2 * vocab + 150000] = double.PositiveInfinity;
        using var x = Tensor.FromArray(v, rows, vocab);
        return [x.To(t)];
    }

    private static Tensor GreedyPickSameAsHost(Tensor[] p)
    {
        var x = p[0];
        int vocab = x.Dim(1);
        var got = global::Parrot.Nn.GreedyToken.Pick(x).ToLongArray();
        var values = x.ToFloatArray();
        for (int r = 0; r < got.Length; r++)
        {
            int want = HostPick(values.AsSpan(r * vocab, vocab).ToArray());
            if (got[r] != want) throw new InvalidOperationException($"greedy pick: row {r}: {got[r]} on the device, the host's argmax {want}");
        }
        return Tensor.FromArray(got.Select(i => (double)i).ToArray(), got.Length);
    }

    /// <summary>
    /// The generator's greedy rule (TokenSampler): the largest, the lowest id on a tie, NaN below every number; −1 (the
    /// device's NoNumber) where the row holds no number, which the generator refuses (Generator.CheckPick).
    /// </summary>
    private static int HostPick(float[] x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++)
            if (x[i] > x[best] || float.IsNaN(x[best]) && !float.IsNaN(x[i])) best = i;
        return x[best] > float.NegativeInfinity ? best : -1;
    }

    private static global::Parrot.Parrot.Inference.IAutoregressiveModel Wrap(Qwen2ForCausalLM model, bool staticStep) =>
        global::Parrot.Parrot.Inference.Generator.Wrap(model, staticStep ? global::Parrot.Parrot.Inference.DecodeStepMode.Static : global::Parrot.Parrot.Inference.DecodeStepMode.Eager);

    private static Tensor SessionSameAsEager(Tensor[] p)
    {
        var (model, prompts) = Setup(p);
        using (model)
        {
            var flags = new List<double>();
            var inputs = prompts.Select(x => new global::Parrot.Parrot.Inference.GenerationPrompt(x)).ToArray();
            using var eager = Wrap(model, false).Start(inputs, Steps);
            using var fast = Wrap(model, true).Start(inputs, Steps);
            var want = eager.Prefill();
            var got = fast.Prefill();
            for (int s = 0; ; s++)
            {
                for (int r = 0; r < prompts.Length; r++)
                {
                    // A mismatch throws (see SameAsEager).
                    if (!got[r].AsSpan().SequenceEqual(want[r]))
                        throw new InvalidOperationException($"generate session: step {s}, row {r}: the static step's logits differ from the eager session's");
                    flags.Add(1);
                }
                if (s == Steps) break;
                var tokens = want.Select(ArgMax).ToArray();
                want = eager.Step(tokens);
                got = fast.Step(tokens);
            }
            return Tensor.FromArray(flags.ToArray(), flags.Count);
        }
    }

    private static Tensor GenerateSameAsEager(Tensor[] p)
    {
        var (model, prompts) = Setup(p);
        using (model)
        {
            var flags = new List<double>();
            var inputs = prompts.Select(x => new global::Parrot.Parrot.Inference.GenerationPrompt(x)).ToArray();
            foreach (var options in new[]
            {
                new global::Parrot.Parrot.Inference.GenerationOptions { MaxNewTokens = Steps + 1 },
                new global::Parrot.Parrot.Inference.GenerationOptions { MaxNewTokens = Steps + 1, Temperature = 0.9, TopP = 0.95, TopK = 20, Seed = 3 },
            })
            {
                var want = new global::Parrot.Parrot.Inference.Generator(Wrap(model, false), endOfSequenceIds: []).Generate(inputs, options);
                var got = new global::Parrot.Parrot.Inference.Generator(Wrap(model, true), endOfSequenceIds: []).Generate(inputs, options);
                for (int r = 0; r < prompts.Length; r++)
                {
                    if (!got[r].Tokens.SequenceEqual(want[r].Tokens))
                        throw new InvalidOperationException($"generate ({(options.Temperature > 0 ? "sampled" : "greedy")}): row {r}: the static step gave [{string.Join(", ", got[r].Tokens)}], the eager session [{string.Join(", ", want[r].Tokens)}]");
                    flags.Add(1);
                }
            }
            return Tensor.FromArray(flags.ToArray(), flags.Count);
        }
    }

    private static Tensor[] Inputs(Random r, DType t)
    {
        List<Tensor> ps;
        using (var model = new Qwen2ForCausalLM(TinyLm, (ulong)r.NextInt64())) ps = model.Parameters().Select(v => v.Value.To(t)).ToList();
        ps.Add(Indices(r, TinyLm.VocabSize, 2, Lengths.Max())); // the prompts (row r uses its first Lengths[r] ids)
        ps.Add(Indices(r, TinyLm.VocabSize, Steps, 2));         // the forced ids
        return [.. ps];
    }

    /// <summary>The model of p's dtype on p's device, holding the parameters p[..^2]; and the two prompts.</summary>
    private static (Qwen2ForCausalLM Model, int[][] Prompts) Setup(Tensor[] p)
    {
        var model = new Qwen2ForCausalLM(TinyLm, dtype: p[0].DType, initialize: false);
        model.To(p[0].Device);
        int i = 0;
        foreach (var v in model.Parameters()) v.Value.CopyFrom(p[i++]);
        var ids = p[^2].ToLongArray();
        int width = p[^2].Dim(1);
        var prompts = Lengths.Select((n, row) => ids.Skip(row * width).Take(n).Select(x => (int)x).ToArray()).ToArray();
        return (model, prompts);
    }

    private static Tensor SameAsEager(Tensor[] p, bool graph)
    {
        var (model, prompts) = Setup(p);
        using (model)
        using (Graph.NoGrad())
        {
            int vocab = TinyLm.VocabSize;
            var flags = new List<double>();
            using var session = Wrap(model, false).Start(prompts.Select(x => new global::Parrot.Parrot.Inference.GenerationPrompt(x)).ToArray(), Steps + 1);
            using var dec = new Qwen2StaticDecoder(model, prompts.Length, Lengths.Max() + Steps + 1, keepLogits: true);
            using var step = new GraphedStep(p[0].Device, dec.Issue, graph);
            var eager = session.Prefill();
            dec.Prefill(prompts);
            for (int s = 0; ; s++)
            {
                var tokens = dec.ReadTokens();
                var logits = dec.Logits!.ToFloatArray();
                for (int r = 0; r < prompts.Length; r++)
                {
                    // A mismatch throws (the runner reports it as a failure): a bug that every device shares would
                    // otherwise compare equal to the CPU's run of this very case.
                    var want = eager[r];
                    if (tokens[r] != ArgMax(want))
                        throw new InvalidOperationException($"static decode: step {s}, row {r}: token {tokens[r]}, the eager decode's {ArgMax(want)}");
                    if (!logits.AsSpan(r * vocab, vocab).SequenceEqual(want))
                        throw new InvalidOperationException($"static decode: step {s}, row {r}: the logits differ from the eager decode's");
                    flags.Add(1);
                }
                if (s == Steps) break;
                eager = session.Step(tokens);
                dec.BeginStep();
                step.Run();
            }
            return Tensor.FromArray(flags.ToArray(), flags.Count);
        }
    }

    private static Tensor ForcedLogits(Tensor[] p, bool graph)
    {
        var (model, prompts) = Setup(p);
        using (model)
        using (Graph.NoGrad())
        {
            var forced = p[^1].ToLongArray();
            using var dec = new Qwen2StaticDecoder(model, prompts.Length, Lengths.Max() + Steps + 1, keepLogits: true);
            using var step = new GraphedStep(p[0].Device, dec.Issue, graph);
            dec.Prefill(prompts);
            var all = new List<float>(dec.Logits!.ToFloatArray());
            for (int s = 0; s < Steps; s++)
            {
                dec.Ids.CopyFrom(Tensor.FromArray(forced.Skip(2 * s).Take(2).ToArray(), 2)); // outside the step, as a caller may
                dec.BeginStep();
                step.Run();
                all.AddRange(dec.Logits!.ToFloatArray());
            }
            return Tensor.FromArray(all.Select(x => (double)x).ToArray(), all.Count);
        }
    }

    /// <summary><paramref name="run"/> with programmatic launches on (where the device supports them), then as before.</summary>
    private static Tensor Programmatic(Tensor[] p, Func<Tensor> run) => WithProgrammatic(p, true, run);

    /// <summary><paramref name="run"/> with programmatic launches <paramref name="on"/> (on: where supported), then as before.</summary>
    private static Tensor WithProgrammatic(Tensor[] p, bool on, Func<Tensor> run)
    {
        if (p[0].Backend is not CudaBackend cuda) return run();
        bool before = cuda.ProgrammaticLaunches;
        cuda.ProgrammaticLaunches = on;
        try { return run(); }
        finally { cuda.ProgrammaticLaunches = before; }
    }

    /// <summary>The forced-ids logits from a CUDA graph with programmatic launches and without: the same bits.</summary>
    private static Tensor ProgrammaticSameAsPlain(Tensor[] p)
    {
        var plain = WithProgrammatic(p, false, () => ForcedLogits(p, graph: true)).ToDoubleArray();
        var overlapped = Programmatic(p, () => ForcedLogits(p, graph: true)).ToDoubleArray();
        if (SelfTestCase.FirstBitDifference(plain, overlapped) is int i and >= 0)
            throw new InvalidOperationException($"programmatic launches: logit {i} is {overlapped[i]:R}, {plain[i]:R} with plain launches");
        return Tensor.FromArray(Enumerable.Repeat(1.0, plain.Length).ToArray(), plain.Length);
    }

    /// <summary>
    /// The forced-ids logits from a CUDA graph with the norm+gemv and RoPE+attention fusions and programmatic launches on,
    /// and with all three off: the same bits; a fused kernel must have run (else the row would compare the plain step with itself).
    /// </summary>
    private static Tensor FusedProgrammaticSameAsPlain(Tensor[] p)
    {
        if (p[0].Backend is not CudaBackend cuda)
        {
            int count = (int)ForcedLogits(p, graph: true).Count; // ones, as on a GPU, where the row throws on a difference
            return Tensor.FromArray(Enumerable.Repeat(1.0, count).ToArray(), count);
        }
        (bool norm, bool rope) = (cuda.NormGemvKernel, cuda.DecodeRopeFused);
        double[] plain, fused;
        try
        {
            (cuda.NormGemvKernel, cuda.DecodeRopeFused) = (false, false);
            plain = WithProgrammatic(p, false, () => ForcedLogits(p, graph: true)).ToDoubleArray();
            (cuda.NormGemvKernel, cuda.DecodeRopeFused) = (true, true);
            (long n0, long r0) = (cuda.NormGemvLaunches, cuda.RopeAttendLaunches);
            fused = Programmatic(p, () => ForcedLogits(p, graph: true)).ToDoubleArray();
            if (cuda.NormGemvLaunches == n0 && cuda.RopeAttendLaunches == r0)
                throw new InvalidOperationException("decode fusions: neither add_rms_norm_gemv nor attention_decode_rope ran in the step");
        }
        finally { (cuda.NormGemvKernel, cuda.DecodeRopeFused) = (norm, rope); }
        if (SelfTestCase.FirstBitDifference(plain, fused) is int i and >= 0)
            throw new InvalidOperationException($"decode fusions + programmatic launches: logit {i} is {fused[i]:R}, {plain[i]:R} unfused with plain launches");
        return Tensor.FromArray(Enumerable.Repeat(1.0, plain.Length).ToArray(), plain.Length);
    }

    private static int ArgMax(float[] x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
