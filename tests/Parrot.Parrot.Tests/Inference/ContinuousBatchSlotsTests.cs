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
/// The continuous batch over the static step with slots (<c>KvCacheModel.StaticSlots</c>; the default on CUDA devices,
/// so on the test device; forced with <see cref="DecodeStepMode.Static"/> on the CPU) against the eager batch: every
/// sequence's events (tokens, text, finish reasons) the same, greedy and sampled, with sequences joining and leaving at
/// different steps, S growing 1 → 8 and C 256 → 1024 (the context) in the middle, a sequence filling its room, one
/// removed mid-way; each alone the same again; what a step copies between host and device; the same ops every step
/// between growths; Dispose with sequences in it.
/// </summary>
public class ContinuousBatchSlotsTests() : TinyModelSetFixture("parrot-batch-slots-tests")
{
    /// <summary>
    /// One Step call: the rows it ran (greedy among them), the batch's S and C after it, its copies and ops on the test
    /// device, whether a sequence joined or was removed just before it, whether one finished in it.
    /// </summary>
    private sealed record StepLog(int Step, int Rows, int Greedy, int Slots, int Capacity, int Builds, long ToDevice, long ToHost, long ToHostBytes, long Ops, bool Joined, bool Left, string Allocations = "");

    private static readonly GenerationOptions Greedy = new() { IgnoreEos = true };

    /// <summary>
    /// Greedy (plain, with an image, top-k at temperature 0), sampled and penalised sequences; nine joining at steps
    /// 0–14 so S doubles three times; one needing more than 256 positions (C 256 → 512) and one with no limit, filling
    /// the context (C → 1024, the cap; it ends by length with its room full), both greedy (a long stretch of greedy rows
    /// only); one removed at step 6.
    /// </summary>
    private static Case[] Cases =>
    [
        new(Ask("first question"), false, Greedy, 14, 0),
        new(Ask("a sampled answer, please"), false, new GenerationOptions { Temperature = 0.9, TopP = 0.95, TopK = 40, Seed = 77, IgnoreEos = true }, 11, 0),
        new(Ask("what colour is it?", image: true), true, Greedy, 7, 2),
        new(Ask("penalised"), false, Greedy with { RepetitionPenalty = 1.3 }, 9, 3),
        new(Ask("dropped midway"), false, Greedy, 40, 1, RemoveAt: 6),
        new(Ask("top-k at temperature zero"), false, Greedy with { TopK = 3, TopP = 0.5 }, 8, 5),
        new(Ask("a long one"), false, Greedy, 300, 8),
        new(Ask("as long as the context allows"), false, Greedy, null, 12),
        new(Ask("late and sampled"), false, new GenerationOptions { Temperature = 1.2, Seed = 3, IgnoreEos = true }, 6, 14),
    ];

    private (List<string> Events, List<StepLog> Steps, BatchSequence[] Sequences) Run(ParrotModel model, Case[] cases, DecodeStepMode mode)
    {
        var red = ImageLoader.Load(Red);
        using var batch = model.StartContinuousBatch(mode);
        batch.CandidateMargin = -1; // sampling and penalised rows read whole (candidates: ContinuousBatchCandidatesTests)
        Assert.That(batch.Slots is not null, Is.EqualTo(mode != DecodeStepMode.Eager), "slots where the static step runs");
        var sequences = new BatchSequence?[cases.Length];
        var events = new List<string>();
        var steps = new List<StepLog>();
        var dev = TestDevice.Backend;
        for (int step = 0; step < 2000 && (step <= cases.Max(c => c.JoinAt) || batch.Count > 0); step++)
        {
            var running = Enumerable.Range(0, cases.Length).Where(i => sequences[i] is { Left: false }).ToList();
            bool joined = false;
            for (int i = 0; i < cases.Length; i++)
            {
                var c = cases[i];
                if (c.JoinAt == step)
                {
                    sequences[i] = batch.Join(c.Conversation, c.Image ? red : null, c.Options, c.Max);
                    joined = true;
                }
                if (c.RemoveAt == step)
                {
                    batch.Remove(sequences[i]!);
                    running.Remove(i);
                    events.Add($"step {step}: {i} removed");
                    joined = true;
                }
            }
            long toDevice = dev.HostToDevice, toHost = dev.DeviceToHost, bytes = dev.DeviceToHostBytes, ops = dev.Ops;
            var allocations = new List<long>();
            dev.AllocationLog = allocations;
            IReadOnlyList<BatchEvent> got;
            try { got = batch.Step(); }
            finally { dev.AllocationLog = null; }
            var log = new StepLog(step, running.Count, running.Count(i => Generator.PicksPlainArgMax(cases[i].Options)),
                batch.Slots?.Slots ?? 0, batch.Slots?.Capacity ?? 0, batch.Slots?.Builds ?? 0,
                dev.HostToDevice - toDevice, dev.DeviceToHost - toHost, dev.DeviceToHostBytes - bytes, dev.Ops - ops, joined, got.Any(e => e.Finished is not null),
                string.Join(",", allocations));
            steps.Add(log);
            foreach (var e in got) events.Add($"step {step}: {Array.IndexOf(sequences, e.Sequence)} token {e.Token} text '{e.Text}' {e.Finished}");
        }
        Assert.That(sequences, Is.All.Matches<BatchSequence?>(s => s is { Left: true }), "every sequence left");
        return (events, steps, sequences.Select(s => s!).ToArray());
    }

