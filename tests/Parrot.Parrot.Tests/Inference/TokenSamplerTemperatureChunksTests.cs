using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// Plain temperature sampling from a row's device chunk sums and one chunk (<see cref="ChunkSums"/>,
/// TokenSampler.Temperature.cs) against the former sampler given every whole row (<see cref="FormerTokenSampler"/>): the
/// same ids, so the same draws, over streams of random rows (peaked, flat, ties, huge range, ±∞, NaN, negative;
/// temperatures 0.05–5 and extremes; vocabularies small and Qwen2's 151,936; chunk sizes 7 to 4096), also with the
/// device's sums nudged within their bound; draws placed within ulps of chunk and id boundaries; crafted refusals.
/// </summary>
public class TokenSamplerTemperatureChunksTests
{
    private static readonly int[] Sizes = [7, 64, 512, 1000, 4096];

    /// <summary>A random row of kind <paramref name="kind"/>: 0–2 peaked, 3 flat, 4 ties, 5 ±∞, 6 NaN, 7 all negative, 8 a huge range.</summary>
    internal static float[] Row(Random rng, int vocab, int kind)
    {
        var row = new float[vocab];
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        for (int i = 0; i < vocab; i++)
            row[i] = kind switch
            {
                0 or 1 or 2 => (float)(2 * Gauss()),
                3 => (float)(rng.NextDouble() * 2 - 1),
                4 => rng.Next(8) / 2f,
                5 => rng.Next(500) == 0 ? float.PositiveInfinity : rng.Next(50) == 0 ? float.NegativeInfinity : (float)(2 * Gauss()),
                6 => rng.Next(2000) == 0 ? float.NaN : (float)(2 * Gauss()),
                7 => -(float)(rng.NextDouble() * 5) - 20,
                _ => (float)(Gauss() * 300) + (rng.Next(40) == 0 ? float.NegativeInfinity : 0),
            };
        if (kind <= 2 || kind >= 5)
        {
            int hot = kind == 1 ? 1 : kind == 2 ? 40 : rng.Next(1, 12);
            for (int h = 0; h < hot; h++) row[rng.Next(vocab)] += (float)(kind == 1 ? 25 : 6 + rng.NextDouble() * 10);
        }
        return row;
    }

    /// <summary>Whether a row of <paramref name="kind"/> is ordinary: finite, no NaN (the fast path must take nearly all of them).</summary>
    internal static bool Ordinary(int kind) => kind is not (5 or 6);

    /// <summary>
    /// The whole-row sampler's plain-temperature walk (TokenSampler.Sample, no penalty) for the draw <paramref name="r"/>:
    /// the reference for draws placed by hand. Checked against the sampler itself in <see cref="TheReferenceWalkIsTheSamplers"/>.
    /// </summary>
    internal static int WholeRowPick(float[] row, double t, double r) => Walk(Probabilities(row, t, out double total), total, r);

    /// <summary>The whole-row sampler's p = e / S and their sequential total, as it computes them.</summary>
    private static double[] Probabilities(float[] row, double t, out double total)
    {
        int n = row.Length;
        var l = new double[n];
        for (int i = 0; i < n; i++) l[i] = float.IsNaN(row[i]) ? double.NegativeInfinity : row[i] / t;
        double max = double.NegativeInfinity;
        foreach (double x in l) if (x > max) max = x;
        double sum = 0;
        for (int i = 0; i < n; i++) { l[i] = Math.Exp(l[i] - max); sum += l[i]; }
        for (int i = 0; i < n; i++) l[i] /= sum;
        total = 0;
        foreach (double x in l) total += x;
        return l;
    }

    /// <summary>The whole-row sampler's walk for the draw <paramref name="r"/>.</summary>
    private static int Walk(double[] l, double total, double r)
    {
        int n = l.Length;
        double u = r * total;
        int last = -1;
        for (int i = 0; i < n; i++)
        {
            if (l[i] <= 0) continue;
            last = i;
            u -= l[i];
            if (u < 0) return i;
        }
        return last;
    }

