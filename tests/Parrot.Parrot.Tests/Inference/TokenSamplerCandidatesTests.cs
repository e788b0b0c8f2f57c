using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// TokenSampler's candidates path (<see cref="TokenSampler.NextFromCandidates(int[], float[])"/>: sampling from a row's top logits, as
/// <c>Tensor.TopK</c> gives them, instead of the whole row) against the whole-row path, and the whole-row path against the
/// sampler before the refactor (<see cref="FormerTokenSampler"/>), over streams of rows: same ids, same draws. Crafted rows
/// for every case where the candidates cannot decide (ties at the k-th value past the margin, NaN, k ≥ vocabulary, a
/// temperature that merges floats) and where they decide through the rebuilt row (+∞, a nucleus down to probability 0);
/// a sampled row with a +∞ logit is refused on every path (<see cref="ASampledRowWithAPlusInfinityIsRefused"/>).
/// </summary>
public class TokenSamplerCandidatesTests
{
    private static readonly double[] Temperatures = [0.7, 1.5, 1e-300, 1e300, 1];

    /// <summary>A random row: mostly a few distinct levels (ties), sometimes NaN, ±∞.</summary>
    private static float[] Row(Random rng, int vocab, int kind)
    {
        var row = new float[vocab];
        for (int i = 0; i < vocab; i++)
            row[i] = kind switch
            {
                0 => (float)(rng.NextDouble() * 8 - 4),
                1 => rng.Next(12) / 2f - 3,                                   // many ties
                2 => rng.Next(40) == 0 ? float.NaN : (float)rng.NextDouble(),  // NaN here and there
                3 => rng.Next(50) == 0 ? (float)rng.NextDouble() : float.NegativeInfinity, // all −∞ but a few
                4 => rng.Next(60) == 0 ? float.PositiveInfinity : (float)rng.NextDouble(),
                5 => float.NegativeInfinity,
                _ => (float)(rng.NextDouble() * 80 - 40),                     // a peaked distribution
            };
        return row;
    }

    private static GenerationOptions Options(Random rng, int vocab, ulong seed) => new()
    {
        Temperature = Temperatures[rng.Next(Temperatures.Length)],
        TopK = new[] { 0, 1, 2, 5, 50, vocab - 1, vocab, vocab + 3 }[rng.Next(8)],
        TopP = new[] { 1, 0.8, 0.3, 0.9999999999999999, 1e-9 }[rng.Next(5)],
        RepetitionPenalty = rng.Next(4) == 0 ? 1.3 : 1,
        Seed = seed,
    };

