using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// The escalation's proof rules where they are tightest (review of "Escalated candidates and top-k up to 4096"): rows
/// built by rank with blocks of equal logits straddling the first count, the escalation, top-k and k + margin, quantised
/// rows (many ties), mostly −∞ rows, a +∞ or a NaN now and then; seen ids among the top, at those boundaries or anywhere;
/// temperatures 0.01–100, top-k 1–4097 (4096 + margin and past the cap), top-p alone and with top-k, penalties 0.5–2;
/// logits stored as float32, bfloat16 (ties everywhere, as a GPU's logits) and float16, read in batches of three at
/// permuted rows on the CPU and the test device, with the default counts over vocabularies around the escalation's
/// byte threshold (12,300–20,000) and with counts scaled down over small ones. Every pick and the streams' next draw
/// equal the former whole-row sampler's (<see cref="FormerTokenSampler"/>).
/// </summary>
public class TokenSamplerEscalationBoundaryTests
{
    private static int Outcome(Func<int> pick)
    {
        try { return pick(); }
        catch (Exception e) when (e is IndexOutOfRangeException || e.Message.Contains("no probability")) { return -1; }
    }

    /// <summary>A row by rank: a profile (Zipf, a warm block, linear, four levels, a near-flat top, a finite block in −∞), tie blocks at <paramref name="boundaries"/>, maybe quantised; also its ids by rank.</summary>
    private static (float[] Row, int[] ByRank) Row(Random rng, int vocab, int[] boundaries, double temperature)
    {
        var byRank = Enumerable.Range(0, vocab).OrderBy(_ => rng.Next()).ToArray();
        var v = new double[vocab];
        int profile = rng.Next(6);
        double zipf = temperature * (0.5 + rng.NextDouble() * 1.5);
        int warm = Math.Clamp(rng.Next(2) == 0 ? boundaries[rng.Next(boundaries.Length)] + rng.Next(-40, 41) : rng.Next(1, Math.Min(vocab, 6000)), 1, vocab - 1);
        double noise = new[] { 0, 1e-6, 1e-3, 0.05, 0.3 }[rng.Next(5)];
        for (int r = 0; r < vocab; r++)
            v[r] = profile switch
            {
                0 => -zipf * Math.Log(r + 1),
                1 => r < warm ? 8 + noise * (rng.NextDouble() - 0.5) : rng.NextDouble() * 2 - 1 - (rng.Next(3) == 0 ? 10 : 0),
                2 => 5 - 10.0 * r / vocab,
                3 => rng.Next(4) * 0.5,
                4 => r < warm ? temperature * Math.Log(vocab) * (0.3 + rng.NextDouble() * 0.5) - r * 1e-4 : -zipf * Math.Log(r + 1) * 0.2,
                _ => r < warm ? -r * 1e-3 * (1 + noise) : double.NegativeInfinity,
            };
        Array.Sort(v);
        Array.Reverse(v);
        for (int b = rng.Next(0, 4); b > 0; b--)
        {
            // A block of equal logits around a boundary (the cut of one TopK or the other, top-k's k-th value).
            int at = Math.Clamp(boundaries[rng.Next(boundaries.Length)] + rng.Next(-3, 4), 1, vocab - 1);
            int lo = Math.Max(0, at - rng.Next(0, 200)), hi = Math.Min(vocab - 1, at + rng.Next(0, 200));
            for (int r = lo; r <= hi; r++) v[r] = v[lo];
        }
        if (rng.Next(4) == 0)
        {
            double q = new[] { 1.0 / 8, 1.0 / 64, 1 }[rng.Next(3)];
            for (int r = 0; r < vocab; r++) if (double.IsFinite(v[r])) v[r] = Math.Round(v[r] / q) * q;
        }
        if (rng.Next(30) == 0) v[rng.Next(Math.Min(vocab, 10))] = double.PositiveInfinity;
        if (rng.Next(40) == 0) v[rng.Next(vocab)] = double.NaN;
        var row = new float[vocab];
        for (int r = 0; r < vocab; r++) row[byRank[r]] = (float)v[r];
        return (row, byRank);
    }

