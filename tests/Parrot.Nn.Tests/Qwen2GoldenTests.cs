using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Nn.Tests;

/// <summary>Qwen2 checkpoints with the real names load and reproduce an independent PyTorch implementation.</summary>
public class Qwen2GoldenTests
{
    private static string Dir(string variant) => FixturePaths.Get("qwen2", variant);

    internal static double RelL2(float[] a, float[] b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
        return Math.Sqrt(num / den);
    }

    [TestCase("f32-gqa-untied")]
    [TestCase("f32-mha-tied")]
    [TestCase("bf16-gqa-untied")]
    public void LogitsAndHiddenStatesMatchTheReferenceInFloat32(string variant)
    {
        using var model = Qwen2Loader.Load(Dir(variant), DType.F32);
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var ids = Npy.Read(Path.Combine(Dir(variant), "ids.npy"));
        var mask = Npy.Read(Path.Combine(Dir(variant), "mask.npy"));
        var hidden = model.Model.Forward(model.Model.EmbedTokens.Forward(ids), mask);
        var logits = model.LmHead(hidden);
        var goldLogits = Npy.Read(Path.Combine(Dir(variant), "logits.npy")).ToArray<float>();
        var goldHidden = Npy.Read(Path.Combine(Dir(variant), "hidden.npy")).ToArray<float>();
        // Padded query positions of row 1 are compared too: they attend to the real keys only.
        double eLogits = RelL2(logits.Value.ToFloatArray(), goldLogits), eHidden = RelL2(hidden.Value.ToFloatArray(), goldHidden);
        TestContext.Out.WriteLine($"{variant}: relative L2 error logits {eLogits:E2}, hidden {eHidden:E2}");
        Assert.That(eLogits, Is.LessThanOrEqualTo(1e-4));
        Assert.That(eHidden, Is.LessThanOrEqualTo(1e-4));
    }

    [Test]
    public void Bf16ComputeStaysCloseToPyTorchsBf16Compute()
    {
        using var model = Qwen2Loader.Load(Dir("bf16-gqa-untied"));
        Assert.That(model.Parameters().First().DType, Is.EqualTo(DType.BF16), "a bf16 checkpoint computes in bf16 unless asked otherwise");
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var ids = Npy.Read(Path.Combine(Dir("bf16-gqa-untied"), "ids.npy")).Narrow(0, 0, 1);
        var logits = model.Forward(ids).Value.ToFloatArray();
        var gold = Npy.Read(Path.Combine(Dir("bf16-gqa-untied"), "logits_bf16.npy")).ToArray<float>();
        double e = RelL2(logits, gold);
        TestContext.Out.WriteLine($"bf16 compute: relative L2 error vs PyTorch bf16 {e:E2}");
        Assert.That(e, Is.LessThanOrEqualTo(2e-2)); // bf16 keeps 8 bits; both sides round differently inside
    }

    [TestCase("f32-gqa-untied")]
    [TestCase("f32-mha-tied")]
    public void KvCacheDecodingGivesTheSameLogitsAsRecomputing(string variant)
    {
        using var model = Qwen2Loader.Load(Dir(variant), DType.F32);
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var ids = Npy.Read(Path.Combine(Dir(variant), "ids.npy")).Narrow(0, 0, 1).Contiguous();
        int t = ids.Dim(1);
        var full = model.Forward(ids).Value;
        using var cache = new KvCache(model.Config.NumHiddenLayers, 32);
        var prefill = model.Forward(ids.Narrow(1, 0, 5), cache: cache).Value;
        Assert.That(RelL2(prefill.ToFloatArray(), full.Narrow(1, 0, 5).ToFloatArray()), Is.LessThan(1e-6));
        for (int i = 5; i < t; i++)
        {
            var step = model.Forward(ids.Narrow(1, i, 1), cache: cache).Value;
            double e = RelL2(step.ToFloatArray(), full.Narrow(1, i, 1).ToFloatArray());
            Assert.That(e, Is.LessThan(1e-6), $"position {i}");
        }
        Assert.That(cache.Length(0), Is.EqualTo(t));
    }