    /// <summary>The top <paramref name="count"/> of a row by <c>Tensor.TopK</c> (the device's contract: NaN first, ties by lower id).</summary>
    private static (int[] Ids, float[] Values) Top(float[] row, int count, Device device)
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(row, 1, row.Length).To(device);
        var (v, i) = x.TopK(count);
        return (i.ToLongArray().Select(id => (int)id).ToArray(), v.ToFloatArray());
    }

    /// <summary>What the whole row refuses a sampled row with a +∞ logit with (TokenSampler.Sample).</summary>
    internal const string PlusInfinity = "generate: the logits leave no probability to sample from (a +∞ logit) — the checkpoint or the inputs hold non-finite values";

    /// <summary>
    /// The whole-row path against the former sampler over streams of rows: the same id for every row the former could
    /// sample, and for a sampled row with a +∞ logit (which the former turned into its last id without top-p) the
    /// refusal, with no draw taken and nothing seen, so the rows after it still match.
    /// </summary>
    [Test]
    public void TheWholeRowPathIsTheFormerSampler()
    {
        var rng = new Random(1);
        int draws = 0, refused = 0;
        for (int trial = 0; trial < 300; trial++)
        {
            int vocab = rng.Next(1, 200);
            var options = Options(rng, vocab, (ulong)trial);
            var prompt = Enumerable.Range(0, 5).Select(_ => rng.Next(vocab)).ToArray();
            var now = new TokenSampler(options, vocab, prompt);
            var former = new FormerTokenSampler(options, vocab, prompt);
            for (int step = 0; step < 8; step++)
            {
                var row = Row(rng, vocab, rng.Next(7));
                int got;
                string? error = null;
                try { got = now.Next((float[])row.Clone()); }
                catch (InvalidOperationException e) { got = -1; error = e.Message; }
                // No temperature here overflows a finite logit of these rows (|x| ≤ 40, T ≥ 1e-300): +∞ only where the row holds one.
                bool plusInfinity = options.IsSampling && row.Any(float.IsPositiveInfinity);
                Assert.That(error, plusInfinity ? Is.EqualTo(PlusInfinity) : Is.Null, $"trial {trial} step {step}: {options}");
                Assert.That(got, Is.EqualTo(Outcome(() => former.Next(row))), $"trial {trial} step {step}: {options}");
                if (plusInfinity) refused++;
                draws++;
            }
        }
        Assert.That(draws, Is.EqualTo(2400));
        Assert.That(refused, Is.GreaterThan(20), "sampled rows with a +∞ logit");
    }

    /// <summary>
    /// A sampled row whose largest logit is +∞ has no distribution (∞ − ∞ makes every probability NaN): it is refused with
    /// and without top-k, top-p or a repetition penalty, and through the candidates (the rebuilt row refuses it too), as
    /// PyTorch's multinomial refuses such probabilities; greedy takes the +∞ id as the largest logit. Before, a row without
    /// top-p gave its last id (every NaN probability skipped by the walk, which ended on the last id). The refusal takes no
    /// draw: the next row's pick is a fresh sampler's.
    /// </summary>
    [Test]
    public void ASampledRowWithAPlusInfinityIsRefused()
    {
        var row = Enumerable.Range(0, 50).Select(i => (float)Math.Sin(i)).ToArray();
        row[17] = float.PositiveInfinity;
        row[3] = float.NegativeInfinity;
        row[30] = float.NaN;
        var plain = new GenerationOptions { Temperature = 1, Seed = 4 };
        Assert.That(new TokenSampler(plain with { Temperature = 0 }, 50, []).Next(row), Is.EqualTo(17), "greedy: the largest logit");
        var next = Enumerable.Range(0, 50).Select(i => (float)Math.Cos(i)).ToArray();
        foreach (var options in new[]
        {
            plain, plain with { Temperature = 0.3 }, plain with { TopP = 0.9 }, plain with { TopK = 5 }, plain with { TopK = 5, TopP = 0.5 },
            plain with { RepetitionPenalty = 1.3 }, plain with { RepetitionPenalty = 0.7, TopK = 3 },
        })
        {
            var sampler = new TokenSampler(options, 50, [17, 2]); // the +∞ id seen: the penalty leaves it +∞
            var e = Assert.Throws<InvalidOperationException>(() => sampler.Next((float[])row.Clone()), options.ToString());
            Assert.That(e!.Message, Is.EqualTo(PlusInfinity), options.ToString());
            Assert.That(sampler.Next(next), Is.EqualTo(new TokenSampler(options, 50, [17, 2]).Next(next)), $"{options}: no draw taken by the refusal");
        }
        // Two +∞ (still no distribution), and one at the last id (the id the former walk returned for every such row).
        var two = (float[])row.Clone(); two[40] = float.PositiveInfinity;
        var last = (float[])row.Clone(); last[17] = 0; last[49] = float.PositiveInfinity;
        foreach (var r in new[] { two, last })
            Assert.That(() => new TokenSampler(plain, 50, []).Next(r), Throws.InvalidOperationException.With.Message.EqualTo(PlusInfinity));
        // A finite logit that a tiny temperature overflows to +∞ is the same row to the sampler.
        var huge = Enumerable.Range(0, 50).Select(i => i == 9 ? 3e38f : 0f).ToArray();
        Assert.That(() => new TokenSampler(plain with { Temperature = 1e-300 }, 50, []).Next(huge), Throws.InvalidOperationException.With.Message.EqualTo(PlusInfinity));
        Assert.That(new TokenSampler(plain with { Temperature = 1e-300 }, 50, []).Next(row.Select(x => float.IsPositiveInfinity(x) ? 3 : x).ToArray()), Is.EqualTo(17), "finite: the one far above the others");

        // The candidates (top-k): the +∞ is among them; their sums are not finite, so the row is rebuilt and refused.
        var topK = plain with { TopK = 5 };
        var (ids, values) = Top(row, 8, Device.Cpu);
        Assert.That(ids[0], Is.EqualTo(30), "TopK ranks NaN first");
        (ids, values) = (ids[1..], values[1..]);
        Assert.That(TokenSampler.CandidatesSuffice(topK, 50, ids, values), Is.True);
        Assert.That(() => new TokenSampler(topK, 50, []).NextFromCandidates(ids, values), Throws.InvalidOperationException.With.Message.EqualTo(PlusInfinity));
        Assert.That(new TokenSampler(topK with { Temperature = 0 }, 50, []).NextFromCandidates(ids, values), Is.EqualTo(17), "greedy from the candidates");
    }

    /// <summary>
    /// Streams of rows, each sampled from its top k + margin (TopK on the CPU and the test device) where
    /// <see cref="TokenSampler.CandidatesSuffice(GenerationOptions, int, ReadOnlySpan{int}, ReadOnlySpan{float})"/> says they decide it and from the whole row where not, against a sampler
    /// of the same seed given every whole row: the same ids, so the same draws taken. Both outcomes of the check occur.
    /// </summary>
    [Test]
    public void CandidatesGiveTheWholeRowsToken([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 3 : 2);
        int decided = 0, whole = 0;
        for (int trial = 0; trial < 150; trial++)
        {
            int vocab = rng.Next(2, 300);
            var options = Options(rng, vocab, (ulong)trial) with { RepetitionPenalty = 1, TopK = rng.Next(1, vocab + 2), Temperature = Temperatures[rng.Next(Temperatures.Length)] };
            int margin = new[] { 0, 1, 3, 64 }[rng.Next(4)];
            int count = (int)Math.Min((long)options.TopK + margin, vocab);
            var candidates = new TokenSampler(options, vocab, [1, 2]);
            var full = new FormerTokenSampler(options, vocab, [1, 2]);
            for (int step = 0; step < 6; step++)
            {
                var row = Row(rng, vocab, rng.Next(7));
                var (ids, values) = Top(row, count, device);
                int expected = Outcome(() => full.Next(row));
                if (TokenSampler.CandidatesSuffice(options, vocab, ids, values))
                {
                    decided++;
                    Assert.That(Outcome(() => candidates.NextFromCandidates(ids, values)), Is.EqualTo(expected), $"trial {trial} step {step}: {options}, margin {margin}");
                }
                else
                {
                    whole++;
                    Assert.That(() => candidates.NextFromCandidates(ids, values), Throws.InvalidOperationException.With.Message.Contains("whole row"));
                    Assert.That(Outcome(() => candidates.Next(row)), Is.EqualTo(expected), $"trial {trial} step {step}");
                }
            }
        }
        Assert.That(decided, Is.GreaterThan(200), "rows decided by their candidates");
        Assert.That(whole, Is.GreaterThan(50), "rows read whole");
    }

    private static int FullPick(GenerationOptions options, float[] row) => new FormerTokenSampler(options, row.Length, []).Next(row);

    /// <summary>The id, or −1 where the sampler refuses the row: a sampled row with a +∞ logit leaves no probability to sample from (the former sampler refuses it too).</summary>
    private static int Outcome(Func<int> pick)
    {
        try { return pick(); }
        catch (InvalidOperationException e) when (e.Message.Contains("no probability")) { return -1; }
    }

    private static int CandidatePick(GenerationOptions options, float[] row, int count)
    {
        var (ids, values) = Top(row, count, Device.Cpu);
        Assert.That(TokenSampler.CandidatesSuffice(options, row.Length, ids, values), "the candidates decide this row");
        return new TokenSampler(options, row.Length, []).NextFromCandidates(ids, values);
    }

    private static bool Suffice(GenerationOptions options, float[] row, int count)
    {
        var (ids, values) = Top(row, count, Device.Cpu);
        return TokenSampler.CandidatesSuffice(options, row.Length, ids, values);
    }

    [Test]
    public void TiesAtTheKthValuePastTheMarginNeedTheRow()
    {
        var options = new GenerationOptions { Temperature = 1, TopK = 3, Seed = 5 };
        // Values 9, 8, then seven ties at 5: the third value's ties run past k + margin = 3 + 2.
        var row = new float[] { 0, 5, 5, 9, 5, 5, 1, 5, 8, 5, 5, 2 };
        Assert.That(Suffice(options, row, 5), Is.False, "ties past the margin");
        Assert.That(Suffice(options, row, 9), Is.False, "all ties inside, but the last candidate is one of them");
        Assert.That(Suffice(options, row, 10), Is.True, "the last candidate (2) below the k-th value (5)");
        for (ulong seed = 0; seed < 40; seed++)
            Assert.That(CandidatePick(options with { Seed = seed }, row, 10), Is.EqualTo(FullPick(options with { Seed = seed }, row)));
        Assert.That(Suffice(options, row, row.Length), Is.True, "the whole row");
    }

    [Test]
    public void NaNCandidatesNeedTheRow()
    {
        var options = new GenerationOptions { Temperature = 1, TopK = 2 };
        var row = new float[] { 1, float.NaN, 3, 2, 0, -1, 4 };
        var (ids, values) = Top(row, 4, Device.Cpu);
        Assert.That(ids[0], Is.EqualTo(1), "TopK ranks NaN first");
        Assert.That(TokenSampler.CandidatesSuffice(options, row.Length, ids, values), Is.False);
        Assert.That(TokenSampler.CandidatesSuffice(options, row.Length, ids.Skip(1).ToArray(), values.Skip(1).ToArray()), Is.True, "the same without the NaN");
        Assert.That(Suffice(options, row, row.Length), Is.False, "NaN in the whole row too (the sampler's NaN → −∞ is left to Next)");
    }

    [Test]
    public void AllNegativeInfinityButAFew([Values(1, 2, 3, 6)] int k)
    {
        var row = Enumerable.Repeat(float.NegativeInfinity, 40).ToArray();
        row[7] = 0.5f; row[20] = 0.25f; row[33] = 0.5f;
        for (ulong seed = 0; seed < 30; seed++)
        {
            var options = new GenerationOptions { Temperature = 1.5, TopK = k, TopP = seed % 2 == 0 ? 1 : 0.8, Seed = seed };
            // k above the finite values: the k-th value is −∞, which no candidate lies below: the row.
            Assert.That(Suffice(options, row, k + 2), Is.EqualTo(k <= 3), $"k {k}");
            if (k <= 3) Assert.That(CandidatePick(options, row, k + 2), Is.EqualTo(FullPick(options, row)), $"seed {seed}");
        }
        var none = Enumerable.Repeat(float.NegativeInfinity, 40).ToArray();
        var o = new GenerationOptions { Temperature = 1, TopK = 3 };
        Assert.That(Suffice(o, none, 5), Is.False);
        Assert.That(CandidatePick(o, none, 40), Is.EqualTo(0), "nothing above −∞, the whole row: id 0 as the whole row's ArgMax");
        Assert.That(FullPick(o, none), Is.Zero);
    }

    [Test]
    public void TopKAtOrAboveTheVocabularyNeedsTheWholeRow([Values(8, 9, 50)] int k)
    {
        var rng = new Random(k);
        var row = Enumerable.Range(0, 8).Select(_ => (float)rng.NextDouble()).ToArray();
        var options = new GenerationOptions { Temperature = 0.7, TopK = k, TopP = 0.8, Seed = 3 };
        Assert.That(Suffice(options, row, 7), Is.False, "all but one");
        for (ulong seed = 0; seed < 30; seed++)
            Assert.That(CandidatePick(options with { Seed = seed }, row, 8), Is.EqualTo(FullPick(options with { Seed = seed }, row)));
    }

    [Test]
    public void ATemperatureThatMergesFloatsIsCheckedAfterTheDivision()
    {
        // 2e-44 and 1.5e-44 are distinct floats (subnormal); divided by 1e300 both underflow to 0 in double, so the sampler
        // sees a tie at the k-th value that the float candidates do not show.
        var row = new float[] { 3e-44f, 2e-44f, 1.5e-44f, -5, -6, -7 };
        Assert.That(row[1], Is.Not.EqualTo(row[2]));
        var hot = new GenerationOptions { Temperature = 1e300, TopK = 2 };
        Assert.That(Suffice(hot, row, 3), Is.False, "merged at the k-th value after the division");
        Assert.That(Suffice(hot with { Temperature = 1 }, row, 3), Is.True, "distinct at temperature 1");
        Assert.That(Suffice(hot, row, 4), Is.True);
        for (ulong seed = 0; seed < 30; seed++)
            Assert.That(CandidatePick(hot with { Seed = seed }, row, 4), Is.EqualTo(FullPick(hot with { Seed = seed }, row)));
        // A tiny temperature: −5 and −6 both overflow to −∞.
        var cold = new GenerationOptions { Temperature = 1e-308, TopK = 4 };
        Assert.That(Suffice(cold, row, 5), Is.False, "the k-th value −∞ after the division");
    }

    [Test]
    public void RowsThatDecideThroughTheRebuiltRow()
    {
        // +∞ among the candidates (the whole row refuses it; the candidates cannot take the left-out ids' part in it) and a
        // top-p just below 1 (the nucleus's threshold may reach probability 0, where the left-out ids join its sort):
        // decided by rebuilding the row, the same ids as the whole row's, and the same refusal for every +∞.
        var rng = new Random(9);
        for (int trial = 0; trial < 60; trial++)
        {
            var row = Enumerable.Range(0, 100).Select(_ => (float)(rng.NextDouble() * 4)).ToArray();
            if (trial % 2 == 0) row[rng.Next(100)] = float.PositiveInfinity;
            var options = new GenerationOptions { Temperature = 0.7, TopK = 10, TopP = trial % 3 == 0 ? 1 : 0.9999999999999999, Seed = (ulong)trial };
            int pick = Outcome(() => CandidatePick(options, row, 14));
            Assert.That(pick, Is.EqualTo(Outcome(() => FullPick(options, row))), $"trial {trial}");
            Assert.That(pick == -1, Is.EqualTo(trial % 2 == 0), $"trial {trial}: refused exactly where the row holds +∞");
        }
    }

    [Test]
    public void WhichOptionsUseCandidates()
    {
        var row = new float[] { 4, 3, 2, 1, 0 };
        var (ids, values) = Top(row, 3, Device.Cpu);
        var ok = new GenerationOptions { Temperature = 1, TopK = 2 };
        Assert.That(TokenSampler.CandidatesSuffice(ok, 5, ids, values), Is.True);
        Assert.That(TokenSampler.CandidatesSuffice(ok with { Temperature = 0 }, 5, ids, values), Is.True, "greedy: the largest above the smallest");
        Assert.That(TokenSampler.CandidatesSuffice(ok with { TopK = 0 }, 5, ids, values), Is.False, "top-k off");
        Assert.That(TokenSampler.CandidatesSuffice(ok with { RepetitionPenalty = 1.2 }, 5, ids, values), Is.False, "a penalty, no seen ids known");
        Assert.That(TokenSampler.CandidatesSuffice(ok with { TopK = 4 }, 5, ids, values), Is.False, "fewer candidates than k");
        Assert.That(() => TokenSampler.CandidatesSuffice(ok, 5, [0, 9], [1, 2]), Throws.InvalidOperationException.With.Message.Contains("outside the vocabulary"));
        Assert.That(() => TokenSampler.CandidatesSuffice(ok, 5, [0, 1], [1]), Throws.InvalidOperationException);
        Assert.That(() => new TokenSampler(ok, 5, []).NextFromCandidates([0, 1, 1, 2], [4, 3, 3, 0]), Throws.InvalidOperationException.With.Message.Contains("twice"));
        Assert.That(TopKCandidates.Count(ok, 199, 64), Is.EqualTo(66));
        Assert.That(TopKCandidates.Count(ok, 198, 64), Is.Zero, "k + margin reaches a third of the row (more bytes than the row)");
        Assert.That(TopKCandidates.Count(ok, 200_000, 64), Is.EqualTo(66));
        Assert.That(TopKCandidates.Count(ok with { TopK = 1025, TopP = 0.9 }, 200_000, 64), Is.EqualTo(1089), "top-k past 1024 (the former cap), with top-p: k + margin");
        Assert.That(TopKCandidates.Count(ok with { TopK = TopKCandidates.MaxTopK, TopP = 0.9 }, 200_000, 64), Is.EqualTo(TopKCandidates.MaxTopK + 64), "at the cap");
        Assert.That(TopKCandidates.Count(ok with { TopK = TopKCandidates.MaxTopK + 1 }, 200_000, 64), Is.Zero, "above the cap");
        Assert.That(TopKCandidates.Count(ok with { TopK = 5000, TopP = 0.9 }, 151_936, 64), Is.Zero, "above the cap at Qwen2's vocabulary");
        Assert.That(TopKCandidates.Count(ok with { RepetitionPenalty = 1.1 }, 200_000, 64), Is.EqualTo(66), "a penalty: the seen ids come on top");
        var greedy = new GenerationOptions();
        Assert.That(TopKCandidates.Count(greedy, 200_000, 64), Is.Zero, "a plain argmax is taken on the device");
        Assert.That(TopKCandidates.Count(greedy with { RepetitionPenalty = 1.05 }, 200_000, 64), Is.EqualTo(65), "greedy with a penalty: 1 + margin");
        Assert.That(TopKCandidates.Count(greedy with { RepetitionPenalty = 1.05 }, 195, 64), Is.Zero, "a third of the row");
        Assert.That(TopKCandidates.Count(ok with { TopK = 0, TopP = 0.8, RepetitionPenalty = 1.05 }, 200_000, 64), Is.EqualTo(TopKCandidates.TopPCount), "top-p alone: its candidates and the row's sum");
        Assert.That(TopKCandidates.Plan(ok with { TopK = 0 }, 200_000, 64), Is.EqualTo(new ReadPlan(ReadKind.Chunks, 0)), "plain temperature: chunk sums, no top logits");
        Assert.That(TopKCandidates.Plan(ok with { TopK = 0, RepetitionPenalty = 1.1 }, 200_000, 64), Is.EqualTo(new ReadPlan(ReadKind.Chunks, 0)), "plain temperature with a penalty: chunk sums of the penalised row");
        Assert.That(TopKCandidates.Count(ok with { TopK = 0 }, 200_000, 64), Is.Zero, "no top logits for a chunk row");
        Assert.That(TopKCandidates.Plan(ok, 200_000, 64), Is.EqualTo(new ReadPlan(ReadKind.Top, 66)));
        Assert.That(TopKCandidates.Plan(ok with { TopK = 0 }, 200_000, -1).Asks, Is.False, "below margin 0: every row whole, chunk rows too");
        Assert.That(TopKCandidates.Plan(new GenerationOptions(), 200_000, 64).Asks, Is.False, "greedy without a penalty: the device's argmax");
        Assert.That(TopKCandidates.Count(ok, 200_000, -1), Is.Zero, "below margin 0");
        Assert.That(TopKCandidates.EnabledBy("0"), Is.False);
        Assert.That(TopKCandidates.EnabledBy(null) && TopKCandidates.EnabledBy("1"), Is.True);
    }
}

