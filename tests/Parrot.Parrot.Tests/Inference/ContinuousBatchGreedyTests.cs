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
/// The continuous batch's greedy picks on the device (a plain argmax: temperature 0, no repetition penalty) against the
/// path it replaces, every pick on the host from the logits (<see cref="ContinuousBatch.HostPicksOnly"/>): the same
/// events (tokens, text, finish reasons) for a batch (float32 and bfloat16) mixing greedy, sampled and penalised sequences that join, end and
/// are removed at different steps, on the CPU and the test device; on the test device, what each join and step reads
/// back: the ids of the greedy rows and the logits of the sampling rows only.
/// </summary>
public class ContinuousBatchGreedyTests() : TinyModelSetFixture("parrot-batch-greedy-tests")
{
    /// <summary>What a join or a step read back, with the rows it ran: how many, how many of them greedy.</summary>
    private sealed record Reads(string What, long Count, long Bytes, int Rows, int Greedy);

    private int Vocab => ParrotConfig.Load(Path.Combine(ParrotDir, "config.json")).Text.VocabSize;

    /// <summary>Runs <paramref name="cases"/> through a batch; the events as lines, and what each join and step read back on the test device.</summary>
    private (List<string> Events, List<Reads> Reads) Run(ParrotModel model, Case[] cases, bool hostPicksOnly, DecodeStepMode mode = DecodeStepMode.Eager)
    {
        var red = ImageLoader.Load(Red);
        using var batch = model.StartContinuousBatch(mode);
        batch.HostPicksOnly = hostPicksOnly;
        // Every other row read whole, as the host path reads it (the penalised greedy row would read candidates):
        // the candidates' reads are ContinuousBatchCandidatesTests'.
        batch.CandidateMargin = -1;
        var sequences = new BatchSequence?[cases.Length];
        var events = new List<string>();
        var reads = new List<Reads>();
        var dev = TestDevice.Backend;
        Reads Measure(string what, int rows, int greedy, Action act)
        {
            long n = dev.DeviceToHost, bytes = dev.DeviceToHostBytes;
            act();
            return new Reads(what, dev.DeviceToHost - n, dev.DeviceToHostBytes - bytes, rows, greedy);
        }
        for (int step = 0; step < 200 && (step <= cases.Max(c => c.JoinAt) || batch.Count > 0); step++)
        {
            // The rows this step runs through the model: those that joined before it (a join's first token is its prefill's).
            var running = Enumerable.Range(0, cases.Length).Where(i => sequences[i] is { Left: false }).ToList();
            for (int i = 0; i < cases.Length; i++)
            {
                var c = cases[i];
                if (c.JoinAt == step)
                    reads.Add(Measure($"join {i}", 1, Generator.PicksPlainArgMax(c.Options) ? 1 : 0,
                        () => sequences[i] = batch.Join(c.Conversation, c.Image ? red : null, c.Options, c.Max)));
                if (c.RemoveAt == step)
                {
                    batch.Remove(sequences[i]!);
                    running.Remove(i);
                    events.Add($"step {step}: {i} removed");
                }
            }
            IReadOnlyList<BatchEvent> got = [];
            reads.Add(Measure($"step {step}", running.Count, running.Count(i => Generator.PicksPlainArgMax(cases[i].Options)), () => got = batch.Step()));
            foreach (var e in got) events.Add($"step {step}: {Array.IndexOf(sequences, e.Sequence)} token {e.Token} text '{e.Text}' {e.Finished}");
        }
        Assert.That(sequences, Is.All.Matches<BatchSequence?>(s => s is { Left: true }), "every sequence left");
        return (events, reads);
    }

    /// <summary>
    /// Greedy (plain, with an image, top-k at temperature 0, with a stop string), sampled and penalised sequences, joining at
    /// different steps, one removed, ending by length and by the stop string: so steps run greedy rows alone, sampling rows
    /// alone and both, in varied positions.
    /// </summary>
    private Case[] MixedCases(ParrotModel model)
    {
        var greedy = new GenerationOptions { IgnoreEos = true };
        // A stop string from what the greedy answer to "stop here" is alone: it must end there by the string.
        var alone = model.Generate(Ask("stop here"), null, greedy with { MaxNewTokens = 16 }).Text;
        Assert.That(alone.Length, Is.GreaterThanOrEqualTo(6), "the tiny model's answer has text to stop on");
        var stop = alone.Substring(alone.Length / 2, 2);
        return
        [
            new(Ask("first question"), false, greedy, 14, 0),
            new(Ask("a sampled answer, please"), false, new GenerationOptions { Temperature = 0.9, TopP = 0.95, TopK = 40, Seed = 77, IgnoreEos = true }, 11, 0),
            new(Ask("what colour is it?", image: true), true, greedy, 7, 2),
            new(Ask("penalised"), false, greedy with { RepetitionPenalty = 1.3 }, 9, 3),
            new(Ask("dropped midway"), false, greedy, 40, 1, RemoveAt: 6),
            new(Ask("top-k at temperature zero"), false, greedy with { TopK = 3, TopP = 0.5 }, 8, 5),
            new(Ask("stop here"), false, greedy with { StopStrings = [stop] }, 16, 4),
            // After all the others have ended (by step 19): a sampling row alone, then with a greedy one, then that one alone.
            new(Ask("late and sampled"), false, new GenerationOptions { Temperature = 1.2, Seed = 3, IgnoreEos = true }, 4, 20),
            new(Ask("late and greedy"), false, greedy, 6, 22),
        ];
    }

