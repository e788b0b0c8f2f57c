using Parrot.Cli.Demo;
using Parrot.Tensors;
using Mode = Parrot.Parrot.Inference.DecodeStepMode;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// "continuous batch, greedy on the device = host picks": the continuous batch that `serve` runs, over the demo's tiny
/// LM (assets/tiny/lm) on the chosen device, with greedy sequences (their argmax taken on the device, ids read back),
/// sampled and penalised ones (picked on the host; the top-k 40 one and the penalised greedy one from their device
/// candidates, <c>TopKCandidates</c> — the penalised one with its seen ids' logits —, the vocabulary of 2,048 being large
/// enough; the others from their logits) joining at different steps and one removed,
/// against the same batch with every pick on the host from the whole logits (<c>HostPicksOnly</c>): every event's sequence,
/// token, text and finish reason must be the same, else the case throws (a failure naming the event).
/// "continuous batch, static slots = eager": the same batch (plus an answer longer than 256 tokens, so the slots' C
/// grows) through the static step with slots (forced; on a GPU replayed from a CUDA graph, which must have been
/// captured) against the eager batch: the same events; on a GPU, where the slots' products see M = S rows and the eager
/// batch's the live count (docs/cuda.md, static slots, "Bits"), a first difference may be a near tie that one independent
/// eager forward confirms (<see cref="BatchEventsCompare"/>; named on stderr) — for the sampled sequence a near tie of its
/// draw (the boundary between two adjacent tokens, or the top-k/top-p cut) —, exact equality everywhere else.
/// </summary>
internal static class SelfTestBatchCases
{
    internal static IEnumerable<SelfTestCase> All()
    {
        // It needs the demo's tiny LM (assets/tiny in the repository): where `parrot selftest` runs outside the
        // repository the case is left out rather than failed — the installation check is about the backend.
        if (!DemoAssetsFound()) yield break;
        // The input only carries the device and dtype the model is loaded in.
        yield return new("continuous batch, greedy on the device = host picks", (_, t) => [Tensor.Zeros([1], t)], GreedySameAsHost, Exact: true);
        yield return new("continuous batch, static slots = eager", (_, t) => [Tensor.Zeros([1], t)], SlotsSameAsEager, Exact: true);
    }

    private static bool DemoAssetsFound()
    {
        try { DemoAssets.Locate(null); return true; }
        catch (CliException) { return false; }
    }

    private static Tensor GreedySameAsHost(Tensor[] p)
    {
        using var model = global::Parrot.Parrot.ParrotModel.Load(DemoAssets.Locate(null).Lm,
            new global::Parrot.Parrot.ParrotModelOptions { Device = p[0].Device, DType = p[0].DType });
        var want = Run(model, hostPicksOnly: true, Mode.Auto, longAnswer: false, out _);
        var got = Run(model, hostPicksOnly: false, Mode.Auto, longAnswer: false, out _);
        return Same(got, want, "greedy on the device", "every pick on the host", nearTie: null);
    }

    private static Tensor SlotsSameAsEager(Tensor[] p)
    {
        using var model = global::Parrot.Parrot.ParrotModel.Load(DemoAssets.Locate(null).Lm,
            new global::Parrot.Parrot.ParrotModelOptions { Device = p[0].Device, DType = p[0].DType });
        var want = Run(model, hostPicksOnly: false, Mode.Eager, longAnswer: true, out _);
        var got = Run(model, hostPicksOnly: false, Mode.Static, longAnswer: true, out var path);
        if (p[0].Device.Kind == DeviceKind.Cuda && Backends.For(p[0].Device) is global::Parrot.Tensors.Cuda.CudaBackend && !path.Contains("CUDA graph", StringComparison.Ordinal))
            throw new InvalidOperationException($"continuous batch: the static step with slots ran without a CUDA graph on a GPU ({path})");
        // Only our CUDA backend's products may depend on M (the gemv kernel for M ≤ 4, cuBLASLt's algorithm above); the CPU
        // and the test device compute every row alike, so there a flip is a bug.
        // The sampled sequence ("two blue squares") is judged by its draw (the sampler's distribution of the judge's
        // logits and the step's draw of its seed), the others by their logits.
        var nearTie = Backends.For(p[0].Device) is global::Parrot.Tensors.Cuda.CudaBackend ? NearTiePolicy.For(p[0].DType == DType.BF16, Judge(model), JudgeOptions) : null;
        return Same(got, want, $"the static step with slots ({path})", "the eager batch", nearTie);
    }

