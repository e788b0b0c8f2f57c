using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// Inference with a KV cache leaves each layer's residual add (h + mlp) pending for the next norm, which makes it in
/// the same op (Tensor.AddRmsNorm, one kernel on a GPU): one op fewer per layer in a decode step, and the logits of
/// the structure it replaced (each layer adding its own MLP output, then a plain norm) bit for bit.
/// </summary>
public class ResidualStreamTests
{
    private static readonly Qwen2Config Tiny = new()
    {
        VocabSize = 50, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 3, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        RopeTheta = 10000, RmsNormEps = 1e-6,
    };

    private static readonly long[] Prompt = [3, 14, 15, 9, 2];
    private static readonly long[] Tokens = [26, 5, 35, 8];

    /// <summary>
    /// Logits [1, T, vocab] through the structure decode had before the residual fusion: every layer made whole by its
    /// own Forward (attention, the fused post-attention add + norm, MLP, then h + mlp as an op of its own) and a plain
    /// final norm. Written out here, so the reference does not go through <see cref="Qwen2Model.ForwardWithCache"/>.
    /// </summary>
    private static Tensor PreviousStructure(Qwen2ForCausalLM model, long[] ids, KvCache cache)
    {
        var m = model.Model;
        var device = m.EmbedTokens.Weight.Value.Device;
        using var scope = TensorScope.Begin();
        var h = m.EmbedTokens.Forward(Tensor.FromArray(ids, device, 1, ids.Length));
        var ropeType = h.DType.IsHalfStorage() ? DType.F32 : h.DType;
        var rope = m.Rotary.Range(cache.Length(0), ids.Length, device, ropeType);
        for (int i = 0; i < m.Layers.Count; i++)
        {
            using var layerScope = TensorScope.Begin();
            h = new Variable(layerScope.Keep(m.Layers[i].Forward(h, rope, null, cache, i).Value));
        }
        return scope.Keep(model.LmHead(m.Norm.Forward(h)).Value);
    }

    /// <summary>
    /// Logits [1, T, vocab] through decode's structure before the norms took their products along: the stream's adds
    /// fused with the norms (<see cref="ResidualStream.Normalize"/>), but the packed q/k/v projection, the gate and up
    /// products and SwiGLU run apart from them (Attention.Forward on the normed input, GatedSiluMlp.Forward). Written
    /// out here, so the reference goes through neither <see cref="Qwen2Model.ForwardWithCache"/> nor the fused ops.
    /// </summary>
    private static Tensor ProductsApart(Qwen2ForCausalLM model, long[] ids, KvCache cache)
    {
        var m = model.Model;
        var device = m.EmbedTokens.Weight.Value.Device;
        using var scope = TensorScope.Begin();
        var embeds = m.EmbedTokens.Forward(Tensor.FromArray(ids, device, 1, ids.Length)).Value;
        var ropeType = embeds.DType.IsHalfStorage() ? DType.F32 : embeds.DType;
        var rope = m.Rotary.Range(cache.Length(0), ids.Length, device, ropeType);
        var x = new ResidualStream(embeds);
        for (int i = 0; i < m.Layers.Count; i++)
        {
            var layer = m.Layers[i];
            var (h, normed) = x.Normalize(layer.InputLayerNorm);
            var a = layer.SelfAttn.Forward(new Variable(normed), causal: true, rope, null, cache, i).Value;
            var (h2, normed2) = new ResidualStream(h, a).Normalize(layer.PostAttentionLayerNorm);
            x = new ResidualStream(h2, layer.Mlp.Forward(new Variable(normed2)).Value);
        }
        return scope.Keep(model.LmHead(new Variable(x.Normalize(m.Norm).Normalized)).Value);
    }

    [Test]
    public void DecodeLogitsEqualTheProductsApartBitForBit([Values(DType.F32, DType.BF16)] DType dtype, [Values] bool onDevice)
    {
        // The norm → q/k/v and norm → gate/up fusion (Tensor.AddRmsNormLinear / AddRmsNormSwiGlu) changes no bit of the
        // logits, on the CPU and on the test device (whose backend op runs the CPU kernels in sequence).
        DecodeEqualsBitForBit(dtype, onDevice, ProductsApart);
    }