    [Test]
    public void EverySequenceGeneratesWhatTheEagerBatchGenerates([Values(false, true)] bool onTestDevice, [Values(DType.F32, DType.BF16)] DType dtype)
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = onTestDevice ? TestDevice.Get() : Device.Cpu, DType = dtype });
        var cases = Cases;
        var (want, _, _) = Run(model, cases, DecodeStepMode.Eager);
        // On the test device (of kind CUDA) the default takes the slots; on the CPU they are forced.
        var (got, steps, sequences) = Run(model, cases, onTestDevice ? DecodeStepMode.Auto : DecodeStepMode.Static);
        Assert.That(got, Is.EqualTo(want));
        // The fixture does what it says: S doubled and C grown while sequences ran, to the context at most.
        var shapes = steps.Select(s => (s.Slots, s.Capacity)).Distinct().ToList();
        Assert.That(shapes, Is.EqualTo(new[] { (2, 256), (4, 256), (8, 256), (8, 512), (8, 1024) }), "S and C over the run (S 1 never steps: two join at step 0)");
        Assert.That(steps.Max(s => s.Builds), Is.EqualTo(6), "a build for S 1, 2, 4, 8 and C 512, 1024");
        var filler = sequences[7];
        Assert.That(filler.Finished, Is.EqualTo(FinishReason.MaxTokens));
        Assert.That(filler.PromptTokens + filler.GeneratedTokens, Is.EqualTo(model.ContextLength), "the unlimited sequence filled the context");
        Assert.That(want, Has.Some.Contains("removed").And.Some.Contains("MaxTokens"));
        Assert.That(steps, Has.Some.Matches<StepLog>(s => s.Greedy == s.Rows && s.Rows > 1), "a step of greedy rows only");
        Assert.That(steps, Has.Some.Matches<StepLog>(s => s.Greedy > 0 && s.Greedy < s.Rows), "steps of both");
    }

    [Test]
    public void EachSequenceAloneGeneratesTheSame()
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = TestDevice.Get() });
        var cases = Cases;
        var (together, _, _) = Run(model, cases, DecodeStepMode.Auto);
        foreach (int i in new[] { 1, 2, 3, 6 })
        {
            var (alone, _, _) = Run(model, [cases[i] with { JoinAt = 0, RemoveAt = -1 }], DecodeStepMode.Auto);
            var tokens = alone.Select(e => e.Split(" token ")[1]).ToList();
            var inBatch = together.Where(e => e.Contains($": {i} token ")).Select(e => e.Split(" token ")[1]).ToList();
            Assert.That(inBatch, Is.EqualTo(tokens), $"sequence {i}");
        }
    }

    /// <summary>
    /// On the test device, per step: the ids come back (one read of 8·S bytes) only when some row is greedy, the sampling
    /// rows' logits (one read of 4·V each) only when some row samples; nothing goes up at a step of greedy rows that
    /// follows one of the same rows (their picks are on the device already), at most the ids and the positions otherwise;
    /// and between growths a step of greedy rows is the same ops every time.
    /// </summary>
    [Test]
    public void AStepCopiesOnlyWhatChangedAndIsTheSameOpsBetweenGrowths()
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = TestDevice.Get() });
        int vocab = ParrotConfig.Load(Path.Combine(ParrotDir, "config.json")).Text.VocabSize;
        var (_, steps, _) = Run(model, Cases, DecodeStepMode.Auto);
        var ran = steps.Where(s => s.Rows > 0).ToList();
        foreach (var s in ran)
        {
            int sampling = s.Rows - s.Greedy;
            Assert.That(s.ToHost, Is.EqualTo((s.Greedy > 0 ? 1 : 0) + (sampling > 0 ? 1 : 0)), $"step {s.Step}: reads");
            Assert.That(s.ToHostBytes, Is.EqualTo((s.Greedy > 0 ? 8L * s.Slots : 0) + 4L * vocab * sampling), $"step {s.Step}: bytes read");
            Assert.That(s.ToDevice, Is.LessThanOrEqualTo(2), $"step {s.Step}: at most the ids and the positions go up");
        }
        // Greedy rows only, the same rows as the step before (no join, removal or end around it, so no growth and no
        // load): nothing goes up, and the step is the same ops every time.
        var steady = ran.Where((s, i) => i > 0 && s.Greedy == s.Rows && ran[i - 1].Greedy == ran[i - 1].Rows && ran[i - 1].Rows == s.Rows
            && ran[i - 1].Step == s.Step - 1 && !s.Joined && !ran[i - 1].Joined && !ran[i - 1].Left).ToList();
        Assert.That(steady.Count, Is.GreaterThan(500), "the fixture has long greedy stretches");
        Assert.That(steady.Select(s => s.Rows).Distinct().Count(), Is.EqualTo(2), "of two rows and of one");
        Assert.That(steady.Select(s => s.ToDevice), Is.All.EqualTo(0L), "greedy rows feeding back their picks copy nothing up");
        Assert.That(steady.Select(s => s.Ops).Distinct().Count(), Is.EqualTo(1), "the same ops every greedy step, whatever the rows");
        // What a CUDA graph replays needs the same allocation sizes in the same order; per decoder, since they depend on S and C.
        foreach (var group in steady.GroupBy(s => s.Builds))
            Assert.That(group.Select(s => s.Allocations).Distinct().Count(), Is.EqualTo(1), $"decoder {group.Key}: the same allocations every greedy step");
        Assert.That(steady[0].Allocations, Is.Not.Empty);
    }

    [Test]
    public void DisposeWithSequencesInItFreesTheSlots([Values(DecodeStepMode.Static, DecodeStepMode.Eager)] DecodeStepMode mode)
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = TestDevice.Get() });
        var batch = model.StartContinuousBatch(mode);
        var a = batch.Join(Ask("one"), null, Greedy, 20);
        var b = batch.Join(Ask("two"), null, Greedy with { Temperature = 0.7, Seed = 1 }, 20);
        batch.Step();
        batch.Step();
        var c = batch.Join(Ask("three"), null, Greedy, 20); // reserved, never loaded
        batch.Remove(a);
        batch.Dispose();
        Assert.That(new[] { a, b, c }, Is.All.Matches<BatchSequence>(s => s.Left));
        Assert.That(batch.Count, Is.Zero);
        Assert.That(() => batch.Step(), Throws.TypeOf<ObjectDisposedException>());
        Assert.That(() => batch.Join(Ask("four"), null, Greedy, 5), Throws.TypeOf<ObjectDisposedException>());
        batch.Dispose();
        // The model decodes on afterwards (its turn was given back, nothing of the batch is left in use).
        using var again = model.StartContinuousBatch(mode);
        again.Join(Ask("one"), null, Greedy, 3);
        Assert.That(again.Step(), Has.Count.EqualTo(1));
    }

    [Test]
    public void TheDefaultTakesSlotsOnCudaDevicesOnly()
    {
        using (var cpu = ParrotModel.Load(ParrotDir))
        using (var batch = cpu.StartContinuousBatch()) Assert.That(batch.Slots, Is.Null, "eager on the CPU");
        using var dev = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = TestDevice.Get() });
        using (var batch = dev.StartContinuousBatch()) Assert.That(batch.Slots, Is.Not.Null, "slots on a CUDA device");
        using (var batch = dev.StartContinuousBatch(DecodeStepMode.Eager)) Assert.That(batch.Slots, Is.Null, "forced eager");
        using var f64 = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = TestDevice.Get(), DType = DType.F64 });
        using (var batch = f64.StartContinuousBatch()) Assert.That(batch.Slots, Is.Null, "float64: the static step cannot run, eager");
    }
}
