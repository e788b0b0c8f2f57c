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

/// <summary>
/// An answer generator that can tell, without generating anything, how many positions a question's prompt takes in its
/// model's context: the harness then checks every question against <see cref="ContextLength"/> with the answer's token
/// limit before it asks any (<see cref="Evaluator.CheckContext"/>), instead of stopping at the first question that does
/// not fit, hours into a run.
/// </summary>
public interface IContextAwareGenerator
{
    /// <summary>The most positions (prompt and answer) the model takes: its max_position_embeddings.</summary>
    int ContextLength { get; }

    /// <summary>
    /// The positions the prompt of a question takes (<paramref name="prompt"/> as <see cref="AnswerRequest.Prompt"/>, with
    /// an image or not), an image's visual tokens included, counted as generation counts them; null when that cannot be
    /// told without encoding the image (generation then checks it as before).
    /// </summary>
    int? PromptLength(string prompt, bool withImage);

    /// <summary>
    /// Whether a question with this image (<see cref="AnswerRequest.Image"/>'s encoded bytes) is answered: false when
    /// <see cref="IAnswerGenerator.Answer"/> would refuse the image with a <see cref="Vision.ImageLoadException"/>, so the
    /// harness reports and skips the row instead of asking it. <see cref="Evaluator.CheckContext"/> asks it only of questions
    /// whose prompt does not fit, to leave out those the run would skip; it may decode the image (as answering does). The
    /// default takes every image, as a generator that never refuses one does.
    /// </summary>
    bool TakesImage(byte[] image) => true;
}

/// <summary>
/// Questions whose prompt and answer (the token limit) do not fit the model's context, found before any was asked
/// (<see cref="Evaluator.CheckContext"/>): how many, which (dataset, index, prompt length), the context and the limit.
/// </summary>
public sealed class QuestionsTooLongException : ArgumentException
{
    /// <summary>Questions named in the message.</summary>
    public const int Named = 5;

    /// <summary>Creates the exception; the message names the limit "max new tokens".</summary>
    public QuestionsTooLongException(IReadOnlyList<(string Dataset, string Index, int PromptLength)> questions, int contextLength, int maxNewTokens)
        : base(Describe(questions, contextLength, maxNewTokens, "max new tokens"))
    {
        Questions = questions; ContextLength = contextLength; MaxNewTokens = maxNewTokens;
    }

    /// <summary>The questions that do not fit, in the order they would have been asked.</summary>
    public IReadOnlyList<(string Dataset, string Index, int PromptLength)> Questions { get; }

    /// <summary>The model's context (max_position_embeddings).</summary>
    public int ContextLength { get; }

    /// <summary>The token limit of the answers.</summary>
    public int MaxNewTokens { get; }

    /// <summary>The message, naming the token limit as <paramref name="limitName"/> (the CLI: "--max-new-tokens").</summary>
    public string Describe(string limitName) => Describe(Questions, ContextLength, MaxNewTokens, limitName);

    private static string Describe(IReadOnlyList<(string Dataset, string Index, int PromptLength)> questions, int context, int maxNew, string limitName)
    {
        int n = questions.Count, longest = questions.Count == 0 ? 0 : questions.Max(q => q.PromptLength);
        var named = string.Join(", ", questions.Take(Named).Select(q => $"{q.Dataset} index {q.Index} ({q.PromptLength} tokens)"));
        string more = n > Named ? $" and {n - Named} more" : "";
        // The longest prompt of all is among these (any that fits is shorter than any that does not), so this fits them all.
        int fits = context - longest;
        string hint = fits >= 1
            ? $"lower {limitName} to {fits} or less to answer every question (the longest prompt has {longest} tokens)"
            : $"no {limitName} makes room: the longest prompt has {longest} tokens, the whole context or more";
        return $"{n} question{(n == 1 ? "" : "s")} do{(n == 1 ? "es" : "")} not fit the model's context of {context} tokens (max_position_embeddings) "
            + $"with {limitName} {maxNew}: {named}{more}; nothing was generated. {char.ToUpperInvariant(hint[0])}{hint[1..]}";
    }
}
