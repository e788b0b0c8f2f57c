using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;
using static Parrot.Parrot.Tests.Inference.TokenSamplerTemperatureChunksTests;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// Plain temperature sampling under a repetition penalty from the penalised row's device chunk sums and one chunk
/// (<see cref="ChunkAsk.Penalty"/>: the seen ids' raw logits read, penalised on the host by the sampler's own arithmetic,
/// written back into the device's float64 copy of the row before its sums) against the former sampler given every whole
/// row (<see cref="FormerTokenSampler"/>): the same ids, so the same draws, over streams of random rows with hot and cold
/// seen ids, penalties 0.5–2, on the CPU and the test device; draws placed within ulps of chunk and id boundaries; the
/// reads per step counted; and a control: the raw row's sums passed off as the penalised row's give wrong picks, so the
/// boundary test does see the penalty.
/// </summary>
public class TokenSamplerPenalisedChunksTests
{
    private static readonly double[] Penalties = [0.5, 0.7, 1.05, 1.3, 2];
    private static readonly int[] Sizes = [7, 64, 512, 1000];

    /// <summary>
    /// Seen ids for a row of <paramref name="vocab"/> at <paramref name="size"/> ids a chunk: random ones, the first and
    /// last id, and ids on both sides of some chunk boundaries.
    /// </summary>
    private static int[] Prompt(Random rng, int vocab, int size, int count)
    {
        var ids = new List<int> { 0, vocab - 1 };
        int chunks = ChunkSums.Count(vocab, size);
        for (int k = 0; k < 3 && chunks > 1; k++)
        {
            int c = rng.Next(1, chunks);
            ids.Add(c * size - 1);
            ids.Add(c * size);
        }
        for (int k = 0; k < count; k++) ids.Add(rng.Next(vocab));
        return ids.OrderBy(_ => rng.Next()).ToArray();
    }

    /// <summary>
    /// Makes the penalty matter: a seen id raised above the row's maximum (a penalty above 1 pulls it back, below 1 lifts
    /// it further), another one made strongly negative (multiplied by the penalty), a third set to −0.
    /// </summary>
    private static void Heat(Random rng, float[] row, IReadOnlyList<int> seen)
    {
        if (seen.Count == 0) return;
        float max = float.NegativeInfinity;
        foreach (float x in row) if (x > max) max = x;
        if (!float.IsFinite(max)) return;
        row[seen[rng.Next(seen.Count)]] = max + 1 + (float)rng.NextDouble() * 4;
        row[seen[rng.Next(seen.Count)]] = -(float)rng.NextDouble() * 6;
        if (rng.Next(4) == 0) row[seen[rng.Next(seen.Count)]] = -0f;
    }

    /// <summary>A chunk size whose read costs less than the row's with <paramref name="seen"/> penalised ids (else the row is not asked).</summary>
    private static int[] Paying(int vocab, int seen) =>
        Sizes.Where(z => 8L * (ChunkSums.Count(vocab, z) + 2) + 4L * z + 12L * seen < 4L * vocab).ToArray();

