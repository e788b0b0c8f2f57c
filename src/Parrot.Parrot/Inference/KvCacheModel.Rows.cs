using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// Step-wise decoding where every sequence keeps its own KV cache (continuous batching): a prompt is
/// prefilled alone into a cache of its own; a decode step then runs any set of such sequences together,
/// one token each: the projections and the MLP see the whole batch as one matrix, while attention runs per
/// row over that row's own cache (no padding, so sequences may join and leave at any token boundary).
/// </summary>
internal sealed partial class KvCacheModel
{
    /// <summary>Decoder layers of the stack.</summary>
    internal int LayerCount => _stack.Layers.Count;

    /// <summary>
    /// Runs <paramref name="prompt"/> alone into a fresh cache; returns the logits of the next token.
    /// <paramref name="checkLength"/> gets the prompt length (image tokens included) before the model runs
    /// and returns how many new tokens the cache must make room for (or throws). <paramref name="cache"/>
    /// belongs to the caller.
    /// </summary>
    internal float[] PrefillRow(GenerationPrompt prompt, Func<int, int> checkLength, out KvCache cache, out int length)
    {
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        var embeds = _embed(prompt);
        length = embeds.Shape[1];
        if (length == 0) throw new ArgumentException("generate: the prompt is empty");
        int maxNew = checkLength(length);
        var c = new KvCache(LayerCount, length + Math.Max(maxNew, 1));
        try
        {
            var hidden = _stack.Forward(embeds, cache: c);
            var logits = _head(hidden.Narrow(1, length - 1, 1)).Value.ToFloatArray();
            cache = c;
            return logits;
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Appends <paramref name="tokens"/>[r] to the sequence in <paramref name="caches"/>[r], all rows in one
    /// pass; returns, per row, the logits [vocab] of the token after it.
    /// </summary>
    internal float[][] StepRows(IReadOnlyList<KvCache> caches, int[] tokens)
    {
        int b = tokens.Length;
        if (caches.Count != b || b == 0) throw new ArgumentException($"generate: {tokens.Length} tokens for {caches.Count} sequences");
        foreach (var id in tokens)
            if ((uint)id >= (uint)VocabSize) throw new ArgumentException($"generate: token id {id} is outside the vocabulary [0, {VocabSize})");
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        // The ids, then each row's position (its cache length): one copy to the device for both.
        var packed = new long[2 * b];
        int limit = 0;
        for (int r = 0; r < b; r++)
        {
            packed[r] = tokens[r];
            packed[b + r] = caches[r].Length(0);
            limit = Math.Max(limit, caches[r].Length(0) + 1);
        }
        var both = Tensor.FromArray(packed, _stack.EmbedTokens.Weight.Value.Device, 2, b);
        var h = _stack.EmbedTokens.Forward(both.Narrow(0, 0, 1).Reshape(b, 1));
        // Rows of the model's cached RoPE tables, gathered on the device at the positions copied with the ids.
        var ropeType = h.DType.IsHalfStorage() ? DType.F32 : h.DType;
        var (c, s) = _stack.Rotary.At(both.Narrow(0, 1, 1).Reshape(b, 1), h.Value.Device, ropeType, limit); // [B, 1, D]
        var cos = c.Unsqueeze(1);
        var sin = s.Unsqueeze(1);
        for (int i = 0; i < LayerCount; i++)
        {
            using var layerScope = TensorScope.Begin();
            var layer = _stack.Layers[i];
            var a = layer.SelfAttn;
            var x = layer.InputLayerNorm.Forward(h);
            var q = a.QProj.Forward(x).Reshape(b, 1, a.Heads, a.HeadDim).Transpose(1, 2).ApplyRope(cos, sin);
            var k = a.KProj.Forward(x).Reshape(b, 1, a.KvHeads, a.HeadDim).Transpose(1, 2).ApplyRope(cos, sin);
            var v = a.VProj.Forward(x).Reshape(b, 1, a.KvHeads, a.HeadDim).Transpose(1, 2);
            var rows = new Variable[b];
            for (int r = 0; r < b; r++)
            {
                int past = caches[r].Length(i);
                var (kAll, vAll) = caches[r].Append(i, k.Value.Narrow(0, r, 1), v.Value.Narrow(0, r, 1));
                rows[r] = Functional.ScaledDotProductAttention(q.Narrow(0, r, 1), new Variable(kAll), new Variable(vAll), causal: true, queryOffset: past);
            }
            var o = b == 1 ? rows[0] : Variable.Concat(0, rows);
            var h2 = h + a.OProj.Forward(o.Transpose(1, 2).Reshape(b, 1, a.Heads * a.HeadDim));
            h2 = h2 + layer.Mlp.Forward(layer.PostAttentionLayerNorm.Forward(h2));
            h = new Variable(layerScope.Keep(h2.Value));
        }
        var flat = _head(_stack.Norm.Forward(h)).Value.ToFloatArray();
        int vocab = flat.Length / b;
        var logits = new float[b][];
        for (int r = 0; r < b; r++) logits[r] = flat.AsSpan(r * vocab, vocab).ToArray();
        return logits;
    }
}
