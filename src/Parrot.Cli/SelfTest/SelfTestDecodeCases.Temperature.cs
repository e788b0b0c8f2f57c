using Parrot.Parrot.Inference;
using Parrot.Tensors;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// "temperature sampling from device chunk sums = full row": plain temperature sampling (no top-k, no top-p) from each
/// row's chunk sums of exp(x ÷ T − max) computed on the device in float64 and the raw logits of one chunk
/// (<see cref="TopKCandidates.ReadRows"/>, TokenSampler.Temperature.cs; docs/cuda.md "Temperature sampling from device
/// chunk sums"). Whole generations of both sessions (T 0.3/1/2, penalty 1 and 1.05) against the whole-row path;
/// then 151,936-long peaked rows over three steps against the sampler given each whole row — without a penalty, and
/// with penalties 1.05 and 1.3 over 400 random seen ids and each row's 4 hottest (the sums then of the penalised row: the
/// seen ids' logits read, penalised on the host, written back on the device) — where every chunk's interval from the
/// device's sums must hold the host's sum of that chunk of the row the sampler samples from (its exp and reduction order
/// inside the documented bound) and nearly every row, penalised or not, must be decided without its whole row.
/// </summary>
internal static partial class SelfTestDecodeCases
{
    private static Tensor TemperatureChunksSameAsFullRow(Tensor[] p)
    {
        var flags = new List<double>();
        var (model, prompts) = Setup(p);
        using (model)
        {
            var options = from temperature in new[] { 0.3, 1, 2 }
                          from penalty in new[] { 1, 1.05 }
                          select new GenerationOptions { MaxNewTokens = Steps + 1, Temperature = temperature, RepetitionPenalty = penalty, Seed = 7, IgnoreEos = true };
            GenerationsSameAsWholeRows(model, prompts, options, "temperature sampling", "the chunk sums", lm => new Generator(lm, endOfSequenceIds: []) { TemperatureChunk = Math.Max(1, lm.VocabSize / 8) }, flags);
        }
        using (TensorScope.Begin()) TemperatureVocabularyRows(p[0], flags);
        return Tensor.FromArray(flags.ToArray(), flags.Count);
    }

    private static void TemperatureVocabularyRows(Tensor like, List<double> flags)
    {
        const int vocab = 151936, n = 3;
        var r = new Random(31);
        var data = PeakedRows(r, n, vocab);
        var rows = Tensor.FromArray(data, n, vocab).To(like.DType, like.Device);
        var whole = rows.ToFloatArray();
        // Seen ids for the penalised passes: 400 random ones and the row's 4 hottest (the penalty moves its maximum).
        var seen = Enumerable.Range(0, n).Select(row =>
        {
            var full = whole.AsSpan(row * vocab, vocab).ToArray();
            var hot = Enumerable.Range(0, vocab).OrderByDescending(i => full[i]).Take(4);
            return Enumerable.Range(0, 400).Select(_ => r.Next(vocab)).Concat(hot).ToArray();
        }).ToArray();
        foreach (double penalty in new[] { 1, 1.05, 1.3 })
        {
            int decided = 0, asked = 0;
            foreach (double temperature in new[] { 0.3, 0.7, 1, 1.5 })
            {
                var options = new GenerationOptions { Temperature = temperature, Seed = 3, RepetitionPenalty = penalty };
                int[] Prompt(int row) => penalty == 1 ? [] : seen[row];
                var samplers = Enumerable.Range(0, n).Select(row => new TokenSampler(options, vocab, Prompt(row))).ToArray();
                var references = Enumerable.Range(0, n).Select(row => new TokenSampler(options, vocab, Prompt(row))).ToArray();
                var asks = samplers.Select(s => CandidateAsk.For(TopKCandidates.Count(options, vocab), s, options)).ToArray();
                try
                {
                    for (int step = 0; step < 3; step++)
                    {
                        var read = TopKCandidates.Read(rows, asks);
                        for (int row = 0; row < n; row++)
                        {
                            var full = whole.AsSpan(row * vocab, vocab).ToArray();
                            string what = $"vocabulary row {row}, step {step}, T {temperature}, penalty {penalty}";
                            asked++;
                            if (read[row].Chunk is { } chunk)
                            {
                                decided++;
                                if (chunk.Sums.Seen != (penalty == 1 ? 0 : samplers[row].SeenIds.Count))
                                    throw new InvalidOperationException($"temperature sampling, {what}: sums of {chunk.Sums.Seen} penalised ids, {samplers[row].SeenIds.Count} seen");
                                CheckChunkIntervals(samplers[row], chunk.Sums, full, temperature, what);
                            }
                            int want = Outcome(() => references[row].Next(full));
                            int got = Outcome(() => samplers[row].Next(read[row]));
                            if (got != want) throw new InvalidOperationException($"temperature sampling, {what}: {got} from the chunk sums, {want} from the row");
                            flags.Add(1);
                        }
                    }
                }
                finally
                {
                    foreach (var a in asks) a.Seen?.Dispose();
                }
            }
            if (decided < asked * 9 / 10) throw new InvalidOperationException($"temperature sampling, penalty {penalty}: only {decided} of {asked} vocabulary rows decided by their chunk sums");
        }
    }

    /// <summary>
    /// Every chunk's host sum Σ exp(x ÷ T − max) (index order, its own rounding ≤ 1.01·n·u either way) meets the interval
    /// the device's sums give; x the logits as the sampler takes them (penalised where seen).
    /// </summary>
    private static void CheckChunkIntervals(TokenSampler sampler, ChunkSums sums, float[] full, double temperature, string what)
    {
        if (sampler.ChunkIntervals(sums) is not var (lo, hi)) throw new InvalidOperationException($"temperature sampling, {what}: a decided row's sums were refused");
        var x = new double[full.Length];
        for (int i = 0; i < x.Length; i++) x[i] = sampler.Penalised(full[i], i);
        double max = x.Max() / temperature;
        for (int j = 0; j < lo.Length; j++)
        {
            int start = j * sums.Size, len = sums.Length(j, full.Length);
            double s = 0;
            for (int i = start; i < start + len; i++) s += Math.Exp(x[i] / temperature - max);
            double slack = 1.01 * len / (1UL << 53);
            if (!(s * (1 + slack) >= lo[j] && s * (1 - slack) <= hi[j]))
                throw new InvalidOperationException($"temperature sampling, {what}: chunk {j}'s host sum {s:R} outside the device's interval [{lo[j]:R}, {hi[j]:R}]");
        }
    }
}
