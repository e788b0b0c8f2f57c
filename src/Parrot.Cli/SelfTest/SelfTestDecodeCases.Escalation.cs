using Parrot.Parrot.Inference;
using Parrot.Tensors;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// "top-p sampling, escalated candidates = full row": a row its first candidates do not decide asks the device once more
/// for its top <see cref="TopKCandidates.EscalatedCount"/> (a second TopK after the step, outside any graph) before it is
/// read whole, and top-k up to <see cref="TopKCandidates.MaxTopK"/> reads k + margin (docs/cuda.md, "Escalated
/// candidates"). Whole generations of both sessions (top-p alone at a few first candidates, then a sixth of the
/// vocabulary; on a device both sessions must sample some rows from the escalated ones) against the whole-row path; then 151,936-long rows on the device — wide nuclei (1,000–3,000 warm ids) under
/// top-p alone, ties at the top under top-k 50 and penalised greedy, top-k 2000 with top-p — against the sampler given each
/// whole row: the same picks, rows decided by the escalated candidates and top-k 2000 rows by their first ones.
/// </summary>
internal static partial class SelfTestDecodeCases
{
    private static Tensor EscalatedCandidatesSameAsFullRow(Tensor[] p)
    {
        var flags = new List<double>();
        var (model, prompts) = Setup(p);
        using (model)
        {
            var inputs = prompts.Select(x => new GenerationPrompt(x)).ToArray();
            var escalatedRows = new int[2];
            foreach (bool staticStep in new[] { false, true })
            // Low temperatures: the tiny model's rows are flat, its nucleus at T ≥ 0.3 wider than a sixth of the vocabulary
            // (no row escalated at 0.6 and 1 — the futility bound skipped them all); these put it between 4 and 16 ids.
            foreach (var (temperature, topP) in new[] { (0.1, 0.5), (0.2, 0.3) })
            foreach (double penalty in new[] { 1, 1.05 })
            {
                var options = new GenerationOptions { MaxNewTokens = Steps + 1, Temperature = temperature, TopP = topP, RepetitionPenalty = penalty, Seed = 7, IgnoreEos = true };
                var lm = Wrap(model, staticStep);
                var want = new Generator(Generator.LogitsOnly(Wrap(model, staticStep)), endOfSequenceIds: []).Generate(inputs, options);
                // A sixth of the vocabulary: the escalation still reads fewer bytes than the row with the penalty's seen ids
                // (4·count + 2·seen + 4 < vocab; at a quarter only rows with at most one seen id would escalate).
                var generator = new Generator(lm, endOfSequenceIds: []) { TopPCandidates = 4, EscalatedCandidates = Math.Max(5, lm.VocabSize / 6) };
                var got = generator.Generate(inputs, options);
                for (int r = 0; r < inputs.Length; r++)
                {
                    if (!got[r].Tokens.SequenceEqual(want[r].Tokens))
                        throw new InvalidOperationException($"escalated candidates ({(staticStep ? "static step" : "eager")}, {options}), row {r}: from the candidates [{string.Join(", ", got[r].Tokens)}], from the rows [{string.Join(", ", want[r].Tokens)}]");
                    flags.Add(1);
                }
                escalatedRows[staticStep ? 1 : 0] += generator.EscalatedRows;
            }
            // Candidates are read where they save a copy: not on the CPU. Elsewhere both sessions must have sampled rows
            // from escalated candidates (the static step's second TopK after its graph replay), or the tokens above prove
            // only the first candidates (the test device: 20–29 rows a session).
            if (p[0].Device.Kind != DeviceKind.Cpu && escalatedRows.Any(x => x == 0))
                throw new InvalidOperationException($"escalated candidates: generations sampled {escalatedRows[0]} (eager) and {escalatedRows[1]} (static step) rows from escalated candidates");
        }
        using (TensorScope.Begin()) EscalatedVocabularyRows(p[0], flags);
        return Tensor.FromArray(flags.ToArray(), flags.Count);
    }

    private static void EscalatedVocabularyRows(Tensor like, List<double> flags)
    {
        const int vocab = 151936, n = 4;
        var r = new Random(31);
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
        var data = new float[n * vocab];
        for (int i = 0; i < data.Length; i++) data[i] = (float)Gauss();
        // Rows 0 and 1: wide nuclei (1,000 and 3,000 warm ids of about equal weight); row 2: 600 ids tied at the top;
        // row 3: peaked (a few hot ids).
        for (int h = 0; h < 1000; h++) data[0 * vocab + r.Next(vocab)] = (float)(8 + 0.3 * Gauss());
        for (int h = 0; h < 3000; h++) data[1 * vocab + r.Next(vocab)] = (float)(8 + 0.3 * Gauss());
        for (int h = 0; h < 600; h++) data[2 * vocab + r.Next(vocab)] = 6;
        for (int h = 0; h < 8; h++) data[3 * vocab + r.Next(vocab)] += 8 + h;
        var rows = Tensor.FromArray(data, n, vocab).To(like.DType, like.Device);
        var whole = rows.ToFloatArray();
        var prompts = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, 40).Select(_ => r.Next(vocab)).ToArray()).ToArray();
        int escalated = 0, topK2000 = 0;
        GenerationOptions[] settings =
        [
            new() { Temperature = 1, TopP = 0.8 },
            new() { Temperature = 0.8, TopP = 0.9, RepetitionPenalty = 1.05 },
            new() { Temperature = 1, TopK = 50 },
            new() { Temperature = 0, RepetitionPenalty = 1.3 },
            new() { Temperature = 1, TopK = 2000, TopP = 0.9 },
        ];
        foreach (var setting in settings)
        {
            var options = setting with { Seed = 3 };
            var samplers = prompts.Select(x => new TokenSampler(options, vocab, x)).ToArray();
            var references = prompts.Select(x => new TokenSampler(options, vocab, x)).ToArray();
            int count = TopKCandidates.Count(options, vocab);
            if (count == 0) throw new InvalidOperationException($"escalated candidates: {options} asks for no candidates");
            var asks = samplers.Select(s => CandidateAsk.For(count, s, options, TopKCandidates.EscalatedCount)).ToArray();
            try
            {
                for (int step = 0; step < 2; step++)
                {
                    var read = TopKCandidates.Read(rows, asks);
                    for (int row = 0; row < n; row++)
                    {
                        if (read[row] is { Escalated: true, Logits: null }) escalated++;
                        if (options.TopK == 2000 && read[row] is { Escalated: false, Logits: null }) topK2000++;
                        int want = Outcome(() => references[row].Next(whole.AsSpan(row * vocab, vocab).ToArray()));
                        int got = Outcome(() => samplers[row].Next(read[row]));
                        if (got != want) throw new InvalidOperationException($"escalated candidates, vocabulary row {row}, step {step}, {options}: {got} from the candidates, {want} from the row");
                        flags.Add(1);
                    }
                }
            }
            finally
            {
                foreach (var a in asks) a.Seen?.Dispose();
            }
        }
        if (escalated == 0) throw new InvalidOperationException("escalated candidates: no vocabulary row was decided by the escalated candidates");
        if (topK2000 == 0) throw new InvalidOperationException("escalated candidates: no top-k 2000 row was decided by its first candidates");
    }
}
