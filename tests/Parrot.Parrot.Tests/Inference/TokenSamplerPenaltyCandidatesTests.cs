using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// A repetition penalty from the device's candidates: a row's raw top logits plus the logits of every seen id (gathered
/// on the device, <see cref="TopKCandidates.ReadRows"/>, <see cref="DeviceSeenIds"/>), penalised on the host and
/// sampled or argmaxed (<see cref="TokenSampler.NextFromCandidates(int[], float[], int)"/>) where
/// <see cref="TokenSampler.CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int)"/> says they decide it, the
/// whole row where not — against the former sampler given every whole row (<see cref="FormerTokenSampler"/>): the same
/// ids, so the same draws, over streams of rows (penalties 0.7, 1.05, 1.3, 2; greedy and top-k sampling; ties, NaN,
/// ±∞, negative rows), and crafted rows for a seen id outside the raw top that the penalty lifts to the pick, one inside
/// it pushed below the rest, ties at the smallest top value m (greedy and top-k), NaN, negative logits.
/// </summary>
public class TokenSamplerPenaltyCandidatesTests
{
    private static readonly double[] Penalties = [0.7, 1.05, 1.3, 2];

    /// <summary>A random row: spread values, ties, negatives only, NaN or ±∞ here and there, a peak.</summary>
    private static float[] Row(Random rng, int vocab, int kind)
    {
        var row = new float[vocab];
        for (int i = 0; i < vocab; i++)
            row[i] = kind switch
            {
                0 => (float)(rng.NextDouble() * 8 - 4),
                1 => rng.Next(12) / 2f - 3,                                        // many ties, around 0
                2 => -(float)(rng.NextDouble() * 5) - 0.5f,                         // all negative
                3 => rng.Next(60) == 0 ? float.NaN : (float)rng.NextDouble(),
                4 => rng.Next(60) == 0 ? float.PositiveInfinity : rng.Next(80) == 0 ? float.NegativeInfinity : (float)rng.NextDouble(),
                5 => -rng.Next(6) / 4f,                                            // ties among negatives and zero
                _ => (float)(rng.NextDouble() * 60 - 30),                          // peaked
            };
        return row;
    }

    /// <summary>The row as the session reads it: its candidates (top count, then its seen ids' logits) or the whole row.</summary>
    private static LogitsRow Read(float[] row, Device device, TokenSampler sampler, DeviceSeenIds seen, int count)
    {
        using var scope = TensorScope.Begin();
        var logits = Tensor.FromArray(row, device, 1, row.Length);
        return TopKCandidates.ReadRows(logits, [0], [new CandidateAsk(count, sampler.CandidatesSuffice, seen)])[0];
    }

    /// <summary>The id, or −1 where the sampler refuses the row: a sampled row with a +∞ logit leaves no probability to sample from (the former sampler refuses it too).</summary>
    private static int Outcome(Func<int> pick)
    {
        try { return pick(); }
        catch (InvalidOperationException e) when (e.Message.Contains("no probability")) { return -1; }
    }

