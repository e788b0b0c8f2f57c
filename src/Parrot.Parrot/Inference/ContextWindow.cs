namespace Parrot.Parrot.Inference;

/// <summary>A prompt does not fit the model's context with the tokens asked for.</summary>
public sealed class PromptTooLongException : ArgumentException
{
    /// <summary>Creates the exception.</summary>
    public PromptTooLongException(string message) : base(message) { }
}

/// <summary>
/// The one rule every entry point applies to a prompt and the model's context (max_position_embeddings): serve's
/// (<see cref="ContinuousBatch.Join"/>), generate, chat, eval and the <see cref="ParrotModel"/> API (<see cref="Generator"/>
/// over the KV cache), and forward. Past the context the model has no trained positions: its RoPE tables would simply be
/// extended and the answer would be silent garbage, so a request that does not fit is refused before anything runs.
/// </summary>
public static class ContextWindow
{
    /// <summary>
    /// The new tokens a prompt of <paramref name="promptTokens"/> positions (an image's visual tokens included) may have:
    /// <paramref name="maxNewTokens"/> when the prompt and that many fit in <paramref name="contextLength"/>; null: as many
    /// as the context leaves. Throws when the prompt leaves no room for one token, or the tokens asked for do not fit.
    /// </summary>
    /// <exception cref="PromptTooLongException">The prompt with the answer would not fit the context.</exception>
    public static int Room(int contextLength, int promptTokens, int? maxNewTokens)
    {
        int room = contextLength - promptTokens;
        if (room < 1 || maxNewTokens is int m && m > room)
            throw new PromptTooLongException($"this model's maximum context length is {contextLength} tokens; the prompt has {promptTokens} tokens"
                + (maxNewTokens is int mm ? $" and {mm} more were asked for (max new tokens), {(long)promptTokens + mm} in all" : ", which leaves no room for an answer"));
        return maxNewTokens ?? room;
    }

    /// <summary>A prompt run without generating (forward's logits): it must fit <paramref name="contextLength"/>.</summary>
    /// <exception cref="PromptTooLongException">The prompt is longer than the context.</exception>
    public static void CheckPrompt(int contextLength, int promptTokens)
    {
        if (promptTokens > contextLength)
            throw new PromptTooLongException($"this model's maximum context length is {contextLength} tokens; the prompt has {promptTokens} tokens");
    }
}
