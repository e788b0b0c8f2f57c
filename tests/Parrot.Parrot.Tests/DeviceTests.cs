using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Data;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Training;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tests.Shared;
using static Parrot.Parrot.Tests.Training.TrainingFixtures;

namespace Parrot.Parrot.Tests;

/// <summary>
/// Parrot on a device that is not the CPU (the test device: the CPU kernels behind a check that every operand is on
/// that device): the assembled embeddings, MoE routing, projector, CLIP tower, KV-cache generation (alone, a batch
/// of per-row caches, continuous batch) and both trainers run there and give exactly the CPU's numbers.
/// </summary>
public class DeviceTests() : TinyModelSetFixture("parrot-device-tests")
{
    private static Device Dev => TestDevice.Get();
    private static ChatTurn[] Ask(string q, bool image = false) => [new ChatTurn(ChatRole.User, q, image)];

    [Test]
    public void GenerationOnTheDeviceEqualsTheCpu()
    {
        using var cpu = ParrotModel.Load(ParrotDir);
        using var dev = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = Dev });
        var red = ImageLoader.Load(Red);
        var sampled = new GenerationOptions { Temperature = 0.9, TopP = 0.95, TopK = 40, Seed = 5, IgnoreEos = true, MaxNewTokens = 7 };
        long ops = TestDevice.Backend.Ops;
        // One prompt with an image (tower, projector, MoE on the device), then a batch of three of different lengths.
        Assert.That(dev.Generate(Ask("what colour?", image: true), red, sampled).Tokens, Is.EqualTo(cpu.Generate(Ask("what colour?", image: true), red, sampled).Tokens));
        var conversations = new[] { Ask("hi"), Ask("a much longer question here", image: true), Ask("mid length") };
        var images = new RgbImage?[] { null, red, null };
        var a = cpu.Generate(conversations, images, sampled);
        var b = dev.Generate(conversations, images, sampled);
        for (int i = 0; i < a.Count; i++) Assert.That(b[i].Tokens, Is.EqualTo(a[i].Tokens), $"batch row {i}");
        // Continuous batching: per-row caches, rows joining later.
        List<int>[] Continuous(ParrotModel m, List<long> copies)
        {
            using var batch = m.StartContinuousBatch();
            var seqs = new List<BatchSequence>();
            var got = new[] { new List<int>(), new List<int>() };
            for (int step = 0; step < 8; step++)
            {
                if (step == 0) seqs.Add(batch.Join(Ask("first"), null, sampled, 6));
                if (step == 2) seqs.Add(batch.Join(Ask("second", image: true), red, sampled, 4));
                long before = TestDevice.Backend.HostToDevice;
                var events = batch.Step();
                foreach (var e in events) got[seqs.IndexOf(e.Sequence)].Add(e.Token);
                if (step > 2 && events.Count > 0) copies.Add(TestDevice.Backend.HostToDevice - before);
            }
            return got;
        }
        var ca = Continuous(cpu, []);
        var stepCopies = new List<long>();
        var cb = Continuous(dev, stepCopies);
        // On this CUDA-kind device the batch runs the static step with slots: a step of these sampled rows copies their
        // token ids to the device, nothing else, and the step that first runs a joined row its slots' positions too.
        Assert.That(stepCopies, Is.EqualTo(new long[] { 2, 1, 1 }));
        Assert.That(cb[0], Is.EqualTo(ca[0]));
        Assert.That(cb[1], Is.EqualTo(ca[1]));
        Assert.That(ca[1], Has.Count.EqualTo(4));
        Assert.That(TestDevice.Backend.Ops - ops, Is.GreaterThan(500), "the device computed the answers");
    }

    [Test]
    public void ABatchDecodeStepCopiesOnlyItsIdsAndPositions([Values(DecodeStepMode.Eager, DecodeStepMode.Auto)] DecodeStepMode mode)
    {
        // Eager, and the default on this (CUDA-kind) device: the static step, whose ids buffer is the one copy.
        // Three prompts of different lengths decode together, each row over its own cache (no padding, so no mask):
        // each step copies one buffer of ids and per-row positions (the RoPE rows are gathered from the model's
        // tables on the device). The left-padded shared cache this replaced copied a mask as well (2 per step).
        var config = new Qwen2Config { VocabSize = 40, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, RopeTheta = 10000 };
        using var cpu = new Qwen2ForCausalLM(config, seed: 6);
        using var dev = new Qwen2ForCausalLM(config, seed: 6);
        dev.To(Dev);
        var prompts = new[] { new GenerationPrompt([1, 2, 3]), new GenerationPrompt([4, 5, 6, 7, 8, 9]), new GenerationPrompt([10]) };
        (List<float[][]> Logits, List<long> Copies) Run(Qwen2ForCausalLM m)
        {
            using var session = Generator.Wrap(m, mode).Start(prompts, 8);
            var outs = new List<float[][]> { session.Prefill() };
            var copies = new List<long>();
            for (int step = 0; step < 8; step++)
            {
                long before = TestDevice.Backend.HostToDevice;
                outs.Add(session.Step([(step * 3) % 40, (step * 5 + 1) % 40, (step * 7 + 2) % 40]));
                copies.Add(TestDevice.Backend.HostToDevice - before);
            }
            return (outs, copies);
        }
        var a = Run(cpu);
        var b = Run(dev);
        for (int i = 0; i < a.Logits.Count; i++)
            for (int r = 0; r < 3; r++) Assert.That(b.Logits[i][r], Is.EqualTo(a.Logits[i][r]), $"call {i} row {r}");
        Assert.That(b.Copies, Is.All.EqualTo(1));
    }

    [Test]
    public void PrefillAndDecodeStepsOnTheDeviceEqualTheCpu()
    {
        using var cpu = new ParrotForCausalLM(Config(), seed: 4);
        using var dev = new ParrotForCausalLM(Config(), seed: 4);
        dev.To(Dev);
        using var ng = Graph.NoGrad();
        float[][] Run(ParrotForCausalLM m)
        {
            using var scope = TensorScope.Begin();
            using var cache = new KvCache(m.Config.Text.NumHiddenLayers, 64);
            var features = Tensor.Uniform([1, ImageTokens, Channels], 3, -1, 1); // host features, as the feature cache gives them
            var sample = new ParrotSample([1, 2, ParrotSample.ImageToken, 3, 4, 5], null, 0);
            var outs = new List<float[]> { m.Prefill(sample, features, cache).ToFloatArray() };
            foreach (var t in new[] { 7, 8, 9 }) outs.Add(m.DecodeStep(t, cache).ToFloatArray());
            return outs.ToArray();
        }
        var a = Run(cpu);
        var b = Run(dev);
        for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]), $"call {i}");
    }

    [Test]
    public void ParrotTrainingStepsOnTheDeviceEqualTheCpu()
    {
        var dir = TempDir();
        var (json, images) = WriteData(dir, 8);
        var data = LlavaDataset.Load(json, images, Chat, DataOptions());
        var options = ParrotTrainingOptions.Parrot7b(2) with { GlobalBatch = 4, MicroBatch = 2, Steps = 2, LearningRate = 1e-3, WarmupRatio = 0 };
        (double[] Losses, double[] Norms, float[][] Weights) Train(Device device)
        {
            using var model = new ParrotForCausalLM(Config(), seed: 3);
            model.To(device);
            using var features = new LlavaImageFeatures(ToyTower, Preprocessor);
            using var trainer = new ParrotTrainer(model, data, features, options);
            var records = trainer.Train();
            Assert.That(model.Parameters().All(p => p.Value.Device == device), Is.True);
            return (records.Select(r => r.Loss).ToArray(), records.Select(r => r.GradNorm).ToArray(), model.Parameters().Select(p => p.Value.ToFloatArray()).ToArray());
        }
        var a = Train(Device.Cpu);
        var b = Train(Dev);
        Assert.That(b.Losses, Is.EqualTo(a.Losses));
        Assert.That(b.Norms, Is.EqualTo(a.Norms));
        for (int i = 0; i < a.Weights.Length; i++) Assert.That(b.Weights[i], Is.EqualTo(a.Weights[i]), $"parameter {i}");
    }

    [Test]
    public void CausalLmTrainingOnTheDeviceEqualsTheCpu()
    {
        var rng = new Random(3);
        var sequences = Enumerable.Range(0, 6).Select(_ => Enumerable.Range(0, 9).Select(_ => rng.Next(TinyModels.Vocab)).ToArray()).ToList();
        var options = new CausalLmOptions { Steps = 3, Batch = 2, LearningRate = 3e-3, MaxGradNorm = 1.0, WarmupSteps = 1 };
        List<StepRecord> Train(Device device)
        {
            using var model = new Qwen2ForCausalLM(TinyModels.TextConfig(0.02), seed: 9);
            model.To(device);
            var records = new CausalLmTrainer(model, options).Train(sequences);
            Assert.That(CausalLmTrainer.Evaluate(model, sequences, 4), Is.LessThan(records[0].Loss));
            return records;
        }
        var a = Train(Device.Cpu);
        var b = Train(Dev);
        Assert.That(b.Select(r => (r.Loss, r.GradNorm)), Is.EqualTo(a.Select(r => (r.Loss, r.GradNorm))));
    }
}
