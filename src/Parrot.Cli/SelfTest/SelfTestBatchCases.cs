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
/// captured) against the eager batch: the same events.
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
        return Same(got, want, "greedy on the device", "every pick on the host");
    }

    private static Tensor SlotsSameAsEager(Tensor[] p)
    {
        using var model = global::Parrot.Parrot.ParrotModel.Load(DemoAssets.Locate(null).Lm,
            new global::Parrot.Parrot.ParrotModelOptions { Device = p[0].Device, DType = p[0].DType });
        var want = Run(model, hostPicksOnly: false, Mode.Eager, longAnswer: true, out _);
        var got = Run(model, hostPicksOnly: false, Mode.Static, longAnswer: true, out var path);
        if (p[0].Device.Kind == DeviceKind.Cuda && Backends.For(p[0].Device) is global::Parrot.Tensors.Cuda.CudaBackend && !path.Contains("CUDA graph", StringComparison.Ordinal))
            throw new InvalidOperationException($"continuous batch: the static step with slots ran without a CUDA graph on a GPU ({path})");
        return Same(got, want, $"the static step with slots ({path})", "the eager batch");
    }

    /// <summary>Throws at the first event where <paramref name="got"/> differs from <paramref name="want"/>; else one 1 per event.</summary>
    private static Tensor Same(List<string> got, List<string> want, string gotName, string wantName)
    {
        for (int i = 0; i < Math.Max(want.Count, got.Count); i++)
            if (i >= want.Count || i >= got.Count || got[i] != want[i])
                throw new InvalidOperationException($"continuous batch: event {i}: {gotName} gave '{(i < got.Count ? got[i] : "nothing")}', {wantName} '{(i < want.Count ? want[i] : "nothing")}'");
        return Tensor.FromArray(got.Select(_ => 1.0).ToArray(), got.Count);
    }

    /// <summary>
    /// The batch's events as lines; <paramref name="path"/>: how its steps ran at the end
    /// (<see cref="global::Parrot.Parrot.Inference.ContinuousBatch.DecodePath"/>).
    /// </summary>
    private static List<string> Run(global::Parrot.Parrot.ParrotModel model, bool hostPicksOnly, Mode mode, bool longAnswer, out string path)
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
        if (longAnswer) cases = [.. cases, ("a long answer", greedy, 300, 4, -1)];
        using var batch = model.StartContinuousBatch(mode);
        batch.HostPicksOnly = hostPicksOnly;
        var sequences = new global::Parrot.Parrot.Inference.BatchSequence?[cases.Length];
        var lines = new List<string>();
        path = batch.DecodePath;
        for (int step = 0; step < 400 && (step <= cases.Max(c => c.JoinAt) || batch.Count > 0); step++)
        {
            for (int i = 0; i < cases.Length; i++)
            {
                var c = cases[i];
                if (c.JoinAt == step)
                    sequences[i] = batch.Join([new global::Parrot.Parrot.Text.ChatTurn(global::Parrot.Parrot.Text.ChatRole.User, c.Question)], null, c.Options, c.Max);
                if (c.RemoveAt == step) batch.Remove(sequences[i]!);
            }
            foreach (var e in batch.Step()) lines.Add($"step {step}: sequence {Array.IndexOf(sequences, e.Sequence)} token {e.Token} '{e.Text}' {e.Finished}");
            if (batch.Count > 0) path = batch.DecodePath;
        }
        return lines;
    }
}
