using Parrot.Nn;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Tensors;
using Parrot.Tests.Shared;
using static Parrot.Parrot.Tests.Inference.DecodeSessionFixtures;
using static Parrot.Parrot.Tests.Training.TrainingFixtures;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// Greedy decoding with the pick on the model's device (<see cref="IGreedyDecodingSession"/>, <see cref="GreedyToken"/>)
/// against the logits path it replaces for greedy generation (the logits read back, TokenSampler's argmax on the host):
/// the pick itself on crafted rows (ties, NaN, ±∞, ±0) in f32/bf16/f16/f64 on the CPU and the test device, and equal to
/// the float64-key composition it replaced on vocabulary-long rows; both sessions
/// (eager and static) giving the host's ids for Qwen2 f32/bf16 batch 1 and 2 of different lengths and for Parrot with an
/// image; exactly one small read a step and no logits read; the generator taking this path only for a plain argmax.
/// </summary>
public class GreedyOnDeviceTests
{
    private static int HostPick(float[] logits) => TokenSampler.ArgMax(logits.Select(x => (double)x).ToArray());

    /// <summary>What the device pick gives: the host's argmax where it is a number above −∞, else −1 (the row holds no number).</summary>
    private static int DevicePick(float[] logits) { int id = HostPick(logits); return logits[id] > float.NegativeInfinity ? id : (int)GreedyToken.NoNumber; }

    [Test]
    public void ThePickIsTheHostArgMax([Values(DType.F32, DType.BF16, DType.F16, DType.F64)] DType dtype, [Values(false, true)] bool onTestDevice)
    {
        double nan = double.NaN, inf = double.PositiveInfinity;
        var rows = new List<double[]>
        {
            new[] { 1, nan, 2.0, 0 },           // NaN loses (ArgMax alone gives 1)
            new[] { nan, -inf, -inf, nan },   // NaN below −∞, and no number: −1 (the host's argmax: the first −∞)
            new[] { nan, nan, nan, nan },     // nothing but NaN: −1
            new[] { -inf, -inf, -inf, -inf }, // a tie of −∞: −1
            new[] { 0.0, -0.0, 0, -1 },       // ±0 tie: the first
            new[] { -0.0, 0, -1, -2 },
            new[] { 1, 3, 3, 2.0 },             // a tie: the lower id
            new[] { inf, nan, inf, 5.0 },
            new[] { -5, -3, -3.0, nan },
        };
        var rng = new Random(4);
        for (int i = 0; i < 40; i++)
            rows.Add(Enumerable.Range(0, 4).Select(_ => rng.Next(6) switch { 0 => nan, 1 => -inf, 2 => 0.5, 3 => 0.25, 4 => 0.5, _ => -1.0 }).ToArray());
        int width = 4;
        using var host = Tensor.FromArray(rows.SelectMany(r => r).ToArray(), rows.Count, width);
        using var x = host.To(dtype, onTestDevice ? TestDevice.Get() : Device.Cpu);
        long transfers = TestDevice.Backend.Transfers;
        using var picked = GreedyToken.Pick(x);
        if (onTestDevice) Assert.That(TestDevice.Backend.Transfers - transfers, Is.Zero, "the pick stays on the device");
        Assert.That(picked.Device, Is.EqualTo(x.Device));
        var got = picked.ToLongArray();
        var values = x.ToFloatArray();
        for (int r = 0; r < rows.Count; r++)
            Assert.That(got[r], Is.EqualTo(DevicePick(values.AsSpan(r * width, width).ToArray())), $"row {r}: [{string.Join(", ", values.AsSpan(r * width, width).ToArray())}]");
        Assert.That(got[1..4], Is.EqualTo(new long[] { -1, -1, -1 }), "the rows with no number");
        using var plain = x.ArgMax(1);
        Assert.That(plain.ToLongArray()[0], Is.EqualTo(1), "ArgMax alone lets NaN win: what Pick must undo");

        // A long row (a vocabulary: the GPU splits it into chunks) with its maximum at three places, NaN first.
        var longRow = Enumerable.Range(0, 40000).Select(i => (double)((i * 7919) % 1000) / 1000).ToArray();
        longRow[0] = nan;
        longRow[12345] = longRow[20000] = longRow[39999] = 2;
        using var l = Tensor.FromArray(longRow, 1, longRow.Length).To(dtype, onTestDevice ? TestDevice.Get() : Device.Cpu);
        using var lp = GreedyToken.Pick(l);
        Assert.That(lp.ToLongArray()[0], Is.EqualTo(12345));
    }

