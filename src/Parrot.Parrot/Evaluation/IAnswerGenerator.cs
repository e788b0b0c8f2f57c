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

/// <summary>
/// An <see cref="IAnswerGenerator"/> that can also answer several questions as one batch, each answer
/// exactly what <see cref="IAnswerGenerator.Answer"/> gives for it alone; the harness then asks up to
/// <see cref="EvaluationOptions.BatchSize"/> questions at a time.
/// </summary>
public interface IBatchAnswerGenerator : IAnswerGenerator
{
    /// <summary>Answer i is the answer to request i.</summary>
    /// <exception cref="Vision.ImageLoadException">An image cannot be decoded (the harness then asks the batch's questions one by one).</exception>
    IReadOnlyList<string> Answer(IReadOnlyList<AnswerRequest> requests);
}
