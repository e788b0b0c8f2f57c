using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Model;
using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// Greedy decoding of a Qwen2 language model with the KV cache: the prompt is run once (prefill), then
/// one token at a time; stops at an end-of-sequence id unless told to ignore them.
/// </summary>
public static class GreedyDecoder
{
    /// <summary>
    /// Generates up to <paramref name="maxNewTokens"/> ids after <paramref name="prompt"/>. With
    /// <paramref name="ignoreEos"/> exactly that many are produced; otherwise generation stops after the first
    /// id in <paramref name="eosIds"/> (which is included in the result).
    /// </summary>
    public static List<int> Generate(Qwen2ForCausalLM model, IReadOnlyList<int> prompt, int maxNewTokens, IReadOnlyCollection<int> eosIds, bool ignoreEos = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Count == 0) throw new ArgumentException("generate: the prompt is empty");
        if (maxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), "generate: max new tokens must be ≥ 0");
        foreach (var id in prompt)
            if (id < 0 || id >= model.Config.VocabSize) throw new ArgumentException($"generate: token id {id} is outside the vocabulary [0, {model.Config.VocabSize})");
        var result = new List<int>(maxNewTokens);
        if (maxNewTokens == 0) return result;
        using var noGrad = Graph.NoGrad();
        using var cache = new KvCache(model.Config.NumHiddenLayers, prompt.Count + maxNewTokens);
        using (var scope = TensorScope.Begin())
        {
            // Only the last position's logits choose the next token: skip the lm_head for the others (a quarter
            // of a 512-token prefill of Qwen2-0.5B).
            var ids = Tensor.FromArray(prompt.Select(i => (long)i).ToArray(), 1, prompt.Count);
            var hidden = model.Model.Forward(model.Model.EmbedTokens.Forward(ids), cache: cache);
            result.Add(ArgMaxLast(model.LmHead(hidden.Value.Narrow(1, prompt.Count - 1, 1)).Value));
        }
        while (result.Count < maxNewTokens && (ignoreEos || !eosIds.Contains(result[^1])))
        {
            using var scope = TensorScope.Begin();
            var ids = Tensor.FromArray(new long[] { result[^1] }, 1, 1);
            result.Add(ArgMaxLast(model.Forward(ids, cache: cache).Value));
        }
        return result;
    }

    /// <summary>
    /// Greedy decoding of a Parrot model: the prompt <paramref name="prompt"/> (its image placeholder, if any,
    /// replaced by the visual tokens of <paramref name="imageFeatures"/>, routed by the MoE) is run once into the
    /// KV cache, then one token at a time; stopping as in the Qwen2 overload.
    /// </summary>
    public static List<int> Generate(ParrotForCausalLM model, ParrotSample prompt, Tensor? imageFeatures, int maxNewTokens, IReadOnlyCollection<int> eosIds, bool ignoreEos = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(eosIds);
        if (prompt.Ids.Length == 0) throw new ArgumentException("generate: the prompt is empty");
        if (maxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), "generate: max new tokens must be ≥ 0");
        var result = new List<int>(maxNewTokens);
        if (maxNewTokens == 0) return result;
        bool image = Array.IndexOf(prompt.Ids, ParrotSample.ImageToken) >= 0;
        int visual = image && imageFeatures is not null
            ? (model.Config.MmVisionSelectFeature == "patch" ? imageFeatures.Dim(1) - 1 : imageFeatures.Dim(1)) : 0;
        int promptLength = prompt.Ids.Length - (image ? 1 : 0) + visual;
        using var noGrad = Graph.NoGrad();
        using var cache = new KvCache(model.Config.Text.NumHiddenLayers, promptLength + maxNewTokens);
        using (var scope = TensorScope.Begin())
            result.Add(ArgMax(model.Prefill(prompt, imageFeatures, cache)));
        while (result.Count < maxNewTokens && (ignoreEos || !eosIds.Contains(result[^1])))
        {
            using var scope = TensorScope.Begin();
            result.Add(ArgMax(model.DecodeStep(result[^1], cache)));
        }
        return result;
    }

    /// <summary>Argmax of logits [V] (lowest id on ties).</summary>
    private static int ArgMax(Tensor logits)
    {
        using var am = logits.ArgMax(-1);
        return (int)am.ToLongArray()[0];
    }

    /// <summary>Argmax over the vocabulary at the last position of logits [1, T, V] (lowest id on ties).</summary>
    private static int ArgMaxLast(Tensor logits)
    {
        using var last = logits.Select(1, logits.Dim(1) - 1);
        using var am = last.ArgMax(-1);
        return (int)am.ToLongArray()[0];
    }
}