    [Test]
    public void AMixedBatchGivesTheEventsOfTheHostPicks([Values(false, true)] bool onTestDevice, [Values(DType.F32, DType.BF16)] DType dtype,
        [Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = onTestDevice ? TestDevice.Get() : Device.Cpu, DType = dtype });
        var cases = MixedCases(model);
        var (want, _) = Run(model, cases, hostPicksOnly: true, mode);
        var (got, reads) = Run(model, cases, hostPicksOnly: false, mode);
        Assert.That(got, Is.EqualTo(want));
        // The fixture does what it says: steps of greedy rows alone, of sampling rows alone, of both; a stop string ending.
        var steps = reads.Where(r => r.What.StartsWith("step") && r.Rows > 0).ToList();
        Assert.That(steps, Has.Some.Matches<Reads>(r => r.Greedy == r.Rows && r.Rows > 1), "a step of greedy rows only");
        Assert.That(steps, Has.Some.Matches<Reads>(r => r.Greedy == 0), "a step of sampling rows only");
        Assert.That(steps, Has.Some.Matches<Reads>(r => r.Greedy > 1 && r.Greedy < r.Rows - 1), "steps of both");
        Assert.That(want, Has.Some.Contains("StopString").And.Some.Contains("removed").And.Some.Contains("MaxTokens"));
        Assert.That(want.Count(e => e.Contains("token")), Is.GreaterThan(60));
    }

    /// <summary>The eager step's reads (the static step with slots reads its own way: ContinuousBatchSlotsTests).</summary>
    [Test]
    public void OnTheDeviceAStepReadsTheGreedyIdsAndOnlyTheSamplingRowsLogits()
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = TestDevice.Get() });
        var cases = MixedCases(model);
        var (_, host) = Run(model, cases, hostPicksOnly: true);
        var (_, device) = Run(model, cases, hostPicksOnly: false);
        Assert.That(device.Select(r => (r.What, r.Rows, r.Greedy)), Is.EqualTo(host.Select(r => (r.What, r.Rows, r.Greedy))), "the same joins and steps");
        long row = 4L * Vocab;
        for (int i = 0; i < device.Count; i++)
        {
            var (h, d) = (host[i], device[i]);
            if (d.Rows == 0) { Assert.That(d.Count, Is.Zero, d.What); continue; }
            // The host path reads every row's logits (and whatever else the step reads: index-check verdicts). Here each
            // greedy row's logits give way to its id, read for all rows at once (8 bytes a row, only when some row is greedy,
            // in one read of its own when some row samples too).
            long ids = d.Greedy > 0 ? 8L * d.Rows : 0;
            Assert.That(d.Bytes, Is.EqualTo(h.Bytes - row * d.Greedy + ids), $"{d.What}: bytes read ({d.Greedy} of {d.Rows} rows greedy)");
            Assert.That(d.Count, Is.EqualTo(h.Count + (d.Greedy > 0 && d.Greedy < d.Rows ? 1 : 0)), $"{d.What}: reads");
            if (d.Greedy == d.Rows && d.What.StartsWith("step"))
            {
                // Greedy rows alone: no logits at all, the B ids in one read; a batch's step also fetches the verdicts of its
                // index checks (32 bytes with this model, in a read of their own), as the logits path does; one row alone reads its id only.
                Assert.That((d.Count, d.Bytes), Is.EqualTo(d.Rows > 1 ? (2L, 8L * d.Rows + 32) : (1L, 8L)), $"{d.What}: the ids alone");
            }
        }
        Assert.That(device, Has.Some.Matches<Reads>(r => r.What.StartsWith("step") && r.Rows == 1 && r.Greedy == 1), "a step of one greedy row");
        Assert.That(device.Where(r => r.What.StartsWith("step")).Sum(r => r.Bytes), Is.LessThan(host.Where(r => r.What.StartsWith("step")).Sum(r => r.Bytes) / 2));
    }
}