    private static GenerationOptions Options(Random rng, ulong seed)
    {
        double t = new[] { 0.01, 0.05, 0.3, 0.7, 1, 1, 1.5, 3, 10, 100 }[rng.Next(10)];
        double[] penalties = [1, 1, 0.5, 0.9, 1.1, 1.3, 2];
        int[] ks = [1, 2, 50, 300, 1000, 2000, 4000, 4031, 4032, 4033, 4064, 4095, 4096, 4097];
        double penalty = penalties[rng.Next(penalties.Length)];
        return rng.Next(6) switch
        {
            0 => new GenerationOptions { Temperature = 0, RepetitionPenalty = penalties[2 + rng.Next(5)], Seed = seed },
            1 or 2 => new GenerationOptions { Temperature = t, TopP = new[] { 0.1, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999 }[rng.Next(7)], RepetitionPenalty = penalty, Seed = seed },
            3 => new GenerationOptions { Temperature = t, TopK = ks[rng.Next(ks.Length)], RepetitionPenalty = penalty, Seed = seed },
            4 => new GenerationOptions { Temperature = t, TopK = ks[rng.Next(ks.Length)], TopP = new[] { 0.5, 0.9, 0.99 }[rng.Next(3)], RepetitionPenalty = penalty, Seed = seed },
            _ => new GenerationOptions { Temperature = t, TopK = rng.Next(1, 200), TopP = rng.Next(2) == 0 ? 1 : 0.9, RepetitionPenalty = penalty, Seed = seed },
        };
    }

    /// <summary>
    /// Two top-p rows that both escalate, with the same maximum (so the sum's check of the device's max cannot tell their
    /// sums apart) and sums about twice apart: 601 ids at 8 (the rest −30; 0.9 of 600 would put the nucleus's cut on a tie of sums), and the same plus 3,001 ids at 8 − ln 5. Each row's
    /// escalated candidates must be judged with its own first read's sum: the other's would put the second row's nucleus
    /// inside its 601 top ids (half its true sum) and the first row's mass at a half.
    /// </summary>
    [Test]
    public void EscalatedRowsKeepTheirOwnRowSums([Values(false, true)] bool swapped)
    {
        const int vocab = 20_000;
        var rng = new Random(9);
        var rows = new float[2][];
        for (int k = 0; k < 2; k++)
        {
            var byRank = Enumerable.Range(0, vocab).OrderBy(_ => rng.Next()).ToArray();
            rows[k] = new float[vocab];
            Array.Fill(rows[k], -30f);
            for (int i = 0; i < 601; i++) rows[k][byRank[i]] = 8;
            if (k == 1) for (int i = 601; i < 3602; i++) rows[k][byRank[i]] = (float)(8 - Math.Log(5));
        }
        if (swapped) (rows[0], rows[1]) = (rows[1], rows[0]);
        var options = new GenerationOptions { Temperature = 1, TopP = 0.9 };
        int decided = 0;
        for (ulong seed = 0; seed < 8; seed++)
        {
            var o = options with { Seed = seed };
            var samplers = rows.Select(_ => new TokenSampler(o, vocab, [])).ToArray();
            var asks = samplers.Select(s => CandidateAsk.For(TopKCandidates.Count(o, vocab), s, o, TopKCandidates.EscalatedCount)).ToArray();
            LogitsRow[] read;
            using (TensorScope.Begin()) read = TopKCandidates.Read(Tensor.FromArray(rows.SelectMany(r => r).ToArray(), TestDevice.Get(), 2, vocab), asks);
            for (int k = 0; k < 2; k++)
            {
                Assert.That(read[k].Escalated, $"seed {seed} row {k}: escalated");
                if (read[k].Logits is null) decided++;
                else TestContext.Out.WriteLine($"row {k} seed {seed}: {samplers[k].LastTopPFallback}");
                Assert.That(samplers[k].Next(read[k]), Is.EqualTo(new FormerTokenSampler(o, vocab, []).Next(rows[k])), $"seed {seed} row {k}");
            }
        }
        Assert.That(decided, Is.EqualTo(16), "both rows decided by their escalated candidates");
    }

