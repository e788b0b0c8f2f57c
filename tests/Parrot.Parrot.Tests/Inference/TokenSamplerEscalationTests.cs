using System.Diagnostics;
using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// The escalated candidates (<see cref="CandidateAsk.Escalation"/>: a row its first candidates do not decide asks once
/// more for its top <see cref="TopKCandidates.EscalatedCount"/> before it is read whole) and top-k up to the raised cap
/// <see cref="TopKCandidates.MaxTopK"/>, against the former sampler given every whole row (<see cref="FormerTokenSampler"/>,
/// the independent reference): batches of three sequences, each with its own options (greedy with a penalty, top-k 0/50/
/// 500/2000/5000, top-p 0.1–0.99 or off, temperatures 0.1–5, penalties 0.7–2), over rows of Qwen2's vocabulary and smaller
/// (peaked, wide nuclei, Zipf tails, flat, ties at the top, ±∞, NaN, all negative), read through
/// <see cref="TopKCandidates.ReadRows"/> at every escalation (none and the former cap; 1024–8192) by samplers of their own:
/// every pick and the streams' state equal the reference's, what each stage decides counted, and on the test device every
/// read's copies and bytes accounted.
/// </summary>
public class TokenSamplerEscalationTests
{
    private static readonly double[] Penalties = [1, 1, 0.7, 1.05, 1.3, 2];
    private static readonly int[] TopKs = [0, 0, 0, 50, 500, 2000, 5000];

    /// <summary>The ways to read: "before" is the path as it was (top-k above 1024 whole, no escalation), then the raised cap with an escalation of none, 1024, 2048, 4096 (the default) and 8192.</summary>
    private static readonly (string Name, int Escalation)[] Variants =
        [("before", 0), ("cap, no escalation", 0), ("1024", 1024), ("2048", 2048), ("4096", 4096), ("8192", 8192), ("4096, no futility skip", 4096)];

    private const int Default = 4, Unskipped = 6;

    /// <summary>A random row of kind <paramref name="kind"/> for a sampler at <paramref name="temperature"/> (Zipf rows: half of them with an exponent ÷ T of 1.1–1.7, a nucleus of hundreds to thousands of ids).</summary>
    internal static float[] Row(Random rng, int vocab, int kind, double temperature)
    {
        var row = new float[vocab];
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        double zipf = rng.Next(2) == 0 || temperature == 0 ? 0.8 + rng.NextDouble() * 0.7 : temperature * (1.1 + rng.NextDouble() * 0.6);
        int[]? rank = kind == 3 ? Enumerable.Range(1, vocab).OrderBy(_ => rng.Next()).ToArray() : null;
        for (int i = 0; i < vocab; i++)
            row[i] = kind switch
            {
                0 or 1 or 2 => (float)(2 * Gauss()),
                3 => (float)(-zipf * Math.Log(rank![i]) + 0.01 * Gauss()),          // a language model's Zipf tail
                4 => (float)(rng.NextDouble() * 2 - 1),                              // flat
                5 => rng.Next(8) / 2f,                                               // many ties
                6 => rng.Next(500) == 0 ? float.PositiveInfinity : rng.Next(50) == 0 ? float.NegativeInfinity : (float)(2 * Gauss()),
                7 => rng.Next(2000) == 0 ? float.NaN : (float)(2 * Gauss()),
                8 => -(float)(rng.NextDouble() * 5) - 20,                            // all negative
                _ => (float)Gauss(),
            };
        if (kind is 0 or 1 or 6 or 7)
        {
            // Hot ids well above the rest: kind 0 a few, 1 one very hot.
            int hot = kind == 1 ? 1 : rng.Next(1, 12);
            for (int h = 0; h < hot; h++) row[rng.Next(vocab)] += (float)(kind == 1 ? 25 : 6 + rng.NextDouble() * 10);
        }
        if (kind == 2)
        {
            // A wide nucleus: 400–3500 warm ids of about equal weight well above the rest (more than top-p's first 320
            // candidates; at T ≤ ~1.3 they hold most of the mass).
            int warm = rng.Next(400, 3500);
            for (int h = 0; h < warm; h++) row[rng.Next(vocab)] = (float)(8 + 0.3 * Gauss());
        }
        if (kind == 9)
        {
            // A tie of 100–1500 ids at the top value: past every first count's margin (top-k 50/500, greedy's 65).
            int tied = rng.Next(100, 1500);
            for (int h = 0; h < tied; h++) row[rng.Next(vocab)] = 6;
        }
        return row;
    }