    /// <summary>The row's chunk sums as <see cref="TopKCandidates"/> computes them on <paramref name="device"/>.</summary>
    private static ChunkSums Sums(float[] row, double t, int size, Device device)
    {
        using var scope = TensorScope.Begin();
        var d = TopKCandidates.DeviceChunkSums(Tensor.FromArray(row, device, 1, row.Length), [0], t, size).ToDoubleArray();
        return new ChunkSums(d[0], d[1], d[2..], size);
    }

    private static float[] Chunk(float[] row, ChunkSums sums, int c) => row.AsSpan(c * sums.Size, sums.Length(c, row.Length)).ToArray();

    /// <summary>The id, or −1 where the sampler refuses the row: a sampled row with a +∞ logit leaves no probability to sample from (the former sampler refuses it too).</summary>
    internal static int Outcome(Func<int> pick)
    {
        try { return pick(); }
        catch (InvalidOperationException e) when (e.Message.Contains("no probability")) { return -1; }
    }

    [Test]
    public void ChunkSumsGiveTheWholeRowsToken([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 31 : 32);
        int ordinary = 0, ordinaryDecided = 0, decided = 0, whole = 0, nudgedDecided = 0, bigRows = 0, bigDecided = 0;
        var reasons = new Dictionary<string, int>();
        for (int trial = 0; trial < 150; trial++)
        {
            bool big = trial % 10 == 0;
            int vocab = big ? 151_936 : rng.Next(200, 3000);
            // A chunk size whose read costs less than the row's (else the row is not asked: read whole).
            var paying = Sizes.Where(z => 8L * (ChunkSums.Count(vocab, z) + 2) + 4L * z < 4L * vocab).ToArray();
            int size = big ? TopKCandidates.ChunkSize : paying[rng.Next(paying.Length)];
            var options = new GenerationOptions
            {
                Seed = (ulong)trial,
                Temperature = trial % 5 == 0 ? new[] { 0.05, 5 }[rng.Next(2)] : 0.1 + rng.NextDouble() * 2.9,
                TopK = trial % 7 == 0 ? vocab : 0, // top-k at the vocabulary cuts nothing: plain temperature too
            };
            var prompt = Enumerable.Range(0, rng.Next(0, 9)).Select(_ => rng.Next(vocab)).ToArray();
            var sampler = new TokenSampler(options, vocab, prompt);
            var former = new FormerTokenSampler(options, vocab, prompt);
            var ask = CandidateAsk.For(1, sampler, options, chunkSize: size);
            Assert.That(ask.Chunks, Is.Not.Null);
            for (int step = 0; step < (big ? 3 : 6); step++)
            {
                int kind = rng.Next(9);
                var row = Row(rng, vocab, kind);
                LogitsRow read;
                using (TensorScope.Begin())
                    read = TopKCandidates.ReadRows(Tensor.FromArray(row, device, 1, vocab), [0], [ask])[0];
                string what = $"trial {trial} step {step} kind {kind}: {options}, vocab {vocab}, chunk {size}";
                int expected = Outcome(() => former.Next(row));
                bool fast = read.Chunk is not null;
                if (Ordinary(kind)) { ordinary++; if (fast) ordinaryDecided++; }
                if (big) { bigRows++; if (fast) bigDecided++; }
                if (fast)
                {
                    decided++;
                    Assert.That(read.Logits, Is.Null);
                    // The same pick with the device's sums nudged within their bound (another order, another exp).
                    var c = read.Chunk!;
                    var nudged = c.Sums with { Sums = c.Sums.Sums.Select(x => x * (1 + (rng.Next(2) * 2 - 1) * 2e-13)).ToArray() };
                    if (sampler.ChunkPick(nudged, c.Chunk, c.Values, sampler.PeekDraw()) is int p)
                    {
                        nudgedDecided++;
                        Assert.That(p, Is.EqualTo(expected), what + " (nudged sums)");
                    }
                }
                else
                {
                    whole++;
                    string why = sampler.LastChunkFallback ?? "(not asked)";
                    reasons[why] = reasons.GetValueOrDefault(why) + 1;
                }
                Assert.That(Outcome(() => sampler.Next(read)), Is.EqualTo(expected), what);
            }
            var flat = Enumerable.Range(0, vocab).Select(i => (float)Math.Sin(i)).ToArray();
            Assert.That(sampler.Next(flat), Is.EqualTo(former.Next(flat)), $"trial {trial}: the stream after the steps");
        }
        TestContext.Out.WriteLine($"decided {decided} (ordinary {ordinaryDecided}/{ordinary}; Qwen2's vocabulary {bigDecided}/{bigRows}), whole {whole}, nudged {nudgedDecided}; fallbacks: "
            + string.Join(", ", reasons.OrderByDescending(x => x.Value).Select(x => $"{x.Key} {x.Value}")));
        Assert.That(ordinaryDecided, Is.GreaterThan(ordinary * 99 / 100), "ordinary rows decided from their chunk sums");
        Assert.That(whole, Is.GreaterThan(20), "NaN and ±∞ rows read whole");
    }

