using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;
using static Parrot.Parrot.Tests.Inference.DecodeSessionFixtures;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// Top-k sampling from the device's candidates (<see cref="ICandidateDecodingSession"/>, <see cref="TopKCandidates"/>):
/// sampled generations on the test device (eager and static sessions, f32 and bf16, seeds, top-k 1/5/50, top-p 1/0.8,
/// temperatures 0.7/1.5, two prompts, a row ending early) give the whole-row path's tokens; a step reads the candidates'
/// values and ids in place of the rows (device→host bytes counted), and a row the candidates do not decide is read whole.
/// With a repetition penalty (0.7, 1.05, 1.3, 2; greedy and top-k sampling) the same, each row's seen ids' logits read
/// with its top ones (4 bytes a seen id), the seen ids going up to the device only as they are added.
/// </summary>
public class CandidateSamplingTests
{
    /// <summary>Counts the rows its sessions return as candidates and as whole rows.</summary>
    private sealed class Counting(IAutoregressiveModel inner) : IAutoregressiveModel
    {
        public int CandidateRows, WholeRows, EscalatedRows, WholeAfterEscalation;

        public int VocabSize => inner.VocabSize;

        public IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens) => new Session(this, (ICandidateDecodingSession)inner.Start(prompts, maxNewTokens));

        private sealed class Session(Counting owner, ICandidateDecodingSession s) : ICandidateDecodingSession
        {
            public bool CandidatesPay => s.CandidatesPay;
            public float[][] Prefill() => s.Prefill();
            public float[][] Step(int[] tokens) => s.Step(tokens);
            public LogitsRow[] PrefillCandidates(CandidateAsk[] asks) => Count(s.PrefillCandidates(asks));
            public LogitsRow[] StepCandidates(int[] tokens, CandidateAsk[] asks) => Count(s.StepCandidates(tokens, asks));
            public void Dispose() => s.Dispose();

