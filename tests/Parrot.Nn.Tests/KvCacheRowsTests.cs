using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;

namespace Parrot.Nn.Tests;

/// <summary>Per-row KV caches (<see cref="KvCacheRows"/>) when a step cannot be taken.</summary>
public class KvCacheRowsTests
{
    private static readonly Qwen2Config Tiny = new()
    {
        VocabSize = 50, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        RopeTheta = 10000, RmsNormEps = 1e-6,
    };

    [Test]
    public void AFullRowRefusesTheStepBeforeAnyRowStoresIt()
    {
        using var model = new Qwen2ForCausalLM(Tiny, seed: 3);
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        using var roomy = new KvCache(Tiny.NumHiddenLayers, 8);
        using var full = new KvCache(Tiny.NumHiddenLayers, 3);
        model.Forward(Tensor.FromArray(new long[] { 1, 2 }, 1, 2), cache: roomy);
        model.Forward(Tensor.FromArray(new long[] { 3, 4, 5 }, 1, 3), cache: full);
        var step = () => model.Forward(Tensor.FromArray(new long[] { 6, 7 }, 2, 1), positions: Tensor.FromArray(new long[] { 2, 3 }, 2, 1),
            cache: new KvCacheRows([roomy, full]));
        Assert.That(step, Throws.InvalidOperationException.With.Message.Contains("row 1 holds 3 positions and cannot take 1 more"));
        // Row 0 came first and had room, yet no layer of it stored the refused step: its layers still agree.
        for (int layer = 0; layer < Tiny.NumHiddenLayers; layer++)
        {
            Assert.That(roomy.Length(layer), Is.EqualTo(2), $"row 0, layer {layer}");
            Assert.That(full.Length(layer), Is.EqualTo(3), $"row 1, layer {layer}");
        }
        // Row 0 alone steps on from where it was, giving what a plain cached step gives.
        using var alone = new KvCache(Tiny.NumHiddenLayers, 8);
        model.Forward(Tensor.FromArray(new long[] { 1, 2 }, 1, 2), cache: alone);
        var expected = model.Forward(Tensor.FromArray(new long[] { 6 }, 1, 1), cache: alone).Value.ToFloatArray();
        var got = model.Forward(Tensor.FromArray(new long[] { 6 }, 1, 1), positions: Tensor.FromArray(new long[] { 2 }, 1, 1),
            cache: new KvCacheRows([roomy])).Value.ToFloatArray();
        Assert.That(got, Is.EqualTo(expected));
    }
}