    /// <summary>
    /// Every chunk's interval from the device's sums holds the host's exact Σ eᵢ of that chunk (its own sequential sum,
    /// within 1.01·n·u): rows of every kind, temperatures 10⁻³ to 10⁴, chunk sizes 7 to 4096, small vocabularies and
    /// Qwen2's; the intervals are narrow (≈ 8ρ relative, below 10⁻⁷).
    /// </summary>
    [Test]
    public void TheIntervalsHoldTheHostsChunkSums([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 51 : 52);
        int checkedChunks = 0;
        double widest = 0;
        for (int trial = 0; trial < 120; trial++)
        {
            int vocab = trial % 30 == 0 ? 151_936 : rng.Next(100, 5000);
            int size = Sizes[rng.Next(Sizes.Length)];
            double t = new[] { 1e-3, 0.05, 0.3, 1, 3, 100, 1e4 }[rng.Next(7)];
            var row = Row(rng, vocab, new[] { 0, 1, 2, 3, 4, 7, 8 }[rng.Next(7)]);
            var sampler = new TokenSampler(new GenerationOptions { Temperature = t }, vocab, []);
            var sums = Sums(row, t, size, device);
            if (sampler.ChunkIntervals(sums) is not var (lo, hi)) { Assert.That(sampler.LastChunkFallback, Is.EqualTo("the logits' magnitude"), $"trial {trial}"); continue; }
            double max = row.Max() / t;
            for (int j = 0; j < lo.Length; j++)
            {
                int len = sums.Length(j, vocab);
                double e = 0;
                for (int i = j * size; i < j * size + len; i++) e += Math.Exp(row[i] / t - max);
                double slack = 1.01 * len / (1UL << 53);
                Assert.That(e * (1 + slack) >= lo[j] && e * (1 - slack) <= hi[j], $"trial {trial} chunk {j}: {e:R} outside [{lo[j]:R}, {hi[j]:R}] (T {t}, size {size})");
                if (e > 1e-300) widest = Math.Max(widest, (hi[j] - lo[j]) / e);
                checkedChunks++;
            }
        }
        TestContext.Out.WriteLine($"chunks checked {checkedChunks}, widest interval {widest:E2} relative");
        Assert.That(checkedChunks, Is.GreaterThan(1000));
        Assert.That(widest, Is.LessThan(1e-7)); // ≈ 8ρ: up to 5·10⁻⁸ where uA nears its 10⁻⁹ limit
    }