/// <summary>
/// TokenSampler as it was before it ran over spans of candidates (commit b109bc4), verbatim but for one documented change
/// (a sampled row whose largest logit is +∞ is refused, see <see cref="Sample"/>): the reference the refactored whole-row
/// path and the candidates path must match bit for bit.
/// </summary>
internal sealed class FormerTokenSampler
{
    private readonly GenerationOptions _options;
    private readonly bool[] _seen;
    private ulong _state;
    private double[] _work = [];
    private int[] _order = [];
    private double[] _keys = [];
    private bool[] _inside = [];

    public FormerTokenSampler(GenerationOptions options, int vocab, IEnumerable<int> prompt)
    {
        _options = options;
        _seen = new bool[vocab];
        _state = options.Seed;
        foreach (int id in prompt)
            if ((uint)id < (uint)vocab) _seen[id] = true;
    }

    public int Next(float[] logits)
    {
        if (logits.Length != _seen.Length) throw new InvalidOperationException($"generate: the model returned {logits.Length} logits for a vocabulary of {_seen.Length}");
        int v = logits.Length;
        if (_work.Length != v) _work = new double[v];
        var l = _work;
        double penalty = _options.RepetitionPenalty;
        for (int i = 0; i < v; i++)
        {
            double x = logits[i];
            if (penalty != 1 && _seen[i]) x = x < 0 ? x * penalty : x / penalty;
            l[i] = x;
        }
        int id = _options.IsSampling ? Sample(l) : ArgMax(l);
        _seen[id] = true;
        return id;
    }

