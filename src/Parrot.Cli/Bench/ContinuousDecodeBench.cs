using System.Diagnostics;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;

namespace Parrot.Cli;

/// <summary>
/// `bench decoder --shape … --continuous N [--static|--cuda-graph]`: the decode step of `serve`'s continuous batch for N
/// greedy sequences (prompts of different lengths, each prefilled alone, its first token picked on the device), timed
/// per step of all N: eager (<c>KvCacheModel.StepRows</c>, each row its own cache: what the batch runs where the static
/// step does not) or, with --static/--cuda-graph, the static step with slots (<c>KvCacheModel.StaticSlots</c>: one graph
/// replay a step on a GPU), the ids read back each step in both.
/// </summary>
internal static class ContinuousDecodeBench
{
    /// <summary>
    /// Prefills the N sequences (row r's prompt: <paramref name="ids"/> without its last r ids, at least one) and runs
    /// <paramref name="tokens"/> steps; each step's time (the step and the ids read) goes to <paramref name="times"/>
    /// and <paramref name="queued"/>, row 0's token to <paramref name="generated"/>. Returns the prefills' ms;
    /// <paramref name="graphNodes"/>: the captured graph's operations (0 when eager or without a graph).
    /// </summary>
    internal static double Decode(Qwen2ForCausalLM model, long[] ids, int tokens, int sequences, bool useStatic, List<double> times, List<double> queued,
        List<int> generated, out int graphNodes)
    {
        if (sequences < 1) throw new CliException($"--continuous must be at least 1, got {sequences}");
        var mode = useStatic ? DecodeStepMode.Static : DecodeStepMode.Eager;
        var lm = (KvCacheModel)Generator.Wrap(model, mode);
        using var slots = useStatic ? new KvCacheModel.StaticSlots(lm, model.Config.MaxPositionEmbeddings, mode) : null;
        var caches = new List<KvCache>();
        var slotOf = new int[sequences];
        var next = new int[sequences];
        var greedy = Enumerable.Repeat(true, sequences).ToArray();
        try
        {
            var sw = Stopwatch.StartNew();
            for (int r = 0; r < sequences; r++)
            {
                var prompt = new GenerationPrompt(ids.Take(Math.Max(1, ids.Length - r)).Select(i => (int)i).ToArray());
                using (var id = lm.PrefillRowGreedy(prompt, _ => tokens + 1, out var cache, out int length))
                {
                    next[r] = KvCacheModel.ReadIds(id)[0];
                    Generator.CheckPick(next[r], null, 1, r, sequences); // −1 (no number) is refused, never fed on
                    if (slots is null) { caches.Add(cache); continue; }
                    using (cache)
                    {
                        slotOf[r] = slots.Reserve(length + tokens + 1);
                        slots.Load(slotOf[r], cache);
                    }
                }
            }
            double prefillMs = sw.Elapsed.TotalMilliseconds;
            for (int s = 0; s < tokens; s++)
            {
                sw.Restart();
                next = slots is null ? lm.StepRows(caches, next, greedy).Ids : slots.Step(slotOf, next, greedy).Ids;
                double ms = sw.Elapsed.TotalMilliseconds;
                times.Add(ms);
                queued.Add(ms);
                for (int r = 0; r < sequences; r++) Generator.CheckPick(next[r], null, s + 2, r, sequences);
                generated.Add(next[0]);
            }
            graphNodes = slots?.GraphNodes ?? 0;
            return prefillMs;
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
        }
    }
}