    /// <summary>The id, or −1 where the sampler refuses the row: a sampled row with a +∞ logit leaves no probability to sample from (the former sampler refuses it too).</summary>
    private static int Outcome(Func<int> pick)
    {
        try { return pick(); }
        catch (InvalidOperationException e) when (e.Message.Contains("no probability")) { return -1; }
    }

    private static GenerationOptions RandomOptions(Random rng, ulong seed) =>
        rng.Next(8) == 0
            ? new GenerationOptions { Temperature = 0, RepetitionPenalty = Penalties[2 + rng.Next(4)], Seed = seed }
            : new GenerationOptions
            {
                Seed = seed,
                Temperature = rng.Next(5) == 0 ? new[] { 0.1, 5 }[rng.Next(2)] : 0.1 + rng.NextDouble() * 4.9,
                TopP = rng.Next(6) == 0 ? 1 : rng.Next(4) == 0 ? 0.99 : 0.1 + rng.NextDouble() * 0.89,
                TopK = TopKs[rng.Next(TopKs.Length)],
                RepetitionPenalty = Penalties[rng.Next(Penalties.Length)],
            };

    /// <summary>The first count of a variant: "before" with the former cap of top-k (1024).</summary>
    private static int FirstCount(int variant, GenerationOptions options, int vocab) =>
        variant == 0 && options.IsSampling && options.TopK > 1024 ? 0 : TopKCandidates.Count(options, vocab);

    /// <summary>Which stage gave a row: the first candidates, the escalated ones, the whole row after a refusal, or no ask (whole).</summary>
    private enum Stage { First, Escalated, Whole, WholeAfterEscalation, NotAsked }

