using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests;

/// <summary>
/// <see cref="Qwen2StaticDecoder"/> (the graph-ready decode step: ids, positions and RoPE rows on the device) against the
/// eager KV-cache decode it replaces (<see cref="Generator"/>'s session: <c>KvCacheModel</c>, a plain cache for one
/// row, per-row caches for a batch; and <see cref="GreedyDecoder"/>): the same tokens and the same logits bit for bit,
/// f32 and bf16, batch 1 and 2 (prompts of different lengths), on the CPU and on the test device. There, a step makes
/// no host↔device copy, and every step runs the same number of ops and allocates the same bytes.
/// </summary>
public class StaticDecoderTests
{
    private static readonly Qwen2Config Config = new()
    {
        VocabSize = 61, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, RopeTheta = 10000,
    };

    private static readonly int[][] Prompts = [[5, 9, 2, 44, 17], [3, 30]];

    [Test]
    public void StaticStepsEqualTheEagerDecode([Values(DType.F32, DType.BF16)] DType dtype, [Values(1, 2)] int batch, [Values(false, true)] bool onTestDevice)
    {
        const int steps = 7;
        using var model = new Qwen2ForCausalLM(Config, seed: 8, dtype);
        if (onTestDevice) model.To(TestDevice.Get());
        var prompts = Prompts.Take(batch).ToArray();

        // The eager reference: the generator's session, greedy tokens picked on the host from its logits.
        var eagerLogits = new List<float[][]>();
        var eagerTokens = new List<int[]>();
        using (var session = Generator.Wrap(model, DecodeStepMode.Eager).Start(prompts.Select(p => new GenerationPrompt(p)).ToArray(), steps + 1))
        {
            var logits = session.Prefill();
            for (int s = 0; ; s++)
            {
                eagerLogits.Add(logits);
                var tokens = logits.Select(ArgMax).ToArray();
                eagerTokens.Add(tokens);
                if (s == steps) break;
                logits = session.Step(tokens);
            }
        }
        if (batch == 1)
            Assert.That(eagerTokens.Select(t => t[0]), Is.EqualTo(GreedyDecoder.Generate(model, prompts[0], steps + 1, [], ignoreEos: true)), "the reference is GreedyDecoder's");

        using var dec = new Qwen2StaticDecoder(model, batch, maxLength: prompts.Max(p => p.Length) + steps + 1, keepLogits: true);
        dec.Prefill(prompts);
        Assert.That(dec.ReadTokens(), Is.EqualTo(eagerTokens[0]), "after the prefill");
        AssertLogits(dec, eagerLogits[0], "prefill");
        var ops = new List<long>();
        var allocations = new List<List<long>>();
        for (int s = 1; s <= steps; s++)
        {
            var dev = onTestDevice ? TestDevice.Backend : null;
            long transfers = dev?.Transfers ?? 0, op = dev?.Ops ?? 0;
            if (dev is not null) dev.AllocationLog = [];
            try { dec.Step(); }
            finally
            {
                if (dev is not null)
                {
                    allocations.Add(dev.AllocationLog!);
                    dev.AllocationLog = null;
                }
            }
            if (dev is not null)
            {
                Assert.That(dev.Transfers - transfers, Is.Zero, $"step {s} copied between the host and the device");
                ops.Add(dev.Ops - op);
            }
            Assert.That(dec.ReadTokens(), Is.EqualTo(eagerTokens[s]), $"tokens of step {s}");
            AssertLogits(dec, eagerLogits[s], $"step {s}");
        }
        Assert.That(dec.Steps, Is.EqualTo(steps));
        var generated = dec.ReadGenerated();
        for (int r = 0; r < batch; r++)
            Assert.That(generated[r], Is.EqualTo(eagerTokens.Select(t => t[r])), $"the device history of row {r}");
        if (onTestDevice)
        {
            Assert.That(ops, Is.All.EqualTo(ops[0]).And.All.GreaterThan(10), "the same ops every step");
            Assert.That(allocations[0], Is.Not.Empty);
            foreach (var a in allocations) Assert.That(a, Is.EqualTo(allocations[0]), "the same allocation sizes in the same order every step");
        }
    }