    /// <summary>
    /// The pick (one ArgMaxNumber) gives the ids of the composition it replaced, bit for bit: an ArgMax over float64
    /// keys (float32 values widened, NaN → −∞, −∞ → −1e300), on rows of the 7B and 0.5B vocabularies full of ties, NaN,
    /// ±∞ and ±0, and −1 for the rows with no number above −∞ or none at all. Also the host pick.
    /// </summary>
    [Test]
    public void ThePickEqualsTheFormerFloat64KeysArgMax([Values(DType.F32, DType.BF16, DType.F16, DType.F64)] DType dtype,
        [Values(152_064, 151_936)] int vocab, [Values(false, true)] bool onTestDevice)
    {
        using var scope = TensorScope.Begin();
        const int rows = 5;
        var rng = new Random(vocab + (int)dtype);
        double[] set = [double.NaN, double.NegativeInfinity, double.PositiveInfinity, -0.0, 0, 1, 1];
        var v = new double[rows * vocab];
        for (int i = 0; i < v.Length; i++) v[i] = rng.Next(500) == 0 ? set[rng.Next(set.Length)] : Math.Round(rng.NextDouble() * 64) / 64;
        for (int i = 0; i < vocab; i++) v[i] = i % 5 == 0 ? double.NaN : double.NegativeInfinity;
        for (int i = 0; i < vocab; i++) v[vocab + i] = double.NaN;
        for (int i = 0; i < vocab; i++) v[2 * vocab + i] = i % 2 == 0 ? -0.0 : 0;
        var x = Tensor.FromArray(v, rows, vocab).To(dtype, onTestDevice ? TestDevice.Get() : Device.Cpu);
        var got = GreedyToken.Pick(x).ToLongArray();
        var wide = (dtype == DType.F64 ? x.To(DType.F32) : x).To(DType.F64);
        var keys = Tensor.Where(wide.Ne(wide), Tensor.Scalar(double.NegativeInfinity, DType.F64, x.Device), wide.Maximum(Tensor.Scalar(-1e300, DType.F64, x.Device)));
        var values = x.ToFloatArray();
        var former = keys.ArgMax(1).ToLongArray();
        for (int r = 0; r < rows; r++)
        {
            bool number = values[r * vocab + (int)former[r]] > float.NegativeInfinity;
            Assert.That(got[r], Is.EqualTo(number ? former[r] : -1), $"row {r}");
            Assert.That(got[r], Is.EqualTo(DevicePick(values.AsSpan(r * vocab, vocab).ToArray())), $"row {r}");
        }
        Assert.That(got[..3], Is.EqualTo(new long[] { -1, -1, 0 }));
        Assert.That(got[3..], Is.All.GreaterThanOrEqualTo(0L), "the random rows hold numbers");
    }

    /// <summary>PickInto writes Pick's ids into a buffer (here a strided column) and nothing else; wrong buffers throw.</summary>
    [Test]
    public void PickIntoWritesThePickIntoTheBuffer([Values(DType.BF16, DType.F64)] DType dtype, [Values(false, true)] bool onTestDevice)
    {
        using var scope = TensorScope.Begin();
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        var v = new[] { 1, double.NaN, 2, 0, double.NaN, double.NaN, double.NaN, double.NaN, 0.5, 0.5, -0.0, double.NegativeInfinity };
        var logits = Tensor.FromArray(v, 3, 4).To(dtype, device);
        var buffer = Tensor.Full([3, 2], -5, DType.I64, device);
        GreedyToken.PickInto(logits, buffer.Select(1, 1));
        Assert.That(buffer.ToLongArray(), Is.EqualTo(new long[] { -5, 2, -5, -1, -5, 0 }), "row 1 (NaN only) holds no number: −1");
        Assert.That(buffer.Select(1, 1).ToLongArray(), Is.EqualTo(GreedyToken.Pick(logits).ToLongArray()));
        Assert.Throws<ArgumentException>(() => GreedyToken.PickInto(logits, Tensor.Zeros([3], DType.I32, device)));
        Assert.Throws<ArgumentException>(() => GreedyToken.PickInto(logits, Tensor.Zeros([2], DType.I64, device)));
        Assert.Throws<ArgumentException>(() => GreedyToken.PickInto(logits, Tensor.Zeros([3], DType.I64, onTestDevice ? Device.Cpu : TestDevice.Get())));
    }

