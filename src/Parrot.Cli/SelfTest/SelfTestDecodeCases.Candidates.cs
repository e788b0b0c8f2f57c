using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Tensors;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// "top-k sampling from device candidates = full row": top-k sampling where each row's top k + margin logits come back
/// from <c>Tensor.TopK</c> on the device instead of the whole row (<see cref="TopKCandidates"/>). Whole generations of
/// both sessions (eager, static step) through <see cref="Generator"/> against the same model with the candidates path
/// hidden (seeds, top-k 1/5/20, top-p 1/0.8, temperatures 0.7/1.5); then rows of the real vocabulary's length (151,936)
/// full of ties with NaN and ±∞ sprinkled in, sampled from their candidates (TopK at k + 64 for k = 1, 50, 1024) or,
/// where the candidates do not decide, from the whole row, against the sampler given each whole row. Same ids, exactly.
/// "sampling with repetition penalty from device candidates = full row": the same with penalties 0.7, 1.05, 1.3 and 2,
/// greedy and top-k (Qwen's chat defaults among them: top-k 20, top-p 0.8, T 0.7, penalty 1.05), where each row's seen
/// ids' logits are gathered on the device with its top ones (<see cref="DeviceSeenIds"/>): whole generations of both
/// sessions against the whole-row path, then vocabulary-long rows (spread, tied, negative) with 400 seen ids each, the
/// row's top ones among them, over three steps (the seen ids growing on the device by each pick); some rows must be
/// decided by their candidates.
/// </summary>
internal static partial class SelfTestDecodeCases
{
    private static Tensor CandidatesSameAsFullRow(Tensor[] p)
    {
        var flags = new List<double>();
        var (model, prompts) = Setup(p);
        using (model)
        {
            var inputs = prompts.Select(x => new GenerationPrompt(x)).ToArray();
            foreach (bool staticStep in new[] { false, true })
            foreach (ulong seed in new ulong[] { 1, 2 })
            foreach (int k in new[] { 1, 5, 20 })
            foreach (double topP in new[] { 1, 0.8 })
            foreach (double temperature in new[] { 0.7, 1.5 })
            {
                var options = new GenerationOptions { MaxNewTokens = Steps + 1, Temperature = temperature, TopK = k, TopP = topP, Seed = seed, IgnoreEos = true };
                var want = new Generator(Generator.LogitsOnly(Wrap(model, staticStep)), endOfSequenceIds: []).Generate(inputs, options);
                var got = new Generator(Wrap(model, staticStep), endOfSequenceIds: []) { CandidateMargin = 2 }.Generate(inputs, options);
                for (int r = 0; r < inputs.Length; r++)
                {
                    if (!got[r].Tokens.SequenceEqual(want[r].Tokens))
                        throw new InvalidOperationException($"top-k sampling ({(staticStep ? "static step" : "eager")}, seed {seed}, k {k}, top-p {topP}, T {temperature}), row {r}: from the candidates [{string.Join(", ", got[r].Tokens)}], from the rows [{string.Join(", ", want[r].Tokens)}]");
                    flags.Add(1);
                }
            }
        }
        // Vocabulary-long rows on the chosen device.
        using (TensorScope.Begin()) VocabularyRows(p[0], flags);
        return Tensor.FromArray(flags.ToArray(), flags.Count);
    }

    private static Tensor PenaltyCandidatesSameAsFullRow(Tensor[] p)
    {
        var flags = new List<double>();
        var (model, prompts) = Setup(p);
        using (model)
        {
            var inputs = prompts.Select(x => new GenerationPrompt(x)).ToArray();
            foreach (bool staticStep in new[] { false, true })
            foreach (var options in PenaltyOptions(Steps + 1))
            {
                var want = new Generator(Generator.LogitsOnly(Wrap(model, staticStep)), endOfSequenceIds: []).Generate(inputs, options);
                var got = new Generator(Wrap(model, staticStep), endOfSequenceIds: []) { CandidateMargin = 2 }.Generate(inputs, options);
                for (int r = 0; r < inputs.Length; r++)
                {
                    if (!got[r].Tokens.SequenceEqual(want[r].Tokens))
                        throw new InvalidOperationException($"penalised decoding ({(staticStep ? "static step" : "eager")}, {options}), row {r}: from the candidates [{string.Join(", ", got[r].Tokens)}], from the rows [{string.Join(", ", want[r].Tokens)}]");
                    flags.Add(1);
                }
            }
        }
        using (TensorScope.Begin()) PenalisedVocabularyRows(p[0], flags);
        return Tensor.FromArray(flags.ToArray(), flags.Count);
    }

