using System.Text.Json;

namespace Parrot.Parrot.Training;

/// <summary>What one optimizer step of Parrot training did.</summary>
/// <param name="Step">1-based step number.</param>
/// <param name="TotalSteps">Steps of the whole run.</param>
/// <param name="Loss">Mean next-token loss over every supervised token of the global batch.</param>
/// <param name="LearningRate">The rate this step used.</param>
/// <param name="GradNorm">Global gradient norm before clipping.</param>
/// <param name="Tokens">Real (unpadded) positions processed, visual tokens included.</param>
/// <param name="SupervisedTokens">Positions with a target.</param>
/// <param name="Seconds">Wall time of the step.</param>
/// <param name="LanguageLoss">Mean loss per language over the batch's samples that carry one.</param>
public sealed record ParrotStepMetrics(int Step, int TotalSteps, double Loss, double LearningRate, double GradNorm, long Tokens,
    long SupervisedTokens, double Seconds, IReadOnlyDictionary<string, double> LanguageLoss)
{
    /// <summary>Ranks that trained the step (1 without a launcher).</summary>
    public int WorldSize { get; init; } = 1;
    /// <summary>ZeRO stage of the step.</summary>
    public int Zero { get; init; }

    /// <summary>Tokens per second.</summary>
    public double TokensPerSecond => Seconds > 0 ? Tokens / Seconds : 0;

    /// <summary>One JSON line: step, loss, lr, grad_norm, tokens, tokens_per_s, seconds, world_size, zero, and loss_{lang} per language.</summary>
    public string ToJson()
    {
        var d = new Dictionary<string, object>
        {
            ["step"] = Step, ["loss"] = Loss, ["lr"] = LearningRate, ["grad_norm"] = GradNorm,
            ["tokens"] = Tokens, ["supervised_tokens"] = SupervisedTokens, ["tokens_per_s"] = TokensPerSecond, ["seconds"] = Seconds,
            ["world_size"] = WorldSize, ["zero"] = Zero,
        };
        foreach (var (lang, loss) in LanguageLoss.OrderBy(kv => kv.Key, StringComparer.Ordinal)) d["loss_" + lang] = loss;
        return JsonSerializer.Serialize(d);
    }
}

/// <summary>Training stopped: a non-finite loss or gradient, named by step and micro-batch.</summary>
public sealed class ParrotTrainingException(string message) : Exception(message);