    [Test]
    public void PenalisedChunkSumsGiveTheWholeRowsToken([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 61 : 62);
        int ordinary = 0, ordinaryDecided = 0, decided = 0, whole = 0, bigRows = 0, bigDecided = 0, readsChecked = 0;
        var reasons = new Dictionary<string, int>();
        for (int trial = 0; trial < 120; trial++)
        {
            bool big = trial % 10 == 0;
            int vocab = big ? 151_936 : rng.Next(400, 3000);
            int steps = big ? 3 : 6;
            var prompt = Prompt(rng, vocab, 64, rng.Next(0, big ? 300 : 20));
            if (trial % 17 == 0) prompt = []; // nothing seen yet: no penalised id before the first pick
            var paying = Paying(vocab, prompt.Distinct().Count() + steps);
            if (paying.Length == 0) continue;
            int size = big ? TopKCandidates.ChunkSize : paying[rng.Next(paying.Length)];
            var options = new GenerationOptions
            {
                Seed = (ulong)trial,
                Temperature = trial % 5 == 0 ? new[] { 0.05, 5 }[rng.Next(2)] : 0.1 + rng.NextDouble() * 2.9,
                TopK = trial % 7 == 0 ? vocab : 0,
                RepetitionPenalty = Penalties[rng.Next(Penalties.Length)],
            };
            var sampler = new TokenSampler(options, vocab, prompt);
            var former = new FormerTokenSampler(options, vocab, prompt);
            var ask = CandidateAsk.For(0, sampler, options, chunkSize: size);
            try
            {
                Assert.That(ask.Chunks?.Penalty, Is.Not.Null);
                Assert.That(ask.Seen, Is.Not.Null);
                for (int step = 0; step < steps; step++)
                {
                    int kind = rng.Next(9);
                    var row = Row(rng, vocab, kind);
                    if (rng.Next(4) != 0) Heat(rng, row, sampler.SeenIds);
                    int seen = sampler.SeenIds.Count;
                    LogitsRow read;
                    long reads = TestDevice.Backend.DeviceToHost, bytes = TestDevice.Backend.DeviceToHostBytes;
                    using (TensorScope.Begin())
                        read = TopKCandidates.ReadRows(Tensor.FromArray(row, device, 1, vocab), [0], [ask])[0];
                    reads = TestDevice.Backend.DeviceToHost - reads;
                    bytes = TestDevice.Backend.DeviceToHostBytes - bytes;
                    string what = $"trial {trial} step {step} kind {kind}: {options}, vocab {vocab}, chunk {size}, seen {seen}";
                    int expected = Outcome(() => former.Next(row));
                    bool fast = read.Chunk is not null;
                    if (Ordinary(kind)) { ordinary++; if (fast) ordinaryDecided++; }
                    if (big) { bigRows++; if (fast) bigDecided++; }
                    if (fast)
                    {
                        decided++;
                        var c = read.Chunk!;
                        Assert.That(c.Sums.Seen, Is.EqualTo(seen), what);
                        if (onTestDevice)
                        {
                            // The seen ids' logits (where any), the chunk sums, the chunk: nothing else comes back.
                            Assert.That(reads, Is.EqualTo(seen > 0 ? 3 : 2), what + ": reads");
                            Assert.That(bytes, Is.EqualTo(4L * seen + 8L * (c.Sums.Sums.Length + 2) + 4L * c.Values.Length), what + ": bytes read");
                            readsChecked++;
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
            finally { ask.Seen?.Dispose(); }
        }
        TestContext.Out.WriteLine($"decided {decided} (ordinary {ordinaryDecided}/{ordinary}; Qwen2's vocabulary {bigDecided}/{bigRows}), whole {whole}, reads checked {readsChecked}; fallbacks: "
            + string.Join(", ", reasons.OrderByDescending(x => x.Value).Select(x => $"{x.Key} {x.Value}")));
        Assert.That(ordinaryDecided, Is.GreaterThan(ordinary * 98 / 100), "ordinary rows decided from their chunk sums");
        Assert.That(whole, Is.GreaterThan(20), "NaN and ±∞ rows read whole");
        Assert.That(bigDecided, Is.GreaterThan(bigRows / 2), "rows of Qwen2's vocabulary decided");
        if (onTestDevice) Assert.That(readsChecked, Is.GreaterThan(300));
    }

    /// <summary>
    /// One read of several rows in one group (one temperature and chunk size: one <see cref="TopKCandidates.DeviceChunkSums"/>
    /// with rows of no penalty entry beside penalised ones): a row without a penalty, penalised rows with different and
    /// overlapping seen sets, a penalised row that has seen nothing, and the rows asked out of order. Each
    /// row's pick is the former sampler's on its own whole row, over several steps (each step's picks join the seen sets);
    /// float32, bf16 and float64 logits.
    /// </summary>
    [Test]
    public void RowsOfOneGroupKeepTheirOwnSeenIds([Values(false, true)] bool onTestDevice, [Values(DType.F32, DType.BF16, DType.F64)] DType dtype)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 81 : 82);
        const int vocab = 2000, size = 64;
        int decided = 0, asked = 0;
        for (int trial = 0; trial < 20; trial++)
        {
            double t = 0.3 + rng.NextDouble() * 2;
            var shared = Prompt(rng, vocab, size, 15);
            int[][] prompts = [Prompt(rng, vocab, size, 10), [], [.. shared, .. Prompt(rng, vocab, size, 5)], shared, Prompt(rng, vocab, size, 40)];
            double[] penalties = [1, 1.3, 0.7, 1.3, 2];
            var options = prompts.Select((_, r) => new GenerationOptions { Temperature = t, Seed = (ulong)(trial * 10 + r), RepetitionPenalty = penalties[r] }).ToArray();
            var samplers = prompts.Select((x, r) => new TokenSampler(options[r], vocab, x)).ToArray();
            var former = prompts.Select((x, r) => new FormerTokenSampler(options[r], vocab, x)).ToArray();
            var asks = samplers.Select((s, r) => CandidateAsk.For(0, s, options[r], chunkSize: size)).ToArray();
            try
            {
                // Logits row k for sampler order[k]: the asks name the rows out of order.
                int[] order = [3, 0, 4, 1, 2];
                for (int step = 0; step < 4; step++)
                {
                    var data = new float[order.Length][];
                    for (int k = 0; k < order.Length; k++)
                    {
                        data[k] = Row(rng, vocab, rng.Next(5));
                        Heat(rng, data[k], samplers[order[k]].SeenIds);
                    }
                    LogitsRow[] read;
                    using (TensorScope.Begin())
                    {
                        // Float64 logits carry bits below float32's (each nudged by ~1e-9), which the device rounds away.
                        var logits = dtype == DType.F64
                            ? Tensor.FromArray(data.SelectMany(x => x).Select(x => x * (1 + 1e-9 * rng.NextDouble())).ToArray(), device, order.Length, vocab)
                            : Tensor.FromArray(data.SelectMany(x => x).ToArray(), device, order.Length, vocab).To(dtype);
                        // The reference samples the logits as the host reads them (float32: bf16 widened, float64 rounded).
                        var back = logits.ToFloatArray();
                        for (int k = 0; k < order.Length; k++) data[k] = back.AsSpan(k * vocab, vocab).ToArray();
                        // Rows asked as at[i] = the logits row of sampler i.
                        var at = Enumerable.Range(0, samplers.Length).Select(i => Array.IndexOf(order, i)).ToArray();
                        read = TopKCandidates.ReadRows(logits, at, asks);
                    }
                    for (int i = 0; i < samplers.Length; i++)
                    {
                        var row = data[Array.IndexOf(order, i)];
                        string what = $"trial {trial} step {step} sampler {i} (penalty {penalties[i]}, seen {samplers[i].SeenIds.Count})";
                        asked++;
                        if (read[i].Chunk is { } c)
                        {
                            decided++;
                            Assert.That(c.Sums.Seen, Is.EqualTo(penalties[i] == 1 ? 0 : samplers[i].SeenIds.Count), what);
                        }
                        int want = Outcome(() => former[i].Next(row));
                        Assert.That(Outcome(() => samplers[i].Next(read[i])), Is.EqualTo(want), what);
                    }
                }
            }
            finally { foreach (var a in asks) a.Seen?.Dispose(); }
        }
        TestContext.Out.WriteLine($"decided {decided} of {asked}");
        Assert.That(decided, Is.GreaterThan(asked * 9 / 10), "rows decided from their chunk sums");
    }

    /// <summary>The penalised row's chunk sums on <paramref name="device"/>, as <see cref="TopKCandidates.ReadRows"/> computes them: the sampler's penalised values at its seen ids.</summary>
    private static ChunkSums Sums(TokenSampler sampler, float[] row, double t, int size, Device device)
    {
        using var scope = TensorScope.Begin();
        var seen = sampler.SeenIds.ToArray();
        (Tensor, Tensor)?[]? penalties = null;
        if (seen.Length > 0)
        {
            var ids = Tensor.FromArray(seen.Select(x => (long)x).ToArray(), device, seen.Length);
            var values = Tensor.FromArray(seen.Select(x => sampler.Penalised(row[x], x)).ToArray(), device, seen.Length);
            penalties = [(ids, values)];
        }
        var d = TopKCandidates.DeviceChunkSums(Tensor.FromArray(row, device, 1, row.Length), [0], t, size, penalties).ToDoubleArray();
        return new ChunkSums(d[0], d[1], d[2..], size, seen.Length);
    }

    /// <summary>The whole-row sampler's p = e / S of the penalised row and their sequential total, as it computes them.</summary>
    private static double[] Probabilities(TokenSampler sampler, float[] row, double t, out double total)
    {
        int n = row.Length;
        var l = new double[n];
        for (int i = 0; i < n; i++)
        {
            double x = sampler.Penalised(row[i], i);
            l[i] = double.IsNaN(x) ? double.NegativeInfinity : x / t;
        }
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
    private static int Walk(double[] p, double total, double r)
    {
        double u = r * total;
        int last = -1;
        for (int i = 0; i < p.Length; i++)
        {
            if (p[i] <= 0) continue;
            last = i;
            u -= p[i];
            if (u < 0) return i;
        }
        return last;
    }

    /// <summary>The reference walk above is the sampler's (and the former sampler's) under a penalty.</summary>
    [Test]
    public void TheReferenceWalkIsTheSamplers()
    {
        var rng = new Random(7);
        for (int trial = 0; trial < 40; trial++)
        {
            int vocab = rng.Next(50, 2000);
            var options = new GenerationOptions { Seed = (ulong)trial, Temperature = 0.2 + rng.NextDouble() * 3, RepetitionPenalty = Penalties[rng.Next(Penalties.Length)] };
            var prompt = Prompt(rng, vocab, 7, 10);
            var sampler = new TokenSampler(options, vocab, prompt);
            var former = new FormerTokenSampler(options, vocab, prompt);
            for (int step = 0; step < 5; step++)
            {
                var row = Row(rng, vocab, new[] { 0, 1, 2, 3, 4, 7, 8 }[rng.Next(7)]);
                Heat(rng, row, sampler.SeenIds);
                int expected = Walk(Probabilities(sampler, row, options.Temperature, out double total), total, sampler.PeekDraw());
                Assert.That(former.Next(row), Is.EqualTo(expected), $"trial {trial} step {step} (former)");
                Assert.That(sampler.Next(row), Is.EqualTo(expected), $"trial {trial} step {step}");
            }
        }
    }

    /// <summary>
    /// Draws within a few ulps (and 10⁻¹³…10⁻⁹ relatively) of the r where the penalised row's walk moves from one id to
    /// the next, at chunk boundaries, inside chunks and at the seen ids themselves: each is refused or gives the whole
    /// row's pick; both neighbouring picks occur. The control: the raw row's sums (no penalty on the device) labelled as
    /// the penalised row's — the bug the design must not have — give wrong picks on the same draws.
    /// </summary>
    [Test]
    public void DrawsNearBoundariesMatchOrFallBack([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var rng = new Random(onTestDevice ? 71 : 72);
        int decided = 0, refused = 0, straddled = 0, controlDecided = 0, controlWrong = 0;
        double[] offsets = [0, 1e-13, -1e-13, 1e-11, -1e-11, 1e-9, -1e-9];
        for (int trial = 0; trial < 50; trial++)
        {
            int vocab = trial % 25 == 0 ? 151_936 : rng.Next(100, 2500);
            int size = trial % 25 == 0 ? TopKCandidates.ChunkSize : Sizes[rng.Next(3)];
            double t = 0.1 + rng.NextDouble() * 3;
            var options = new GenerationOptions { Temperature = t, RepetitionPenalty = Penalties[rng.Next(Penalties.Length)] };
            var sampler = new TokenSampler(options, vocab, Prompt(rng, vocab, size, rng.Next(1, 30)));
            var row = Row(rng, vocab, new[] { 0, 1, 2, 3, 4, 7, 8 }[rng.Next(7)]);
            Heat(rng, row, sampler.SeenIds);
            var sums = Sums(sampler, row, t, size, device);
            var raw = new TokenSampler(options with { RepetitionPenalty = 1 }, vocab, []);
            var rawSums = Sums(raw, row, t, size, device) with { Seen = sums.Seen };
            var p = Probabilities(sampler, row, t, out double total);
            var bounds = new List<int>();
            for (int c = 1; c < sums.Sums.Length; c++) bounds.Add(c * size);
            if (bounds.Count > 30) bounds = bounds.OrderBy(_ => rng.Next()).Take(30).ToList();
            for (int j = 0; j < 10; j++) bounds.Add(rng.Next(1, vocab));
            foreach (int id in sampler.SeenIds.Take(10)) { bounds.Add(id); bounds.Add(id + 1); }
            foreach (int b in bounds.Where(b => b > 0 && b < vocab).Distinct())
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
                        if (sampler.ChunkToRead(sums, r) is int c && sampler.ChunkPick(sums, c, Chunk(row, sums, c), r) is int pick)
                        {
                            decided++;
                            Assert.That(pick, Is.EqualTo(expected), $"trial {trial}: boundary {b}, r {r:R}, chunk size {size}, vocab {vocab}, {options}");
                        }
                        else refused++;
                        if (sampler.ChunkToRead(rawSums, r) is int rc && sampler.ChunkPick(rawSums, rc, Chunk(row, rawSums, rc), r) is int rawPick)
                        {
                            controlDecided++;
                            if (rawPick != expected) controlWrong++;
                        }
                    }
                if (picks.Count > 1) straddled++;
            }
        }
        TestContext.Out.WriteLine($"decided {decided}, refused {refused}, boundaries straddled {straddled}; control (raw sums): decided {controlDecided}, wrong {controlWrong}");
        Assert.That(refused, Is.GreaterThan(100), "draws within ulps of a boundary are refused");
        Assert.That(decided, Is.GreaterThan(10_000), "draws off the boundaries are decided");
        Assert.That(straddled, Is.GreaterThan(100), "the placed draws do fall on both sides of the boundaries");
        Assert.That(controlWrong, Is.GreaterThan(100), "the raw row's sums would give wrong picks: the test sees the penalty");
    }

    private static float[] Chunk(float[] row, ChunkSums sums, int c) => row.AsSpan(c * sums.Size, sums.Length(c, row.Length)).ToArray();

    /// <summary>
    /// Crafted rows: the seen ids at 0, the last id and on both sides of chunk boundaries; a seen id made the maximum by a
    /// penalty below 1 and one pulled off the top by one above 1; a seen −0, −∞, +∞ or NaN; every id seen. Each gives the
    /// former sampler's pick, decided from the chunks where its numbers are finite; sums for another seen set throw.
    /// </summary>
    [Test]
    public void CraftedRowsFallBackOrMatch([Values(false, true)] bool onTestDevice)
    {
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        const int vocab = 3000, size = 64;
        var rng = new Random(11);
        var row = Enumerable.Range(0, vocab).Select(_ => (float)(rng.NextDouble() * 4)).ToArray();
        int[] edges = [0, vocab - 1, size - 1, size, 5 * size - 1, 5 * size];

        (bool Fast, int Pick, int Whole, string? Why) Run(GenerationOptions options, float[] logits, int[] prompt)
        {
            var sampler = new TokenSampler(options, vocab, prompt);
            var ask = CandidateAsk.For(0, sampler, options, chunkSize: size);
            try
            {
                LogitsRow read;
                using (TensorScope.Begin())
                    read = TopKCandidates.ReadRows(Tensor.FromArray(logits, device, 1, vocab), [0], [ask])[0];
                string? why = sampler.LastChunkFallback;
                int whole = Outcome(() => new FormerTokenSampler(options, vocab, prompt).Next(logits));
                return (read.Chunk is not null, Outcome(() => sampler.Next(read)), whole, why);
            }
            finally { ask.Seen?.Dispose(); }
        }

        foreach (double penalty in Penalties)
            foreach (double t in new[] { 0.05, 0.8, 3 })
            {
                var options = new GenerationOptions { Temperature = t, Seed = (ulong)(penalty * 100 + t * 10), RepetitionPenalty = penalty };
                string what = $"penalty {penalty}, T {t}";
                var r = Run(options, row, edges);
                Assert.That(r.Fast && r.Pick == r.Whole, $"{what}, seen at the edges: {r}");

                // The row's maximum on a seen id: the penalty moves the maximum the device must use.
                var top = row.ToArray();
                top[size] = 4.5f;
                top[size - 1] = 4.4f;
                r = Run(options, top, edges);
                Assert.That(r.Fast && r.Pick == r.Whole, $"{what}, the maximum seen: {r}");

                var zero = row.ToArray();
                zero[size] = -0f;
                zero[0] = 0f;
                r = Run(options, zero, edges);
                Assert.That(r.Fast && r.Pick == r.Whole, $"{what}, a seen −0: {r}");

                var minus = row.ToArray();
                minus[size - 1] = float.NegativeInfinity;
                r = Run(options, minus, edges);
                Assert.That(r.Fast && r.Pick == r.Whole, $"{what}, a seen −∞: {r}");

                var plus = row.ToArray();
                plus[vocab - 1] = float.PositiveInfinity;
                r = Run(options, plus, edges);
                Assert.That(!r.Fast && r.Pick == -1 && r.Whole == -1 && r.Why == "no finite maximum", $"{what}, a seen +∞ (refused by the whole row): {r}");

                var nan = row.ToArray();
                nan[5 * size] = float.NaN;
                r = Run(options, nan, edges);
                Assert.That(!r.Fast && r.Pick == r.Whole && r.Why is "a chunk sum that is not finite" or "no finite maximum", $"{what}, a seen NaN: {r}");
            }

        // Every id seen (a small vocabulary, so the seen ids still pay).
        var small = Enumerable.Range(0, 400).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        foreach (double penalty in Penalties)
        {
            var options = new GenerationOptions { Temperature = 0.9, Seed = 4, RepetitionPenalty = penalty };
            var sampler = new TokenSampler(options, small.Length, Enumerable.Range(0, small.Length));
            var sums = Sums(sampler, small, 0.9, 7, device);
            double r = sampler.PeekDraw();
            int want = new FormerTokenSampler(options, small.Length, Enumerable.Range(0, small.Length)).Next(small);
            Assert.That(sampler.ChunkToRead(sums) is int c && sampler.ChunkPick(sums, c, Chunk(small, sums, c), r) == want, $"penalty {penalty}: every id seen");
        }

        // Sums for another seen set than the sampler's are a caller's error.
        var s2 = new TokenSampler(new GenerationOptions { Temperature = 1, RepetitionPenalty = 1.3 }, vocab, edges);
        var unpenalised = Sums(new TokenSampler(new GenerationOptions { Temperature = 1 }, vocab, []), row, 1, size, device);
        Assert.Throws<InvalidOperationException>(() => s2.ChunkToRead(unpenalised));
        var plain = new TokenSampler(new GenerationOptions { Temperature = 1 }, vocab, edges);
        Assert.Throws<InvalidOperationException>(() => plain.ChunkToRead(unpenalised with { Seen = edges.Length }));
    }

    /// <summary>
    /// A step's reads on the test device, Qwen2's vocabulary, 300 seen ids, penalty 1.05: the whole-row path reads the
    /// row once (607,744 bytes); the chunk path reads the seen ids' logits, the chunk sums and one chunk — three reads,
    /// 4·300 + 8·(297 + 2) + 4·512 = 5,640 bytes — and sends the 300 penalised values (plus the seen ids once).
    /// </summary>
    [Test]
    public void ReadsPerStep()
    {
        var device = TestDevice.Get();
        var dev = TestDevice.Backend;
        const int vocab = 151_936;
        var rng = new Random(3);
        var row = Row(rng, vocab, 0);
        var prompt = Enumerable.Range(0, 300).Select(i => i * 500 + 7).ToArray();
        var options = new GenerationOptions { Temperature = 0.7, Seed = 5, RepetitionPenalty = 1.05 };
        var sampler = new TokenSampler(options, vocab, prompt);
        var former = new FormerTokenSampler(options, vocab, prompt);
        var ask = CandidateAsk.For(0, sampler, options);
        try
        {
            using var scope = TensorScope.Begin();
            var logits = Tensor.FromArray(row, device, 1, vocab);
            long reads = dev.DeviceToHost, bytes = dev.DeviceToHostBytes, up = dev.HostToDevice;
            var whole = TopKCandidates.ReadRows(logits, [0], [null])[0];
            Assert.That((dev.DeviceToHost - reads, dev.DeviceToHostBytes - bytes), Is.EqualTo((1L, 4L * vocab)), "the whole row");
            Assert.That(whole.Logits, Is.Not.Null);
            int uploaded = 0;
            for (int step = 0; step < 3; step++)
            {
                bool fresh = sampler.SeenIds.Count > uploaded;
                uploaded = sampler.SeenIds.Count;
                (reads, bytes, up) = (dev.DeviceToHost, dev.DeviceToHostBytes, dev.HostToDevice);
                var read = TopKCandidates.ReadRows(logits, [0], [ask])[0];
                (reads, bytes, up) = (dev.DeviceToHost - reads, dev.DeviceToHostBytes - bytes, dev.HostToDevice - up);
                TestContext.Out.WriteLine($"step {step}: {reads} reads, {bytes} bytes; {up} host→device copies; seen {sampler.SeenIds.Count}");
                Assert.That(read.Chunk, Is.Not.Null);
                int s = sampler.SeenIds.Count;
                Assert.That((reads, bytes), Is.EqualTo((3L, 4L * s + 8L * (297 + 2) + 4L * 512)));
                // The penalised values, and the seen ids not yet on the device (all of them at first, a new pick after).
                Assert.That(up, Is.EqualTo(fresh ? 2 : 1));
                int want = former.Next(row);
                Assert.That(sampler.Next(read), Is.EqualTo(want));
            }
        }
        finally { ask.Seen?.Dispose(); }
    }
}