    [Test]
    public void BoundaryRowsGiveTheWholeRowsToken([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        const int b = 3;
        int rows = 0, first = 0, escalated = 0, wholeAfter = 0;
        for (int trial = 0; trial < 60; trial++)
        {
            var rng = new Random((onTestDevice ? 70_000 : 80_000) + trial);
            // The default counts over vocabularies around where the escalation starts to pay, or every count scaled down.
            bool defaults = trial % 3 == 0;
            int vocab = defaults ? new[] { 12_300, 13_000, 16_400, 20_000 }[rng.Next(4)] : rng.Next(300, 6000);
            var dtype = new[] { DType.F32, DType.BF16, DType.F16 }[trial % 3 == 1 ? 1 : rng.Next(3)];
            int margin = defaults ? TopKCandidates.DefaultMargin : rng.Next(0, 20);
            int topP = defaults ? TopKCandidates.TopPCount : rng.Next(2, 60);
            var options = new GenerationOptions[b];
            var counts = new int[b];
            var escalation = new int[b];
            for (int i = 0; i < b; i++)
            {
                options[i] = Options(rng, (ulong)(trial * b + i));
                if (!defaults && options[i].TopK > 0) options[i] = options[i] with { TopK = Math.Max(1, options[i].TopK % Math.Max(2, vocab / 8)) };
                counts[i] = TopKCandidates.Count(options[i], vocab, margin, topP);
                escalation[i] = defaults ? TopKCandidates.EscalatedCount : rng.Next(1, vocab / 3);
            }
            int[] boundaries = [.. counts, .. escalation, .. options.Select(o => Math.Max(1, o.TopK)), .. options.Select(o => o.TopK + margin), 1];
            var firstRow = Row(rng, vocab, boundaries, 1);
            var prompts = new int[b][];
            for (int i = 0; i < b; i++)
            {
                // Seen ids among the top, at the boundaries, or anywhere.
                int kind = rng.Next(4), seen = kind == 0 ? 0 : rng.Next(1, 80);
                prompts[i] = Enumerable.Range(0, seen).Select(_ => firstRow.ByRank[kind switch
                {
                    1 => rng.Next(Math.Min(vocab, 30)),
                    2 => Math.Clamp(boundaries[rng.Next(boundaries.Length)] + rng.Next(-3, 4), 0, vocab - 1),
                    _ => rng.Next(vocab),
                }]).ToArray();
            }
            var formers = Enumerable.Range(0, b).Select(i => new FormerTokenSampler(options[i], vocab, prompts[i])).ToArray();
            var samplers = Enumerable.Range(0, b).Select(i => new TokenSampler(options[i], vocab, prompts[i])).ToArray();
            var asks = Enumerable.Range(0, b).Select(i => counts[i] > 0 ? CandidateAsk.For(counts[i], samplers[i], options[i], escalation[i]) : null).ToArray();
            try
            {
                for (int step = 0; step < 3; step++)
                {
                    var stepRows = Enumerable.Range(0, b).Select(i => step == 0 && i == 0 ? firstRow.Row : Row(rng, vocab, boundaries, Math.Max(options[i].Temperature, 0.01)).Row).ToArray();
                    int[] at = Enumerable.Range(0, b).OrderBy(_ => rng.Next()).ToArray();
                    var ordered = new float[b][];
                    for (int i = 0; i < b; i++) ordered[at[i]] = stepRows[i];
                    LogitsRow[] read;
                    float[] stored;
                    using (TensorScope.Begin())
                    {
                        // The rows as the sampler sees them after the dtype's rounding.
                        var logits = Tensor.FromArray(ordered.SelectMany(r => r).ToArray(), b, vocab).To(dtype).To(device);
                        stored = logits.ToFloatArray();
                        read = TopKCandidates.ReadRows(logits, at, asks);
                    }
                    for (int i = 0; i < b; i++)
                    {
                        var r = read[i];
                        rows++;
                        if (r.Logits is null && !r.Escalated) first++;
                        if (r.Logits is null && r.Escalated) escalated++;
                        if (r.Logits is not null && r.Escalated) wholeAfter++;
                        var whole = stored.AsSpan(at[i] * vocab, vocab).ToArray();
                        Assert.That(Outcome(() => samplers[i].Next(r)), Is.EqualTo(Outcome(() => formers[i].Next(whole))),
                            $"trial {trial} step {step} entry {i} ({(r.Logits is null ? "candidates" : "whole")}{(r.Escalated ? ", escalated" : "")}): {options[i]}, vocab {vocab}, {dtype}, counts {string.Join("/", counts)}, escalation {string.Join("/", escalation)}");
                    }
                }
                var flat = Enumerable.Range(0, vocab).Select(i => (float)Math.Sin(i)).ToArray();
                for (int i = 0; i < b; i++)
                    Assert.That(Outcome(() => samplers[i].Next(flat)), Is.EqualTo(Outcome(() => formers[i].Next(flat))), $"trial {trial} entry {i}: the stream after the steps");
            }
            finally
            {
                foreach (var a in asks) a?.Seen?.Dispose();
            }
        }
        TestContext.Out.WriteLine($"{rows} rows: first candidates {first}, escalated {escalated}, whole after the escalation {wholeAfter}");
        Assert.That(escalated, Is.GreaterThan(rows / 10), "rows decided by the escalated candidates");
        Assert.That(wholeAfter, Is.GreaterThan(rows / 20), "rows refused by the escalated candidates too");
    }
}
