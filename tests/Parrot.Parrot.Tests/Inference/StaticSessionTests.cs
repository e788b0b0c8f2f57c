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
/// The generator's batch session over the static decode step (<c>KvCacheModel</c>'s StaticSession: the rows prefilled
/// as before, loaded into one static cache, each step's ids written to the device, the graph-ready step run through
/// <see cref="Parrot.Tensors.Cuda.GraphedStep"/>, the logits read back) against the eager session it replaces on CUDA
/// devices: the same logits bit for bit (Qwen2 f32/bf16, batch 1 and 2 of different lengths; Parrot with an image), the
/// same generated tokens greedy and sampled, exactly two host↔device copies a step, and the same error at the same
/// step when the room runs out. The test device is of kind CUDA, so the default takes the static path there.
/// </summary>
public class StaticSessionTests
{
    private static Device Dev => TestDevice.Get();

    [Test]
    public void TheDefaultTakesTheStaticStepOnCudaDevicesOnly()
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 1);
        using (var s = Generator.Wrap(model).Start([new GenerationPrompt([1, 2])], 3)) Assert.That(IsStatic(s), Is.False, "eager on the CPU");
        using (var s = Generator.Wrap(model, DecodeStepMode.Static).Start([new GenerationPrompt([1, 2])], 3)) Assert.That(IsStatic(s), Is.True, "forced");
        model.To(Dev);
        using (var s = Generator.Wrap(model).Start([new GenerationPrompt([1, 2])], 3)) Assert.That(IsStatic(s), Is.True, "static on a CUDA device");
        using (var s = Generator.Wrap(model, DecodeStepMode.Eager).Start([new GenerationPrompt([1, 2])], 3)) Assert.That(IsStatic(s), Is.False, "forced eager");
        Assert.That(KvCacheModel.StaticDecodeDefault(null), Is.True);
        Assert.That(KvCacheModel.StaticDecodeDefault("1"), Is.True);
        Assert.That(KvCacheModel.StaticDecodeDefault(" 0 "), Is.False, "PARROT_STATIC_DECODE=0 turns it off");
    }

    [Test]
    public void WhatTheStaticStepCannotRunFallsBackToEager()
    {
        // Head dims over 128 (the decode attention kernel's limit on a GPU), and a dtype other than f32/bf16: eager,
        // with no error, and the generation runs.
        var wide = new Qwen2Config { VocabSize = 20, HiddenSize = 288, IntermediateSize = 16, NumHiddenLayers = 1, NumAttentionHeads = 2, NumKeyValueHeads = 1, RopeTheta = 10000 };
        using var a = new Qwen2ForCausalLM(wide, seed: 1);
        a.To(Dev);
        using (var s = Generator.Wrap(a).Start([new GenerationPrompt([1, 2])], 3)) Assert.That(IsStatic(s), Is.False, "head dim 144");
        using var b = new Qwen2ForCausalLM(Lm, seed: 1, DType.F64);
        b.To(Dev);
        using (var s = Generator.Wrap(b).Start([new GenerationPrompt([1, 2])], 3)) Assert.That(IsStatic(s), Is.False, "float64");
        Assert.That(new Generator(Generator.Wrap(b)).Generate(new GenerationPrompt([1, 2]), new GenerationOptions { MaxNewTokens = 3, IgnoreEos = true }).Tokens, Has.Length.EqualTo(3));
    }

    [Test]
    public void StaticSessionLogitsEqualTheEagerSession([Values(DType.F32, DType.BF16)] DType dtype, [Values(1, 2)] int batch)
    {
        const int steps = 7;
        using var model = new Qwen2ForCausalLM(Lm, seed: 8, dtype);
        model.To(Dev);
        var prompts = Prompts.Take(batch).Select(p => new GenerationPrompt(p)).ToArray();
        var dev = TestDevice.Backend;
        using var eager = Generator.Wrap(model, DecodeStepMode.Eager).Start(prompts, steps);
        using var fast = Generator.Wrap(model).Start(prompts, steps);
        Assert.That(IsStatic(fast), Is.True);
        var want = eager.Prefill();
        var got = fast.Prefill();
        AssertSame(got, want, "prefill");
        var ops = new List<long>();
        for (int s = 1; s <= steps; s++)
        {
            // Fed the eager logits' argmax (as greedy generation would), but a fixed id at step 3: any ids go.
            var tokens = want.Select((l, r) => s == 3 ? 7 + r : ArgMax(l)).ToArray();
            want = eager.Step(tokens);
            long toDevice = dev.HostToDevice, toHost = dev.DeviceToHost, transfers = dev.Transfers, op = dev.Ops;
            got = fast.Step(tokens);
            Assert.That(dev.HostToDevice - toDevice, Is.EqualTo(1), $"step {s}: one host→device copy (the ids)");
            Assert.That(dev.DeviceToHost - toHost, Is.EqualTo(1), $"step {s}: one device→host copy (the logits)");
            Assert.That(dev.Transfers - transfers, Is.EqualTo(2), $"step {s}: no other copy");
            ops.Add(dev.Ops - op);
            AssertSame(got, want, $"step {s}");
        }
        Assert.That(ops, Is.All.EqualTo(ops[0]), "the same ops every step");
    }

    [Test]
    public void AParrotPromptWithAnImageGivesTheEagerLogits()
    {
        const int steps = 5;
        using var model = new ParrotForCausalLM(Config(), seed: 4);
        model.To(Dev);
        using var features = Tensor.Uniform([ImageTokens, Channels], 3, -1, 1);
        var prompts = new[]
        {
            new GenerationPrompt([1, 2, ChatMl.ImageTokenIndex, 3, 4, 5], features),
            new GenerationPrompt([200, 201, 202]),
        };
        var routed = new List<double[]>();
        using var eager = Generator.Wrap(model, null, DecodeStepMode.Eager).Start(prompts, steps);
        using var fast = Generator.Wrap(model, routed.Add).Start(prompts, steps);
        Assert.That(IsStatic(fast), Is.True);
        var want = eager.Prefill();
        AssertSame(fast.Prefill(), want, "prefill");
        Assert.That(routed, Has.Count.EqualTo(1), "the image prompt went through the MoE in the prefill");
        for (int s = 1; s <= steps; s++)
        {
            var tokens = want.Select(ArgMax).ToArray();
            want = eager.Step(tokens);
            AssertSame(fast.Step(tokens), want, $"step {s}");
        }
    }

    [Test]
    public void GenerationGivesTheEagerTokens([Values(false, true)] bool sampled)
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 3, DType.BF16);
        model.To(Dev);
        var prompts = new[] { new GenerationPrompt([5, 9, 2, 44, 17, 8, 1]), new GenerationPrompt([3, 30]), new GenerationPrompt([12]) };
        var options = sampled
            ? new GenerationOptions { Temperature = 0.9, TopP = 0.95, TopK = 20, Seed = 5, MaxNewTokens = 9 }
            : new GenerationOptions { MaxNewTokens = 9 };
        // An end-of-sequence id from the eager run's row 1, so that row ends early and is stepped on while the others go.
        var probe = new Generator(Generator.Wrap(model, DecodeStepMode.Eager), endOfSequenceIds: []).Generate(prompts, options);
        int eos = probe[1].Tokens[2];
        var eager = new Generator(Generator.Wrap(model, DecodeStepMode.Eager), endOfSequenceIds: [eos]).Generate(prompts, options);
        var fast = new Generator(Generator.Wrap(model), endOfSequenceIds: [eos]).Generate(prompts, options);
        Assert.That(eager[1].Reason, Is.EqualTo(FinishReason.EndOfSequence));
        Assert.That(eager[1].Tokens.Length, Is.LessThanOrEqualTo(3));
        for (int r = 0; r < prompts.Length; r++)
        {
            Assert.That(fast[r].Tokens, Is.EqualTo(eager[r].Tokens), $"row {r}");
            Assert.That(fast[r].Reason, Is.EqualTo(eager[r].Reason), $"row {r}");
        }
        Assert.That(eager.Max(x => x.Tokens.Length), Is.EqualTo(9), "some row ran to the maximum");
    }

    [Test]
    public void TheStaticStepOnTheCpuGivesTheEagerLogits()
    {
        // Forced on the CPU (the same step, eager there): the comparison needs no device.
        using var model = new Qwen2ForCausalLM(Lm, seed: 5);
        var prompts = Prompts.Select(p => new GenerationPrompt(p)).ToArray();
        using var eager = Generator.Wrap(model, DecodeStepMode.Eager).Start(prompts, 4);
        using var fast = Generator.Wrap(model, DecodeStepMode.Static).Start(prompts, 4);
        var want = eager.Prefill();
        AssertSame(fast.Prefill(), want, "prefill");
        for (int s = 1; s <= 4; s++)
        {
            var tokens = want.Select(ArgMax).ToArray();
            want = eager.Step(tokens);
            AssertSame(fast.Step(tokens), want, $"step {s}");
        }
    }

    [Test]
    public void RunningOutOfRoomIsTheSameClearErrorInBothSessions([Values(DecodeStepMode.Eager, DecodeStepMode.Auto)] DecodeStepMode mode)
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 2);
        model.To(Dev);
        using var session = Generator.Wrap(model, mode).Start(Prompts.Select(p => new GenerationPrompt(p)).ToArray(), 3);
        Assert.That(IsStatic(session), Is.EqualTo(mode == DecodeStepMode.Auto));
        Assert.That(() => session.Step([1, 2]), Throws.InvalidOperationException.With.Message.Contains("Prefill first"));
        session.Prefill();
        Assert.That(() => session.Step([1, 61]), Throws.ArgumentException.With.Message.Contains("token id 61 is outside the vocabulary [0, 61)"));
        Assert.That(() => session.Step([1]), Throws.ArgumentException.With.Message.Contains("1 tokens for a batch of 2"));
        for (int s = 0; s < 3; s++) session.Step([1, 2]);
        Assert.That(() => session.Step([1, 2]), Throws.InvalidOperationException.With.Message.EqualTo(
            "generate: the session was started for 3 new tokens per prompt, so its cache holds 3 steps after the prefill; no step was run"));
        Assert.That(() => session.Prefill(), Throws.InvalidOperationException.With.Message.Contains("already prefilled"));
    }

    private static void AssertSame(float[][] got, float[][] want, string what)
    {
        Assert.That(got, Has.Length.EqualTo(want.Length), what);
        for (int r = 0; r < want.Length; r++) Assert.That(got[r], Is.EqualTo(want[r]), $"logits of row {r}, {what}");
    }

    private static int ArgMax(float[] x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
