namespace Parrot.Parrot.Inference;

/// <summary>
/// How text is generated. The defaults are Parrot's evaluation protocol: greedy, at most 512 new tokens,
/// stopping at an end-of-sequence token. Sampling follows Hugging Face's order: repetition penalty on the
/// raw logits, then temperature, top-k and top-p, then a draw from the remaining distribution.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate (≥ 0). Default 512.</summary>
    public int MaxNewTokens { get; init; } = 512;

    /// <summary>
    /// Softmax temperature (0, or at least 1e-269: <see cref="MaxLogitScale"/>). 0, the default, is greedy decoding: the most likely token (the lowest id
    /// on a tie) after the repetition penalty, with no randomness; &gt; 0 samples.
    /// </summary>
    public double Temperature { get; init; }

    /// <summary>When sampling, keep only the <c>TopK</c> most likely tokens (ties at the boundary kept); 0, the default, keeps all.</summary>
    public int TopK { get; init; }

    /// <summary>When sampling, keep the smallest set of most likely tokens whose probabilities add up to at least this (0 &lt; p ≤ 1); 1, the default, keeps all.</summary>
    public double TopP { get; init; } = 1;

    /// <summary>
    /// Hugging Face's repetition penalty (CTRL): the logit of every token already in the prompt or the
    /// answer is divided by it when positive and multiplied by it when negative. 1, the default, is off.
    /// </summary>
    public double RepetitionPenalty { get; init; } = 1;

    /// <summary>Seed of the sampler: the same seed, prompt and model give the same output. Each prompt of a batch uses this seed on its own.</summary>
    public ulong Seed { get; init; }

    /// <summary>
    /// Texts that end the answer as soon as it contains one of them; the stop text and anything after it is
    /// not part of the answer and is never streamed, even when it spans several tokens.
    /// </summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Keep going past end-of-sequence tokens until <see cref="MaxNewTokens"/> (benchmarks).</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>
    /// The most a logit may be scaled by when it is sampled: by 1 / <see cref="Temperature"/>, and by the repetition
    /// penalty or its inverse (max(P, 1/P) / T). Logits are float32 (at most 3.4e38) scaled in float64 (at most 1.8e308),
    /// so under 1e269 every one stays finite; past it a row of finite logits could become +∞ and be refused as if the
    /// checkpoint held non-finite values. The least temperature without a penalty is its inverse, 1e-269.
    /// </summary>
    public const double MaxLogitScale = 1e269;

    /// <summary>Whether this samples (temperature &gt; 0) rather than decoding greedily.</summary>
    public bool IsSampling => Temperature > 0;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        if (MaxNewTokens < 0) throw new ArgumentException($"generation: max new tokens must be ≥ 0, got {MaxNewTokens}");
        if (!(Temperature >= 0) || double.IsInfinity(Temperature)) throw new ArgumentException($"generation: temperature must be a finite number ≥ 0 (0 = greedy), got {Temperature}");
        if (TopK < 0) throw new ArgumentException($"generation: top-k must be ≥ 0 (0 = off), got {TopK}");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"generation: top-p must be in (0, 1], got {TopP}");
        if (!(RepetitionPenalty > 0) || double.IsInfinity(RepetitionPenalty)) throw new ArgumentException($"generation: the repetition penalty must be a finite number > 0 (1 = off), got {RepetitionPenalty}");
        // A temperature of 5e-324 used to pass and fail the first draw with "a +∞ logit — the checkpoint or the inputs
        // hold non-finite values", blaming a sound model (in serve: a 500).
        double penaltyScale = Math.Max(RepetitionPenalty, 1 / RepetitionPenalty);
        if (penaltyScale > MaxLogitScale)
            throw new ArgumentException($"generation: the repetition penalty {RepetitionPenalty} is too extreme: logits scaled by it overflow (it must be within [1e-269, 1e269])");
        if (IsSampling && penaltyScale / Temperature > MaxLogitScale)
            throw new ArgumentException(RepetitionPenalty == 1
                ? $"generation: temperature {Temperature} is too small to sample with: logits divided by it overflow (the least is 1e-269; 0 decodes greedily)"
                : $"generation: temperature {Temperature} is too small to sample with under the repetition penalty {RepetitionPenalty}: logits scaled by them overflow (max(P, 1/P) / T must be at most 1e269; 0 decodes greedily)");
        if (StopStrings is null) throw new ArgumentException("generation: the stop strings are null");
        foreach (var s in StopStrings)
            if (string.IsNullOrEmpty(s)) throw new ArgumentException("generation: a stop string is empty");
    }
}