    [Test]
    public void AFullCacheIsAnErrorBeforeTheStep()
    {
        using var model = new Qwen2ForCausalLM(Config, seed: 2);
        using var dec = new Qwen2StaticDecoder(model, 2, maxLength: 7);
        Assert.That(() => dec.Step(), Throws.InvalidOperationException.With.Message.Contains("Prefill first"));
        dec.Prefill(Prompts); // lengths 5 and 2: row 0 has room for two tokens
        dec.Step();
        dec.Step();
        var tokens = dec.ReadTokens();
        var positions = dec.Cache.Positions.ToLongArray();
        Assert.That(positions, Is.EqualTo(new long[] { 7, 4 }));
        Assert.That(() => dec.Step(), Throws.InvalidOperationException.With.Message.Contains("row 0 holds 7 positions and cannot take 1 more (its maximum length is 7); no step was issued"));
        Assert.That(dec.Steps, Is.EqualTo(2));
        Assert.That(dec.ReadTokens(), Is.EqualTo(tokens), "nothing ran");
        Assert.That(dec.Cache.Positions.ToLongArray(), Is.EqualTo(positions));
        Assert.That(dec.Cache.HostLength(1), Is.EqualTo(4));
    }

    [Test]
    public void TheHistoryKeepsTheTokenOfTheStepThatFillsARow()
    {
        // Row 0 (5 tokens, max length 7) is full after two steps: the second step's token sits at position 7, one past
        // the cache, yet it was generated and must be read back (not row 1's first column).
        using var model = new Qwen2ForCausalLM(Config, seed: 2);
        using var dec = new Qwen2StaticDecoder(model, 2, maxLength: 7);
        dec.Prefill(Prompts);
        var first = dec.ReadTokens();
        dec.Step();
        var second = dec.ReadTokens();
        dec.Step();
        var third = dec.ReadTokens();
        var generated = dec.ReadGenerated();
        for (int r = 0; r < 2; r++)
            Assert.That(generated[r], Is.EqualTo(new[] { first[r], second[r], third[r] }), $"row {r}");
    }

