using Parrot.Nn.Models.Qwen2;

namespace Parrot.Parrot.Inference;

/// <summary>
/// Greedy decoding of a Qwen2 language model with the KV cache: the prompt is run once (prefill), then
/// one token at a time; stops at an end-of-sequence id unless told to ignore them. A shorthand for
/// <see cref="Generator"/> with its default (greedy) options.
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
        var generator = new Generator(Generator.Wrap(model), tokenizer: null, eosIds);
        var result = generator.Generate(new GenerationPrompt(prompt.ToArray()), new GenerationOptions { MaxNewTokens = maxNewTokens, IgnoreEos = ignoreEos });
        return result.Tokens.ToList();
    }
}
