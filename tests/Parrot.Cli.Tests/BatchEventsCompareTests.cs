using Parrot.Cli.SelfTest;
using Parrot.Parrot.Inference;

namespace Parrot.Cli.Tests;

/// <summary>
/// <see cref="BatchEventsCompare"/>, the verdict of selftest "continuous batch, static slots = eager": exact on the CPU
/// policy; on the GPU policy a first difference passes only as a near tie that the judge's logits confirm.
/// </summary>
public class BatchEventsCompareTests
{
    private const int Vocab = 16;

    /// <summary>30 events: steps 0–9, three sequences a step, tokens that tell them apart.</summary>
    private static List<BatchLine> Events() =>
        Enumerable.Range(0, 30).Select(k => new BatchLine(k / 3, k % 3, (k * 5) % Vocab, $"t{k}", k >= 27 ? "MaxTokens" : "")).ToList();

    /// <summary><paramref name="events"/> with event <paramref name="i"/>'s token (and text) changed to <paramref name="token"/>.</summary>
    private static List<BatchLine> Flip(List<BatchLine> events, int i, int token)
    {
        var copy = events.ToList();
        copy[i] = copy[i] with { Token = token, Text = "flipped" };
        return copy;
    }

    /// <summary>A judge whose logits are 0 but <paramref name="top"/> (token → logit); it records what it was asked.</summary>
    private static NearTiePolicy Gpu(int bits, Dictionary<int, float> top, List<(int Sequence, int[] Generated)> asked) =>
        GpuBy(bits, (_, _) => top, asked);

    /// <summary>A judge whose logits depend on the sequence and its prefix (token → logit, 0 elsewhere).</summary>
    private static NearTiePolicy GpuBy(int bits, Func<int, IReadOnlyList<int>, Dictionary<int, float>> top, List<(int Sequence, int[] Generated)> asked) =>
        NearTiePolicy.For(bits == 8, (sequence, generated) =>
        {
            asked.Add((sequence, generated.ToArray()));
            var raw = new float[Vocab];
            foreach (var (t, v) in top(sequence, generated)) raw[t] = v;
            return (raw, raw.Select(v => (double)v).ToArray());
        });

    [Test]
    public void IdenticalListsPassOnEitherPolicy()
    {
        var asked = new List<(int, int[])>();
        foreach (var policy in new[] { null, Gpu(8, new() { [1] = 1 }, asked) })
        {
            var v = BatchEventsCompare.Compare(Events(), Events(), "slots", "eager", policy);
            Assert.That((v.Pass, v.Matched, v.Message), Is.EqualTo((true, 30, "")));
        }
        Assert.That(asked, Is.Empty, "no difference: the judge is not asked");
    }

    [Test]
    public void AFlipWithATinyGapPassesOnTheGpuPolicyAndNamesTheTie()
    {
        var want = Events();
        int i = 25, b = want[i].Token, a = (b + 1) % Vocab;
        // bfloat16 at 10: an ulp is 2⁻⁴; a gap of one ulp, both tokens the judge's top two.
        var asked = new List<(int Sequence, int[] Generated)>();
        // The sequence's later token (event 28) at the top too: after the tie it is judged on the flipped prefix.
        var got = Flip(want, i, a);
        var v = BatchEventsCompare.Compare(got, want, "slots", "eager", Gpu(8, new() { [a] = 10f, [b] = 10.0625f, [want[28].Token] = 10f, [(b + 2) % Vocab] = 9f }, asked));
        Assert.That(v.Pass, Is.True, v.Message);
        Assert.That(v.Matched, Is.EqualTo(25));
        Assert.That(v.Message, Does.Contain("near tie at event 25").And.Contain($"token {a}").And.Contain($"token {b}").And.Contain("-0.0625").And.Contain("after it 1 tokens"));
        // The judge saw the sequence's own tokens before that event, in order; then the flipped batch's own prefix at event 28.
        Assert.That(asked, Has.Count.EqualTo(2));
        Assert.That(asked[0].Sequence, Is.EqualTo(want[i].Sequence));
        Assert.That(asked[0].Generated, Is.EqualTo(want.Take(i).Where(e => e.Sequence == want[i].Sequence).Select(e => e.Token).ToArray()));
        Assert.That(asked[1].Sequence, Is.EqualTo(want[i].Sequence));
        Assert.That(asked[1].Generated, Is.EqualTo(got.Take(28).Where(e => e.Sequence == want[i].Sequence).Select(e => e.Token).ToArray()));
        Assert.That(asked[1].Generated[^1], Is.EqualTo(a));
    }

