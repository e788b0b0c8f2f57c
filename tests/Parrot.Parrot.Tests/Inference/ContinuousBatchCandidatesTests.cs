using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tests.Shared;

using static Parrot.Parrot.Tests.Inference.BatchCase;
using Case = Parrot.Parrot.Tests.Inference.BatchCase;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// The continuous batch's top-k sampling rows and penalised greedy rows read from the device's candidates
/// (<see cref="TopKCandidates"/>) against the same batch reading every sampling row whole
/// (<see cref="ContinuousBatch.CandidateMargin"/> below 0): the same events (tokens, text, finish reasons) for a batch
/// mixing greedy, penalised (greedy and top-k, penalties 0.7, 1.05, 1.3, 2, each sequence its own seen ids), top-k and
/// other sampled sequences that join, end and are removed at different steps, on the test device, eager and with slots
/// (there the eager batch's events too), float32 and bfloat16; and what each join and step reads back: per row that asks
/// for candidates, their values and ids (12 bytes each) and under a penalty its seen ids' logits (4 bytes each) in place
/// of its row of logits where they decide it, and the row as well where they do not (margin 0: a row given exactly k
/// candidates never is, nor is one whose penalty is above 1).
/// </summary>
public class ContinuousBatchCandidatesTests() : TinyModelSetFixture("parrot-batch-candidates-tests")
{
    /// <summary>What a join or a step read back, and the cases whose rows it ran.</summary>
    private sealed record Reads(string What, long Count, long Bytes, int[] Rows, long SeenBytes);

    private int Vocab => ParrotConfig.Load(Path.Combine(ParrotDir, "config.json")).Text.VocabSize;

    private static Case[] Cases()
    {
        static GenerationOptions Sampled(int k, double t, ulong seed, double topP = 1) =>
            new() { Temperature = t, TopK = k, TopP = topP, Seed = seed, IgnoreEos = true };
        var greedy = new GenerationOptions { IgnoreEos = true };
        return
        [
            new(Ask("first question"), false, greedy, 14, 0),
            new(Ask("a sampled answer, please"), false, Sampled(40, 0.9, 77, 0.95), 11, 0),
            new(Ask("what colour is it?", image: true), true, Sampled(5, 1.5, 5), 7, 2),
            // Top-k and greedy with penalties: their top logits and seen ids' logits. Top-k past a third of the row, no
            // top-k (a penalty with top-p alone too): whole rows.
            new(Ask("penalised and sampled"), false, Sampled(5, 0.8, 9) with { RepetitionPenalty = 1.3 }, 9, 3),
            new(Ask("dropped midway"), false, Sampled(1, 1, 4), 40, 1, RemoveAt: 6),
            new(Ask("a wide top-k"), false, Sampled(100, 1, 6), 8, 5),
            new(Ask("greedy, penalised"), false, greedy with { RepetitionPenalty = 1.2 }, 10, 4),
            new(Ask("no top-k"), false, Sampled(0, 1.2, 10) with { RepetitionPenalty = 1.05, TopP = 0.8 }, 6, 1),
            new(Ask("greedy, lifted by a penalty below 1"), false, greedy with { RepetitionPenalty = 0.7 }, 9, 2),
            new(Ask("top-k 20, Qwen's penalty"), false, Sampled(20, 0.7, 12, 0.8) with { RepetitionPenalty = 1.05 }, 10, 6),
            new(Ask("greedy, penalty 2"), false, greedy with { RepetitionPenalty = 2 }, 8, 7),
            new(Ask("nucleus and top-k, may end"), false, Sampled(20, 0.7, 8, 0.8) with { IgnoreEos = false }, 12, 2),
            // After all the others have ended: a candidates row alone, then with a greedy one.
            new(Ask("late and sampled"), false, Sampled(3, 1.1, 3), 4, 20),
            new(Ask("late and greedy"), false, greedy, 6, 21),
            // After those: penalised rows alone (greedy and sampled), each gathering its own seen ids.
            new(Ask("late and penalised"), false, greedy with { RepetitionPenalty = 1.3 }, 7, 28),
            new(Ask("late, sampled and penalised"), false, Sampled(3, 0.9, 21) with { RepetitionPenalty = 1.05 }, 7, 28),
        ];
    }

