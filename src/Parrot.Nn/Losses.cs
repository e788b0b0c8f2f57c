using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn;

/// <summary>Loss functions.</summary>
public static class Losses
{
    /// <summary>The label that marks positions without a loss (PyTorch's and Hugging Face's −100).</summary>
    public const int IgnoreIndex = -100;

    /// <summary>
    /// Cross-entropy of logits [..., V] against ids [...] (ignored ids contribute nothing; mean over the rest). Targets on
    /// another device than the logits (e.g. labels made on the host) are copied to the logits' device.
    /// </summary>
    public static Variable CrossEntropy(Variable logits, Tensor targets, int ignoreIndex = IgnoreIndex, LossReduction reduction = LossReduction.Mean)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(targets);
        int v = logits.Shape[^1];
        if (!logits.Shape[..^1].SequenceEqual(targets.Shape))
            throw new ArgumentException($"CrossEntropy: logits {logits.Value.ShapeString()} and targets {targets.ShapeString()} disagree");
        // Labels made on the host go to the logits' device (a copy); the loss stays there until read.
        using var onDevice = targets.Device == logits.Value.Device ? null : targets.To(logits.Value.Device);
        using var flatT = (onDevice ?? targets).Reshape(-1);
        return Variable.CrossEntropy(logits.Reshape(-1, v), flatT, ignoreIndex, reduction);
    }

    /// <summary>
    /// The causal-LM loss: position t predicts label t+1. logits [B, T, V], labels [B, T] (ignore index
    /// where there is no target) → mean cross-entropy over the T−1 shifted positions that count.
    /// </summary>
    public static Variable NextTokenCrossEntropy(Variable logits, Tensor labels, int ignoreIndex = IgnoreIndex)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(labels);
        if (logits.Rank != 3 || labels.Rank != 2 || logits.Shape[0] != labels.Dim(0) || logits.Shape[1] != labels.Dim(1))
            throw new ArgumentException($"NextTokenCrossEntropy: logits {logits.Value.ShapeString()} must be [B, T, V] and labels {labels.ShapeString()} [B, T]");
        int t = labels.Dim(1);
        if (t < 2) throw new ArgumentException($"NextTokenCrossEntropy: sequences of length {t} have no next token");
        var shifted = logits.Narrow(1, 0, t - 1);
        using var next = labels.Narrow(1, 1, t - 1);
        return CrossEntropy(shifted, next, ignoreIndex);
    }
}