    [Test]
    public void AFlipWithALargeGapFails()
    {
        var want = Events();
        int i = 25, b = want[i].Token, a = (b + 1) % Vocab;
        var v = BatchEventsCompare.Compare(Flip(want, i, a), want, "slots", "eager", Gpu(8, new() { [a] = 10f, [b] = 12f }, []));
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("event 25").And.Contain("no near tie"));
        // Six ulps at 10 (0.375) is above the five allowed, five is not; the same tie in float32 precision fails.
        Assert.That(BatchEventsCompare.Compare(Flip(want, i, a), want, "slots", "eager", Gpu(8, new() { [a] = 10f, [b] = 10.375f }, [])).Pass, Is.False);
        Assert.That(BatchEventsCompare.Compare(Flip(want, i, a), want, "slots", "eager", Gpu(8, new() { [a] = 10f, [b] = 10.3125f, [want[28].Token] = 10.3125f }, [])).Pass, Is.True);
        Assert.That(BatchEventsCompare.Compare(Flip(want, i, a), want, "slots", "eager", Gpu(24, new() { [a] = 10f, [b] = 10.0625f }, [])).Pass, Is.False);
    }

    [Test]
    public void ATieBelowTheTopFails()
    {
        // The two tokens a hair apart, but a third far above both: the greedy pick was neither, a wrong row's token.
        var want = Events();
        int i = 25, b = want[i].Token, a = (b + 1) % Vocab;
        var v = BatchEventsCompare.Compare(Flip(want, i, a), want, "slots", "eager", Gpu(8, new() { [a] = 10f, [b] = 10.0625f, [(b + 2) % Vocab] = 14f }, []));
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("no near tie"));
    }

    [Test]
    public void ADifferenceInStepSequenceOrFinishFails()
    {
        var want = Events();
        var tie = new Dictionary<int, float> { [want[25].Token] = 10f, [(want[25].Token + 1) % Vocab] = 10f };
        foreach (var other in new[] { want[25] with { Sequence = 0 }, want[25] with { Step = 9 }, want[25] with { Finished = "MaxTokens" },
            want[25] with { Sequence = 0, Token = (want[25].Token + 1) % Vocab } })
        {
            var got = want.ToList();
            got[25] = other;
            var v = BatchEventsCompare.Compare(got, want, "slots", "eager", Gpu(8, tie, []));
            Assert.That(v.Pass, Is.False, other.ToString());
            Assert.That(v.Message, Does.Contain("not a token flip"));
        }
        // Fewer events (the same ones) fails too.
        Assert.That(BatchEventsCompare.Compare(want.Take(29).ToList(), want, "slots", "eager", Gpu(8, tie, [])).Pass, Is.False);
    }

    [Test]
    public void AFlipBeforeTwentyMatchedEventsFails()
    {
        var want = Events();
        int i = BatchEventsCompare.MinMatched - 1, b = want[i].Token, a = (b + 1) % Vocab;
        var v = BatchEventsCompare.Compare(Flip(want, i, a), want, "slots", "eager", Gpu(8, new() { [a] = 10f, [b] = 10f }, []));
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("only 19 matched events"));
        i = BatchEventsCompare.MinMatched; b = want[i].Token; a = (b + 1) % Vocab;
        var tie = want.Where(e => e.Sequence == want[i].Sequence).ToDictionary(e => e.Token, _ => 10f); // its later tokens at the top too
        tie[a] = 10f;
        Assert.That(BatchEventsCompare.Compare(Flip(want, i, a), want, "slots", "eager", Gpu(8, tie, [])).Pass, Is.True, "20 matched: enough");
    }

    [Test]
    public void AfterATieTheFlippedSequenceIsJudgedOnItsOwnPrefixAndTheOthersStayExact()
    {
        // A tie at event 21 (sequence 0: its later events 24 and 27) passes only while each later token of sequence 0 is
        // the pick of the flipped prefix; a wrong token there (a wrong slot after the tie, e.g. once the cache grows)
        // fails, and so does a difference in another sequence after the tie that is no tie of its own.
        var want = Events();
        int i = 21, b = want[i].Token, a = (b + 1) % Vocab;
        Dictionary<int, float> Judge(int sequence, IReadOnlyList<int> generated) =>
            generated.Count > 7 && generated[7] == a // the flipped prefix (event 21 is sequence 0's 8th token): its own picks
                ? new() { [(generated.Count * 3) % Vocab] = 10f }
                : new() { [a] = 10f, [b] = 10f };
        var got = Flip(want, i, a);
        got[24] = got[24] with { Token = (8 * 3) % Vocab };
        got[27] = got[27] with { Token = (9 * 3) % Vocab };
        var v = BatchEventsCompare.Compare(got, want, "slots", "eager", GpuBy(8, Judge, []));
        Assert.That(v.Pass, Is.True, v.Message);
        Assert.That(v.Message, Does.Contain("near tie at event 21").And.Contain("after it 2 tokens"));
        var wrong = got.ToList();
        wrong[27] = wrong[27] with { Token = (9 * 3 + 1) % Vocab };
        v = BatchEventsCompare.Compare(wrong, want, "slots", "eager", GpuBy(8, Judge, []));
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("event 27").And.Contain("not its own prefix's pick"));
        var other = got.ToList();
        other[26] = other[26] with { Token = (want[26].Token + 5) % Vocab };
        v = BatchEventsCompare.Compare(other, want, "slots", "eager", GpuBy(8, Judge, []));
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("event 26").And.Contain("no near tie"));
    }

    [Test]
    public void TheCpuPolicyFailsAnyFlip()
    {
        var want = Events();
        var v = BatchEventsCompare.Compare(Flip(want, 25, (want[25].Token + 1) % Vocab), want, "slots", "eager", nearTie: null);
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("event 25").And.Contain("bit-equal by contract"));
    }

    [Test]
    public void AJudgeThatCannotJudgeFails()
    {
        // A sampled sequence: the judge refuses (a draw is not a comparison of logits), so the flip fails.
        var want = Events();
        var refuses = NearTiePolicy.For(true, (_, _) => throw new ArgumentException("the options sample"));
        var v = BatchEventsCompare.Compare(Flip(want, 25, (want[25].Token + 1) % Vocab), want, "slots", "eager", refuses);
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("no near-tie judge").And.Contain("the options sample"));
    }

    /// <summary>Sequence 1 (events 1, 4, …, 28) samples with <paramref name="options"/>; its judge's raw logits by prefix length, penalty-free.</summary>
    private static NearTiePolicy Sampled(int bits, GenerationOptions options, Func<int, float[]> raw) =>
        NearTiePolicy.For(bits == 8, (sequence, generated) =>
        {
            Assert.That(sequence, Is.EqualTo(1));
            var r = raw(generated.Count);
            return (r, r.Select(v => (double)v).ToArray());
        }, sequence => sequence == 1 ? options : new GenerationOptions());

    /// <summary>A seed whose draw for sequence 1's token at event 25 (its 9th: draw 8) lies in [0.3, 0.7], away from the ends.</summary>
    private static ulong MidSeed() => Enumerable.Range(1, 1000).Select(k => (ulong)k).First(k => BatchEventsCompare.DrawAt(k, 8) is > 0.3 and < 0.7);

    /// <summary>The prefix after event 25's tie (sequence 1's 10th token, event 28): token 7 far above the rest, so the draw picks it.</summary>
    private static float[] Peaked()
    {
        var l = new float[Vocab];
        l[7] = 100;
        return l;
    }

    /// <summary>
    /// Logits (all 10, token 0 above) whose cumulative boundary between tokens 0 and 1 — token 0's mass, e^{z0} / (e^{z0} +
    /// 15 e^{10}) at temperature 1 — lies at <paramref name="boundary"/>.
    /// </summary>
    private static float[] BoundaryAt(double boundary)
    {
        var l = Enumerable.Repeat(10f, Vocab).ToArray();
        l[0] = (float)(10 + Math.Log(15 * boundary / (1 - boundary)));
        return l;
    }

    /// <summary>Events with sequence 1's token at event 25 the draw's <paramref name="want"/> (the reference) and <paramref name="got"/> in the other batch, which then picks 7 at event 28.</summary>
    private static (List<BatchLine> Got, List<BatchLine> Want) SampledFlip(int want, int got)
    {
        var w = Events();
        w[25] = w[25] with { Token = want };
        var g = Flip(w, 25, got);
        g[28] = g[28] with { Token = 7 };
        return (g, w);
    }

    [Test]
    public void ASampledFlipAtTheDrawsCdfBoundaryPasses()
    {
        ulong seed = MidSeed();
        double r = BatchEventsCompare.DrawAt(seed, 8);
        var options = new GenerationOptions { Temperature = 1, Seed = seed };
        // The boundary between tokens 0 and 1 two millionths above r: the sampler draws 0; the other batch took 1.
        Func<int, float[]> raw = n => n == 8 ? BoundaryAt(r + 2e-6) : Peaked();
        var p = BatchEventsCompare.Distribution(options, BoundaryAt(r + 2e-6).Select(v => (double)v).ToArray())!;
        Assert.That(p[0] - r, Is.InRange(1e-7, 4e-6), "the planted boundary, after the float logit's rounding");
        Assert.That(BatchEventsCompare.Draw(p, r), Is.EqualTo(0));
        var (got, want) = SampledFlip(0, 1);
        // float32: 40 ulps of 10 move the boundary near 0.5 by about 2e-5.
        var v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(24, options, raw));
        Assert.That(v.Pass, Is.True, v.Message);
        Assert.That(v.Message, Does.Contain("near tie at event 25").And.Contain("cumulative boundary between 0 and 1").And.Contain("after it 1 tokens"));
        // The later token must be its own prefix's draw: another one there fails.
        var wrong = got.ToList();
        wrong[28] = wrong[28] with { Token = 6 };
        v = BatchEventsCompare.Compare(wrong, want, "slots", "eager", Sampled(24, options, raw));
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("event 28").And.Contain("not its own prefix's pick"));
    }

    [Test]
    public void ASampledFlipFarFromTheBoundaryFails()
    {
        ulong seed = MidSeed();
        double r = BatchEventsCompare.DrawAt(seed, 8);
        var options = new GenerationOptions { Temperature = 1, Seed = seed };
        // A thousandth from the boundary: 50 times float32's window, so a flip there is no rounding but a wrong draw or row.
        Func<int, float[]> raw = n => n == 8 ? BoundaryAt(r + 1e-3) : Peaked();
        var (got, want) = SampledFlip(0, 1);
        var v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(24, options, raw));
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("event 25").And.Contain("r is not within the tolerance of the boundary").And.Contain($"r = {r:G6}"));
        // bfloat16's 5 ulps of 10 (5/16 each) are a far wider window: there the same thousandth is a near tie.
        Assert.That(BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(8, options, raw)).Pass, Is.True);
        // The draw of another step (the batch used a wrong draw index) is far from that boundary: no near tie.
        var early = new GenerationOptions { Temperature = 1, Seed = seed };
        double r7 = BatchEventsCompare.DrawAt(seed, 7);
        Assume.That(Math.Abs(r7 - r), Is.GreaterThan(0.01));
        Func<int, float[]> atR7 = n => n == 8 ? BoundaryAt(r7 + 2e-6) : Peaked();
        v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(24, early, atR7));
        Assert.That(v.Pass, Is.False, "the boundary at draw 7's r, not draw 8's");
    }

    /// <summary>
    /// Two tokens alone (the rest −∞), temperature 1: token 0's logit 10 + logit(r) − <paramref name="below"/> (r: draw 8
    /// of <paramref name="seed"/>), token 1's 10, so the boundary's log-odds lie <paramref name="below"/> under the draw's
    /// and the sampler draws 1.
    /// </summary>
    private static float[] TwoTokens(ulong seed, double below)
    {
        double r = BatchEventsCompare.DrawAt(seed, 8);
        var l = Enumerable.Repeat(float.NegativeInfinity, Vocab).ToArray();
        l[0] = (float)(10 + Math.Log(r / (1 - r)) - below);
        l[1] = 10;
        return l;
    }

    [Test]
    public void ASampledFlipsWindowIsTheGreedyGapRule()
    {
        // Two tokens at temperature 1: the draw picks 0 where the log-odds of its mass, z0 − z1, exceed the draw's, so two
        // batches disagree where their z0 − z1 straddle logit(r) — the greedy tie with logit(r) in place of 0. The window
        // must then be the greedy gap rule's: 5 bfloat16 ulps (5/16 at 10) between the judge's z0 − z1 and logit(r). With
        // each logit moved by the full 5 ulps (the gap's tolerance, not a logit's) the window was twice that: 8 ulps passed.
        const double ulp = 1.0 / 16;
        ulong mid = MidSeed();
        var options = new GenerationOptions { Temperature = 1, Seed = mid };
        var (got, want) = SampledFlip(1, 0);
        var v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(8, options, n => n == 8 ? TwoTokens(mid, 4 * ulp) : Peaked()));
        Assert.That(v.Pass, Is.True, v.Message);
        Assert.That(v.Message, Does.Contain("cumulative boundary between 0 and 1"));
        v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(8, options, n => n == 8 ? TwoTokens(mid, 6 * ulp) : Peaked()));
        Assert.That(v.Pass, Is.False, "6 ulps between the boundary's log-odds and the draw's: no near tie");
        Assert.That(v.Message, Does.Contain("event 25").And.Contain("r is not within the tolerance of the boundary"));

        // A boundary near 0.95 moves up less than down for the same log-odds (the window is not symmetric about it): a
        // draw 6 ulps of log-odds above it lies outside the upper side though within the lower side's width.
        ulong high = Enumerable.Range(1, 5000).Select(k => (ulong)k).First(k => BatchEventsCompare.DrawAt(k, 8) is > 0.955 and < 0.975);
        double r = BatchEventsCompare.DrawAt(high, 8);
        var two = TwoTokens(high, 6 * ulp);
        double gap = two[0] - two[1], bound = 1 / (1 + Math.Exp(-gap));
        Assert.That(r - bound, Is.LessThan(bound - 1 / (1 + Math.Exp(-(gap - 5 * ulp)))), "r within the lower side's width");
        options = options with { Seed = high };
        v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(8, options, n => n == 8 ? two : Peaked()));
        Assert.That(v.Pass, Is.False, v.Message);
        Assert.That(v.Message, Does.Contain("r is not within the tolerance of the boundary"));
        v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(8, options, n => n == 8 ? TwoTokens(high, 4 * ulp) : Peaked()));
        Assert.That(v.Pass, Is.True, v.Message);
    }

    [Test]
    public void ASampledFlipBetweenTokensNotAdjacentFails()
    {
        ulong seed = MidSeed();
        double r = BatchEventsCompare.DrawAt(seed, 8);
        var options = new GenerationOptions { Temperature = 1, Seed = seed };
        // The boundary after token 0 right at r, but the other batch took token 2: token 1's mass lies between them.
        Func<int, float[]> raw = n => n == 8 ? BoundaryAt(r + 2e-6) : Peaked();
        var (got, want) = SampledFlip(0, 2);
        // float32: 20 ulps of 10 a logit move boundaries by ~1e-5, far less than token 1's mass (~0.035) in between.
        var v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(24, options, raw));
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("not adjacent in the sampler's order").And.Contain("first 1").And.Contain("no logits within the tolerance box"));
        // bfloat16: 2.5 ulps of 10 (5/32) a logit move token 1's upper boundary by more than its mass: lowering tokens
        // 0 and 1 and raising token 2 puts r inside token 2's interval, so a correct batch can jump token 1 — a near tie.
        v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(8, options, raw));
        Assert.That(v.Pass, Is.True, v.Message);
        Assert.That(v.Message, Does.Contain("not adjacent").And.Contain("times their tolerance").And.Contain("the same draw picks 2"));
        // Far past that reach (token 1 as heavy as 15 others, ~0.26 of the mass, between them; token 0's boundary still
        // just above r) it is no near tie in bfloat16 either.
        Func<int, float[]> wide = n =>
        {
            if (n != 8) return Peaked();
            var l = Enumerable.Repeat(10f, Vocab).ToArray();
            l[1] = 10 + MathF.Log(15);
            double boundary = r + 2e-6;
            l[0] = (float)(10 + Math.Log(29 * boundary / (1 - boundary)));
            return l;
        };
        v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(8, options, wide));
        Assert.That(v.Pass, Is.False, v.Message);
        Assert.That(v.Message, Does.Contain("no logits within the tolerance box"));
    }

    [Test]
    public void TheExactSearchFindsMovesWhereverADenseSearchOfTheBoxDoes()
    {
        // Random rows (temperature 1, no cut), one tolerance for every logit: wherever a dense search over the moves of
        // the ids below x and above it (x up by its tolerance) finds one that makes the draw pick x, the exact search
        // returns moves inside the box at which the sampler picks x; where it returns moves, the sampler picks x there.
        var rng = new Random(20261128);
        var options = new GenerationOptions { Temperature = 1, Seed = 1 };
        int both = 0, neither = 0;
        for (int trial = 0; trial < 300; trial++)
        {
            int n = rng.Next(3, 10);
            var pick = Enumerable.Range(0, n).Select(_ => 8 + 3 * rng.NextDouble()).ToArray();
            var eps = Enumerable.Repeat(0.05 + 0.3 * rng.NextDouble(), n).ToArray();
            double r = rng.NextDouble();
            var p = BatchEventsCompare.Distribution(options, pick)!;
            int drawn = BatchEventsCompare.Draw(p, r);
            int x = rng.Next(n - 1);
            if (x >= drawn) x++;
            double[] Moved(double below, double above) => pick.Select((v, i) => v + (i < x ? below : i == x ? 1 : above) * eps[i]).ToArray();
            bool Picks(double below, double above) => BatchEventsCompare.Draw(BatchEventsCompare.Distribution(options, Moved(below, above))!, r) == x;
            bool dense = Enumerable.Range(0, 81).Any(i => Enumerable.Range(0, 81).Any(j => Picks(-1 + i / 40.0, -1 + j / 40.0)));
            var w = BatchEventsCompare.WitnessOfPick(options, pick, eps, Enumerable.Range(0, n).ToHashSet(), x, r);
            if (w is (double tb, double tc))
            {
                Assert.That(new[] { tb, tc }, Has.All.InRange(-1.0, 1.0), $"trial {trial}");
                Assert.That(Picks(tb, tc), Is.True, $"trial {trial}: the moves returned pick x");
                if (dense) both++;
            }
            else
            {
                Assert.That(dense, Is.False, $"trial {trial}: the dense search found moves the exact one missed");
                neither++;
            }
        }
        Assert.That(both, Is.GreaterThan(20));
        Assert.That(neither, Is.GreaterThan(20));
    }

    [Test]
    public void ASampledFlipOverASmallTokenPassesWhereOnlyPointsOffTheGridPickIt()
    {
        ulong seed = MidSeed();
        double r = BatchEventsCompare.DrawAt(seed, 8);
        var options = new GenerationOptions { Temperature = 1, Seed = seed };
        // Tokens 0 (mass 0.99), 1 (0.01) and 2 (0.01), then 13 tokens of mass C together, which puts the draw 0.3 of a
        // tolerance ε (bfloat16 at 13: 2.5 ulps of 1/16) below where the boundary after token 1 would be with ids 0–1
        // moved against the rest: r = A·e^(−0.3ε) / (A·e^(−0.3ε) + C), A = 0.99 + 0.01. Token 2's interval is narrow, so
        // the moves that put r inside it form a thin band along tb − tc ≈ −0.3 (ids below 2 by tb, ids above by tc): no
        // point of a grid of halves lies in it, but the band does lie in the box.
        const double eps = 2.5 / 16;
        double c = Math.Exp(-0.3 * eps) * (1 - r) / r;
        var l = new float[Vocab];
        l[0] = (float)(13 + Math.Log(0.99));
        l[1] = (float)(13 + Math.Log(0.01));
        l[2] = (float)(13 + Math.Log(0.01));
        for (int i = 3; i < Vocab; i++) l[i] = (float)(13 + Math.Log(c / (Vocab - 3)));
        Func<int, float[]> raw = n => n == 8 ? l : Peaked();
        var pick = l.Select(v => (double)v).ToArray();
        Assert.That(BatchEventsCompare.Draw(BatchEventsCompare.Distribution(options, pick)!, r), Is.EqualTo(0), "the judge's own draw is token 0");
        double[] steps = [-1, -0.5, 0, 0.5, 1];
        double[] Moved(double below, double at, double above) => pick.Select((v, i) =>
            v + (i < 2 ? below : i == 2 ? at : above) * NearTiePolicy.Bf16Ulps / 2.0 * BatchEventsCompare.Ulp(Math.Abs(v), 8)).ToArray();
        bool gridPicks2 = steps.Any(b => steps.Any(a => steps.Any(u => BatchEventsCompare.Draw(BatchEventsCompare.Distribution(options, Moved(b, a, u))!, r) == 2)));
        Assert.That(gridPicks2, Is.False, "no point of the grid of halves makes the draw pick 2");

        var (got, want) = SampledFlip(0, 2);
        var v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(8, options, raw));
        Assert.That(v.Pass, Is.True, v.Message);
        Assert.That(v.Message, Does.Contain("not adjacent").And.Contain("times their tolerance").And.Contain("the same draw picks 2"));
        // The moves the judge names lie in the box, and the sampler there does pick 2.
        var m = System.Text.RegularExpressions.Regex.Match(v.Message, @"ids below 2 moved by ([^,]+), 2 by ([^ ]+) and ids above by ([^ ]+) times");
        Assert.That(m.Success, Is.True, v.Message);
        double Parse(string t) => double.Parse(t.Replace('−', '-'), System.Globalization.CultureInfo.InvariantCulture);
        double tb = Parse(m.Groups[1].Value), ta = Parse(m.Groups[2].Value), tc = Parse(m.Groups[3].Value);
        Assert.That(new[] { tb, ta, tc }, Has.All.InRange(-1.0, 1.0));
        Assert.That(tb - tc, Is.InRange(-0.5, 0.0), "the band of moves that pick 2 lies between grid lines");
        // float32 logits move too little to cross token 1's mass.
        v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(24, options, raw));
        Assert.That(v.Pass, Is.False, v.Message);
        Assert.That(v.Message, Does.Contain("no logits within the tolerance box"));
    }

    [Test]
    public void ASampledFlipAtTheTopKCutPassesOnlyWithANearTieAtTheCut()
    {
        // A seed whose draw 8 is below 1/6 (so the kept token's interval below can hold it).
        ulong seed = Enumerable.Range(1, 1000).Select(k => (ulong)k).First(k => BatchEventsCompare.DrawAt(k, 8) is > 0.02 and < 0.15);
        double r = BatchEventsCompare.DrawAt(seed, 8);
        var options = new GenerationOptions { Temperature = 1, TopK = 3, Seed = seed };
        // Top-3 of tokens 1, 5, 9 (5 and 9 at 10, the rest below, cut); token 1's mass 2r, so the draw, first in id order,
        // picks 1. Token 0 a hair below 1 (one float32 ulp): the other batch's logits put it above 1, so its cut kept 0
        // instead, and the same draw, in the same first interval, picked 0. Half a logit below 1 it is no tie at the cut.
        float[] Cut(float below)
        {
            var l = new float[Vocab];
            l[5] = l[9] = 10;
            l[1] = (float)(10 + Math.Log(4 * r / (1 - 2 * r)));
            l[0] = below == 0 ? MathF.BitDecrement(l[1]) : l[1] - below;
            return l;
        }
        var p = BatchEventsCompare.Distribution(options, Cut(0).Select(v => (double)v).ToArray())!;
        Assert.That(Enumerable.Range(0, Vocab).Where(i => p[i] > 0).ToArray(), Is.EqualTo(new[] { 1, 5, 9 }));
        Assert.That(BatchEventsCompare.Draw(p, r), Is.EqualTo(1));
        var (got, want) = SampledFlip(1, 0);
        var v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(24, options, n => n == 8 ? Cut(0) : Peaked()));
        Assert.That(v.Pass, Is.True, v.Message);
        Assert.That(v.Message, Does.Contain("top-k/top-p cut keeps 3 tokens").And.Contain("draw picks 0"));
        v = BatchEventsCompare.Compare(got, want, "slots", "eager", Sampled(24, options, n => n == 8 ? Cut(0.5f) : Peaked()));
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("event 25").And.Contain("token 0 is cut").And.Contain("nor a near tie at the top-k/top-p cut"));
    }

    [Test]
    public void AGreedySequenceUnderASamplingPolicyIsJudgedByItsLogits()
    {
        // The tiny-gap and large-gap flips of sequence 1 as above, its options greedy (a policy that knows options): as before.
        var want = Events();
        int i = 25, b = want[i].Token, a = (b + 1) % Vocab;
        NearTiePolicy Greedy(Dictionary<int, float> top) => Gpu(8, top, []) with { Options = _ => new GenerationOptions { TopK = 3 } };
        var v = BatchEventsCompare.Compare(Flip(want, i, a), want, "slots", "eager", Greedy(new() { [a] = 10f, [b] = 10.0625f, [want[28].Token] = 10f }));
        Assert.That(v.Pass, Is.True, v.Message);
        Assert.That(v.Message, Does.Contain("-0.0625"));
        v = BatchEventsCompare.Compare(Flip(want, i, a), want, "slots", "eager", Greedy(new() { [a] = 10f, [b] = 12f }));
        Assert.That(v.Pass, Is.False);
        Assert.That(v.Message, Does.Contain("no near tie: logit"));
    }

    [Test]
    public void UlpsAreThoseOfTheDType()
    {
        Assert.That(BatchEventsCompare.Ulp(10, 8), Is.EqualTo(1.0 / 16));
        Assert.That(BatchEventsCompare.Ulp(1, 8), Is.EqualTo(1.0 / 128));
        Assert.That(BatchEventsCompare.Ulp(10, 24), Is.EqualTo(Math.ScaleB(1.0, -20)));
        Assert.That(BatchEventsCompare.Ulp(0, 8), Is.Zero);
    }
}