    [Test]
    public void EveryStageGivesTheWholeRowsToken([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var dev = TestDevice.Backend;
        var rng = new Random(onTestDevice ? 21 : 22);
        int v = Variants.Length, rowsSeen = 0;
        var stages = new int[v, 5];
        var byKind = new Dictionary<int, int[]>();
        double wholeTicks = 0, escalatedTicks = 0;
        int escalatedTimed = 0;
        for (int trial = 0; trial < (onTestDevice ? 28 : 36); trial++)
        {
            int vocab = trial % 4 == 3 ? rng.Next(20_000, 60_000) : 151_936;
            var options = Enumerable.Range(0, 3).Select(i => RandomOptions(rng, (ulong)(trial * 3 + i))).ToArray();
            var prompts = options.Select(_ => Enumerable.Range(0, rng.Next(0, 40)).Select(_ => rng.Next(vocab)).ToArray()).ToArray();
            var full = Enumerable.Range(0, 3).Select(i => new FormerTokenSampler(options[i], vocab, prompts[i])).ToArray();
            var samplers = new TokenSampler[v, 3];
            var asks = new CandidateAsk?[v, 3];
            for (int x = 0; x < v; x++)
                for (int i = 0; i < 3; i++)
                {
                    samplers[x, i] = new TokenSampler(options[i], vocab, prompts[i]);
                    int count = FirstCount(x, options[i], vocab);
                    asks[x, i] = count > 0 ? CandidateAsk.For(count, samplers[x, i], options[i], Variants[x].Escalation) : null;
                    if (x == Unskipped && asks[x, i] is { } a) asks[x, i] = a with { MayEscalate = null };
                }
            try
            {
                for (int step = 0; step < 3; step++)
                {
                    var kinds = Enumerable.Range(0, 3).Select(_ => rng.Next(10)).ToArray();
                    var rows = kinds.Select((k, i) => Row(rng, vocab, k, options[i].Temperature)).ToArray();
                    int[] at = [2, 0, 1]; // entry i reads row at[i] of the logits
                    var ordered = new float[3][];
                    for (int i = 0; i < 3; i++) ordered[at[i]] = rows[i];
                    using var scope = TensorScope.Begin();
                    var logits = Tensor.FromArray(ordered.SelectMany(r => r).ToArray(), device, 3, vocab);
                    var want = new int[3];
                    for (int i = 0; i < 3; i++)
                    {
                        long t0 = Stopwatch.GetTimestamp();
                        want[i] = Outcome(() => full[i].Next(rows[i]));
                        wholeTicks += Stopwatch.GetTimestamp() - t0;
                    }
                    long toDeviceNoEscalation = 0;
                    var firstDecided = new bool[3];
                    for (int x = 0; x < v; x++)
                    {
                        var entryAsks = Enumerable.Range(0, 3).Select(i => asks[x, i]).ToArray();
                        long reads = dev.DeviceToHost, bytes = dev.DeviceToHostBytes, toDevice = dev.HostToDevice;
                        var expectedFirst = FirstReadBytes(entryAsks, vocab);
                        var read = TopKCandidates.ReadRows(logits, at, entryAsks);
                        long gotReads = dev.DeviceToHost - reads, gotBytes = dev.DeviceToHostBytes - bytes;
                        string what = $"trial {trial} step {step} variant {Variants[x].Name}";
                        var stage = new Stage[3];
                        for (int i = 0; i < 3; i++)
                        {
                            var r = read[i];
                            stage[i] = r.Logits is not null ? (entryAsks[i] is not { } a || !a.Pays(vocab) ? Stage.NotAsked : r.Escalated ? Stage.WholeAfterEscalation : Stage.Whole)
                                : r.Escalated ? Stage.Escalated : Stage.First;
                            stages[x, (int)stage[i]]++;
                            if (x == 1 && options[i].IsSampling && options[i].TopK is > 1024 and <= TopKCandidates.MaxTopK && kinds[i] is 0 or 1 or 3 or 4 or 8)
                                Assert.That(stage[i], Is.EqualTo(Stage.First), $"{what} entry {i}: top-k {options[i].TopK} past the former cap on a row of distinct values, from its k + margin candidates");
                            if (x == 1) firstDecided[i] = stage[i] == Stage.First;
                            else if (x > 1) Assert.That(stage[i] == Stage.First, Is.EqualTo(firstDecided[i]), $"{what} entry {i}: the first read is the same at any escalation");
                            if (r.Escalated && r.Logits is null) Assert.That(r.Top, Is.EqualTo(Variants[x].Escalation), $"{what} entry {i}: the escalated top count");
                            long t0 = Stopwatch.GetTimestamp();
                            int got = Outcome(() => samplers[x, i].Next(r));
                            if (x == Default && r is { Escalated: true, Logits: null }) { escalatedTicks += Stopwatch.GetTimestamp() - t0; escalatedTimed++; }
                            Assert.That(got, Is.EqualTo(want[i]), $"{what} entry {i} kind {kinds[i]} ({stage[i]}): {options[i]}, vocab {vocab}");
                            if (x == Default)
                            {
                                var k = byKind.TryGetValue(kinds[i], out var c) ? c : byKind[kinds[i]] = new int[5];
                                k[(int)stage[i]]++;
                            }
                        }
                        if (!onTestDevice) continue;
                        // Copies: the first read's two (values, ids) where some row asks, two more where some row escalates,
                        // one for the rows read whole; bytes: 12 an escalated candidate, 4·V a whole row.
                        var attempted = Enumerable.Range(0, 3).Where(i => read[i].Escalated).ToArray();
                        int whole = stage.Count(s => s is Stage.Whole or Stage.WholeAfterEscalation or Stage.NotAsked);
                        int more = attempted.Select(i => entryAsks[i]!.Escalation).DefaultIfEmpty(0).Max();
                        Assert.That(gotReads, Is.EqualTo((expectedFirst.Bytes > 0 ? 2 : 0) + (attempted.Length > 0 ? 2 : 0) + (whole > 0 ? 1 : 0)), $"{what}: reads");
                        Assert.That(gotBytes, Is.EqualTo(expectedFirst.Bytes + 12L * more * attempted.Length + 4L * vocab * whole), $"{what}: bytes ({attempted.Length} escalated, {whole} whole)");
                        foreach (int i in attempted)
                            Assert.That(entryAsks[i]!.EscalatesFrom(expectedFirst.Count, vocab) && MayEscalate(rows[i], entryAsks[i]!), $"{what} entry {i}: escalated only where it pays, no NaN (no +∞ with a row sum)");
                        // The escalation copies nothing to the device: the same seen ids go up as without it.
                        if (x == 1) toDeviceNoEscalation = dev.HostToDevice - toDevice;
                        else if (x > 1) Assert.That(dev.HostToDevice - toDevice, Is.EqualTo(toDeviceNoEscalation), $"{what}: host→device copies");
                    }
                    rowsSeen += 3;
                }
                // The streams are where the former sampler's are: the same next draw on a flat row (a greedy sampler draws none).
                var flat = Enumerable.Range(0, vocab).Select(i => (float)Math.Sin(i)).ToArray();
                for (int i = 0; i < 3; i++)
                {
                    int next = Outcome(() => full[i].Next(flat));
                    for (int x = 0; x < v; x++)
                        Assert.That(Outcome(() => samplers[x, i].Next(flat)), Is.EqualTo(next), $"trial {trial} entry {i} variant {Variants[x].Name}: the stream after the steps");
                }
            }
            finally
            {
                foreach (var a in asks) a?.Seen?.Dispose();
            }
        }
        for (int x = 0; x < v; x++)
            TestContext.Out.WriteLine($"{Variants[x].Name,-24}: first {stages[x, 0]}, escalated {stages[x, 1]}, whole after the first {stages[x, 2]}, whole after the escalation {stages[x, 3]}, not asked {stages[x, 4]} "
                + $"= {100.0 * (stages[x, 0] + stages[x, 1]) / rowsSeen:F1} % of {rowsSeen} rows from candidates");
        TestContext.Out.WriteLine("4096 by row kind (first/escalated/whole after first/after escalation/not asked): " + string.Join("; ", byKind.OrderBy(k => k.Key).Select(k => $"{k.Key}: {string.Join("/", k.Value)}")));
        double ms(double ticks) => ticks * 1000 / Stopwatch.Frequency;
        TestContext.Out.WriteLine($"host: the former whole-row sampler {ms(wholeTicks) / (rowsSeen):F3} ms a row; an escalated row's pick (4096) {(escalatedTimed == 0 ? 0 : ms(escalatedTicks) / escalatedTimed):F3} ms");
        int Decided(int x) => stages[x, 0] + stages[x, 1];
        Assert.That(stages[Default, 1], Is.GreaterThanOrEqualTo(rowsSeen / 30), "rows decided by the escalated candidates");
        Assert.That(Decided(Default), Is.GreaterThan(Decided(0) + rowsSeen / 10), "the escalation and the raised cap decide a tenth of all rows more than before");
        Assert.That(Decided(1), Is.GreaterThan(Decided(0)), "the raised cap alone decides top-k 2000 rows");
        Assert.That(stages[Default, 2] + stages[Default, 3], Is.GreaterThan(0), "some rows still fall back to the whole row");
        Assert.That(Decided(Unskipped), Is.EqualTo(Decided(Default)), "the futility skip loses no row the escalation would decide");
        Assert.That(stages[Unskipped, 3], Is.GreaterThan(stages[Default, 3]), "the futility skip spares escalations that cannot decide");
    }

    /// <summary>
    /// Top-p alone (penalties 1/1.05/1.3, T 0.5–1.3, top-p 0.5–0.95) over Qwen2's vocabulary on rows whose nucleus spans
    /// hundreds to thousands of ids (equal-weight warm ids; Zipf rows with exponent ÷ T of 1.1–1.7): the first 320
    /// candidates rarely hold it, the escalated 4096 mostly do; every pick and the streams equal the former sampler's.
    /// </summary>
    [Test]
    public void WideNucleiAreDecidedByTheEscalation([Values(false, true)] bool onTestDevice)
    {
        const int vocab = 151_936;
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 31 : 32);
        int rows = 0, first = 0, escalated = 0, whole = 0;
        for (int trial = 0; trial < 12; trial++)
        {
            var options = new GenerationOptions
            {
                Seed = (ulong)trial, Temperature = 0.5 + rng.NextDouble() * 0.8, TopP = 0.5 + rng.NextDouble() * 0.45,
                RepetitionPenalty = new[] { 1, 1.05, 1.3 }[trial % 3],
            };
            var prompt = Enumerable.Range(0, rng.Next(0, 30)).Select(_ => rng.Next(vocab)).ToArray();
            var sampler = new TokenSampler(options, vocab, prompt);
            var full = new FormerTokenSampler(options, vocab, prompt);
            var ask = CandidateAsk.For(TopKCandidates.Count(options, vocab), sampler, options, TopKCandidates.EscalatedCount);
            Assert.That(ask.Count, Is.EqualTo(TopKCandidates.TopPCount));
            using (ask.Seen)
                for (int step = 0; step < 3; step++)
                {
                    var row = Row(rng, vocab, step % 2 == 0 ? 2 : 3, options.Temperature);
                    LogitsRow read;
                    using (TensorScope.Begin())
                        read = TopKCandidates.ReadRows(Tensor.FromArray(row, device, 1, vocab), [0], [ask])[0];
                    rows++;
                    if (read.Logits is not null) whole++;
                    else if (read.Escalated) escalated++;
                    else first++;
                    Assert.That(Outcome(() => sampler.Next(read)), Is.EqualTo(Outcome(() => full.Next(row))), $"trial {trial} step {step}: {options}");
                }
            var flat = Enumerable.Range(0, vocab).Select(i => (float)Math.Sin(i)).ToArray();
            Assert.That(sampler.Next(flat), Is.EqualTo(full.Next(flat)), $"trial {trial}: the stream after the steps");
        }
        TestContext.Out.WriteLine($"{rows} rows: first {first}, escalated {escalated}, whole {whole}");
        Assert.That(escalated, Is.GreaterThan(rows / 2), "most wide nuclei decided by the escalated candidates");
        Assert.That(escalated, Is.GreaterThan(2 * first), "the first 320 hold few of them");
    }

