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

    /// <summary>The id, or −1 where the sampler refuses the row: a sampled row with a +∞ logit leaves no probability to sample from (the former sampler refuses it too).</summary>
    private static int Outcome(Func<int> pick)
    {
        try { return pick(); }
        catch (InvalidOperationException e) when (e.Message.Contains("no probability")) { return -1; }
    }

    [Test]
    public void CandidatesAndTheRowSumGiveTheWholeRowsToken([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 7 : 8);
        int decided = 0, whole = 0, peakedDecided = 0, peaked = 0, nudgedDecided = 0, escalated = 0, bigRows = 0, bigDecided = 0;
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
            // Qwen2's vocabulary asks once more (TopKCandidates.EscalatedCount) where the first count does not decide.
            var ask = CandidateAsk.For(count, candidates, options, big ? TopKCandidates.EscalatedCount : 0);
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
                    if (big) { bigRows++; if (read.Logits is null) bigDecided++; }
                    if (read.Escalated && read.Logits is null) escalated++;
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
        TestContext.Out.WriteLine($"decided {decided} ({escalated} escalated; Qwen2's vocabulary {bigDecided}/{bigRows}), whole {whole}, peaked {peakedDecided}/{peaked}, nudged {nudgedDecided}; fallbacks: "
            + string.Join(", ", reasons.OrderByDescending(x => x.Value).Select(x => $"{x.Key} {x.Value}")));
        Assert.That(peakedDecided, Is.GreaterThan(peaked * 9 / 10), "peaked rows (temperature ≤ 1.5) decided by their candidates");
        Assert.That(whole, Is.GreaterThan(20), "rows read whole");
    }


    /// <summary>The whole-row sampler's sum: Σ exp(l_i − max) in index order, l the penalised logits ÷ T.</summary>
    private static double WholeRowSum(float[] row, GenerationOptions options, ISet<int> seen)
    {
        var l = row.Select((x, i) => (seen.Contains(i) && options.RepetitionPenalty != 1
            ? (x < 0 ? x * options.RepetitionPenalty : x / options.RepetitionPenalty) : (double)x) / options.Temperature).ToArray();
        double max = l.Max(), sum = 0;
        foreach (double x in l) sum += Math.Exp(x - max);
        return sum;
    }

    [Test]
    public void TheIntervalHoldsTheWholeRowsSum([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 3 : 4);
        int checkedRows = 0;
        for (int trial = 0; trial < 300; trial++)
        {
            int vocab = trial % 50 == 0 ? 151_936 : rng.Next(200, 3000);
            var options = new GenerationOptions { Temperature = 0.1 + rng.NextDouble() * 4.9, TopP = 0.9, RepetitionPenalty = Penalties[trial % Penalties.Length] };
            var prompt = Enumerable.Range(0, rng.Next(0, 30)).Select(_ => rng.Next(vocab)).ToArray();
            var sampler = new TokenSampler(options, vocab, prompt);
            var ask = CandidateAsk.For(vocab / 5, sampler, options);
            var row = Row(rng, vocab, trial % 4 == 0 ? 7 : rng.Next(3));
            using (ask.Seen)
            using (TensorScope.Begin())
            {
                var logits = Tensor.FromArray(row, device, 1, vocab);
                var read = TopKCandidates.ReadRows(logits, [0], [ask])[0];
                if (read.Sum is null && sampler.LastTopPInterval is null) continue;
                var (lo, hi) = sampler.LastTopPInterval!.Value;
                double s = WholeRowSum(row, options, prompt.ToHashSet());
                Assert.That(s >= lo && s <= hi, $"trial {trial}: S = {s:R} outside [{lo:R}, {hi:R}] ({options})");
                Assert.That((hi - lo) / s, Is.LessThan(1e-9), $"trial {trial}: the interval is tight");
                checkedRows++;
            }
        }
        Assert.That(checkedRows, Is.GreaterThan(200));
    }

    /// <summary>The sampler's draw over the kept entries at sum <paramref name="s"/> (Sample's walk, verbatim in effect).</summary>
    private static int Walk(double[] e, int[] kept, double r, double s)
    {
        double total = 0;
        foreach (int i in kept) total += e[i] / s;
        double u = r * total;
        foreach (int i in kept)
        {
            u -= e[i] / s;
            if (u < 0) return i;
        }
        return kept[^1];
    }

    [Test]
    public void TheDrawsMarginHoldsForEverySum()
    {
        var rng = new Random(11);
        int decided = 0, refused = 0;
        for (int trial = 0; trial < 4000; trial++)
        {
            int n = rng.Next(2, 7);
            var e = Enumerable.Range(0, n).Select(_ => rng.Next(3) == 0 ? 1.0 : rng.NextDouble()).ToArray();
            var kept = Enumerable.Range(0, n).Where(_ => rng.Next(4) != 0).DefaultIfEmpty(0).ToArray();
            // r on a boundary r·E = E_k, then a few ulps either side.
            double eTot = 0;
            foreach (int i in kept) eTot += e[i];
            int k = rng.Next(kept.Length);
            double prefix = 0;
            for (int j = 0; j <= k; j++) prefix += e[kept[j]];
            double r = Math.Min(prefix / eTot, 1 - 1e-16);
            for (int step = rng.Next(-6, 7); step != 0; step -= Math.Sign(step)) r = step > 0 ? Math.BitIncrement(r) : Math.BitDecrement(r);
            if (!(r >= 0 && r < 1)) continue;
            int? pick = TokenSampler.DrawFromNumerators(e, kept, r);
            if (pick is null) { refused++; continue; }
            decided++;
            double s0 = 1 + rng.NextDouble() * 1000;
            for (int j = 0; j < 200; j++)
            {
                double s = s0 * (1 + (rng.NextDouble() * 2 - 1) * 1e-9);
                Assert.That(Walk(e, kept, r, s), Is.EqualTo(pick), $"trial {trial}: e [{string.Join(", ", e.Select(x => x.ToString("R")))}], kept [{string.Join(", ", kept)}], r {r:R}, S {s:R}");
            }
        }
        TestContext.Out.WriteLine($"decided {decided}, refused {refused}");
        Assert.That(decided, Is.GreaterThan(800));
        Assert.That(refused, Is.GreaterThan(100), "draws on a boundary are refused");
    }

    /// <summary>
    /// Ids 0, 1 at 6; ids 2..301 at 2 (98 of them among the top 100 candidates, 202 left out but preselected: p ≈ 0.0024
    /// ≥ 1/1000); the rest at −10. Decided by rule (B) while the cut stays above the 2's; refused at a tie straddling the cut
    /// or a cut that reaches the 2's.
    /// </summary>
    private static float[] CutRow()
    {
        var row = Enumerable.Repeat(-10f, 1000).ToArray();
        row[0] = row[1] = 6;
        for (int i = 2; i < 302; i++) row[i] = 2;
        return row;
    }

    /// <summary>Reads <paramref name="row"/> on the test device for <paramref name="options"/> (top <paramref name="count"/>) and samples it; also the whole row's pick and the fallback reason.</summary>
    private static (bool Decided, int Pick, int Whole, string? Why) Both(GenerationOptions options, float[] row, int count, int[]? prompt = null, Func<RowSum, RowSum>? device = null)
    {
        var sampler = new TokenSampler(options, row.Length, prompt ?? []);
        var ask = CandidateAsk.For(count, sampler, options);
        using (ask.Seen)
        using (TensorScope.Begin())
        {
            var read = TopKCandidates.ReadRows(Tensor.FromArray(row, TestDevice.Get(), 1, row.Length), [0], [ask with { SumSuffice = device is null ? ask.SumSuffice : (i, v, t, s) => sampler.CandidatesSuffice(i, v, t, device(s)) }])[0];
            string? why = sampler.LastTopPFallback;
            if (device is not null && read.Sum is { } s0) read = read with { Sum = device(s0) };
            int whole = Outcome(() => new FormerTokenSampler(options, row.Length, prompt ?? []).Next(row));
            return (read.Logits is null, Outcome(() => sampler.Next(read)), whole, why);
        }
    }

    [Test]
    public void CraftedRowsForEachRule()
    {
        var row = CutRow();
        int seedsDecided = 0;
        for (ulong seed = 0; seed < 40; seed++)
        {
            var options = new GenerationOptions { Temperature = 1, TopP = 0.2, Seed = seed };
            var (d, p, w, _) = Both(options, row, 100);
            Assert.That(p, Is.EqualTo(w), $"seed {seed}");
            if (d) seedsDecided++;
            // A tie straddling the cut (top-p 0.1 keeps one of the two 6's; which one depends on the whole sort).
            var tie = Both(options with { TopP = 0.1 }, row, 100);
            Assert.That(tie.Decided, Is.False, $"seed {seed}: tie at the cut");
            Assert.That(tie.Why, Is.EqualTo("a tie at the cut"));
            Assert.That(tie.Pick, Is.EqualTo(tie.Whole));
            // Top-p 0.3 cuts inside the 2's, 202 of which are left out: the row.
            var deep = Both(options with { TopP = 0.3 }, row, 100);
            Assert.That((deep.Decided, deep.Why), Is.EqualTo((false, "a left-out id may reach the cut")), $"seed {seed}");
            Assert.That(deep.Pick, Is.EqualTo(deep.Whole));
            // A device whose maximum disagrees with the candidates' (or whose sum is not finite): the row.
            var wrong = Both(options, row, 100, device: s => s with { Max = s.Max + 1e-6 });
            Assert.That((wrong.Decided, wrong.Why), Is.EqualTo((false, "the row sum's interval")));
            var nan = Both(options, row, 100, device: s => s with { Sum = double.NaN });
            Assert.That((nan.Decided, nan.Why, nan.Pick == nan.Whole), Is.EqualTo((false, "the row sum's interval", true)));
        }
        Assert.That(seedsDecided, Is.EqualTo(40), "top-p 0.2: rule (B), the two 6's kept");
        // Rule (A): everything else at −∞ (probability 0): every preselected id is a candidate; a tie at the cut is the
        // candidates' own sort then (the same keys in the same order as the whole row's).
        var peaked = Enumerable.Repeat(float.NegativeInfinity, 1000).ToArray();
        peaked[5] = peaked[9] = 3; peaked[700] = 1;
        for (ulong seed = 0; seed < 20; seed++)
        {
            var (d, p, w, _) = Both(new GenerationOptions { Temperature = 0.7, TopP = 0.3, Seed = seed }, peaked, 10);
            Assert.That((d, p), Is.EqualTo((true, w)), $"seed {seed}");
        }
        // NaN (TopK ranks it first), +∞ (no finite maximum; the whole row then refuses it), a flat row (the candidates hold
        // too little): the row.
        var withNaN = CutRow(); withNaN[500] = float.NaN;
        Assert.That(Both(new GenerationOptions { Temperature = 1, TopP = 0.2 }, withNaN, 100) is var x && !x.Decided && x.Why == "NaN" && x.Pick == x.Whole);
        var withInf = CutRow(); withInf[500] = float.PositiveInfinity;
        Assert.That(Both(new GenerationOptions { Temperature = 1, TopP = 0.2 }, withInf, 100) is var y && !y.Decided && y.Why == "no finite maximum" && y.Pick == -1 && y.Whole == -1);
        var flat = Enumerable.Range(0, 1000).Select(i => (float)Math.Sin(i) * 0.01f).ToArray();
        Assert.That(Both(new GenerationOptions { Temperature = 1, TopP = 0.9 }, flat, 100) is var z && !z.Decided && z.Why == "the candidates hold less than top-p" && z.Pick == z.Whole);
    }

    [Test]
    public void APenaltyCorrectsTheDevicesSum()
    {
        // Id 0 (seen) at 8 is the raw maximum; penalty 2 halves it to 4 below id 1's 6: the device's sum (no penalty,
        // max 8) is rescaled to the host's max 6 and corrected for id 0's term.
        var row = CutRow();
        row[0] = 8;
        for (ulong seed = 0; seed < 30; seed++)
        {
            var options = new GenerationOptions { Temperature = 1, TopP = 0.1, RepetitionPenalty = 2, Seed = seed };
            var (d, p, w, why) = Both(options, row, 100, prompt: [0, 150, 900]);
            Assert.That(p, Is.EqualTo(w), $"seed {seed}");
            Assert.That(d, $"seed {seed}: {why}");
            Assert.That(p, Is.EqualTo(1), "id 0's 8 halved to 4: id 1 alone holds 0.1");
        }
    }

    [Test]
    public void ASumNudgedAcrossTheCutNeedsTheRow()
    {
        // Ids 0 and 1 at 0, the rest −∞: S = 2, p = 0.5 each, top-p 0.5 keeps one on the whole row. A device sum 1e-13
        // above 2 (within its bound) would keep both if taken alone; the interval straddles the cut: the row.
        var row = Enumerable.Repeat(float.NegativeInfinity, 1000).ToArray();
        row[0] = row[1] = 0;
        int refused = 0;
        for (ulong seed = 0; seed < 20; seed++)
        {
            var options = new GenerationOptions { Temperature = 1, TopP = 0.5, Seed = seed };
            var (d, p, w, why) = Both(options, row, 10, device: s => s with { Sum = s.Sum * (1 + 1e-13) });
            Assert.That(p, Is.EqualTo(w), $"seed {seed}");
            if (!d) { refused++; Assert.That(why, Is.EqualTo("the nucleus's cut")); }
        }
        Assert.That(refused, Is.EqualTo(20));
    }
    /// <summary>
    /// Rule (B) where the nucleus's sorted walk over the candidates ends without reaching top-p (its sum in sort order
    /// a few ulps below the same probabilities' sum in index order, which reached it): the whole row walks on into the
    /// preselected ids left out and keeps one of them. A device sum within its bound that puts the host's S at the top
    /// of the interval, top-p between the two sums: the candidates must not decide (or decide the whole row's pick).
    /// </summary>
    [Test]
    public void RuleBsWalkThatEndsBelowTopPNeedsTheRow()
    {
        var rng = new Random(5);
        int vocab = 2000, found = 0, mismatches = 0, refused = 0;
        for (int config = 0; config < 400 && found < 6; config++)
        {
            // Ids 0..399 at 2.9 left out but preselected (p ≈ 0.002 ≥ 1/V); candidates 1000..1049 above 3; id 1050 at
            // 2.95 (the top's smallest, m) seen and penalised below the threshold; the rest far below.
            var row = Enumerable.Repeat(-10f, vocab).ToArray();
            for (int i = 0; i < 400; i++) row[i] = 2.9f;
            for (int i = 1000; i < 1050; i++) row[i] = (float)(3.01 + rng.NextDouble() * 0.49);
            row[1050] = 2.95f;
            var baseOptions = new GenerationOptions { Temperature = 1, TopP = 0.5, RepetitionPenalty = 3 };
            int[] prompt = [1050];
            var probe = new TokenSampler(baseOptions, vocab, prompt);
            var ids = Enumerable.Range(1000, 51).ToArray();
            var values = ids.Select(i => row[i]).ToArray();
            double s = WholeRowSum(row, baseOptions, prompt.ToHashSet());
            double mr = row.Max(x => (double)x), d0 = 0;
            foreach (float x in row) d0 += Math.Exp(x - mr);
            // The device sum, within its bound, whose interval's top is just above S (bisection: hi grows with d).
            double dLo = d0 * (1 - 1e-9), dHi = d0;
            (double Lo, double Hi) At(double d) { probe.TopPPick(ids, values, 51, new RowSum(mr, d)); return probe.LastTopPInterval!.Value; }
            for (int it = 0; it < 200; it++) { double mid = (dLo + dHi) / 2; if (At(mid).Hi >= s) dHi = mid; else dLo = mid; }
            var (lo, hi) = At(dHi);
            Assert.That(lo <= s && s <= hi, $"config {config}: S inside the interval");
            // The candidates' probabilities at S and at the interval's top: the index-order mass and the sorted walk.
            double max = values.Take(50).Max(x => (double)x);
            double[] P(double sum) => ids.Take(50).Select(i => Math.Exp(row[i] - max) / sum).ToArray();
            double Mass(double[] p) { double m = 0; foreach (double x in p) m += x; return m; }
            double Walked(double[] p) { double c = 0; foreach (double x in p.OrderByDescending(x => x)) c += x; return c; }
            double topP = Mass(P(hi));
            if (!(Walked(P(s)) < topP)) continue;
            found++;
            for (ulong seed = 0; seed < 300; seed++)
            {
                var options = baseOptions with { TopP = topP, Seed = seed };
                var sampler = new TokenSampler(options, vocab, prompt);
                int whole = new FormerTokenSampler(options, vocab, prompt).Next(row);
                int? decided = sampler.TopPPick(ids, values, 51, new RowSum(mr, dHi));
                if (decided is null && sampler.LastTopPFallback == "the nucleus's walk ends below top-p") refused++;
                if (decided is int pick && pick != whole) { if (mismatches++ < 5) TestContext.Out.WriteLine($"config {config} seed {seed}: candidates {pick}, whole row {whole}, topP {topP:R}, S {s:R} in [{lo:R}, {hi:R}]"); }
            }
        }
        Assert.That(found, Is.GreaterThan(0), "a row whose sorted walk ends below top-p");
        Assert.That(mismatches, Is.EqualTo(0));
        Assert.That(refused, Is.EqualTo(found * 300), "every such row refused by rule (B)'s walk check");
    }
    /// <summary>
    /// Temperatures 0.003–50 and logits scaled ×0.01–×100 (|l| up to ~10⁵: the bound's argument-rounding term dominates)
    /// on the test device: the interval holds the whole row's sum and every decided row picks the whole row's token.
    /// </summary>
    [Test]
    public void ExtremeTemperaturesAndScales()
    {
        var rng = new Random(21);
        int checkedRows = 0, decided = 0, mism = 0;
        foreach (double temp in new[] { 0.003, 0.01, 0.03, 50.0 })
            for (int trial = 0; trial < 60; trial++)
            {
                int vocab = rng.Next(200, 3000);
                var options = new GenerationOptions { Temperature = temp, TopP = 0.05 + rng.NextDouble() * 0.9, RepetitionPenalty = Penalties[trial % Penalties.Length], Seed = (ulong)trial };
                var prompt = Enumerable.Range(0, rng.Next(0, 30)).Select(_ => rng.Next(vocab)).ToArray();
                var sampler = new TokenSampler(options, vocab, prompt);
                var ask = CandidateAsk.For(vocab / 5, sampler, options);
                double scale = new[] { 1.0, 10, 100, 0.01 }[rng.Next(4)];
                var row = Row(rng, vocab, rng.Next(8)).Select(x => (float)(x * scale)).ToArray();
                using (ask.Seen)
                using (TensorScope.Begin())
                {
                    var logits = Tensor.FromArray(row, TestDevice.Get(), 1, vocab);
                    var read = TopKCandidates.ReadRows(logits, [0], [ask])[0];
                    int whole = Outcome(() => new FormerTokenSampler(options, vocab, prompt).Next(row));
                    if (read.Logits is null) { decided++; if (Outcome(() => sampler.Next(read)) != whole) mism++; }
                    if (sampler.LastTopPInterval is not { } iv) continue;
                    double s = WholeRowSum(row, options, prompt.ToHashSet());
                    if (!(s >= iv.Lo && s <= iv.Hi)) TestContext.Out.WriteLine($"T {temp} trial {trial}: S {s:R} outside [{iv.Lo:R}, {iv.Hi:R}]");
                    Assert.That(s >= iv.Lo && s <= iv.Hi);
                    checkedRows++;
                }
            }
        TestContext.Out.WriteLine($"checked {checkedRows}, decided {decided}, mismatches {mism}");
        Assert.That(mism, Is.EqualTo(0));
        Assert.That(decided, Is.GreaterThan(50));
    }
}
