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

    /// <summary>The sampled id, or −1 where the sampler refuses the row (a +∞ logit with top-p &lt; 1: no probability left).</summary>
    private static int Outcome(Func<int> pick)
    {
        try { return pick(); }
        catch (InvalidOperationException e) when (e.Message.Contains("no probability")) { return -1; }
    }
}