    [Test]
    public void TheReferenceWalkIsTheSamplers()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 40; trial++)
        {
            int vocab = rng.Next(50, 2000);
            var options = new GenerationOptions { Seed = (ulong)trial, Temperature = 0.2 + rng.NextDouble() * 3 };
            var sampler = new TokenSampler(options, vocab, []);
            for (int step = 0; step < 5; step++)
            {
                var row = Row(rng, vocab, rng.Next(9));
                if (row.Any(x => float.IsPositiveInfinity(x)) || row.All(x => float.IsNegativeInfinity(x) || float.IsNaN(x))) continue;
                int expected = WholeRowPick(row, options.Temperature, sampler.PeekDraw());
                Assert.That(sampler.Next(row), Is.EqualTo(expected), $"trial {trial} step {step}");
            }
        }
    }

    /// <summary>
    /// Draws placed within a few ulps (and 10⁻¹³…10⁻⁹ relatively) of the r where the whole row's walk moves from one id
    /// to the next, at chunk boundaries and inside chunks: each is refused or gives the whole row's pick, also with the
    /// sums nudged; both neighbouring picks occur (the draws do straddle the boundaries).
    /// </summary>
    [Test]
    public void DrawsNearBoundariesMatchOrFallBack([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 41 : 42);
        int decided = 0, refused = 0, straddled = 0, chunkBoundaries = 0;
        double[] offsets = [0, 1e-13, -1e-13, 1e-11, -1e-11, 1e-9, -1e-9];
        for (int trial = 0; trial < 60; trial++)
        {
            int vocab = trial % 30 == 0 ? 151_936 : rng.Next(100, 2500);
            int size = trial % 30 == 0 ? TopKCandidates.ChunkSize : Sizes[rng.Next(3)];
            double t = 0.1 + rng.NextDouble() * 3;
            var row = Row(rng, vocab, new[] { 0, 1, 2, 3, 4, 7, 8 }[rng.Next(7)]);
            var options = new GenerationOptions { Temperature = t };
            var sampler = new TokenSampler(options, vocab, []);
            var sums = Sums(row, t, size, device);
            // The whole row's p and total, to place r where the walk passes from id b − 1 to b.
            var p = Probabilities(row, t, out double total);
            var bounds = new List<int>();
            for (int c = 1; c < sums.Sums.Length; c++) bounds.Add(c * size);
            if (bounds.Count > 30) bounds = bounds.OrderBy(_ => rng.Next()).Take(30).ToList();
            chunkBoundaries += bounds.Count;
            for (int j = 0; j < 10; j++) bounds.Add(rng.Next(1, vocab));
            foreach (int b in bounds.Distinct())
            {
                double prefix = 0;
                for (int i = 0; i < b; i++) prefix += p[i];
                double r0 = prefix / total;
                var picks = new HashSet<int>();
                foreach (double off in offsets)
                    for (int ulps = -6; ulps <= 6; ulps++)
                    {
                        double r = r0 * (1 + off);
                        for (int k = ulps; k != 0; k -= Math.Sign(k)) r = k > 0 ? Math.BitIncrement(r) : Math.BitDecrement(r);
                        if (!(r >= 0 && r < 1)) continue;
                        int expected = Walk(p, total, r);
                        picks.Add(expected);
                        foreach (var sm in new[] { sums, sums with { Sums = sums.Sums.Select(x => x * (1 + (rng.Next(2) * 2 - 1) * 2e-13)).ToArray() } })
                        {
                            if (sampler.ChunkToRead(sm, r) is not int c || sampler.ChunkPick(sm, c, Chunk(row, sm, c), r) is not int pick) { refused++; continue; }
                            decided++;
                            Assert.That(pick, Is.EqualTo(expected), $"trial {trial}: boundary {b}, r {r:R}, chunk size {size}, vocab {vocab}");
                        }
                    }
                if (picks.Count > 1) straddled++;
            }
        }
        TestContext.Out.WriteLine($"decided {decided}, refused {refused}, boundaries straddled {straddled} ({chunkBoundaries} chunk boundaries)");
        Assert.That(refused, Is.GreaterThan(100), "draws within ulps of a boundary are refused");
        Assert.That(decided, Is.GreaterThan(10_000), "draws off the boundaries are decided");
        Assert.That(straddled, Is.GreaterThan(100), "the placed draws do fall on both sides of the boundaries");
    }

    /// <summary>What <paramref name="row"/> gives on the CPU: the sampler's pick from a read (or the whole row), the former sampler's, and the fallback.</summary>
    private static (bool Fast, int Pick, int Whole, string? Why) Both(GenerationOptions options, float[] row, int size, int[]? prompt = null, Func<ChunkSums, ChunkSums>? device = null)
    {
        var sampler = new TokenSampler(options, row.Length, prompt ?? []);
        var ask = CandidateAsk.For(1, sampler, options, chunkSize: size);
        if (device is not null && ask.Chunks is { } ch)
            ask = ask with { Chunks = ch with { ToRead = x => sampler.ChunkToRead(device(x)), Suffice = (x, c, v) => sampler.ChunkSuffices(device(x), c, v) } };
        using var scope = TensorScope.Begin();
        var read = TopKCandidates.ReadRows(Tensor.FromArray(row, Device.Cpu, 1, row.Length), [0], [ask])[0];
        string? why = sampler.LastChunkFallback;
        if (device is not null && read.Chunk is { } cr) read = read with { Chunk = cr with { Sums = device(cr.Sums) } };
        int whole = Outcome(() => new FormerTokenSampler(options, row.Length, prompt ?? []).Next(row));
        return (read.Chunk is not null, Outcome(() => sampler.Next(read)), whole, why);
    }

    [Test]
    public void CraftedRowsFallBackOrMatch()
    {
        var options = new GenerationOptions { Temperature = 0.8, Seed = 3 };
        var rng = new Random(9);
        var row = Enumerable.Range(0, 3000).Select(_ => (float)(rng.NextDouble() * 4)).ToArray();
        var plain = Both(options, row, 64);
        Assert.That(plain.Fast && plain.Pick == plain.Whole, $"an ordinary row: {plain}");

        var nan = row.ToArray(); nan[1234] = float.NaN;
        var r = Both(options, nan, 64);
        // The device's max may propagate the NaN (the CPU's does) or skip it; its chunk's sum is NaN either way.
        Assert.That(!r.Fast && r.Pick == r.Whole && r.Why is "a chunk sum that is not finite" or "no finite maximum", $"NaN: {r}");
        var inf = row.ToArray(); inf[77] = float.PositiveInfinity;
        r = Both(options, inf, 64);
        // The sums refuse to decide it and the whole row refuses it (no probability to sample from): both −1.
        Assert.That(!r.Fast && r.Pick == -1 && r.Whole == -1 && r.Why == "no finite maximum", $"+∞: {r}");
        r = Both(options, Enumerable.Repeat(float.NegativeInfinity, 3000).ToArray(), 64);
        Assert.That(!r.Fast && r.Pick == r.Whole && r.Why == "no finite maximum", $"all −∞: {r}");
        var some = row.ToArray(); for (int i = 0; i < 3000; i += 3) some[i] = float.NegativeInfinity;
        r = Both(options, some, 64);
        Assert.That(r.Fast && r.Pick == r.Whole, $"some −∞: {r}");

        // A repetition penalty: the sums are of the penalised row (TokenSamplerPenalisedChunksTests for the rest).
        var penalised = options with { RepetitionPenalty = 1.3 };
        Assert.That(TopKCandidates.Plan(penalised, 200_000).Kind, Is.EqualTo(ReadKind.Chunks));
        r = Both(penalised, row, 64, prompt: [5, 17, 2000]);
        Assert.That(r.Fast && r.Pick == r.Whole, $"penalty: {r}");

        // The device's numbers that disagree with the row: refused, never trusted.
        r = Both(options, row, 64, device: s => s with { Max = s.Max * (1 + 1e-12) });
        Assert.That(!r.Fast && r.Pick == r.Whole && r.Why == "the device's maximum", $"device max: {r}");
        r = Both(options, row, 64, device: s => s with { Sums = s.Sums.Select(x => x * 1.001).ToArray() });
        Assert.That(!r.Fast && r.Pick == r.Whole && r.Why == "the chunk disagrees with its sum", $"device sums 0.1 % high: {r}");
        r = Both(options, row, 64, device: s => s with { RawMax = s.RawMax - 0.5 });
        Assert.That(!r.Fast && r.Pick == r.Whole, $"device raw max too low: {r}");

        // Top-k below the vocabulary or top-p below 1 are not plain temperature (their own paths).
        Assert.That(CandidateAsk.For(1, new TokenSampler(options with { TopP = 0.9 }, 3000, []), options with { TopP = 0.9 }).Chunks, Is.Null);
        Assert.That(CandidateAsk.For(1, new TokenSampler(options with { TopK = 5 }, 3000, []), options with { TopK = 5 }).Chunks, Is.Null);
    }

    [Test]
    public void ExtremeTemperatures()
    {
        var rng = new Random(23);
        int decided = 0, rows = 0;
        var reasons = new Dictionary<string, int>();
        foreach (double temp in new[] { 1e-6, 1e-3, 0.01, 50, 1e4, 1e30 })
            for (int trial = 0; trial < 25; trial++)
            {
                int vocab = rng.Next(200, 3000);
                var options = new GenerationOptions { Temperature = temp, Seed = (ulong)trial };
                double scale = new[] { 1.0, 10, 100, 0.01 }[rng.Next(4)];
                var row = Row(rng, vocab, new[] { 0, 3, 4, 7, 8 }[rng.Next(5)]).Select(x => (float)(x * scale)).ToArray();
                var r = Both(options, row, Sizes[rng.Next(3)]);
                Assert.That(r.Pick, Is.EqualTo(r.Whole), $"T {temp} trial {trial}");
                rows++;
                if (r.Fast) decided++;
                else reasons[r.Why ?? "?"] = reasons.GetValueOrDefault(r.Why ?? "?") + 1;
            }
        TestContext.Out.WriteLine($"decided {decided}/{rows}; fallbacks: " + string.Join(", ", reasons.Select(x => $"{x.Key} {x.Value}")));
        Assert.That(decided, Is.GreaterThan(rows / 2));
    }

    /// <summary>
    /// Float64 logits (a model run in float64 on a device): the host samples from them as it reads them, rounded to
    /// float32, so the device's chunk sums must be of those values. Half the row 10 + 3·10⁻⁷ (10f once read), half
    /// exactly 10, T 0.05: sums of the unrounded values put every id's share 6·10⁻⁶ off, and draws placed near the id
    /// boundaries would then be decided for a neighbour of the whole row's pick.
    /// </summary>
    [Test]
    public void Float64LogitsAreSummedAsTheHostReadsThem([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        const int vocab = 1024, size = 512;
        const double t = 0.05;
        var raw = new double[vocab];
        for (int i = 0; i < vocab; i++) raw[i] = i < size ? 10.0 + 3e-7 : 10.0;
        using var scope = TensorScope.Begin();
        var logits = Tensor.FromArray(raw, device, 1, vocab);
        var host = logits.ToFloatArray(); // what the whole-row path samples from
        var d = TopKCandidates.DeviceChunkSums(logits, [0], t, size).ToDoubleArray();
        var sums = new ChunkSums(d[0], d[1], d[2..], size);
        var sampler = new TokenSampler(new GenerationOptions { Temperature = t }, vocab, []);
        int decided = 0;
        for (int k = 0; k < vocab; k += 7)
            foreach (double off in new[] { -2e-6, -5e-7, 5e-7, 2e-6 })
            {
                double r = (double)k / vocab + off;
                if (!(r >= 0 && r < 1) || sampler.ChunkToRead(sums, r) is not int c || sampler.ChunkPick(sums, c, Chunk(host, sums, c), r) is not int pick) continue;
                decided++;
                Assert.That(pick, Is.EqualTo(WholeRowPick(host, t, r)), $"r {r:R}");
            }
        Assert.That(decided, Is.GreaterThan(200));
        Assert.That(d, Is.EqualTo(TopKCandidates.DeviceChunkSums(Tensor.FromArray(host, device, 1, vocab), [0], t, size).ToDoubleArray()),
            "the sums of the float32 values the host reads");

        // The top-p path's row sum (TopKCandidates.DeviceRowSums) the same way: a float64 row's is its float32 read's.
        var options = new GenerationOptions { Temperature = t, TopP = 0.9 };
        var peaked = new double[3000];
        for (int i = 0; i < peaked.Length; i++) peaked[i] = i % 97 == 0 ? 1.0 + 3e-8 * i : -3 + 1e-9 * i;
        RowSum? Sum(Tensor row)
        {
            var s = new TokenSampler(options, peaked.Length, []);
            return TopKCandidates.ReadRows(row, [0], [CandidateAsk.For(64, s, options)])[0].Sum;
        }
        var wide = Sum(Tensor.FromArray(peaked, device, 1, peaked.Length));
        Assert.That(wide, Is.Not.Null, "the peaked row is decided by its candidates and sum");
        Assert.That(wide, Is.EqualTo(Sum(Tensor.FromArray(peaked.Select(x => (float)x).ToArray(), device, 1, peaked.Length))));
    }

    /// <summary>A device that divides as the host, takes exp within 1 ulp either way and sums each chunk in a random order.</summary>
    private static ChunkSums Adversarial(float[] row, double t, int size, Random rng)
    {
        int v = row.Length, n = ChunkSums.Count(v, size);
        double raw = double.NegativeInfinity;
        foreach (float x in row) if (x > raw) raw = x;
        double m = raw / t;
        var sums = new double[n];
        for (int j = 0; j < n; j++)
        {
            int len = Math.Min(size, v - j * size);
            var terms = new double[len];
            for (int i = 0; i < len; i++)
            {
                double e = Math.Exp((double)row[j * size + i] / t - m);
                int k = rng.Next(3);
                terms[i] = k == 0 ? e : k == 1 ? Math.BitIncrement(e) : Math.Max(0, Math.BitDecrement(e));
                if (e == 0) terms[i] = rng.Next(2) == 0 ? 0 : double.Epsilon;
            }
            rng.Shuffle(terms);
            double s = 0;
            if (rng.Next(2) == 0) foreach (double x in terms) s += x;
            else s = Pairwise(terms, 0, len);
            sums[j] = s;
        }
        return new ChunkSums(m, raw, sums, size);
    }

    private static double Pairwise(double[] a, int lo, int hi) => hi - lo <= 2 ? (hi - lo == 0 ? 0 : hi - lo == 1 ? a[lo] : a[lo] + a[lo + 1]) : Pairwise(a, lo, (lo + hi) / 2) + Pairwise(a, (lo + hi) / 2, hi);

    /// <summary>
    /// Chunk sums from a model of the worst device the bound allows (the host's division, each exp 1 ulp up, down or
    /// exact, 0 or the least subnormal where the host's is 0, each chunk summed in a shuffled order, sequentially or
    /// pairwise), over rows the other tests leave out (chunks of 1 to 3 ids, all −∞ but one or two, subnormal logits,
    /// −10³⁰, T 10⁻³ to 10³⁰⁰) and draws at random, at chunk boundaries and within ulps of id boundaries: every decided
    /// pick is the whole row's.
    /// </summary>
    [Test]
    public void AnAdversarialDeviceWithinTheBoundNeverChangesThePick()
    {
        var rng = new Random(1234);
        int decided = 0, refused = 0, wrong = 0;
        var msgs = new List<string>();
        for (int trial = 0; trial < 400; trial++)
        {
            int vocab = rng.Next(2) == 0 ? rng.Next(2, 400) : rng.Next(400, 5000);
            int size = new[] { 1, 2, 3, 7, 16, 64, 100, 512 }[rng.Next(8)];
            double t = new[] { 1e-3, 0.01, 0.05, 0.3, 0.7, 1, 2, 10, 1e3, 1e6, 1e30, 1e300 }[rng.Next(12)];
            var row = new float[vocab];
            int kind = rng.Next(7);
            for (int i = 0; i < vocab; i++)
                row[i] = kind switch
                {
                    0 => (float)(rng.NextDouble() * 20 - 10),
                    1 => float.NegativeInfinity,
                    2 => rng.Next(3) == 0 ? float.NegativeInfinity : (float)(rng.NextDouble() * 4),
                    3 => rng.Next(4),
                    4 => (float)(rng.NextDouble() * 2000 - 1000),
                    5 => (float)(rng.NextDouble() * 1e-40), // subnormal floats
                    _ => -1e30f + (float)rng.NextDouble() * 1e24f,
                };
            if (kind == 1) { row[rng.Next(vocab)] = (float)rng.NextDouble(); if (rng.Next(2) == 0) row[rng.Next(vocab)] = 0; }
            var options = new GenerationOptions { Temperature = t, Seed = (ulong)trial };
            var sampler = new TokenSampler(options, vocab, []);
            var sums = Adversarial(row, t, size, rng);
            // the whole row's probabilities for placing r near boundaries
            var l = row.Select(x => x / t).ToArray();
            double max = l.Max();
            var e = l.Select(x => Math.Exp(x - max)).ToArray();
            double s = 0; foreach (var x in e) s += x;
            var p = e.Select(x => x / s).ToArray();
            double total = 0; foreach (var x in p) total += x;
            var rs = new List<double>();
            for (int k = 0; k < 20; k++) rs.Add(rng.NextDouble());
            for (int k = 0; k < 20; k++)
            {
                int b = rng.Next(vocab + 1);
                if (rng.Next(2) == 0) b = Math.Min(vocab, rng.Next(ChunkSums.Count(vocab, size) + 1) * size);
                double prefix = 0; for (int i = 0; i < b; i++) prefix += p[i];
                double r0 = double.IsFinite(total) && total > 0 ? prefix / total : 0;
                for (int u = -3; u <= 3; u++) { double r = r0; for (int q = u; q != 0; q -= Math.Sign(q)) r = q > 0 ? Math.BitIncrement(r) : Math.BitDecrement(r); if (r >= 0 && r < 1) rs.Add(r); }
            }
            rs.Add(0); rs.Add(Math.BitDecrement(1.0));
            foreach (double r in rs)
            {
                int? c = sampler.ChunkToRead(sums, r);
                if (c is not int cc) { refused++; continue; }
                var vals = row.AsSpan(cc * size, sums.Length(cc, vocab)).ToArray();
                if (sampler.ChunkPick(sums, cc, vals, r) is not int pick) { refused++; continue; }
                decided++;
                int want = WholeRowPick(row, t, r);
                if (pick != want) { wrong++; if (msgs.Count < 10) msgs.Add($"trial {trial} kind {kind} vocab {vocab} size {size} T {t} r {r:R}: {pick} vs {want}"); }
            }
        }
        TestContext.Out.WriteLine($"decided {decided}, refused {refused}, wrong {wrong}\n" + string.Join("\n", msgs));
        Assert.That(wrong, Is.Zero, string.Join("\n", msgs));
        Assert.That(decided, Is.GreaterThan(5000), "draws decided");
    }
}
