using Parrot.Autograd;
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
    /// belongs to the caller; <paramref name="name"/> names the prompt in errors.
    /// </summary>
    internal float[] PrefillRow(GenerationPrompt prompt, Func<int, int> checkLength, out KvCache cache, out int length, string name = "the prompt")
    {
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        var embeds = _embed(prompt);
        length = embeds.Shape[1];
        if (length == 0) throw new ArgumentException($"generate: {name} is empty");
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
    /// pass; returns, per row, the logits [vocab] of the token after it. One sequence alone takes the plain
    /// cached decode step, exactly what a single-prompt generation has always run.
    /// </summary>
    internal float[][] StepRows(IReadOnlyList<KvCache> caches, int[] tokens)
    {
        int b = tokens.Length;
        if (caches.Count != b || b == 0) throw new ArgumentException($"generate: {tokens.Length} tokens for {caches.Count} sequences");
        foreach (var id in tokens)
            if ((uint)id >= (uint)VocabSize) throw new ArgumentException($"generate: token id {id} is outside the vocabulary [0, {VocabSize})");
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        var device = _stack.EmbedTokens.Weight.Value.Device;
        Variable h;
        if (b == 1)
        {
            // Alone: the plain cached decode step (its RoPE rows are views of the model's tables at the cache length).
            h = _stack.Forward(_stack.EmbedTokens.Forward(Tensor.FromArray(new long[] { tokens[0] }, device, 1, 1)), cache: caches[0]);
        }
        else
        {
            // The ids, then each row's position (its cache length): one copy to the device for both.
            var packed = new long[2 * b];
            int limit = 0;
            for (int r = 0; r < b; r++)
            {
                packed[r] = tokens[r];
                packed[b + r] = caches[r].Length(0);
                limit = Math.Max(limit, caches[r].Length(0) + 1);
            }
            var both = Tensor.FromArray(packed, device, 2, b);
            var embeds = _stack.EmbedTokens.Forward(both.Narrow(0, 0, 1).Reshape(b, 1));
            // The positions pick their rows of the model's cached RoPE tables on the device (below the limit: no read-back).
            h = _stack.Forward(embeds, positions: both.Narrow(0, 1, 1).Reshape(b, 1), cache: new KvCacheRows(caches), positionLimit: limit);
        }
        var flat = _head(h).Value.ToFloatArray();
        int vocab = flat.Length / b;
        var logits = new float[b][];
        for (int r = 0; r < b; r++) logits[r] = flat.AsSpan(r * vocab, vocab).ToArray();
        return logits;
    }
}
