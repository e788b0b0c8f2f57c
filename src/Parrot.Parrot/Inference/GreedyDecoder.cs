using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Model;
using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// Greedy decoding with the KV cache: the prompt is run once (prefill), then one token at a time; stops at
/// an end-of-sequence id unless told to ignore them. A shorthand for <see cref="Generator"/> with its
/// default (greedy) options.
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
        return Run(Generator.Wrap(model), new GenerationPrompt(prompt.ToArray()), maxNewTokens, eosIds, ignoreEos);
    }

    /// <summary>
    /// Greedy decoding of a Parrot model: the prompt <paramref name="prompt"/> (its image placeholder, if any,
    /// replaced by the visual tokens of <paramref name="imageFeatures"/> [1, 1+N, C] or [1+N, C], routed by the
    /// MoE) is run once into the KV cache, then one token at a time; stopping as in the Qwen2 overload.
    /// </summary>
    public static List<int> Generate(ParrotForCausalLM model, ParrotSample prompt, Tensor? imageFeatures, int maxNewTokens, IReadOnlyCollection<int> eosIds, bool ignoreEos = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        bool image = Array.IndexOf(prompt.Ids, ParrotSample.ImageToken) >= 0;
        Tensor? features = image ? imageFeatures : null;
        if (features is { Rank: 3 })
        {
            if (features.Dim(0) != 1) throw new ArgumentException($"generate: image features {features.ShapeString()} must hold one image");
            features = features.Select(0, 0);
        }
        return Run(Generator.Wrap(model), new GenerationPrompt(prompt.Ids, features), maxNewTokens, eosIds, ignoreEos);
    }

    private static List<int> Run(IAutoregressiveModel model, GenerationPrompt prompt, int maxNewTokens, IReadOnlyCollection<int> eosIds, bool ignoreEos)
    {
        ArgumentNullException.ThrowIfNull(eosIds);
        if (prompt.Ids.Length == 0) throw new ArgumentException("generate: the prompt is empty");
        if (maxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), "generate: max new tokens must be ≥ 0");
        var generator = new Generator(model, tokenizer: null, eosIds);
        var result = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = maxNewTokens, IgnoreEos = ignoreEos });
        return result.Tokens.ToList();
    }
}