    /// <summary>Penalties 0.7, 1.05, 1.3, 2 with greedy, top-k 1, top-k 5 and Qwen's chat defaults (top-k 20, top-p 0.8, T 0.7).</summary>
    private static IEnumerable<GenerationOptions> PenaltyOptions(int maxNew)
    {
        foreach (double penalty in new[] { 0.7, 1.05, 1.3, 2 })
        foreach (var o in new GenerationOptions[] { new(), new() { Temperature = 1, TopK = 1 }, new() { Temperature = 1.2, TopK = 5 }, new() { Temperature = 0.7, TopK = 20, TopP = 0.8 } })
            yield return o with { MaxNewTokens = maxNew, RepetitionPenalty = penalty, Seed = (ulong)(penalty * 100), IgnoreEos = true };
    }

    private static void PenalisedVocabularyRows(Tensor like, List<double> flags)
    {
        const int vocab = 151936, n = 3;
        var r = new Random(23);
        var data = new float[n * vocab];
        for (int i = 0; i < vocab; i++)
        {
            data[i] = (float)r.NextDouble() * 4;                 // spread
            data[vocab + i] = r.Next(64) / 8f;                   // ties
            data[2 * vocab + i] = -(float)r.NextDouble() * 5;    // negative
        }
        var rows = Tensor.FromArray(data, n, vocab).To(like.DType, like.Device);
        var whole = rows.ToFloatArray(); // the values as the device holds them (bf16 rounds)
        // Each row's prompt: 400 ids, among them the row's three largest (seen ids in the raw top).
        var prompts = Enumerable.Range(0, n).Select(row => Enumerable.Range(0, 400).Select(_ => r.Next(vocab))
            .Concat(whole.AsSpan(row * vocab, vocab).ToArray().Select((v, i) => (v, i)).OrderByDescending(x => x.v).Take(3).Select(x => x.i)).ToArray()).ToArray();
        int decided = 0;
        foreach (var options in PenaltyOptions(3))
        {
            var samplers = prompts.Select(x => new TokenSampler(options, vocab, x)).ToArray();
            var references = prompts.Select(x => new TokenSampler(options, vocab, x)).ToArray();
            var seen = samplers.Select(s => new DeviceSeenIds(s)).ToArray();
            try
            {
                int count = TopKCandidates.Count(options, vocab);
                var asks = samplers.Select((s, i) => new CandidateAsk(count, s.CandidatesSuffice, seen[i])).ToArray();
                for (int step = 0; step < 3; step++)
                {
                    var read = TopKCandidates.Read(rows, asks);
                    for (int row = 0; row < n; row++)
                    {
                        if (read[row].Logits is null) decided++;
                        int want = Outcome(() => references[row].Next(whole.AsSpan(row * vocab, vocab).ToArray()));
                        int got = Outcome(() => samplers[row].Next(read[row]));
                        if (got != want) throw new InvalidOperationException($"penalised decoding, vocabulary row {row}, step {step}, {options}: {got} from the candidates, {want} from the row");
                        flags.Add(1);
                    }
                }
            }
            finally
            {
                foreach (var x in seen) x.Dispose();
            }
        }
        if (decided == 0) throw new InvalidOperationException("penalised decoding: no vocabulary row was decided by its candidates");
    }

    private static void VocabularyRows(Tensor like, List<double> flags)
    {
        var rows = PickInputs(new Random(17), DType.F32)[0].To(like.DType, like.Device);
        var whole = rows.ToFloatArray();
        int vocab = rows.Dim(1), n = rows.Dim(0);
        foreach (int k in new[] { 1, 50, 1024 })
        foreach (double topP in new[] { 1, 0.8 })
        {
            var options = new GenerationOptions { Temperature = 0.9, TopK = k, TopP = topP, Seed = (ulong)k };
            int count = TopKCandidates.Count(options, vocab);
            var read = TopKCandidates.Read(rows, Enumerable.Range(0, n).Select(_ => new CandidateAsk(count, (i, v, _) => TokenSampler.CandidatesSuffice(options, vocab, i, v))).ToArray());
            for (int r = 0; r < n; r++)
            {
                var full = whole.AsSpan(r * vocab, vocab).ToArray();
                int want = Outcome(() => new TokenSampler(options, vocab, []).Next(full));
                int got = Outcome(() => new TokenSampler(options, vocab, []).Next(read[r]));
                if (got != want) throw new InvalidOperationException($"top-k sampling, vocabulary row {r}, k {k}, top-p {topP}: {got} from the candidates, {want} from the row");
                flags.Add(1);
            }
        }
    }

    /// <summary>The sampled id, or −1 where the sampler refuses the row (a sampled row with a +∞ logit: no probability to sample from).</summary>
    private static int Outcome(Func<int> pick)
    {
        try { return pick(); }
        catch (InvalidOperationException e) when (e.Message.Contains("no probability")) { return -1; }
    }
}
