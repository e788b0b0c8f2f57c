using Parrot.Parrot.Inference;
using Parrot.Tensors;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// What a check outside the sampler (selftest's near-tie judge of sampled sequences) may rebuild of a draw: the sampler's
/// probabilities of a row (<see cref="TokenSampler.Distribution"/>), the index a draw picks from them
/// (<see cref="TokenSampler.Draw"/>) and the n-th draw of a seed (<see cref="TokenSampler.DrawAt"/>): together they give
/// the token <see cref="TokenSampler.Next(float[])"/> gave at the n-th step of a stream, penalty included.
/// </summary>
public class TokenSamplerJudgeTests
{
    [Test]
    public void DistributionDrawAndDrawAtReproduceEveryPickOfAStream([Values(0, 3, 40)] int topK, [Values(1.0, 0.9)] double topP, [Values(1.0, 1.3)] double penalty)
    {
        const int vocab = 64;
        var rng = new Random(11);
        var options = new GenerationOptions { Temperature = 0.8, TopK = topK, TopP = topP, RepetitionPenalty = penalty, Seed = 1234 };
        int[] prompt = [3, 9, 9, 17];
        var sampler = new TokenSampler(options, vocab, prompt);
        // The judge's view: the penalised row over the prompt's and the picks' ids, as a second sampler that only sees them.
        var seen = new List<int>(prompt);
        for (int step = 0; step < 60; step++)
        {
            var row = new float[vocab];
            for (int i = 0; i < vocab; i++) row[i] = rng.Next(8) == 0 ? rng.Next(6) / 2f : (float)(rng.NextDouble() * 6 - 3);
            var penalised = new TokenSampler(options, vocab, seen);
            var values = Enumerable.Range(0, vocab).Select(i => penalised.Penalised(row[i], i)).ToArray();
            var p = TokenSampler.Distribution(options, values)!;
            int want = TokenSampler.Draw(p, TokenSampler.DrawAt(options.Seed, step));
            int got = sampler.Next(row);
            Assert.That(want, Is.EqualTo(got), $"step {step}");
            seen.Add(got);
        }
    }

    [Test]
    public void DrawAtIsTheStreamsNthDraw()
    {
        // A flat row of two tokens: the draw picks 0 exactly where r < 1/2, so a stream of picks spells out its draws' halves.
        var options = new GenerationOptions { Temperature = 1, Seed = 99 };
        var sampler = new TokenSampler(options, 2, []);
        for (int n = 0; n < 200; n++)
            Assert.That(sampler.Next(new float[2]), Is.EqualTo(TokenSampler.DrawAt(99, n) < 0.5 ? 0 : 1), $"draw {n}");
        Assert.That(() => TokenSampler.Distribution(options with { Temperature = 0 }, new double[2]), Throws.ArgumentException);
        Assert.That(TokenSampler.Distribution(options, [double.NegativeInfinity, double.NegativeInfinity]), Is.Null, "no draw from a row of −∞");
    }

    /// <summary>
    /// DrawAt's index is the token's: every read path a batch's row takes — candidates (top-k), candidates asked again
    /// (escalation), top-p candidates with the device's row sum, chunk sums, the whole row where none decides — takes
    /// exactly one draw per token, so token n of a stream is Draw(Distribution(its penalised row), DrawAt(seed, n)).
    /// </summary>
    [Test]
    public void EveryReadPathTakesOneDrawPerToken([Values(0, 5, 40)] int topK, [Values(1.0, 0.9)] double topP, [Values(1.0, 1.3)] double penalty, [Values(0, 64)] int escalation)
    {
        const int vocab = 2048;
        var rng = new Random(topK * 31 + (int)(topP * 10) + (int)(penalty * 100) + escalation);
        var options = new GenerationOptions { Temperature = 0.8, TopK = topK, TopP = topP, RepetitionPenalty = penalty, Seed = 4321 };
        int[] prompt = [3, 9, 17];
        var sampler = new TokenSampler(options, vocab, prompt);
        var seen = new List<int>(prompt);
        int fromParts = 0;
        for (int step = 0; step < 40; step++)
        {
            var row = new float[vocab];
            // Peaked rows (the candidates decide) and flat ones (escalations, the whole row).
            double spread = step % 3 == 0 ? 0.2 : 40;
            for (int i = 0; i < vocab; i++) row[i] = (float)(rng.NextDouble() * spread - spread / 2);
            int count = topK > 0 ? topK + 4 : topP < 1 ? 128 : 8;
            var ask = CandidateAsk.For(count, sampler, options, escalation, 32);
            LogitsRow read;
            try
            {
                using var scope = TensorScope.Begin();
                read = TopKCandidates.ReadRows(Tensor.FromArray(row, Device.Cpu, 1, vocab), [0], [ask])[0];
            }
            finally { ask.Seen?.Dispose(); }
            if (read.Logits is null) fromParts++;
            var judge = new TokenSampler(options, vocab, seen);
            var p = TokenSampler.Distribution(options, Enumerable.Range(0, vocab).Select(i => judge.Penalised(row[i], i)).ToArray())!;
            int got = sampler.Next(read);
            Assert.That(got, Is.EqualTo(TokenSampler.Draw(p, TokenSampler.DrawAt(options.Seed, step))), $"step {step}: {read}");
            seen.Add(got);
        }
        Assert.That(fromParts, Is.GreaterThan(0), "some rows read in parts");
    }
}