    [Test]
    public void CandidatesGiveTheWholeRowsToken([Values(false, true)] bool onTestDevice, [Values(false, true)] bool greedy)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random((onTestDevice ? 10 : 20) + (greedy ? 1 : 0));
        int decided = 0, whole = 0, seenOutsideTop = 0, seenInTop = 0;
        for (int trial = 0; trial < 120; trial++)
        {
            int vocab = rng.Next(40, 400);
            double penalty = Penalties[trial % Penalties.Length];
            var options = greedy
                ? new GenerationOptions { RepetitionPenalty = penalty }
                : new GenerationOptions
                {
                    RepetitionPenalty = penalty, Seed = (ulong)trial,
                    Temperature = new[] { 0.7, 1.5, 1 }[rng.Next(3)],
                    TopK = new[] { 1, 2, 5, 20 }[rng.Next(4)],
                    TopP = new[] { 1, 0.8, 0.3 }[rng.Next(3)],
                };
            int margin = new[] { 0, 1, 3, 8 }[rng.Next(4)];
            int count = (greedy ? 1 : options.TopK) + margin;
            var prompt = Enumerable.Range(0, rng.Next(1, 9)).Select(_ => rng.Next(vocab)).ToArray();
            var candidates = new TokenSampler(options, vocab, prompt);
            var full = new FormerTokenSampler(options, vocab, prompt);
            using var seen = new DeviceSeenIds(candidates);
            for (int step = 0; step < 8; step++)
            {
                var row = Row(rng, vocab, rng.Next(7));
                var read = Read(row, device, candidates, seen, count);
                int expected = Outcome(() => full.Next(row));
                string what = $"trial {trial} step {step}: {options}, margin {margin}";
                if (read.Logits is null)
                {
                    decided++;
                    Assert.That(read.Top, Is.EqualTo(count), what);
                    var topIds = read.Ids!.Take(read.Top).ToHashSet();
                    if (expected >= 0 && candidates.SeenIds.Contains(expected)) { if (topIds.Contains(expected)) seenInTop++; else seenOutsideTop++; }
                }
                else whole++;
                Assert.That(Outcome(() => candidates.Next(read)), Is.EqualTo(expected), what);
            }
        }
        Assert.That(decided, Is.GreaterThan(300), "rows decided by their candidates");
        Assert.That(whole, Is.GreaterThan(30), "rows read whole");
        Assert.That(seenOutsideTop, Is.GreaterThan(3), "picks of a seen id from outside the raw top (its gathered logit)");
        Assert.That(seenInTop, Is.GreaterThan(3), "picks of a seen id among the raw top");
    }

    /// <summary>Row <paramref name="row"/> decided from its top <paramref name="count"/> and seen ids, against the whole row.</summary>
    private static (bool Decided, int Pick, int Whole) Both(GenerationOptions options, float[] row, int[] prompt, int count)
    {
        var candidates = new TokenSampler(options, row.Length, prompt);
        using var seen = new DeviceSeenIds(candidates);
        var read = Read(row, TestDevice.Get(), candidates, seen, count);
        return (read.Logits is null, candidates.Next(read), new FormerTokenSampler(options, row.Length, prompt).Next(row));
    }

    [Test]
    public void ASeenIdOutsideTheRawTopIsLiftedToThePick()
    {
        // Penalty 0.7 lifts id 3 (1.0 → 1.43) above the raw top 2 (1.2, 1.1): greedy picks it, from its gathered logit.
        var row = new float[30];
        row[3] = 1.0f; row[7] = 1.2f; row[8] = 1.1f;
        var options = new GenerationOptions { RepetitionPenalty = 0.7 };
        var (decided, pick, whole) = Both(options, row, [3], 2);
        Assert.That(decided, "1.43 > m = 1.1");
        Assert.That(pick, Is.EqualTo(3));
        Assert.That(whole, Is.EqualTo(3));
        // Without the seen id's logit the candidates would say 7; the sampler refuses them instead.
        var sampler = new TokenSampler(options, 30, [3]);
        Assert.That(() => sampler.CandidatesSuffice([7, 8], [1.2f, 1.1f], 2), Throws.InvalidOperationException.With.Message.Contains("carry 0 of the 1 seen ids"));
        // Negative logits: 0.7 multiplies id 4's −1 to −0.7, above the top's −0.8; 1.3 sends it to −1.3.
        var negative = Enumerable.Repeat(-3f, 30).ToArray();
        negative[4] = -1f; negative[6] = -0.8f; negative[9] = -0.9f;
        Assert.That(Both(options, negative, [4], 2), Is.EqualTo((true, 4, 4)));
        Assert.That(Both(options with { RepetitionPenalty = 1.3 }, negative, [4], 2), Is.EqualTo((true, 6, 6)));
        for (ulong seed = 0; seed < 30; seed++)
        {
            var sampled = new GenerationOptions { RepetitionPenalty = 0.7, Temperature = 0.5, TopK = 2, Seed = seed };
            var (d, p, w) = Both(sampled, negative, [4], 2);
            Assert.That(d && p == w, $"seed {seed}: top-k 2 of −0.7 (seen, lifted from outside the top 2), −0.8, −0.9: {p} vs {w}");
        }
    }

    [Test]
    public void ASeenIdInTheRawTopPushedDownLeavesTheOthers()
    {
        // Penalty 2 halves id 5's 4 to 2: greedy ties at m = 2 with the left-out id 1 (lower id, the whole row's pick), so
        // the candidates must not decide (a check of ≥ instead of > would give 5).
        var row = Enumerable.Repeat(-1f, 20).ToArray();
        row[0] = 2; row[1] = 2; row[5] = 4;
        var options = new GenerationOptions { RepetitionPenalty = 2 };
        var (decided, pick, whole) = Both(options, row, [0, 5], 2);
        Assert.That(whole, Is.EqualTo(1), "id 0 halved to 1; ids 1 and 5 tie at 2");
        Assert.That(decided, Is.False, "the largest candidate (2) is not above m = 2");
        Assert.That(pick, Is.EqualTo(1));
        // Three candidates hold id 1 but m is still 2 (the rule does not look at ids); four reach −1: decided, id 1.
        Assert.That(Both(options, row, [0, 5], 3), Is.EqualTo((false, 1, 1)));
        Assert.That(Both(options, row, [0, 5], 4), Is.EqualTo((true, 1, 1)));
        // Penalty 1.05 leaves 5 on top: decided.
        Assert.That(Both(options with { RepetitionPenalty = 1.05 }, row, [0, 5], 2), Is.EqualTo((true, 5, 5)));
    }

    [Test]
    public void TopKTiesAtTheSmallestTopValueNeedTheRow()
    {
        // Top 3: 5 (seen, halved to 2.5), 3, 2 (id 2); id 3 also 2 is left out. k = 3: the k-th after the penalty is 2 = m,
        // so id 3 stays on the whole row (ties kept) and the candidates cannot show it: the row. k = 2: 2.5 > 2, decided.
        var row = Enumerable.Repeat(-10f, 16).ToArray();
        row[0] = 5; row[1] = 3; row[2] = 2; row[3] = 2;
        int picksOf3 = 0;
        for (ulong seed = 0; seed < 60; seed++)
        {
            var options = new GenerationOptions { RepetitionPenalty = 2, Temperature = 1, TopK = 3, Seed = seed };
            var (decided, pick, whole) = Both(options, row, [0], 3);
            Assert.That(decided, Is.False, $"seed {seed}: k-th = m");
            Assert.That(pick, Is.EqualTo(whole), $"seed {seed}");
            if (whole == 3) picksOf3++;
            var k2 = options with { TopK = 2 };
            var (d2, p2, w2) = Both(k2, row, [0], 3);
            Assert.That(d2 && p2 == w2, $"seed {seed}, k 2: {p2} vs {w2}");
        }
        Assert.That(picksOf3, Is.GreaterThan(5), "the left-out tie is drawn on the whole row");
    }

    [Test]
    public void NaNAndTopPAloneNeedTheRow()
    {
        var row = Enumerable.Range(0, 30).Select(i => i / 10f).ToArray();
        row[12] = float.NaN;
        foreach (var options in new[] { new GenerationOptions { RepetitionPenalty = 1.3 }, new GenerationOptions { RepetitionPenalty = 1.3, Temperature = 1, TopK = 3 } })
        {
            var (decided, pick, whole) = Both(options, row, [4, 29], 4);
            Assert.That(decided, Is.False, $"{options}: NaN among the candidates (TopK ranks it first)");
            Assert.That(pick, Is.EqualTo(whole));
        }
        var topP = new TokenSampler(new GenerationOptions { RepetitionPenalty = 1.3, Temperature = 1, TopP = 0.8 }, 30, [1]);
        Assert.That(topP.CandidatesSuffice([29, 28, 1], [2.9f, 2.8f, 0.1f], 2), Is.False, "top-p alone: the nucleus needs the whole row's sum");
        var twice = new TokenSampler(new GenerationOptions { RepetitionPenalty = 1.3 }, 30, [1]);
        Assert.That(() => twice.CandidatesSuffice([29, 1, 1], [2.9f, 0.1f, 0.1f], 2), Throws.InvalidOperationException.With.Message.Contains("id 1 twice"));
        Assert.That(() => twice.CandidatesSuffice([29, 1], [2.9f, 0.1f], 0), Throws.InvalidOperationException.With.Message.Contains("0 top candidates of 2"));
        Assert.That(() => twice.CandidatesSuffice([29, 1], [2.9f, 0.1f], 3), Throws.InvalidOperationException.With.Message.Contains("3 top candidates of 2"));
        Assert.That(() => twice.NextFromCandidates([29, 28], [2.9f, 0.1f], 2), Throws.InvalidOperationException.With.Message.Contains("carry 0 of the 1 seen ids"));
    }
}