    [Test]
    public void BadPromptsAreRefused()
    {
        using var model = new Qwen2ForCausalLM(Config, seed: 2);
        using var dec = new Qwen2StaticDecoder(model, 1, maxLength: 4);
        Assert.That(() => dec.Prefill(Prompts), Throws.ArgumentException.With.Message.Contains("2 prompts for a batch of 1"));
        Assert.That(() => dec.Prefill([[1, 2, 3, 4]]), Throws.ArgumentException.With.Message.Contains("prompt 0 has 4 tokens; the cache holds 4 positions"));
        Assert.That(() => dec.Prefill([[1, 61]]), Throws.ArgumentException.With.Message.Contains("token id 61 of prompt 0 is outside the vocabulary [0, 61)"));
        Assert.That(() => dec.Prefill([[]]), Throws.ArgumentException.With.Message.Contains("prompt 0 is empty"));
        Assert.That(() => new Qwen2StaticDecoder(model, 0, 4), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void AHostFedDecoderTakesPrefilledRowsAndTheHostsIds()
    {
        // The generator's use (KvCacheModel's static session): rows prefilled into plain caches, loaded; ids from the host.
        using var model = new Qwen2ForCausalLM(Config, seed: 2);
        Assert.That(() => new Qwen2StaticDecoder(model.Model, model.LmHead, 1, 8, keepLogits: false, greedy: false),
            Throws.ArgumentException.With.Message.Contains("must keep its logits"));
        using var dec = new Qwen2StaticDecoder(model.Model, model.LmHead, 2, 8, keepLogits: true, greedy: false);
        Assert.That(() => dec.Prefill(Prompts), Throws.InvalidOperationException.With.Message.Contains("prefilled elsewhere (Load)"));
        using var full = new global::Parrot.Nn.Layers.KvCache(Config.NumHiddenLayers, 8);
        using var short1 = new global::Parrot.Nn.Layers.KvCache(Config.NumHiddenLayers, 8);
        using (global::Parrot.Autograd.Graph.NoGrad())
        {
            model.Forward(Tensor.FromArray(new long[] { 1, 2, 3, 4, 5, 6, 7, 8 }, 1, 8), cache: full);
            model.Forward(Tensor.FromArray(new long[] { 1, 2 }, 1, 2), cache: short1);
        }
        Assert.That(() => dec.Load([short1]), Throws.ArgumentException.With.Message.Contains("1 caches for a batch of 2"));
        Assert.That(() => dec.Load([short1, full]), Throws.ArgumentException.With.Message.Contains("cache 1 holds 8 positions; the decoder holds 8"));
        dec.Load([short1, short1]);
        Assert.That(dec.Cache.Positions.ToLongArray(), Is.EqualTo(new long[] { 2, 2 }));
        Assert.That(() => dec.SetIds([1, 61]), Throws.ArgumentException.With.Message.Contains("token id 61 of row 1 is outside the vocabulary [0, 61)"));
        Assert.That(() => dec.SetIds([1]), Throws.ArgumentException.With.Message.Contains("1 ids for a batch of 2"));
        dec.SetIds([4, 9]);
        Assert.That(dec.ReadTokens(), Is.EqualTo(new[] { 4, 9 }));
        dec.Step();
        Assert.That(dec.ReadTokens(), Is.EqualTo(new[] { 4, 9 }), "a host-fed step writes no argmax into the ids");
        Assert.That(() => dec.ReadGenerated(), Throws.InvalidOperationException.With.Message.Contains("keeps no history"));
        using var greedy = new Qwen2StaticDecoder(model, 2, 8);
        Assert.That(() => greedy.Load([short1, short1]), Throws.ArgumentException.With.Message.Contains("needs the first ids of rows prefilled elsewhere"));
        using var wrong = Tensor.FromArray(new long[] { 1, 2, 3 }, 3);
        Assert.That(() => greedy.Load([short1, short1], wrong), Throws.ArgumentException.With.Message.Contains("must be int64 [2]"));
    }

    [Test]
    public void AGreedyDecoderLoadedWithPrefilledRowsEqualsOneThatPrefilledItself([Values(false, true)] bool onTestDevice)
    {
        // The generator's greedy static session: rows prefilled elsewhere and their first tokens loaded, the argmax taken
        // on the device each step; the host may overwrite the ids between steps (SetIds), and the history follows.
        const int steps = 5;
        using var model = new Qwen2ForCausalLM(Config, seed: 6);
        if (onTestDevice) model.To(TestDevice.Get());
        var device = model.Model.EmbedTokens.Weight.Value.Device;
        int maxLength = Prompts.Max(p => p.Length) + steps + 1;
        using var self = new Qwen2StaticDecoder(model, 2, maxLength);
        self.Prefill(Prompts);
        using var loaded = new Qwen2StaticDecoder(model.Model, model.LmHead, 2, maxLength, keepLogits: false, greedy: true);
        Assert.That(loaded.Logits, Is.Null, "no logits kept");
        var caches = Prompts.Select(p => new global::Parrot.Nn.Layers.KvCache(Config.NumHiddenLayers, p.Length)).ToArray();
        try
        {
            using (global::Parrot.Autograd.Graph.NoGrad())
                for (int r = 0; r < 2; r++) model.Forward(Tensor.FromArray(Prompts[r].Select(i => (long)i).ToArray(), device, 1, Prompts[r].Length), cache: caches[r]);
            using var first = Tensor.FromArray(self.ReadTokens().Select(i => (long)i).ToArray(), device, 2);
            loaded.Load(caches, first);
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
        }
        Assert.That(loaded.ReadTokens(), Is.EqualTo(self.ReadTokens()));
        for (int s = 1; s <= steps; s++)
        {
            if (s == 3)
            {
                // Both fed other ids at step 3: the host's write replaces the argmax, in the history too.
                self.Ids.CopyFrom(Tensor.FromArray(new long[] { 7, 8 }, device, 2));
                loaded.SetIds([7, 8]);
            }
            self.Step();
            loaded.Step();
            Assert.That(loaded.ReadTokens(), Is.EqualTo(self.ReadTokens()), $"step {s}");
        }
        var history = loaded.ReadGenerated();
        var want = self.ReadGenerated();
        Assert.That(history[0][2], Is.EqualTo(7), "the id the host fed at step 3");
        Assert.That(history[1][2], Is.EqualTo(8));
        for (int r = 0; r < 2; r++)
        {
            Assert.That(history[r], Has.Length.EqualTo(steps + 1));
            Assert.That(history[r].Where((_, i) => i != 2), Is.EqualTo(want[r].Where((_, i) => i != 2)), $"history of row {r} (the self-prefilled one still holds its own argmax at the overwritten slot)");
        }
    }

    private static void AssertLogits(Qwen2StaticDecoder dec, float[][] want, string what)
    {
        var got = dec.Logits!.ToFloatArray();
        int vocab = Config.VocabSize;
        for (int r = 0; r < want.Length; r++)
            Assert.That(got.AsSpan(r * vocab, vocab).ToArray(), Is.EqualTo(want[r]), $"logits of row {r}, {what}");
    }

    private static int ArgMax(float[] x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
