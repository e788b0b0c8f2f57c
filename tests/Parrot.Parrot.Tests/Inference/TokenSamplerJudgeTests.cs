using Parrot.Parrot.Inference;

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
}