            private LogitsRow[] Count(LogitsRow[] rows)
            {
                foreach (var r in rows)
                {
                    if (r.Logits is null) owner.CandidateRows++;
                    else owner.WholeRows++;
                    if (r.Escalated && r.Logits is null) owner.EscalatedRows++;
                    if (r.Escalated && r.Logits is not null) owner.WholeAfterEscalation++;
                }
                return rows;
            }
        }
    }

    private static readonly GenerationPrompt[] TwoPrompts = Prompts.Select(p => new GenerationPrompt(p)).ToArray();

    [Test]
    public void SampledGenerationsAreTheWholeRowsTokens([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode, [Values(DType.F32, DType.BF16)] DType dtype)
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 6, dtype);
        model.To(TestDevice.Get());
        var dev = TestDevice.Backend;
        int candidateRows = 0, wholeRows = 0, earlyEnds = 0;
        foreach (ulong seed in new ulong[] { 1, 2, 3 })
        foreach (int k in new[] { 1, 5, 50 })
        foreach (double topP in new[] { 1, 0.8 })
        foreach (double temperature in new[] { 0.7, 1.5 })
        {
            var options = new GenerationOptions { MaxNewTokens = 10, Temperature = temperature, TopK = k, TopP = topP, Seed = seed, IgnoreEos = false };
            string what = $"seed {seed}, top-k {k}, top-p {topP}, T {temperature}";
            // An end-of-sequence id from the whole-row run's row 0, so that row ends early and the other steps on.
            var probe = new Generator(Generator.LogitsOnly(Generator.Wrap(model, mode)), endOfSequenceIds: []).Generate(TwoPrompts, options);
            int eos = probe[0].Tokens[3];
            long bytes = dev.DeviceToHostBytes;
            var want = new Generator(Generator.LogitsOnly(Generator.Wrap(model, mode)), endOfSequenceIds: [eos]).Generate(TwoPrompts, options);
            long wholeBytes = dev.DeviceToHostBytes - bytes;
            var counting = new Counting(Generator.Wrap(model, mode));
            bytes = dev.DeviceToHostBytes;
            var got = new Generator(counting, endOfSequenceIds: [eos]) { CandidateMargin = 2 }.Generate(TwoPrompts, options);
            long candidateBytes = dev.DeviceToHostBytes - bytes;
            for (int r = 0; r < 2; r++)
            {
                Assert.That(got[r].Tokens, Is.EqualTo(want[r].Tokens), $"{what}: row {r}");
                Assert.That(got[r].Reason, Is.EqualTo(want[r].Reason), $"{what}: row {r}");
            }
            if (want.Any(x => x.Reason == FinishReason.EndOfSequence && x.Tokens.Length < 10)) earlyEnds++;
            // Top-k 50 + 2 of this 61-long vocabulary would read more bytes than the rows: the logits path.
            bool applies = TopKCandidates.Count(options, Lm.VocabSize, 2) > 0;
            Assert.That(applies, Is.EqualTo(k < 50), what);
            Assert.That(counting.CandidateRows + counting.WholeRows, Is.EqualTo(applies ? 2 * want.Max(x => x.Tokens.Length) : 0), $"{what}: both rows every step");
            if (applies && counting.WholeRows == 0) Assert.That(candidateBytes, Is.LessThan(wholeBytes), $"{what}: fewer bytes read");
            if (!applies) Assert.That(candidateBytes, Is.EqualTo(wholeBytes), $"{what}: the logits path's reads");
            candidateRows += counting.CandidateRows;
            wholeRows += counting.WholeRows;
        }
        Assert.That(earlyEnds, Is.GreaterThan(10), "rows ending early");
        Assert.That(candidateRows, Is.GreaterThan(5 * wholeRows), "most rows sampled from their candidates");
    }

    /// <summary>
    /// Top-p without top-k (OpenAI-style: temperature and top_p), with and without a penalty: the generations equal the
    /// whole-row path's, rows decided by 10 candidates and the device's row sum where the margin check proves the pick.
    /// </summary>
    [Test]
    public void TopPAloneFromCandidatesAndTheRowSum([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 6, DType.F32);
        model.To(TestDevice.Get());
        var dev = TestDevice.Backend;
        int candidateRows = 0, wholeRows = 0;
        foreach (ulong seed in new ulong[] { 1, 2, 3 })
        foreach (double topP in new[] { 0.5, 0.9 })
        foreach (double temperature in new[] { 0.05, 0.3 })
        foreach (double penalty in new[] { 1, 1.3 })
        {
            var options = new GenerationOptions { MaxNewTokens = 8, Temperature = temperature, TopP = topP, RepetitionPenalty = penalty, Seed = seed, IgnoreEos = true };
            string what = $"seed {seed}, top-p {topP}, T {temperature}, penalty {penalty}";
            var want = new Generator(Generator.LogitsOnly(Generator.Wrap(model, mode)), endOfSequenceIds: []).Generate(TwoPrompts, options);
            var counting = new Counting(Generator.Wrap(model, mode));
            long bytes = dev.DeviceToHostBytes;
            var got = new Generator(counting, endOfSequenceIds: []) { CandidateMargin = 2, TopPCandidates = 10 }.Generate(TwoPrompts, options);
            long read = dev.DeviceToHostBytes - bytes;
            for (int r = 0; r < 2; r++) Assert.That(got[r].Tokens, Is.EqualTo(want[r].Tokens), $"{what}: row {r}");
            Assert.That(counting.CandidateRows + counting.WholeRows, Is.EqualTo(2 * 8), $"{what}: both rows every step as candidates asked");
            if (counting.WholeRows == 0 && penalty == 1)
                Assert.That(read, Is.LessThan(4L * Lm.VocabSize * 2 * 8), $"{what}: fewer bytes than the rows");
            candidateRows += counting.CandidateRows;
            wholeRows += counting.WholeRows;
        }
        TestContext.Out.WriteLine($"candidate rows {candidateRows}, whole rows {wholeRows}");
        // The random-weight model's rows are nearly flat (its candidates often hold less than top-p), and penalised rows
        // with their seen ids do not pay at this 61-long vocabulary: a good share, not most.
        Assert.That(candidateRows, Is.GreaterThan(60), "rows from their candidates and the row sum");
        Assert.That(wholeRows, Is.GreaterThan(0), "some rows fall back");
    }

    /// <summary>
    /// Plain temperature sampling from the device's chunk sums and one chunk (eager and static sessions, 8 ids a chunk
    /// of the 61-long test vocabulary, T from 0.05 to 2): the whole-row path's tokens, nearly every row decided without
    /// its whole row, fewer bytes read; with a penalty the same tokens, rows decided from the penalised row's chunk sums
    /// while the seen ids are few enough to pay (12 bytes each against the 61-long row's 244), the rest read whole.
    /// </summary>
    [Test]
    public void TemperatureAloneFromChunkSums([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 6, DType.F32);
        model.To(TestDevice.Get());
        var dev = TestDevice.Backend;
        int chunkRows = 0, wholeRows = 0, penalisedChunkRows = 0;
        foreach (ulong seed in new ulong[] { 1, 2, 3 })
        foreach (double temperature in new[] { 0.05, 0.7, 2 })
        foreach (double penalty in new[] { 1, 1.3 })
        {
            var options = new GenerationOptions { MaxNewTokens = 8, Temperature = temperature, RepetitionPenalty = penalty, Seed = seed, IgnoreEos = true };
            string what = $"seed {seed}, T {temperature}, penalty {penalty}";
            var want = new Generator(Generator.LogitsOnly(Generator.Wrap(model, mode)), endOfSequenceIds: []).Generate(TwoPrompts, options);
            var counting = new Counting(Generator.Wrap(model, mode));
            long bytes = dev.DeviceToHostBytes;
            var got = new Generator(counting, endOfSequenceIds: []) { CandidateMargin = 2, TemperatureChunk = 8 }.Generate(TwoPrompts, options);
            long read = dev.DeviceToHostBytes - bytes;
            for (int r = 0; r < 2; r++) Assert.That(got[r].Tokens, Is.EqualTo(want[r].Tokens), $"{what}: row {r}");
            Assert.That(counting.CandidateRows + counting.WholeRows, Is.EqualTo(2 * 8), $"{what}: both rows every step asked");
            if (penalty != 1)
            {
                penalisedChunkRows += counting.CandidateRows;
                continue;
            }
            if (counting.WholeRows == 0)
                Assert.That(read, Is.LessThan(4L * Lm.VocabSize * 2 * 8), $"{what}: fewer bytes than the rows");
            chunkRows += counting.CandidateRows;
            wholeRows += counting.WholeRows;
        }
        TestContext.Out.WriteLine($"chunk rows {chunkRows}, whole rows {wholeRows}; penalised rows from chunk sums {penalisedChunkRows}");
        Assert.That(chunkRows, Is.GreaterThan((chunkRows + wholeRows) * 99 / 100), "rows decided from their chunk sums");
        Assert.That(penalisedChunkRows, Is.GreaterThan(20), "penalised rows decided from their chunk sums");
    }

    /// <summary>
    /// The escalation in generations (eager and static sessions; top-p alone at 4 first candidates, then 14 of the 61-long
    /// vocabulary; top-k 12 with ties at its cut past a margin of 1, then 14): the whole-row path's tokens, some rows
    /// decided by the escalated candidates, and each read step's bytes those of the stages its rows took.
    /// </summary>
    [Test]
    public void EscalatedCandidatesGiveTheWholeRowsTokens([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 6, DType.F32);
        model.To(TestDevice.Get());
        int escalated = 0, first = 0, whole = 0, afterEscalation = 0;
        foreach (ulong seed in new ulong[] { 1, 2, 3 })
        foreach (var options in new[]
        {
            new GenerationOptions { Temperature = 0.3, TopP = 0.9 },
            new GenerationOptions { Temperature = 0.05, TopP = 0.5 },
            new GenerationOptions { Temperature = 0.7, TopK = 12 },
            new GenerationOptions { Temperature = 1, TopK = 12, TopP = 0.8 },
        })
        {
            var o = options with { MaxNewTokens = 8, Seed = seed, IgnoreEos = true };
            string what = $"seed {seed}, {o}";
            var want = new Generator(Generator.LogitsOnly(Generator.Wrap(model, mode)), endOfSequenceIds: []).Generate(TwoPrompts, o);
            var counting = new Counting(Generator.Wrap(model, mode));
            var got = new Generator(counting, endOfSequenceIds: []) { CandidateMargin = 1, TopPCandidates = 4, EscalatedCandidates = 14 }.Generate(TwoPrompts, o);
            for (int r = 0; r < 2; r++) Assert.That(got[r].Tokens, Is.EqualTo(want[r].Tokens), $"{what}: row {r}");
            var plain = new Counting(Generator.Wrap(model, mode));
            var without = new Generator(plain, endOfSequenceIds: []) { CandidateMargin = 1, TopPCandidates = 4, EscalatedCandidates = 0 }.Generate(TwoPrompts, o);
            for (int r = 0; r < 2; r++) Assert.That(without[r].Tokens, Is.EqualTo(want[r].Tokens), $"{what}: row {r} without the escalation");
            Assert.That(plain.EscalatedRows + plain.WholeAfterEscalation, Is.Zero, "no escalation asked");
            Assert.That(counting.CandidateRows - counting.EscalatedRows, Is.EqualTo(plain.CandidateRows), $"{what}: the first candidates decide the same rows");
            escalated += counting.EscalatedRows;
            first += counting.CandidateRows - counting.EscalatedRows;
            whole += counting.WholeRows;
            afterEscalation += counting.WholeAfterEscalation;
        }
        TestContext.Out.WriteLine($"{mode}: first {first}, escalated {escalated}, whole {whole} ({afterEscalation} after the escalation)");
        Assert.That(escalated, Is.GreaterThan(10), "rows decided by the escalated candidates");
        Assert.That(whole, Is.GreaterThan(0), "some rows still read whole");
    }

    /// <summary>
    /// A step of each session reads the values (float32) and ids (int64) of count candidates per row where the logits path
    /// reads the rows: the same reads otherwise, one more copy; a row the check refuses comes back whole, in one more read,
    /// equal to the logits path's row; the candidates are that row's top count (ties by lower id).
    /// </summary>
    [Test]
    public void AStepReadsTheCandidatesInPlaceOfTheRows([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode, [Values(1, 2)] int batch)
    {
        const int count = 7, steps = 4;
        using var model = new Qwen2ForCausalLM(Lm, seed: 8, DType.BF16);
        model.To(TestDevice.Get());
        var dev = TestDevice.Backend;
        var prompts = TwoPrompts.Take(batch).ToArray();
        using var reference = Generator.Wrap(model, mode).Start(prompts, steps);
        using var session = (ICandidateDecodingSession)Generator.Wrap(model, mode).Start(prompts, steps);
        Assert.That(session.CandidatesPay, "the test device's reads are copies");
        var logits = reference.Prefill();
        var rows = session.PrefillCandidates(Asks(batch, count, (_, _, _) => true));
        Check(logits, rows, "prefill");
        for (int s = 1; s <= steps; s++)
        {
            var tokens = logits.Select((l, r) => (s * 7 + r * 3) % Lm.VocabSize).ToArray();
            long reads = dev.DeviceToHost, bytes = dev.DeviceToHostBytes;
            logits = reference.Step(tokens);
            long referenceReads = dev.DeviceToHost - reads, referenceBytes = dev.DeviceToHostBytes - bytes;
            // Odd steps: every row refused (read whole after the candidates); even steps: every row from its candidates.
            bool refuse = s % 2 == 1;
            var copies = new List<CopyRecord>();
            reads = dev.DeviceToHost; bytes = dev.DeviceToHostBytes;
            dev.CopyLog = copies;
            try { rows = session.StepCandidates(tokens, Asks(batch, count, (_, _, _) => !refuse)); }
            finally { dev.CopyLog = null; }
            long got = dev.DeviceToHostBytes - bytes;
            Check(logits, rows, $"step {s}");
            long candidates = (4 + 8) * count * batch, row = 4L * Lm.VocabSize * batch;
            Assert.That(got, Is.EqualTo(referenceBytes - row + candidates + (refuse ? row : 0)), $"step {s}: device→host bytes");
            Assert.That(dev.DeviceToHost - reads, Is.EqualTo(referenceReads + 1 + (refuse ? 1 : 0)), $"step {s}: device→host reads");
            Assert.That(rows.All(r => (r.Logits is null) != refuse), $"step {s}");
        }
    }

    [Test]
    public void PenalisedGenerationsAreTheWholeRowsTokens([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode, [Values(DType.F32, DType.BF16)] DType dtype)
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 6, dtype);
        model.To(TestDevice.Get());
        var dev = TestDevice.Backend;
        int candidateRows = 0, wholeRows = 0;
        long candidateBytes = 0, wholeBytes = 0;
        foreach (double penalty in new[] { 0.7, 1.05, 1.3, 2 })
        foreach (var sampled in new GenerationOptions?[] { null, new() { Temperature = 0.9, TopK = 5 }, new() { Temperature = 1.3, TopK = 3, TopP = 0.8 } })
        foreach (ulong seed in new ulong[] { 1, 2 })
        {
            var options = (sampled ?? new GenerationOptions()) with { MaxNewTokens = 12, RepetitionPenalty = penalty, Seed = seed, IgnoreEos = true };
            string what = $"penalty {penalty}, {(sampled is null ? "greedy" : $"top-k {options.TopK}, top-p {options.TopP}")}, seed {seed}";
            long bytes = dev.DeviceToHostBytes;
            var want = new Generator(Generator.LogitsOnly(Generator.Wrap(model, mode)), endOfSequenceIds: []).Generate(TwoPrompts, options);
            wholeBytes += dev.DeviceToHostBytes - bytes;
            var counting = new Counting(Generator.Wrap(model, mode));
            bytes = dev.DeviceToHostBytes;
            var got = new Generator(counting, endOfSequenceIds: []) { CandidateMargin = 2 }.Generate(TwoPrompts, options);
            candidateBytes += dev.DeviceToHostBytes - bytes;
            for (int r = 0; r < 2; r++) Assert.That(got[r].Tokens, Is.EqualTo(want[r].Tokens), $"{what}: row {r}");
            Assert.That(counting.CandidateRows + counting.WholeRows, Is.EqualTo(2 * 12), $"{what}: both rows every step");
            candidateRows += counting.CandidateRows;
            wholeRows += counting.WholeRows;
        }
        Assert.That(candidateRows, Is.GreaterThan(3 * wholeRows), "most rows from their candidates and seen ids");
        Assert.That(wholeRows, Is.GreaterThan(0), "some rows read whole");
        Assert.That(candidateBytes, Is.LessThan(wholeBytes / 2), "fewer bytes read");
    }

    /// <summary>
    /// Penalised greedy rows, each step fed the pick of a sampler given the whole row (so the seen sets grow, by a new id
    /// or by none): a step of each session reads the candidates' values with the seen ids' logits and their ids, in place
    /// of the rows — (4 + 8)·count + 4·seen bytes a row, one more read —, the rows being the top count and then each row's
    /// own seen ids outside them with the whole row's values; the seen ids go up only when new.
    /// </summary>
    [Test]
    public void APenalisedStepReadsTheTopAndSeenLogitsInPlaceOfTheRows([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        const int count = 3, steps = 6;
        using var model = new Qwen2ForCausalLM(Lm, seed: 8, DType.BF16);
        model.To(TestDevice.Get());
        var dev = TestDevice.Backend;
        var prompts = TwoPrompts;
        var options = new GenerationOptions { RepetitionPenalty = 1.3 };
        var samplers = prompts.Select(p => new TokenSampler(options, Lm.VocabSize, p.Ids)).ToArray();
        var seen = samplers.Select(s => new DeviceSeenIds(s)).ToArray();
        try
        {
            var asks = samplers.Select((s, r) => new CandidateAsk(count, (_, _, _) => true, seen[r])).ToArray();
            using var reference = Generator.Wrap(model, mode).Start(prompts, steps);
            using var session = (ICandidateDecodingSession)Generator.Wrap(model, mode).Start(prompts, steps);
            var logits = reference.Prefill();
            var rows = session.PrefillCandidates(asks);
            CheckSeen(logits, rows, samplers, "prefill");
            int grew = 0;
            for (int s = 1; s <= steps; s++)
            {
                var before = samplers.Select(x => x.SeenIds.Count).ToArray();
                // Every other step row 1 is fed an id it has seen (its prompt's first): no upload for it.
                var tokens = logits.Select((l, r) => r == 1 && s % 2 == 0 ? samplers[r].SeenIds[0] : samplers[r].Next(l)).ToArray();
                int uploads = samplers.Select((x, r) => x.SeenIds.Count > before[r] ? 1 : 0).Sum();
                grew += uploads;
                long reads = dev.DeviceToHost, bytes = dev.DeviceToHostBytes, ups = dev.HostToDevice;
                logits = reference.Step(tokens);
                long referenceReads = dev.DeviceToHost - reads, referenceBytes = dev.DeviceToHostBytes - bytes, referenceUps = dev.HostToDevice - ups;
                reads = dev.DeviceToHost; bytes = dev.DeviceToHostBytes; ups = dev.HostToDevice;
                rows = session.StepCandidates(tokens, asks);
                long got = dev.DeviceToHostBytes - bytes;
                CheckSeen(logits, rows, samplers, $"step {s}");
                long row = 4L * Lm.VocabSize * prompts.Length, candidates = 12L * count * prompts.Length + 4L * samplers.Sum(x => x.SeenIds.Count);
                Assert.That(got, Is.EqualTo(referenceBytes - row + candidates), $"step {s}: device→host bytes");
                Assert.That(dev.DeviceToHost - reads, Is.EqualTo(referenceReads + 1), $"step {s}: device→host reads");
                // The step itself copies its tokens up (as the reference's); the seen ids only the rows that grew.
                Assert.That(dev.HostToDevice - ups, Is.EqualTo(referenceUps + uploads), $"step {s}: host→device copies");
            }
            Assert.That(grew, Is.GreaterThan(3), "seen sets grew");
        }
        finally
        {
            foreach (var x in seen) x.Dispose();
        }
    }

    /// <summary>Each row: its top candidates, then its sampler's seen ids outside them, with the whole row's values.</summary>
    private static void CheckSeen(float[][] logits, LogitsRow[] rows, TokenSampler[] samplers, string what)
    {
        for (int r = 0; r < rows.Length; r++)
        {
            Assert.That(rows[r].Logits, Is.Null, $"{what}: row {r}");
            var top = logits[r].Select((v, i) => (v, i)).OrderByDescending(x => x.v).ThenBy(x => x.i).Take(rows[r].Top).Select(x => x.i).ToArray();
            var want = top.Concat(samplers[r].SeenIds.Where(id => !top.Contains(id))).ToArray();
            Assert.That(rows[r].Ids, Is.EqualTo(want), $"{what}: row {r} ids");
            Assert.That(rows[r].Values, Is.EqualTo(want.Select(id => logits[r][id])), $"{what}: row {r} values");
        }
    }

    private static CandidateAsk[] Asks(int batch, int count, CandidateCheck check) => Enumerable.Range(0, batch).Select(_ => new CandidateAsk(count, check)).ToArray();

    private static void Check(float[][] logits, LogitsRow[] rows, string what)
    {
        Assert.That(rows, Has.Length.EqualTo(logits.Length), what);
        for (int r = 0; r < rows.Length; r++)
        {
            if (rows[r].Logits is { } whole) { Assert.That(whole, Is.EqualTo(logits[r]), $"{what}: row {r} whole"); continue; }
            var top = logits[r].Select((v, i) => (v, i)).OrderByDescending(x => x.v).ThenBy(x => x.i).Take(rows[r].Ids!.Length).ToArray();
            Assert.That(rows[r].Values, Is.EqualTo(top.Select(x => x.v)), $"{what}: row {r} values");
            Assert.That(rows[r].Ids, Is.EqualTo(top.Select(x => x.i)), $"{what}: row {r} ids");
        }
    }

    /// <summary>
    /// The head's rows in identical pairs: every logit has a twin. With a margin of 1, top-5's candidates end with the 5th
    /// value's twin (a tie at the k-th value not shown to end: the row is read whole), top-4's with a value below the 4th
    /// (decided by the candidates); either way the whole-row path's tokens.
    /// </summary>
    [Test]
    public void TiesPastTheMarginReadTheRowAndKeepTheTokens([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 11);
        var head = model.NamedParameters().Single(p => p.Name == "lm_head.weight").Parameter.Value;
        for (int v = 1; v < Lm.VocabSize; v += 2)
            using (var twin = head.Narrow(0, v, 1)) using (var source = head.Narrow(0, v - 1, 1)) twin.CopyFrom(source);
        model.To(TestDevice.Get());
        int whole = 0, candidates = 0;
        for (ulong seed = 0; seed < 6; seed++)
        {
            var options = new GenerationOptions { MaxNewTokens = 8, Temperature = 1.2, TopK = seed < 3 ? 5 : 4, TopP = seed % 2 == 0 ? 1 : 0.8, Seed = seed };
            var want = new Generator(Generator.LogitsOnly(Generator.Wrap(model, mode)), endOfSequenceIds: []).Generate(TwoPrompts, options);
            var counting = new Counting(Generator.Wrap(model, mode));
            var got = new Generator(counting, endOfSequenceIds: []) { CandidateMargin = 1 }.Generate(TwoPrompts, options);
            for (int r = 0; r < 2; r++) Assert.That(got[r].Tokens, Is.EqualTo(want[r].Tokens), $"seed {seed}: row {r}");
            whole += counting.WholeRows;
            candidates += counting.CandidateRows;
        }
        Assert.That(whole, Is.GreaterThan(20), "rows read whole (ties past the margin)");
        Assert.That(candidates, Is.GreaterThan(20), "rows from their candidates");
    }

    [Test]
    public void TheCpuAndOtherOptionsKeepTheWholeRow()
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 6);
        var counting = new Counting(Generator.Wrap(model));
        var options = new GenerationOptions { MaxNewTokens = 4, Temperature = 1, TopK = 5, Seed = 1 };
        new Generator(counting, endOfSequenceIds: []) { CandidateMargin = 2 }.Generate(TwoPrompts, options);
        Assert.That(counting.CandidateRows, Is.Zero, "on the CPU there is no copy to save");
        model.To(TestDevice.Get());
        foreach (var o in new[] { options with { TopK = 0, TopP = 0.8, RepetitionPenalty = 1.1 }, options with { TopK = 59 }, new GenerationOptions { MaxNewTokens = 4 } })
        {
            counting = new Counting(Generator.Wrap(model));
            new Generator(counting, endOfSequenceIds: []) { CandidateMargin = 2 }.Generate(TwoPrompts, o);
            Assert.That(counting.CandidateRows + counting.WholeRows, Is.Zero, $"{o}: the logits path");
        }
        // Plain temperature (penalised or not) asks for chunk sums; at 512 ids a chunk they do not pay on this 61-long
        // vocabulary: whole rows.
        foreach (var o in new[] { options with { TopK = 0 }, options with { TopK = 0, RepetitionPenalty = 1.1 } })
        {
            counting = new Counting(Generator.Wrap(model));
            new Generator(counting, endOfSequenceIds: []) { CandidateMargin = 2 }.Generate(TwoPrompts, o);
            Assert.That((counting.CandidateRows, counting.WholeRows), Is.EqualTo((0, 2 * 4)), $"{o}: plain temperature, chunks that do not pay");
        }
    }
}
