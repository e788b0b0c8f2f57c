namespace Parrot.Parrot.Evaluation;

/// <summary>One question for a model under evaluation.</summary>
/// <param name="Image">The image as encoded bytes (PNG, JPEG, …, as the benchmark stores it), or null for a text-only question.</param>
/// <param name="Prompt">The benchmark prompt (<see cref="MultipleChoiceQuestion.Prompt"/>), without chat template or image placeholder.</param>
/// <param name="Language">The question's language code (en, zh, pt, ar, tr, ru).</param>
/// <param name="MaxNewTokens">The most tokens to generate.</param>
public sealed record AnswerRequest(byte[]? Image, string Prompt, string Language, int MaxNewTokens);

/// <summary>
/// The model side of the evaluation harness: answers one question with greedy decoding and returns the
/// generated text (special tokens left out, surrounding whitespace stripped). Implementations need not be
/// thread-safe: the harness asks one question at a time.
/// </summary>
public interface IAnswerGenerator
{
    /// <summary>The model's answer to <paramref name="request"/>.</summary>
    /// <exception cref="Vision.ImageLoadException">The image cannot be decoded (the harness reports the row and goes on).</exception>
    string Answer(AnswerRequest request);
}
