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
        // Every position keeps its logits row; the targets move instead: position t gets label t+1 and the last
        // position, which has no next token, the ignore index. The loss and the logits' gradient are those of the
        // T−1 shifted rows (an ignored row adds nothing and gets a zero gradient), but the logits [B, T, V] stay one
        // contiguous block: narrowing them to T−1 rows cost a copy of all the logits forward (the reshape of the
        // view) and a zeroed [B, T, V] plus a copy backward (the narrow's gradient) — at Qwen2-0.5B's vocabulary
        // 1.2 GB each for a batch of 8×512. The mean's sum now runs over B·T rows with zeros among them, so the
        // loss may differ from the narrowed form's by a rounding of that sum; the gradients do not change.
        var dev = logits.Value.Device;
        using var onDevice = labels.Device == dev ? null : labels.To(dev);
        using var next = Tensor.Full([labels.Dim(0), t], ignoreIndex, DType.I64, dev);
        using (var dst = next.Narrow(1, 0, t - 1))
        using (var src = (onDevice ?? labels).Narrow(1, 1, t - 1))
            dst.CopyFrom(src);
        return CrossEntropy(logits, next, ignoreIndex);
    }
}