    /// <summary>
    /// The futility bound with many seen ids outside the top (a long prompt under a penalty): they are among the first
    /// candidates (gathered), not new ones, so the escalation adds count − top candidates, not count − n. A nucleus of
    /// 3,999 equal ids that the first 320 cannot hold and 4096 do, beside 0 or 300 seen ids far below: escalated and
    /// decided either way (with the bound and without it), the former sampler's pick and stream.
    /// </summary>
    [Test]
    public void SeenIdsOutsideTheTopDoNotShrinkTheFutilityBound([Values(0, 300)] int seenCount)
    {
        const int vocab = 151_936;
        var rng = new Random(3);
        var byRank = Enumerable.Range(0, vocab).OrderBy(_ => rng.Next()).ToArray();
        var row = new float[vocab];
        Array.Fill(row, -30f);
        // 3,999 (not 4,000: 0.99 of it is no integer, so the nucleus's cut is no tie of sums at the interval's ends).
        for (int i = 0; i < 3999; i++) row[byRank[i]] = 8;
        var prompt = byRank.Skip(5000).Take(seenCount).ToArray();
        var options = new GenerationOptions { Temperature = 1, TopP = 0.99, RepetitionPenalty = 1.3, Seed = 1 };
        foreach (bool bound in new[] { true, false })
        {
            var sampler = new TokenSampler(options, vocab, prompt);
            var former = new FormerTokenSampler(options, vocab, prompt);
            var ask = CandidateAsk.For(TopKCandidates.Count(options, vocab), sampler, options, TopKCandidates.EscalatedCount);
            if (!bound) ask = ask with { MayEscalate = null };
            using (ask.Seen)
            {
                LogitsRow read;
                using (TensorScope.Begin()) read = TopKCandidates.ReadRows(Tensor.FromArray(row, Device.Cpu, 1, vocab), [0], [ask])[0];
                Assert.That(read is { Escalated: true, Logits: null }, $"{(bound ? "with" : "without")} the futility bound: decided by the escalated candidates (escalated {read.Escalated}, whole {read.Logits is not null}, {sampler.LastTopPFallback})");
                Assert.That(sampler.Next(read), Is.EqualTo(former.Next(row)));
                var flat = Enumerable.Range(0, vocab).Select(i => (float)Math.Sin(i)).ToArray();
                Assert.That(sampler.Next(flat), Is.EqualTo(former.Next(flat)), "the stream after the step");
            }
        }
    }