    private static Qwen2ForCausalLM Model(DType dtype, bool onDevice)
    {
        var model = new Qwen2ForCausalLM(Tiny, seed: 23, dtype);
        // Norm weights other than ones, so that a norm applied with the wrong weight (or not at all) shows.
        foreach (var (name, p) in model.NamedParameters())
            if (name.EndsWith("norm.weight", StringComparison.Ordinal))
                using (TensorScope.Begin()) p.Value.CopyFrom(Tensor.Uniform(p.Shape.ToArray(), (ulong)name.Length, 0.5, 1.5).To(dtype));
        if (onDevice) model.To(TestDevice.Get());
        return model;
    }

    [Test]
    public void DecodeLogitsEqualThePreviousStructureBitForBit([Values(DType.F32, DType.BF16)] DType dtype, [Values] bool onDevice)
    {
        DecodeEqualsBitForBit(dtype, onDevice, PreviousStructure);
    }

    /// <summary>
    /// The model's KV-cache prefill of <see cref="Prompt"/> and decode of <see cref="Tokens"/> (ForwardWithCache) give the
    /// bits of <paramref name="reference"/> (a structure written out in this file) on a cache of its own, step by step.
    /// </summary>
    private static void DecodeEqualsBitForBit(DType dtype, bool onDevice, Func<Qwen2ForCausalLM, long[], KvCache, Tensor> reference)
    {
        using var model = Model(dtype, onDevice);
        DecodeEqualsBitForBit(model, reference);
    }

    private static void DecodeEqualsBitForBit(Qwen2ForCausalLM model, Func<Qwen2ForCausalLM, long[], KvCache, Tensor> reference)
    {
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        using var cache = new KvCache(Tiny.NumHiddenLayers, 16);
        using var referenceCache = new KvCache(Tiny.NumHiddenLayers, 16);
        var got = model.Forward(Tensor.FromArray(Prompt, 1, Prompt.Length), cache: cache).Value.ToFloatArray();
        Assert.That(got, Is.EqualTo(reference(model, Prompt, referenceCache).ToFloatArray()), "prefill");
        foreach (var t in Tokens)
        {
            got = model.Forward(Tensor.FromArray(new[] { t }, 1, 1), cache: cache).Value.ToFloatArray();
            Assert.That(got, Is.EqualTo(reference(model, [t], referenceCache).ToFloatArray()), $"decode step of token {t}");
        }
    }

    /// <summary>
    /// A bf16 model whose norms were kept in float32: the norms' outputs promote to float32 (Hugging Face's
    /// Qwen2RMSNorm does the same), which the bf16 products do not take (PyTorch without autocast refuses them too). The
    /// fused decode ops fall back to the ops apart, so the cached decode fails with the same clear error as the training
    /// forward and the structures before the fusion, naming both dtypes, never a crash or a silently different product.
    /// </summary>
    [Test]
    public void MixedDtypesFailTheSameClearWayOnEveryPath([Values] bool onDevice)
    {
        using var model = Model(DType.F32, onDevice: false);
        model.CastParameters(DType.BF16);
        model.Model.Norm.CastParameters(DType.F32);
        foreach (var layer in model.Model.Layers)
        {
            layer.InputLayerNorm.CastParameters(DType.F32);
            layer.PostAttentionLayerNorm.CastParameters(DType.F32);
        }
        if (onDevice) model.To(TestDevice.Get());
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        var ids = Tensor.FromArray(Prompt, 1, Prompt.Length);
        var errors = new List<string>();
        void Fails(string path, Action run) =>
            errors.Add(Assert.Throws<ArgumentException>(() => run(), path)!.Message);
        Fails("forward", () => model.Forward(ids));
        Fails("cached decode", () => { using var c = new KvCache(Tiny.NumHiddenLayers, 16); model.Forward(ids, cache: c); });
        Fails("products apart", () => { using var c = new KvCache(Tiny.NumHiddenLayers, 16); ProductsApart(model, Prompt, c); });
        Fails("previous structure", () => { using var c = new KvCache(Tiny.NumHiddenLayers, 16); PreviousStructure(model, Prompt, c); });
        foreach (var e in errors) Assert.That(e, Does.Contain("float32").And.Contain("bfloat16").And.Contain("different dtypes"));
    }

