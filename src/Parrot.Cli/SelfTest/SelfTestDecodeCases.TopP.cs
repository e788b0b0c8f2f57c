using Parrot.Parrot.Inference;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// "top-p sampling from device candidates + row sum = full row": top-p without top-k from each row's top logits plus
/// the row's max and Σ exp computed on the device in float64 (<see cref="TopKCandidates.ReadRows"/>,
/// <see cref="TokenSampler.CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int, RowSum)"/>; docs/cuda.md "Top-p
/// sampling from device candidates and a row sum"). Whole generations of both sessions (temperatures 0.3/1, top-p
/// 0.5/0.9, penalty 1/1.05) against the whole-row path; then 151,936-long peaked rows with 400 seen ids over three
/// steps against the sampler given each whole row, where the device's sum must bracket the host's (its exp and its
/// reduction order inside the documented bound) and some rows must be decided by their candidates.
/// </summary>
internal static partial class SelfTestDecodeCases
{
    private static Tensor TopPCandidatesSameAsFullRow(Tensor[] p)
    {
        var flags = new List<double>();
        var (model, prompts) = Setup(p);
        using (model)
        {
            var options = from temperature in new[] { 0.3, 1 }
                          from topP in new[] { 0.5, 0.9 }
                          from penalty in new[] { 1, 1.05 }
                          select new GenerationOptions { MaxNewTokens = Steps + 1, Temperature = temperature, TopP = topP, RepetitionPenalty = penalty, Seed = 5, IgnoreEos = true };
            GenerationsSameAsWholeRows(model, prompts, options, "top-p sampling", "the candidates", lm => new Generator(lm, endOfSequenceIds: []) { TopPCandidates = Math.Max(1, lm.VocabSize / 8) }, flags);
        }
        using (TensorScope.Begin()) TopPVocabularyRows(p[0], flags);
        return Tensor.FromArray(flags.ToArray(), flags.Count);
    }

    /// <summary>
    /// Whole generations of both sessions (eager, static step) for each of <paramref name="options"/>: the generator
    /// <paramref name="reduced"/> makes (reading less than the whole row: <paramref name="source"/>) against one that
    /// reads every row whole, the same tokens for every prompt, else it throws naming <paramref name="what"/>; a flag each.
    /// </summary>
    private static void GenerationsSameAsWholeRows(Qwen2ForCausalLM model, int[][] prompts, IEnumerable<GenerationOptions> options, string what, string source,
        Func<IAutoregressiveModel, Generator> reduced, List<double> flags)
    {
        var inputs = prompts.Select(x => new GenerationPrompt(x)).ToArray();
        foreach (bool staticStep in new[] { false, true })
            foreach (var o in options)
            {
                var want = new Generator(Generator.LogitsOnly(Wrap(model, staticStep)), endOfSequenceIds: []).Generate(inputs, o);
                var got = reduced(Wrap(model, staticStep)).Generate(inputs, o);
                for (int r = 0; r < inputs.Length; r++)
                {
                    if (!got[r].Tokens.SequenceEqual(want[r].Tokens))
                        throw new InvalidOperationException($"{what} ({(staticStep ? "static step" : "eager")}, {o}), row {r}: from {source} [{string.Join(", ", got[r].Tokens)}], from the rows [{string.Join(", ", want[r].Tokens)}]");
                    flags.Add(1);
                }
            }
    }

    /// <summary>n rows of <paramref name="vocab"/> N(0, 2²) logits with 8 hot ids each (+8 … +15), like a language model's.</summary>
    private static float[] PeakedRows(Random r, int n, int vocab)
    {
        var data = new float[n * vocab];
        for (int i = 0; i < data.Length; i++)
            data[i] = (float)(2 * Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble()));
        for (int row = 0; row < n; row++)
            for (int h = 0; h < 8; h++) data[row * vocab + r.Next(vocab)] += 8 + h;
        return data;
    }

    private static void TopPVocabularyRows(Tensor like, List<double> flags)
    {
        const int vocab = 151936, n = 3;
        var r = new Random(29);
        var data = PeakedRows(r, n, vocab);
        var rows = Tensor.FromArray(data, n, vocab).To(like.DType, like.Device);
        var whole = rows.ToFloatArray();
        var prompts = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, 400).Select(_ => r.Next(vocab)).ToArray()).ToArray();
        int decided = 0;
        foreach (double penalty in new[] { 1, 1.05 })
        foreach (double temperature in new[] { 0.7, 1 })
        foreach (double topP in new[] { 0.8, 0.95 })
        {
            var options = new GenerationOptions { Temperature = temperature, TopP = topP, RepetitionPenalty = penalty, Seed = 3 };
            var samplers = prompts.Select(x => new TokenSampler(options, vocab, x)).ToArray();
            var references = prompts.Select(x => new TokenSampler(options, vocab, x)).ToArray();
            int count = TopKCandidates.Count(options, vocab);
            var asks = samplers.Select(s => CandidateAsk.For(count, s, options)).ToArray();
            try
            {
                for (int step = 0; step < 3; step++)
                {
                    var read = TopKCandidates.Read(rows, asks);
                    for (int row = 0; row < n; row++)
                    {
                        var full = whole.AsSpan(row * vocab, vocab).ToArray();
                        if (samplers[row].LastTopPInterval is var (lo, hi))
                        {
                            double s = HostRowSum(full, options, samplers[row].SeenIds);
                            if (!(s >= lo && s <= hi)) throw new InvalidOperationException($"top-p sampling, vocabulary row {row}, step {step}, {options}: the whole row's sum {s:R} outside the device's interval [{lo:R}, {hi:R}]");
                        }
                        if (read[row].Logits is null) decided++;
                        int want = Outcome(() => references[row].Next(full));
                        int got = Outcome(() => samplers[row].Next(read[row]));
                        if (got != want) throw new InvalidOperationException($"top-p sampling, vocabulary row {row}, step {step}, {options}: {got} from the candidates, {want} from the row");
                        flags.Add(1);
                    }
                }
            }
            finally
            {
                foreach (var a in asks) a.Seen?.Dispose();
            }
        }
        if (decided == 0) throw new InvalidOperationException("top-p sampling: no vocabulary row was decided by its candidates and the row sum");
    }

    /// <summary>The whole-row sampler's sum: Σ exp(l_i − max) in index order, l the penalised logits ÷ T.</summary>
    private static double HostRowSum(float[] row, GenerationOptions options, IReadOnlyList<int> seenIds)
    {
        var seen = seenIds.ToHashSet();
        var l = new double[row.Length];
        for (int i = 0; i < row.Length; i++)
        {
            double x = row[i];
            if (options.RepetitionPenalty != 1 && seen.Contains(i)) x = x < 0 ? x * options.RepetitionPenalty : x / options.RepetitionPenalty;
            l[i] = x / options.Temperature;
        }
        double max = l.Max(), sum = 0;
        foreach (double x in l) sum += Math.Exp(x - max);
        return sum;
    }
}
