using Parrot.Parrot.Inference;
using Parrot.Tensors;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// "temperature sampling from device chunk sums = full row": plain temperature sampling (no top-k, no top-p) from each
/// row's chunk sums of exp(x ÷ T − max) computed on the device in float64 and the raw logits of one chunk
/// (<see cref="TopKCandidates.ReadRows"/>, TokenSampler.Temperature.cs; docs/cuda.md "Temperature sampling from device
/// chunk sums"). Whole generations of both sessions (T 0.3/1/2; a penalty reads whole rows) against the whole-row path;
/// then 151,936-long peaked rows over three steps against the sampler given each whole row, where every chunk's interval
/// from the device's sums must hold the host's sum of that chunk (its exp and reduction order inside the documented
/// bound) and nearly every row must be decided without its whole row.
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
        int decided = 0, asked = 0;
        foreach (double temperature in new[] { 0.3, 0.7, 1, 1.5 })
        {
            var options = new GenerationOptions { Temperature = temperature, Seed = 3 };
            var samplers = Enumerable.Range(0, n).Select(_ => new TokenSampler(options, vocab, [])).ToArray();
            var references = Enumerable.Range(0, n).Select(_ => new TokenSampler(options, vocab, [])).ToArray();
            var asks = samplers.Select(s => CandidateAsk.For(TopKCandidates.Count(options, vocab), s, options)).ToArray();
            for (int step = 0; step < 3; step++)
            {
                var read = TopKCandidates.Read(rows, asks);
                for (int row = 0; row < n; row++)
                {
                    var full = whole.AsSpan(row * vocab, vocab).ToArray();
                    asked++;
                    if (read[row].Chunk is { } chunk)
                    {
                        decided++;
                        CheckChunkIntervals(samplers[row], chunk.Sums, full, temperature, $"vocabulary row {row}, step {step}, T {temperature}");
                    }
                    int want = Outcome(() => references[row].Next(full));
                    int got = Outcome(() => samplers[row].Next(read[row]));
                    if (got != want) throw new InvalidOperationException($"temperature sampling, vocabulary row {row}, step {step}, T {temperature}: {got} from the chunk sums, {want} from the row");
                    flags.Add(1);
                }
            }
        }
        if (decided < asked * 9 / 10) throw new InvalidOperationException($"temperature sampling: only {decided} of {asked} vocabulary rows decided by their chunk sums");
    }

    /// <summary>Every chunk's host sum Σ exp(x ÷ T − max) (index order, its own rounding ≤ 1.01·n·u either way) meets the interval the device's sums give.</summary>
    private static void CheckChunkIntervals(TokenSampler sampler, ChunkSums sums, float[] full, double temperature, string what)
    {
        if (sampler.ChunkIntervals(sums) is not var (lo, hi)) throw new InvalidOperationException($"temperature sampling, {what}: a decided row's sums were refused");
        double max = full.Max() / temperature;
        for (int j = 0; j < lo.Length; j++)
        {
            int start = j * sums.Size, len = sums.Length(j, full.Length);
            double s = 0;
            for (int i = start; i < start + len; i++) s += Math.Exp(full[i] / temperature - max);
            double slack = 1.01 * len / (1UL << 53);
            if (!(s * (1 + slack) >= lo[j] && s * (1 - slack) <= hi[j]))
                throw new InvalidOperationException($"temperature sampling, {what}: chunk {j}'s host sum {s:R} outside the device's interval [{lo[j]:R}, {hi[j]:R}]");
        }
    }
}