    /// <summary>Session pairs: the greedy path of <paramref name="mode"/> against the eager session's logits, step by step.</summary>
    [Test]
    public void GreedySessionsGiveTheHostPickOfTheLogits([Values(DType.F32, DType.BF16)] DType dtype, [Values(1, 2)] int batch,
        [Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode, [Values(false, true)] bool onTestDevice)
    {
        const int steps = 7;
        using var model = new Qwen2ForCausalLM(Lm, seed: 8, dtype);
        if (onTestDevice) model.To(TestDevice.Get());
        var prompts = Prompts.Take(batch).Select(p => new GenerationPrompt(p)).ToArray();
        var dev = onTestDevice ? TestDevice.Backend : null;
        using var reference = Generator.Wrap(model, DecodeStepMode.Eager).Start(prompts, steps);
        using var session = Generator.Wrap(model, mode).Start(prompts, steps);
        Assert.That(IsStatic(session), Is.EqualTo(mode == DecodeStepMode.Static));
        var greedy = (IGreedyDecodingSession)session;
        var logits = reference.Prefill();
        long readsBefore = dev?.DeviceToHost ?? 0, bytesBefore = dev?.DeviceToHostBytes ?? 0;
        var ids = greedy.PrefillGreedy();
        if (dev is not null)
        {
            // The first ids once for the batch (the logits path reads a row of logits per prompt), and the verdicts of the
            // prompts' embedding index checks (16 bytes each), which the first read of any kind fetches.
            Assert.That(dev.DeviceToHost - readsBefore, Is.EqualTo(2), "the prefill reads the first ids once for the batch");
            Assert.That(dev.DeviceToHostBytes - bytesBefore, Is.EqualTo((8 + 16) * batch), "and no logits");
        }
        Assert.That(ids, Is.EqualTo(logits.Select(HostPick)), "prefill");
        Assert.That(() => session.Step(ids), Throws.InvalidOperationException.With.Message.Contains("its steps are StepGreedy"));
        var ops = new List<long>();
        for (int s = 1; s <= steps; s++)
        {
            // Fed back what came out (as the generator does), but fixed ids at step 3: any ids go.
            var tokens = s == 3 ? ids.Select((_, r) => 7 + r).ToArray() : ids;
            long referenceToDevice = dev?.HostToDevice ?? 0, referenceReads = dev?.DeviceToHost ?? 0, referenceBytes = dev?.DeviceToHostBytes ?? 0;
            logits = reference.Step(tokens);
            referenceToDevice = (dev?.HostToDevice ?? 0) - referenceToDevice;
            referenceReads = (dev?.DeviceToHost ?? 0) - referenceReads;
            referenceBytes = (dev?.DeviceToHostBytes ?? 0) - referenceBytes;
            long toDevice = dev?.HostToDevice ?? 0, toHost = dev?.DeviceToHost ?? 0, bytes = dev?.DeviceToHostBytes ?? 0, op = dev?.Ops ?? 0;
            var copies = new List<CopyRecord>();
            if (dev is not null) dev.CopyLog = copies;
            try { ids = greedy.StepGreedy(tokens); }
            finally { if (dev is not null) dev.CopyLog = null; }
            Assert.That(ids, Is.EqualTo(logits.Select(HostPick)), $"step {s}");
            if (dev is null) continue;
            if (mode == DecodeStepMode.Static)
            {
                Assert.That(dev.DeviceToHost - toHost, Is.EqualTo(1), $"step {s}: one device→host read");
                Assert.That(dev.DeviceToHostBytes - bytes, Is.EqualTo(8 * batch), $"step {s}: the ids only, no logits");
                // The pick is written into the ids buffer and the history updated in place: no int64 copy but the ids fed
                // in at step 3.
                Assert.That(copies.Where(c => c.DstType == DType.I64 && !c.Callers.Contains("SetIds")), Is.Empty, $"step {s}: int64 copies");
            }
            else
            {
                // The eager step reads what its logits path reads, the ids in place of the logits: one read alone, and
                // for a batch the verdict of its RoPE rows' position check (16 bytes), as the logits path.
                Assert.That(referenceReads, Is.EqualTo(batch == 1 ? 1 : 2), $"step {s}: the logits path's reads");
                Assert.That(dev.DeviceToHost - toHost, Is.EqualTo(referenceReads), $"step {s}: device→host reads");
                Assert.That(dev.DeviceToHostBytes - bytes, Is.EqualTo(referenceBytes - 4 * Lm.VocabSize * batch + 8 * batch), $"step {s}: the ids, no logits");
            }
            // The static step copies ids in only when they differ from its last pick; the eager one copies what its logits
            // path copies (its ids, and the RoPE tables when they grow).
            Assert.That(dev.HostToDevice - toDevice, Is.EqualTo(mode == DecodeStepMode.Eager ? referenceToDevice : s == 3 ? 1 : 0), $"step {s}: host→device copies");
            if (s != 3) ops.Add(dev.Ops - op);
        }
        if (dev is not null) Assert.That(ops, Is.All.EqualTo(ops[0]), "the same ops every step fed its own ids");
    }

    [Test]
    public void TiesGiveTheSameTokensBothWays([Values(false, true)] bool onTestDevice)
    {
        // The head's rows in identical pairs: every logit has a twin, so the argmax is a tie almost every step; both paths
        // must take its lower id.
        using var model = new Qwen2ForCausalLM(Lm, seed: 11);
        var head = model.NamedParameters().Single(p => p.Name == "lm_head.weight").Parameter.Value;
        for (int v = 1; v < Lm.VocabSize; v += 2)
            using (var twin = head.Narrow(0, v, 1)) using (var source = head.Narrow(0, v - 1, 1)) twin.CopyFrom(source);
        if (onTestDevice) model.To(TestDevice.Get());
        var prompts = Prompts.Select(p => new GenerationPrompt(p)).ToArray();
        using var session = Generator.Wrap(model, DecodeStepMode.Eager).Start(prompts, 8);
        var logits = session.Prefill();
        int ties = 0;
        for (int s = 0; s < 8; s++)
        {
            foreach (var row in logits) if (row.Count(x => x == row.Max()) > 1) ties++;
            logits = session.Step(logits.Select(HostPick).ToArray());
        }
        Assert.That(ties, Is.GreaterThan(8), "the fixture ties");
        var options = new GenerationOptions { MaxNewTokens = 8, IgnoreEos = true };
        var hostPicked = new Generator(Generator.LogitsOnly(Generator.Wrap(model)), endOfSequenceIds: []).Generate(prompts, options);
        var devicePicked = new Generator(Generator.Wrap(model), endOfSequenceIds: []).Generate(prompts, options);
        for (int r = 0; r < prompts.Length; r++) Assert.That(devicePicked[r].Tokens, Is.EqualTo(hostPicked[r].Tokens), $"row {r}");
        Assert.That(devicePicked.SelectMany(x => x.Tokens).Count(t => t % 2 == 1 && t != Lm.VocabSize - 1), Is.Zero, "a tie's twin (odd id) never wins");
    }

    [Test]
    public void AParrotPromptWithAnImageGivesTheHostPick([Values(DecodeStepMode.Eager, DecodeStepMode.Auto)] DecodeStepMode mode)
    {
        const int steps = 5;
        using var model = new ParrotForCausalLM(Config(), seed: 4);
        model.To(TestDevice.Get());
        using var features = Tensor.Uniform([ImageTokens, Channels], 3, -1, 1);
        var prompts = new[]
        {
            new GenerationPrompt([1, 2, ChatMl.ImageTokenIndex, 3, 4, 5], features),
            new GenerationPrompt([200, 201, 202]),
        };
        using var reference = Generator.Wrap(model, null, DecodeStepMode.Eager).Start(prompts, steps);
        using var session = Generator.Wrap(model, null, mode).Start(prompts, steps);
        Assert.That(IsStatic(session), Is.EqualTo(mode == DecodeStepMode.Auto));
        var greedy = (IGreedyDecodingSession)session;
        var logits = reference.Prefill();
        var ids = greedy.PrefillGreedy();
        Assert.That(ids, Is.EqualTo(logits.Select(HostPick)), "prefill");
        for (int s = 1; s <= steps; s++)
        {
            logits = reference.Step(ids);
            ids = greedy.StepGreedy(ids);
            Assert.That(ids, Is.EqualTo(logits.Select(HostPick)), $"step {s}");
        }
    }

    [Test]
    public void TheGeneratorPicksOnTheDeviceOnlyForAPlainArgMax([Values(false, true)] bool onTestDevice)
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 3, DType.BF16);
        if (onTestDevice) model.To(TestDevice.Get());
        var prompts = new[] { new GenerationPrompt([5, 9, 2, 44, 17, 8, 1]), new GenerationPrompt([3, 30]), new GenerationPrompt([12]) };
        // An end-of-sequence id from a first run's row 1, so that row ends early and the others step on.
        var probe = new Generator(Generator.LogitsOnly(Generator.Wrap(model)), endOfSequenceIds: []).Generate(prompts, new GenerationOptions { MaxNewTokens = 9 });
        int eos = probe[1].Tokens[2];
        foreach (var (options, onDevice) in new (GenerationOptions, bool)[]
        {
            (new GenerationOptions { MaxNewTokens = 9 }, true),
            (new GenerationOptions { MaxNewTokens = 9, TopK = 3, TopP = 0.5 }, true), // top-k/p shape sampling only
            (new GenerationOptions { MaxNewTokens = 9, RepetitionPenalty = 1.3 }, false),
            (new GenerationOptions { MaxNewTokens = 9, Temperature = 0.9, TopP = 0.95, TopK = 20, Seed = 5 }, false),
        })
        {
            var recording = new Recording(Generator.Wrap(model));
            var want = new Generator(Generator.LogitsOnly(Generator.Wrap(model)), endOfSequenceIds: [eos]).Generate(prompts, options);
            var got = new Generator(recording, endOfSequenceIds: [eos]).Generate(prompts, options);
            string what = $"temperature {options.Temperature}, penalty {options.RepetitionPenalty}, top-k {options.TopK}";
            for (int r = 0; r < prompts.Length; r++)
            {
                Assert.That(got[r].Tokens, Is.EqualTo(want[r].Tokens), $"{what}: row {r}");
                Assert.That(got[r].Reason, Is.EqualTo(want[r].Reason), $"{what}: row {r}");
            }
            if (onDevice) Assert.That(want[1].Reason, Is.EqualTo(FinishReason.EndOfSequence), $"{what}: a row ends early");
            Assert.That(recording.Calls, onDevice ? Is.All.Contains("Greedy") : Is.All.Not.Contains("Greedy"), what);
            Assert.That(recording.Calls, Has.Count.EqualTo(want.Max(x => x.Tokens.Length)), $"{what}: one prefill and a step per token after the first");
        }
    }

    /// <summary>Records which of its session's methods the generator calls.</summary>
    private sealed class Recording(IAutoregressiveModel inner) : IAutoregressiveModel
    {
        public List<string> Calls { get; } = [];

        public int VocabSize => inner.VocabSize;

        public IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens) => new Session(this, (IGreedyDecodingSession)inner.Start(prompts, maxNewTokens));

        private sealed class Session(Recording owner, IGreedyDecodingSession s) : IGreedyDecodingSession
        {
            public float[][] Prefill() { owner.Calls.Add("Prefill"); return s.Prefill(); }
            public float[][] Step(int[] tokens) { owner.Calls.Add("Step"); return s.Step(tokens); }
            public int[] PrefillGreedy() { owner.Calls.Add("PrefillGreedy"); return s.PrefillGreedy(); }
            public int[] StepGreedy(int[] tokens) { owner.Calls.Add("StepGreedy"); return s.StepGreedy(tokens); }
            public void Dispose() => s.Dispose();
        }
    }
}
