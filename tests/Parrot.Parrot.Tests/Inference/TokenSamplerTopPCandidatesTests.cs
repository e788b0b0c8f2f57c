using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// Top-p without top-k from a row's candidates plus the device's row sum (<see cref="RowSum"/>,
/// <see cref="TokenSampler.CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int, RowSum)"/>) against the former
/// sampler given every whole row (<see cref="FormerTokenSampler"/>): the same ids, so the same draws, over streams of
/// random rows (peaked, flat, ties, ±∞, NaN, negative; penalties 0.7–2; temperatures 0.1–5; top-p 0.1–0.99; vocabularies
/// small and Qwen2's 151,936), also with the device's sum nudged within its error bound; crafted rows for each fallback
/// reason; the draw's margin against the sampler's own walk at many sums.
/// </summary>
public class TokenSamplerTopPCandidatesTests
{
    private static readonly double[] Penalties = [1, 1, 0.7, 1.05, 1.3, 2];

    /// <summary>A random row of kind <paramref name="kind"/> (0–2 peaked like a language model's, the rest corners).</summary>
    private static float[] Row(Random rng, int vocab, int kind)
    {
        var row = new float[vocab];
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        for (int i = 0; i < vocab; i++)
            row[i] = kind switch
            {
                0 or 1 or 2 => (float)(2 * Gauss()),
                3 => (float)(rng.NextDouble() * 2 - 1),                               // flat
                4 => rng.Next(8) / 2f,                                                // many ties
                5 => rng.Next(500) == 0 ? float.PositiveInfinity : rng.Next(50) == 0 ? float.NegativeInfinity : (float)(2 * Gauss()),
                6 => rng.Next(2000) == 0 ? float.NaN : (float)(2 * Gauss()),
                _ => -(float)(rng.NextDouble() * 5) - 20,                             // all negative
            };
        if (kind <= 2 || kind >= 5)
        {
            // A few hot ids well above the rest: a peaked row (kind 1 one very hot id, kind 2 many warm ones).
            int hot = kind == 1 ? 1 : kind == 2 ? 40 : rng.Next(1, 12);
            for (int h = 0; h < hot; h++) row[rng.Next(vocab)] += (float)(kind == 1 ? 25 : 6 + rng.NextDouble() * 10);
        }
        return row;
    }

    /// <summary>The id, or −1 where the sampler throws (a +∞ logit with top-p: no token keeps any probability).</summary>
    private static int Outcome(Func<int> pick)
    {
        try { return pick(); }
        catch (Exception e) when (e is IndexOutOfRangeException || e.Message.Contains("no probability")) { return -1; }
    }

    [Test]
    public void CandidatesAndTheRowSumGiveTheWholeRowsToken([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 7 : 8);
        int decided = 0, whole = 0, peakedDecided = 0, peaked = 0, nudgedDecided = 0;
        var reasons = new Dictionary<string, int>();
        for (int trial = 0; trial < 160; trial++)
        {
            bool big = trial % 8 == 0;
            int vocab = big ? 151_936 : rng.Next(200, 1500);
            var options = new GenerationOptions
            {
                Seed = (ulong)trial,
                Temperature = trial % 5 == 0 ? new[] { 0.1, 5 }[rng.Next(2)] : 0.1 + rng.NextDouble() * 4.9,
                TopP = 0.1 + rng.NextDouble() * 0.89,
                TopK = trial % 7 == 0 ? vocab : 0,
                RepetitionPenalty = Penalties[trial % Penalties.Length],
            };
            int count = big ? TopKCandidates.TopPCount : vocab / 5;
            var prompt = Enumerable.Range(0, rng.Next(0, 9)).Select(_ => rng.Next(vocab)).ToArray();
            var candidates = new TokenSampler(options, vocab, prompt);
            var full = new FormerTokenSampler(options, vocab, prompt);
            var ask = CandidateAsk.For(count, candidates, options);
            Assert.That(ask.SumSuffice, Is.Not.Null);
            using (ask.Seen)
                for (int step = 0; step < (big ? 3 : 6); step++)
                {
                    int kind = rng.Next(8);
                    var row = Row(rng, vocab, kind);
                    LogitsRow read;
                    using (TensorScope.Begin())
                        read = TopKCandidates.ReadRows(Tensor.FromArray(row, device, 1, vocab), [0], [ask])[0];
                    string what = $"trial {trial} step {step} kind {kind}: {options}, vocab {vocab}";
                    int expected = Outcome(() => full.Next(row));
                    if (read.Logits is null)
                    {
                        decided++;
                        Assert.That(read.Sum, Is.Not.Null, what);
                        // The same pick with the device's sum nudged within its bound (another order, another exp).
                        var nudged = read.Sum!.Value with { Sum = read.Sum.Value.Sum * (1 + (rng.Next(2) * 2 - 1) * 2e-13) };
                        if (candidates.TopPPick(read.Ids!, read.Values!, read.Top, nudged) is int p)
                        {
                            nudgedDecided++;
                            Assert.That(p, Is.EqualTo(expected), what + " (nudged sum)");
                        }
                    }
                    else
                    {
                        whole++;
                        string why = candidates.LastTopPFallback ?? "(not asked: pays nothing)";
                        reasons[why] = reasons.GetValueOrDefault(why) + 1;
                    }
                    if (kind <= 2 && options.Temperature <= 1.5) { peaked++; if (read.Logits is null) peakedDecided++; }
                    Assert.That(Outcome(() => candidates.Next(read)), Is.EqualTo(expected), what);
                }
            // The streams are where the former sampler's is: the same next draw on a flat row.
            var flat = Enumerable.Range(0, vocab).Select(i => (float)Math.Sin(i)).ToArray();
            Assert.That(candidates.Next(flat), Is.EqualTo(full.Next(flat)), $"trial {trial}: the stream after the steps");
        }
        TestContext.Out.WriteLine($"decided {decided}, whole {whole}, peaked {peakedDecided}/{peaked}, nudged {nudgedDecided}; fallbacks: "
            + string.Join(", ", reasons.OrderByDescending(x => x.Value).Select(x => $"{x.Key} {x.Value}")));
        Assert.That(peakedDecided, Is.GreaterThan(peaked * 9 / 10), "peaked rows (temperature ≤ 1.5) decided by their candidates");
        Assert.That(whole, Is.GreaterThan(20), "rows read whole");
    }

}