    /// <summary>The largest logit's id, the lowest id on a tie; NaN counts as smaller than everything.</summary>
    internal static int ArgMax(ReadOnlySpan<double> l)
    {
        int best = 0;
        for (int i = 1; i < l.Length; i++)
            if (l[i] > l[best] || double.IsNaN(l[best]) && !double.IsNaN(l[i])) best = i;
        return best;
    }

    private int Sample(double[] l)
    {
        int v = l.Length;
        double t = _options.Temperature;
        for (int i = 0; i < v; i++) l[i] = double.IsNaN(l[i]) ? double.NegativeInfinity : l[i] / t;

        if (_options.TopK > 0 && _options.TopK < v)
        {
            // The k-th largest value; everything below it goes (ties at the boundary stay, as in Hugging Face).
            double threshold = KthLargest(l, _options.TopK);
            for (int i = 0; i < v; i++) if (l[i] < threshold) l[i] = double.NegativeInfinity;
        }

        double max = double.NegativeInfinity;
        for (int i = 0; i < v; i++) if (l[i] > max) max = l[i];
        if (double.IsNegativeInfinity(max)) return ArgMax(l);
        // The one change from b109bc4, made in TokenSampler too: a +∞ logit makes every probability NaN (∞ − ∞), and the
        // walk below ran past them all to the last id (without top-p; with top-p KeepNucleus threw). Such a row is refused
        // before any draw, as PyTorch's multinomial refuses non-finite probabilities; every finite row is as it was.
        if (double.IsPositiveInfinity(max)) throw new InvalidOperationException("former: no probability to sample from (a +∞ logit)");
        double sum = 0;
        for (int i = 0; i < v; i++) { l[i] = Math.Exp(l[i] - max); sum += l[i]; }
        for (int i = 0; i < v; i++) l[i] /= sum;

        if (_options.TopP < 1) KeepNucleus(l, _options.TopP);

        double total = 0;
        for (int i = 0; i < v; i++) total += l[i];
        double u = NextDouble() * total;
        int last = -1;
        for (int i = 0; i < v; i++)
        {
            if (l[i] <= 0) continue;
            last = i;
            u -= l[i];
            if (u < 0) return i;
        }
        return last; // rounding left u ≥ 0 after the last token with any mass
    }