    [TestCase("f32-gqa-untied")]
    [TestCase("f32-mha-tied")]
    public void PerRowCachesStepSequencesOfDifferentLengthsTogether(string variant)
    {
        // Three prefixes of the unpadded fixture row (2, 4 and 6 tokens), each prefilled alone into its own cache,
        // then stepped together one token per row per forward: every row's logits are PyTorch's at its own position.
        using var model = Qwen2Loader.Load(Dir(variant), DType.F32);
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var ids = Npy.Read(Path.Combine(Dir(variant), "ids.npy")).Narrow(0, 0, 1).Contiguous();
        var gold = Npy.Read(Path.Combine(Dir(variant), "logits.npy"));
        int t = ids.Dim(1), vocab = gold.Dim(2);
        var row0 = gold.Narrow(0, 0, 1).Contiguous().ToArray<float>();
        float[] Gold(int position) => row0.AsSpan(position * vocab, vocab).ToArray();
        int[] lengths = [2, 4, 6];
        var caches = lengths.Select(_ => new KvCache(model.Config.NumHiddenLayers, t)).ToArray();
        try
        {
            for (int r = 0; r < lengths.Length; r++)
            {
                var logits = model.Forward(ids.Narrow(1, 0, lengths[r]), cache: caches[r]).Value;
                Assert.That(RelL2(logits.Narrow(1, lengths[r] - 1, 1).ToFloatArray(), Gold(lengths[r] - 1)), Is.LessThan(1e-4), $"prefill {r}");
            }
            var rows = new KvCacheRows(caches);
            // Without positions there is no common past to start the rows from.
            var all = ids.ToLongArray();
            var next = Tensor.FromArray(lengths.Select(l => all[l]).ToArray(), lengths.Length, 1);
            Assert.That(() => model.Forward(next, cache: rows), Throws.InvalidOperationException.With.Message.Contains("different lengths"));
            Assert.That(caches.Select(c => c.Length(0)), Is.EqualTo(lengths), "the refused step stored nothing");
            for (int step = 0; lengths[^1] + step < t; step++)
            {
                var positions = lengths.Select(l => (long)(l + step)).ToArray();
                var tokens = positions.Select(p => all[p]).ToArray();
                var logits = model.Forward(Tensor.FromArray(tokens, lengths.Length, 1), positions: Tensor.FromArray(positions, lengths.Length, 1), cache: rows).Value;
                for (int r = 0; r < lengths.Length; r++)
                    Assert.That(RelL2(logits.Narrow(0, r, 1).ToFloatArray(), Gold((int)positions[r])), Is.LessThan(1e-4), $"step {step} row {r}");
            }
            Assert.That(caches.Select(c => c.Length(0)), Is.EqualTo(lengths.Select(l => l + t - lengths[^1])));
            // Rows are never padded, so a padding mask is refused (here over rows of one length, which have a past).
            using var e0 = new KvCache(model.Config.NumHiddenLayers, 4);
            using var e1 = new KvCache(model.Config.NumHiddenLayers, 4);
            var two = Tensor.FromArray(new long[] { 1, 2 }, 2, 1);
            Assert.That(() => model.Forward(two, Tensor.Ones([2, 1], DType.I64), cache: new KvCacheRows([e0, e1])), Throws.ArgumentException.With.Message.Contains("never padded"));
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
        }
    }

    [Test]
    public void BadModelDirectoriesAreClearErrors()
    {
        var dir = Path.Combine(Path.GetTempPath(), "parrot-bad-model-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            Assert.That(() => Qwen2Loader.Load(dir), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("config.json"));
            File.WriteAllText(Path.Combine(dir, "config.json"), "{\"model_type\": \"llama\"}");
            Assert.That(() => Qwen2Loader.Load(dir), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("llama"));
            File.Copy(Path.Combine(Dir("f32-gqa-untied"), "config.json"), Path.Combine(dir, "config.json"), true);
            Assert.That(() => Qwen2Loader.Load(dir), Throws.Exception.With.Message.Contain(dir));
            // A checkpoint of another shape: every mismatch is named.
            File.Copy(Path.Combine(Dir("f32-mha-tied"), "model.safetensors"), Path.Combine(dir, "model.safetensors"));
            Assert.That(() => Qwen2Loader.Load(dir), Throws.InstanceOf<StateDictException>().With.Message.Contain("lm_head.weight"));
        }
        finally { Directory.Delete(dir, true); }
    }
}