    [Test]
    public void DecodeLogitsMatchTheFullForward()
    {
        // As Qwen2GoldenTests' KV-cache check (rel. L2 < 1e-6 in float32), here with norm weights other than ones.
        using var model = Model(DType.F32, onDevice: false);
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        long[] all = [.. Prompt, .. Tokens];
        var full = model.Forward(Tensor.FromArray(all, 1, all.Length)).Value;
        using var cache = new KvCache(Tiny.NumHiddenLayers, 16);
        model.Forward(Tensor.FromArray(Prompt, 1, Prompt.Length), cache: cache);
        for (int i = Prompt.Length; i < all.Length; i++)
        {
            var step = model.Forward(Tensor.FromArray(new[] { all[i] }, 1, 1), cache: cache).Value.ToFloatArray();
            var want = full.Narrow(1, i, 1).ToFloatArray();
            double num = 0, den = 0;
            for (int j = 0; j < want.Length; j++) { num += Math.Pow(step[j] - want[j], 2); den += Math.Pow(want[j], 2); }
            Assert.That(Math.Sqrt(num / den), Is.LessThan(1e-6), $"position {i}");
        }
    }

    [Test]
    public void ADecodeStepOnTheDeviceRunsFewerOpsPerLayer([Values(DType.F32, DType.BF16)] DType dtype)
    {
        using var model = Model(dtype, onDevice: true);
        using var ng = Graph.NoGrad();
        using var cache = new KvCache(Tiny.NumHiddenLayers, 16);
        using var reference = new KvCache(Tiny.NumHiddenLayers, 16);
        using (TensorScope.Begin())
        {
            model.Forward(Tensor.FromArray(Prompt, 1, Prompt.Length), cache: cache);
            PreviousStructure(model, Prompt, reference);
        }
        var dev = TestDevice.Backend;
        List<string> Log(Action step)
        {
            using var s = TensorScope.Begin();
            dev.OpLog = [];
            try { step(); return dev.OpLog; }
            finally { dev.OpLog = null; }
        }
        var now = Log(() => model.Forward(Tensor.FromArray(new long[] { 7 }, 1, 1), cache: cache));
        var before = Log(() => PreviousStructure(model, [7], reference));
        int layers = Tiny.NumHiddenLayers;
        TestContext.Out.WriteLine($"{dtype}: {now.Count} ops per decode step ({layers} layers), {before.Count} before");
        // Per layer but the first, the input norm's add, norm, q/k/v product and bias add are one op (3 fewer, where the
        // structure before ran a plain norm, the product and the bias add); and the layers' own residual adds are gone
        // (the final norm makes the last one).
        Assert.That(now.Count, Is.EqualTo(before.Count - 2 * (layers - 1) - layers));
        int Count(List<string> log, string op) => log.Count(o => o == op);
        // Before: each layer's input norm and the final norm were RmsNorm, each layer added its MLP output itself; the
        // post-attention norm takes the attention's add and runs the gate and up products and SwiGLU (one op).
        Assert.That(Count(before, "RmsNorm"), Is.EqualTo(layers + 1));
        Assert.That(Count(before, "AddRmsNormLinear"), Is.EqualTo(layers));
        Assert.That(Count(before, "AddRmsNorm"), Is.EqualTo(0));
        // Now: only the first layer's input norm has nothing to add (the embeddings); every other norm adds, and all
        // but the final one take their product along.
        Assert.That(Count(now, "RmsNorm"), Is.EqualTo(1));
        Assert.That(Count(now, "AddRmsNormLinear"), Is.EqualTo(2 * layers - 1));
        Assert.That(Count(now, "AddRmsNorm"), Is.EqualTo(1), "the final norm");
        Assert.That(Count(now, "Binary Add"), Is.EqualTo(Count(before, "Binary Add") - layers - (layers - 1)), "the residual adds and the fused q/k/v bias adds are gone");
        Assert.That(Count(now, "SwiGlu"), Is.EqualTo(0), "inside the fused op");
    }
}