    /// <summary>
    /// Throws where <see cref="BatchEventsCompare.Compare"/> fails; else one 1 per event of <paramref name="want"/> (the
    /// runner checks the count against the CPU's run), the events after a near tie included: they are not compared.
    /// </summary>
    private static Tensor Same(List<BatchLine> got, List<BatchLine> want, string gotName, string wantName, NearTiePolicy? nearTie)
    {
        var verdict = BatchEventsCompare.Compare(got, want, gotName, wantName, nearTie);
        if (!verdict.Pass) throw new InvalidOperationException(verdict.Message);
        if (verdict.Message.Length > 0) Console.Error.WriteLine($"selftest {verdict.Message}");
        return Tensor.FromArray(want.Select(_ => 1.0).ToArray(), want.Count);
    }

    /// <summary>
    /// The near-tie judge of the long-answer batch: sequence i's logits after its first tokens, one eager forward of
    /// <paramref name="model"/>; a sampled sequence's at temperature 0 (its penalised logits, which the judge then samples
    /// with <see cref="JudgeOptions"/>: a forward gives logits, not a draw).
    /// </summary>
    internal static PrefixLogits Judge(global::Parrot.Parrot.ParrotModel model) => (sequence, generated) =>
    {
        var c = Cases(longAnswer: true)[sequence];
        return model.NextTokenLogits(Conversation(c.Question), null, c.Options with { Temperature = 0 }, generated);
    };

    /// <summary>The long-answer batch's sequence i's options (the judge samples the sampled ones' logits with them).</summary>
    internal static global::Parrot.Parrot.Inference.GenerationOptions JudgeOptions(int sequence) => Cases(longAnswer: true)[sequence].Options;

    private static global::Parrot.Parrot.Text.ChatTurn[] Conversation(string question) =>
        [new global::Parrot.Parrot.Text.ChatTurn(global::Parrot.Parrot.Text.ChatRole.User, question)];

    /// <summary>The batch's sequences: question, options, max new tokens, the step it joins at and the one it is removed at (−1: none).</summary>
    private static (string Question, global::Parrot.Parrot.Inference.GenerationOptions Options, int Max, int JoinAt, int RemoveAt)[] Cases(bool longAnswer)
    {
        var greedy = new global::Parrot.Parrot.Inference.GenerationOptions { IgnoreEos = true };
        var cases = new (string Question, global::Parrot.Parrot.Inference.GenerationOptions Options, int Max, int JoinAt, int RemoveAt)[]
        {
            ("a red circle", greedy, 12, 0, -1),
            ("two blue squares", greedy with { Temperature = 0.9, TopP = 0.95, TopK = 40, Seed = 7 }, 9, 0, -1),
            ("a green star", greedy with { RepetitionPenalty = 1.3 }, 8, 2, -1),
            ("what is left?", greedy, 30, 1, 5),
            ("one yellow triangle", greedy with { TopK = 3 }, 7, 3, -1),
            ("late", greedy, 5, 6, -1),
        };
        return longAnswer ? [.. cases, ("a long answer", greedy, 300, 4, -1)] : cases;
    }

    /// <summary>
    /// The batch's events as lines; <paramref name="path"/>: how its steps ran at the end
    /// (<see cref="global::Parrot.Parrot.Inference.ContinuousBatch.DecodePath"/>).
    /// </summary>
    internal static List<BatchLine> Run(global::Parrot.Parrot.ParrotModel model, bool hostPicksOnly, Mode mode, bool longAnswer, out string path)
    {
        var cases = Cases(longAnswer);
        using var batch = model.StartContinuousBatch(mode);
        batch.HostPicksOnly = hostPicksOnly;
        var sequences = new global::Parrot.Parrot.Inference.BatchSequence?[cases.Length];
        var lines = new List<BatchLine>();
        path = batch.DecodePath;
        for (int step = 0; step < 400 && (step <= cases.Max(c => c.JoinAt) || batch.Count > 0); step++)
        {
            for (int i = 0; i < cases.Length; i++)
            {
                var c = cases[i];
                if (c.JoinAt == step)
                    sequences[i] = batch.Join(Conversation(c.Question), null, c.Options, c.Max);
                if (c.RemoveAt == step) batch.Remove(sequences[i]!);
            }
            foreach (var e in batch.Step()) lines.Add(new BatchLine(step, Array.IndexOf(sequences, e.Sequence), e.Token, e.Text, e.Finished?.ToString() ?? ""));
            if (batch.Count > 0) path = batch.DecodePath;
        }
        return lines;
    }
}