    /// <summary>Runs <paramref name="cases"/> through a batch of <paramref name="margin"/>; the events as lines, and what each join and step read back.</summary>
    private (List<string> Events, List<Reads> Reads) Run(ParrotModel model, Case[] cases, int margin, DecodeStepMode mode, int topP = TopKCandidates.TopPCount, Action<BatchSequence?[]>? afterStep = null,
        int escalation = TopKCandidates.EscalatedCount, Action<ContinuousBatch>? atEnd = null, int chunk = TopKCandidates.ChunkSize)
    {
        var red = ImageLoader.Load(Red);
        using var batch = model.StartContinuousBatch(mode);
        batch.CandidateMargin = margin;
        batch.TopPCandidates = topP;
        batch.EscalatedCandidates = escalation;
        batch.TemperatureChunk = chunk;
        var sequences = new BatchSequence?[cases.Length];
        var events = new List<string>();
        var reads = new List<Reads>();
        var dev = TestDevice.Backend;
        // The seen ids' logits a read gathers: 4 bytes for each id its penalised rows have seen (a step: before it runs,
        // its fed tokens already seen; a join: its prompt's ids, seen from the start).
        long SeenBytes(int[] rows) => rows.Sum(r =>
        {
            var ask = sequences[r]!.Ask;
            if (ask is not null) Assert.That(ask.Pays(Vocab), "the tiny vocabulary leaves every ask its candidates");
            return 4L * (ask?.Seen?.Count ?? 0);
        });
        Reads Measure(string what, int[] rows, Action act, bool join = false)
        {
            long n = dev.DeviceToHost, bytes = dev.DeviceToHostBytes, seen = join ? 0 : SeenBytes(rows);
            act();
            return new Reads(what, dev.DeviceToHost - n, dev.DeviceToHostBytes - bytes, rows, join ? SeenBytes(rows) : seen);
        }
        for (int step = 0; step < 200 && (step <= cases.Max(c => c.JoinAt) || batch.Count > 0); step++)
        {
            var running = Enumerable.Range(0, cases.Length).Where(i => sequences[i] is { Left: false }).ToList();
            for (int i = 0; i < cases.Length; i++)
            {
                var c = cases[i];
                if (c.JoinAt == step)
                    reads.Add(Measure($"join {i}", [i], () => sequences[i] = batch.Join(c.Conversation, c.Image ? red : null, c.Options, c.Max), join: true));
                if (c.RemoveAt == step)
                {
                    batch.Remove(sequences[i]!);
                    running.Remove(i);
                    events.Add($"step {step}: {i} removed");
                }
            }
            IReadOnlyList<BatchEvent> got = [];
            reads.Add(Measure($"step {step}", running.ToArray(), () => got = batch.Step()));
            foreach (var e in got) events.Add($"step {step}: {Array.IndexOf(sequences, e.Sequence)} token {e.Token} text '{e.Text}' {e.Finished}");
            afterStep?.Invoke(sequences);
        }
        Assert.That(sequences, Is.All.Matches<BatchSequence?>(s => s is { Left: true }), "every sequence left");
        Assert.That(batch.DecodePath, mode == DecodeStepMode.Eager ? Is.EqualTo("eager") : Does.StartWith("static slots"));
        atEnd?.Invoke(batch);
        return (events, reads);
    }