/// <summary>
/// The selftest row's judge over the demo's tiny LM on the CPU (<see cref="SelfTestBatchCases.Judge"/>): its argmax is
/// the eager batch's token at every greedy event (the sequence-to-question mapping and the penalty right), its draw the
/// sampled sequence's token at every one of its events, and a flip planted at a real bfloat16 near tie of those events passes the GPU policy where a flip to
/// a token far below fails.
/// </summary>
public class SelfTestBatchJudgeTests
{
    [Test]
    public void TheJudgeAgreesWithTheBatchAndTellsATieFromAFlip([Values(Tensors.DType.F32, Tensors.DType.BF16)] Tensors.DType dtype)
    {
        using var model = global::Parrot.Parrot.ParrotModel.Load(Demo.DemoAssets.Locate(null).Lm,
            new global::Parrot.Parrot.ParrotModelOptions { DType = dtype });
        var events = SelfTestBatchCases.Run(model, hostPicksOnly: false, global::Parrot.Parrot.Inference.DecodeStepMode.Eager, longAnswer: true, out _);
        var judge = SelfTestBatchCases.Judge(model);
        var policy = NearTiePolicy.For(dtype == Tensors.DType.BF16, judge);
        int tie = -1, judged = 0;
        for (int i = 0; i < events.Count; i++)
        {
            var e = events[i];
            var generated = events.Take(i).Where(x => x.Sequence == e.Sequence).Select(x => x.Token).ToList();
            if (e.Sequence == 1)
            {
                // The sampled sequence: its judge's logits (at temperature 0: penalised, undrawn) through the sampler's
                // distribution and the draw of its seed at this token's index reproduce the batch's token — the draw is
                // reconstructed without replaying the sequence's generator.
                var options = SelfTestBatchCases.JudgeOptions(1);
                var (_, penalised) = judge(1, generated);
                var probs = BatchEventsCompare.Distribution(options, penalised)!;
                Assert.That(BatchEventsCompare.Draw(probs, BatchEventsCompare.DrawAt(options.Seed, generated.Count)), Is.EqualTo(e.Token), $"event {i}: {e}: the judge's draw");
                judged++;
                continue;
            }
            // Every 7th event (and all of the penalised sequence 2) keeps the test short.
            if (i % 7 != 0 && e.Sequence != 2) continue;
            var (raw, pick) = judge(e.Sequence, generated);
            var order = Enumerable.Range(0, pick.Length).OrderByDescending(t => pick[t]).ToArray();
            Assert.That(pick[e.Token], Is.EqualTo(pick[order[0]]), $"event {i}: {e}: the judge's argmax");
            judged++;
            double ulp = BatchEventsCompare.Ulp(Math.Abs(raw[order[0]]), policy.MantissaBits);
            if (tie < 0 && i >= BatchEventsCompare.MinMatched && e.Sequence == 6 && order[1] != e.Token && pick[order[0]] - pick[order[1]] <= 2 * ulp) tie = i;
        }
        Assert.That(judged, Is.GreaterThan(40));
        if (dtype == Tensors.DType.F32) return;
        Assert.That(tie, Is.GreaterThan(0), "a near tie in the long answer (its bf16 logits often are)");
        var (_, p) = judge(6, events.Take(tie).Where(x => x.Sequence == 6).Select(x => x.Token).ToList());
        var ranked = Enumerable.Range(0, p.Length).OrderByDescending(t => p[t]).ToArray();
        int second = ranked[0] == events[tie].Token ? ranked[1] : ranked[0], far = ranked[^1];
        var flipped = events.ToList();
        flipped[tie] = flipped[tie] with { Token = second, Text = "?" };
        // What a batch that took the other token goes on to pick: each later token of the long answer is its own prefix's
        // argmax (the judge is the eager forward).
        int last = -1;
        for (int j = tie + 1; j < flipped.Count; j++)
        {
            if (flipped[j].Sequence != 6) continue;
            var (_, pj) = judge(6, flipped.Take(j).Where(x => x.Sequence == 6).Select(x => x.Token).ToList());
            flipped[j] = flipped[j] with { Token = Array.IndexOf(pj, pj.Max()), Text = "?" };
            last = j;
        }
        var v = BatchEventsCompare.Compare(flipped, events, "slots", "eager", policy);
        Assert.That(v.Pass, Is.True, v.Message);
        Assert.That(v.Matched, Is.EqualTo(tie));
        Assert.That(last, Is.GreaterThan(tie), "the long answer goes on after its first tie");
        Assert.That(v.Message, Does.Contain("after it").And.Not.Contain("after it 0 tokens"));
        {
            // A wrong token after the tie (what a wrong slot would give): the last-ranked token of its own prefix.
            var wrong = flipped.ToList();
            var (_, pl) = judge(6, wrong.Take(last).Where(x => x.Sequence == 6).Select(x => x.Token).ToList());
            wrong[last] = wrong[last] with { Token = Array.IndexOf(pl, pl.Min()) };
            var w = BatchEventsCompare.Compare(wrong, events, "slots", "eager", policy);
            Assert.That(w.Pass, Is.False, "a wrong token after the tie");
            Assert.That(w.Message, Does.Contain($"event {last}").And.Contain("not its own prefix's pick"));
        }
        flipped[tie] = flipped[tie] with { Token = far };
        Assert.That(BatchEventsCompare.Compare(flipped, events, "slots", "eager", policy).Pass, Is.False, "a flip to the judge's last token");
    }
}