    /// <summary>
    /// The host's side of the cost model (docs/cuda.md, "Escalated candidates"): warm timings of the former whole-row
    /// sampler over Qwen2's 151,936 logits against a pick from n candidates (the check and the pick: what the host runs
    /// per row on either path), top-k and top-p alone. A measurement, run by hand.
    /// </summary>
    [Test, Explicit("a timing, run by hand")]
    public void HostTimeOfTheCandidatesAgainstTheRow()
    {
        const int vocab = 151_936, reps = 30;
        var rng = new Random(5);
        var zipf = Row(rng, vocab, 3, 1);
        var wide = Row(rng, vocab, 2, 1);
        double Time(Action act)
        {
            for (int i = 0; i < 3; i++) act();
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < reps; i++) act();
            return (Stopwatch.GetTimestamp() - t0) * 1000.0 / Stopwatch.Frequency / reps;
        }
        foreach (var options in new[] { new GenerationOptions { Temperature = 1, TopK = 50, TopP = 0.9 }, new GenerationOptions { Temperature = 1, TopP = 0.8 } })
        {
            var row = options.TopK > 0 ? zipf : wide;
            var former = new FormerTokenSampler(options, vocab, []);
            TestContext.Out.WriteLine($"{options.TopK}/{options.TopP}: the whole row {Time(() => former.Next(row)):F3} ms");
            foreach (int n in new[] { 320, 1024, 2048, 4096, 8192, 16384 })
            {
                if (options.TopK > 0 && n < options.TopK + 64) continue;
                var sampler = new TokenSampler(options, vocab, []);
                var ask = CandidateAsk.For(n, sampler, options);
                var read = TopKCandidates.ReadRows(Tensor.FromArray(row, Device.Cpu, 1, vocab), [0], [ask])[0];
                string stage = read.Logits is null ? "decided" : "refused";
                double check = Time(() => { if (read.Sum is { } sum) sampler.CandidatesSuffice(read.Ids ?? [], read.Values ?? [], read.Top, sum); else if (read.Ids is not null) sampler.CandidatesSuffice(read.Ids, read.Values!, read.Top); });
                double pick = read.Logits is null ? Time(() => sampler.Next(read)) : double.NaN;
                TestContext.Out.WriteLine($"  {n} candidates ({stage}): the check {check:F3} ms, check + pick {pick:F3} ms");
            }
        }
    }

    /// <summary>Whether <see cref="TopKCandidates.ReadRows"/> escalates a refused row: no NaN in it, and for a row-sum check no +∞.</summary>
    private static bool MayEscalate(float[] row, CandidateAsk ask) =>
        !row.Any(float.IsNaN) && !(ask.SumSuffice is not null && row.Any(float.IsPositiveInfinity));

    /// <summary>The first read's count (the largest asked among the rows whose ask pays) and bytes: values and int64 ids, float64 values and two doubles a row where some row asks for its sum.</summary>
    private static (int Count, long Bytes) FirstReadBytes(CandidateAsk?[] asks, int vocab)
    {
        var paying = asks.Where(a => a is not null && a.Pays(vocab)).ToArray();
        if (paying.Length == 0) return (0, 0);
        int count = paying.Max(a => a!.Count);
        long seen = paying.Sum(a => (long)(a!.Seen?.Count ?? 0));
        int sums = paying.Count(a => a!.SumSuffice is not null);
        long valueBytes = sums == 0 ? 4 : 8;
        return (count, valueBytes * (count * paying.Length + seen) + 16L * sums + 8L * count * paying.Length);
    }
}