    /// <summary>The k-th largest of <paramref name="values"/> (NaN-free), with a min-heap of the k largest seen: O(V log k).</summary>
    private double KthLargest(double[] values, int k)
    {
        if (_keys.Length < k) _keys = new double[k];
        var heap = _keys;
        for (int i = 0; i < k; i++)
        {
            // Sift up.
            int c = i;
            heap[c] = values[i];
            while (c > 0 && heap[(c - 1) / 2] > heap[c]) { (heap[c], heap[(c - 1) / 2]) = (heap[(c - 1) / 2], heap[c]); c = (c - 1) / 2; }
        }
        for (int i = k; i < values.Length; i++)
        {
            if (!(values[i] > heap[0])) continue;
            heap[0] = values[i];
            // Sift down.
            int c = 0;
            while (true)
            {
                int l = 2 * c + 1, r = l + 1, m = c;
                if (l < k && heap[l] < heap[m]) m = l;
                if (r < k && heap[r] < heap[m]) m = r;
                if (m == c) break;
                (heap[c], heap[m]) = (heap[m], heap[c]);
                c = m;
            }
        }
        return heap[0];
    }

    /// <summary>
    /// Zeroes every probability outside the nucleus: the shortest run of the most likely tokens whose mass
    /// reaches <paramref name="topP"/> (at least one token). Only tokens at or above a threshold whose set already
    /// holds that mass are sorted (that set is a prefix of the full order, so the nucleus lies inside it): few for
    /// a peaked distribution, all of them in the worst case.
    /// </summary>
    private void KeepNucleus(double[] probs, double topP)
    {
        int v = probs.Length;
        double max = probs.Max();
        double threshold = Math.Min(max, 1.0 / v);
        int count;
        while (true)
        {
            double mass = 0;
            count = 0;
            for (int i = 0; i < v; i++) if (probs[i] >= threshold) { mass += probs[i]; count++; }
            if (mass >= topP || threshold == 0) break;
            threshold = threshold > 1e-300 ? threshold / 64 : 0;
        }
        if (_order.Length < count) _order = new int[count];
        if (_keys.Length < count) _keys = new double[count];
        int n = 0;
        for (int i = 0; i < v; i++)
            if (probs[i] >= threshold) { _order[n] = i; _keys[n] = -probs[i]; n++; }
        // Most likely first (negated keys; among exactly equal probabilities the sort's own deterministic order).
        Array.Sort(_keys, _order, 0, n);
        double cumulative = 0;
        int keep = 0;
        while (keep < n)
        {
            cumulative += probs[_order[keep]];
            keep++;
            if (cumulative >= topP) break;
        }
        if (_inside.Length != v) _inside = new bool[v];
        else Array.Clear(_inside);
        for (int i = 0; i < keep; i++) _inside[_order[i]] = true;
        for (int i = 0; i < v; i++) if (!_inside[i]) probs[i] = 0;
    }

    /// <summary>A uniform double in [0, 1) from SplitMix64.</summary>
    private double NextDouble()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }
}