    [Test]
    public void CandidateRowsGiveTheWholeRowsEventsAndReadLess([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode,
        [Values(DType.F32, DType.BF16)] DType dtype, [Values(0, 2)] int margin)
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = TestDevice.Get(), DType = dtype });
        var cases = Cases();
        int vocab = Vocab;
        var counts = cases.Select(c => Generator.PicksPlainArgMax(c.Options) ? 0 : TopKCandidates.Count(c.Options, vocab, margin)).ToArray();
        Assert.That(counts.Count(n => n > 0), Is.EqualTo(12), "the cases that read candidates (top-k 1, 3, 5, 20, 40, penalised top-k 3, 5 and 20, four penalised greedy; not top-k 100, not top-p alone)");
        var (want, whole) = Run(model, cases, margin: -1, mode);
        var (got, candidates) = Run(model, cases, margin, mode);
        Assert.That(got, Is.EqualTo(want));
        // With slots, the eager batch's events too (an error in which slot's logits a row reads, common to both reads of it).
        if (mode == DecodeStepMode.Static) Assert.That(got, Is.EqualTo(Run(model, cases, margin: -1, DecodeStepMode.Eager).Events), "the eager batch's events");
        Assert.That(want, Has.Some.Contains("removed").And.Some.Contains("MaxTokens"));
        Assert.That(want.Count(e => e.Contains("token")), Is.GreaterThan(60));

        Assert.That(candidates.Select(r => r.What), Is.EqualTo(whole.Select(r => r.What)), "the same joins and steps");
        int asked = 0, decided = 0, refused = 0, penalisedAsked = 0, penalisedDecided = 0;
        for (int i = 0; i < whole.Count; i++)
        {
            var (w, g) = (whole[i], candidates[i]);
            var sampling = g.Rows.Where(r => !Generator.PicksPlainArgMax(cases[r].Options)).ToArray();
            var pick = sampling.Where(r => counts[r] > 0).ToArray();
            int c = pick.Length, m = c > 0 ? pick.Max(r => counts[r]) : 0;
            // The TopK of the asking rows reads m values and ids per row (their largest count), the penalised ones their seen
            // ids' logits with them; each row the candidates decide drops its row of logits (4 bytes a logit); the others
            // are read whole with the count-0 rows, in one read.
            long delta = w.Bytes + 12L * m * c + g.SeenBytes - g.Bytes;
            Assert.That(delta % (4L * vocab), Is.Zero, $"{g.What}: bytes read {g.Bytes}, whole rows {w.Bytes}, {c} rows of {m} candidates");
            long s = delta / (4L * vocab);
            Assert.That(s, Is.InRange(0, c), $"{g.What}: rows decided by their candidates");
            // Margin 0: a row given exactly its k candidates (1 for greedy) cannot show where the k-th value's ties end, nor
            // with a penalty of 1 or above (it only lowers values: the union's k-th is at most m); a penalty below 1 may lift
            // a seen one above m (decided), and a row of a smaller k given the step's largest count may be decided.
            if (margin == 0)
                Assert.That(s, Is.AtMost(c - pick.Count(r => counts[r] == m && cases[r].Options.RepetitionPenalty >= 1)), $"{g.What}: the rows of k = {m} candidates are read whole");
            long readWhole = sampling.Length - s;
            Assert.That(g.Count, Is.EqualTo(w.Count + (c > 0 ? 2 : 0) - (sampling.Length > 0 ? 1 : 0) + (readWhole > 0 ? 1 : 0)), $"{g.What}: reads");
            asked += c;
            decided += (int)s;
            refused += c - (int)s;
            // Reads where every asking row is penalised: their rows decided from top and seen logits, not read.
            if (c > 0 && pick.All(r => cases[r].Options.RepetitionPenalty != 1)) { penalisedAsked += c; penalisedDecided += (int)s; }
        }
        Assert.That(penalisedAsked, Is.GreaterThan(10), "reads of penalised rows alone");
        if (margin > 0) Assert.That(penalisedDecided, Is.GreaterThan(penalisedAsked / 2), "penalised rows decided by their candidates and seen ids");
        Assert.That(asked, Is.GreaterThan(30), "rows that asked for candidates");
        if (margin == 0) Assert.That(refused, Is.GreaterThan(15), "rows whose candidates did not decide them, read whole");
        if (margin > 0)
        {
            Assert.That(decided, Is.GreaterThan(asked * 3 / 4), "most rows decided by their candidates");
            long Steps(List<Reads> r) => r.Where(x => x.What.StartsWith("step")).Sum(x => x.Bytes);
            Assert.That(Steps(candidates), Is.LessThan(Steps(whole)), "fewer bytes read over the steps");
        }
        // The fixture runs steps of candidate rows alone, and of candidate, whole and greedy rows together.
        Assert.That(candidates, Has.Some.Matches<Reads>(r => r.What.StartsWith("step") && r.Rows.Length > 0 && r.Rows.All(x => counts[x] > 0)), "a step of candidate rows only");
        Assert.That(candidates, Has.Some.Matches<Reads>(r => r.Rows.Any(x => counts[x] > 0) && r.Rows.Any(x => counts[x] == 0 && !Generator.PicksPlainArgMax(cases[x].Options))
            && r.Rows.Any(x => Generator.PicksPlainArgMax(cases[x].Options))), "a step of all three");
    }

    /// <summary>
    /// Top-p without top-k (with and without a penalty) among top-k, greedy and whole rows: the batch's events equal the
    /// whole-row batch's, eager and with slots, the top-p rows asking for their candidates and row sum
    /// (<see cref="CandidateAsk.SumSuffice"/>) and some decided by them.
    /// </summary>
    [Test]
    public void TopPAloneRowsGiveTheWholeRowsEvents([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = TestDevice.Get() });
        static GenerationOptions TopP(double t, double p, ulong seed) => new() { Temperature = t, TopP = p, Seed = seed, IgnoreEos = true };
        Case[] cases =
        [
            new(Ask("nucleus only"), false, TopP(0.1, 0.9, 1), 10, 0),
            new(Ask("nucleus, penalised"), false, TopP(0.2, 0.8, 2) with { RepetitionPenalty = 1.05 }, 9, 0),
            new(Ask("greedy beside"), false, new GenerationOptions { IgnoreEos = true }, 8, 1),
            new(Ask("top-k beside"), false, TopP(0.9, 1, 3) with { TopK = 5 }, 8, 2),
            new(Ask("a wide nucleus"), false, TopP(1, 0.99, 4), 6, 3),
            new(Ask("late nucleus alone"), false, TopP(0.05, 0.5, 5), 6, 15),
        ];
        int topP = Vocab / 8, asked = 0, decided = 0;
        var (want, _) = Run(model, cases, margin: -1, mode);
        var (got, _) = Run(model, cases, margin: 2, mode, topP, sequences =>
        {
            foreach (var s in sequences)
            {
                if (s is not { Left: false } || s.Ask?.SumSuffice is null) continue;
                asked++;
                if (s.Sampler.LastTopPFallback is null && s.Sampler.LastTopPInterval is not null) decided++;
            }
        });
        Assert.That(got, Is.EqualTo(want));
        Assert.That(want.Count(e => e.Contains("token")), Is.GreaterThan(30));
        TestContext.Out.WriteLine($"top-p rows asked {asked}, decided {decided}");
        Assert.That(asked, Is.GreaterThan(15), "top-p rows asking for their candidates and row sum");
        Assert.That(decided, Is.GreaterThan(0), "top-p rows decided by them");
    }

    /// <summary>
    /// Plain temperature rows in the batch (eager rows and slots; 8 ids a chunk of the tiny vocabulary) beside greedy,
    /// top-k and top-p rows, and one with a penalty (its penalised row's chunk sums): the whole-row batch's events, nearly
    /// every plain row decided from its chunk sums and one chunk.
    /// </summary>
    [Test]
    public void TemperatureRowsGiveTheWholeRowsEvents([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = TestDevice.Get() });
        static GenerationOptions Plain(double t, ulong seed) => new() { Temperature = t, Seed = seed, IgnoreEos = true };
        Case[] cases =
        [
            new(Ask("temperature only"), false, Plain(0.7, 1), 10, 0),
            new(Ask("hot"), false, Plain(2, 2), 9, 0),
            new(Ask("penalised"), false, Plain(0.9, 3) with { RepetitionPenalty = 1.05 }, 8, 1),
            new(Ask("greedy beside"), false, new GenerationOptions { IgnoreEos = true }, 8, 1),
            new(Ask("top-k beside"), false, Plain(0.9, 4) with { TopK = 5 }, 8, 2),
            new(Ask("nucleus beside"), false, Plain(0.5, 5) with { TopP = 0.8 }, 6, 3),
            new(Ask("late and cold"), false, Plain(0.05, 6), 6, 15),
        ];
        int asked = 0, decided = 0;
        var (want, _) = Run(model, cases, margin: -1, mode);
        var (got, _) = Run(model, cases, margin: 2, mode, Vocab / 8, sequences =>
        {
            foreach (var s in sequences)
            {
                if (s is not { Left: false } || s.Ask?.Chunks is null) continue;
                asked++;
                if (s.Sampler.LastChunkFallback is null) decided++;
            }
        }, chunk: 8);
        Assert.That(got, Is.EqualTo(want));
        TestContext.Out.WriteLine($"plain temperature rows asked {asked}, decided {decided}");
        Assert.That(asked, Is.GreaterThan(20), "plain temperature rows asking for their chunk sums");
        Assert.That(decided, Is.GreaterThan(asked * 9 / 10), "decided by them");
    }

    /// <summary>
    /// The escalation per row in the batch (eager rows and slots): top-p rows beside greedy and top-k ones, asking for
    /// 4 candidates first and Vocab/4 − 2 (still fewer bytes than the row) where those do not decide, give the whole-row batch's events; some rows are
    /// decided by the escalated candidates, and every read step's reads are the stages': two for the first candidates, two
    /// more where some row escalated, one for the rows read whole.
    /// </summary>
    [Test]
    public void EscalatedRowsGiveTheWholeRowsEvents([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = TestDevice.Get() });
        static GenerationOptions TopP(double t, double p, ulong seed) => new() { Temperature = t, TopP = p, Seed = seed, IgnoreEos = true };
        Case[] cases =
        [
            new(Ask("nucleus only"), false, TopP(0.6, 0.5, 1), 10, 0),
            new(Ask("a wider nucleus"), false, TopP(0.8, 0.7, 2), 10, 0),
            new(Ask("a wide nucleus"), false, TopP(1, 0.95, 4), 8, 0),
            new(Ask("greedy beside"), false, new GenerationOptions { IgnoreEos = true }, 8, 1),
            new(Ask("top-k beside"), false, TopP(0.9, 1, 3) with { TopK = 5 }, 8, 2),
            new(Ask("late nucleus alone"), false, TopP(0.7, 0.6, 5), 6, 15),
        ];
        int escalated = 0, plain = 0;
        var (want, _) = Run(model, cases, margin: -1, mode);
        var (without, _) = Run(model, cases, margin: 2, mode, 4, escalation: 0, atEnd: b => plain = b.EscalatedRows);
        var (got, reads) = Run(model, cases, margin: 2, mode, 4, escalation: Vocab / 4 - 2, atEnd: b => escalated = b.EscalatedRows);
        Assert.That(got, Is.EqualTo(want));
        Assert.That(without, Is.EqualTo(want));
        TestContext.Out.WriteLine($"{mode}: rows from escalated candidates {escalated}; reads per step: {string.Join(" ", reads.Select(r => r.Count))}");
        Assert.That(plain, Is.Zero, "no escalation asked");
        Assert.That(escalated, Is.GreaterThan(3), "rows decided by the escalated candidates");
        Assert.That(reads.Any(r => r.Count >= 4), "a step whose reads include the escalation's two");
    }

    /// <summary>
    /// Which sequences ask for candidates: on the test device the qualifying ones (<see cref="TopKCandidates.Count"/>), with
    /// their count; none on the CPU (nothing to save), with <see cref="ContinuousBatch.HostPicksOnly"/>, or below margin 0.
    /// </summary>
    [Test]
    public void OnlyQualifyingSequencesOnADeviceAskForCandidates([Values(false, true)] bool onTestDevice, [Values(false, true)] bool hostPicksOnly, [Values(-1, 2)] int margin)
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = onTestDevice ? TestDevice.Get() : Device.Cpu });
        using var batch = model.StartContinuousBatch(DecodeStepMode.Eager);
        batch.HostPicksOnly = hostPicksOnly;
        batch.CandidateMargin = margin;
        var red = ImageLoader.Load(Red);
        bool asks = onTestDevice && !hostPicksOnly && margin >= 0;
        foreach (var c in Cases())
        {
            var s = batch.Join(c.Conversation, c.Image ? red : null, c.Options, c.Max);
            var plan = asks && !Generator.PicksPlainArgMax(c.Options) ? TopKCandidates.Plan(c.Options, Vocab, margin) : default;
            Assert.That(s.Candidates, Is.EqualTo(plan.Count), $"{c.Conversation[0].Text}");
            Assert.That(s.Ask is not null, Is.EqualTo(plan.Asks));
            Assert.That(s.Ask?.Chunks is not null, Is.EqualTo(plan.Kind == ReadKind.Chunks), "a plain-temperature sequence asks for chunk sums");
            Assert.That(s.Ask?.Seen is not null, Is.EqualTo(plan.Asks && c.Options.RepetitionPenalty != 1), "a penalised sequence gathers its seen ids");
        }
        Assert.That(batch.Step(), Has.Count.EqualTo(Cases().Length));
    }
}
