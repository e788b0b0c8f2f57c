using Parrot.Tensors;

namespace Parrot.Nn;

/// <summary>
/// The greedy token of logits, taken on their device: the same id as the generator's host pick (TokenSampler's
/// argmax in float64), so that a decode may read back one id per row instead of the whole row of logits — or −1
/// (<see cref="NoNumber"/>) for a row that holds no number, which the host's rule would refuse.
/// </summary>
public static class GreedyToken
{
    /// <summary>
    /// The id of a row whose logits hold no number (every one NaN or −∞, as every row of a checkpoint with NaN weights):
    /// no token can be chosen. It is outside the vocabulary, so it must never be fed to an embedding or kept as a token:
    /// the host checks the ids it reads before the next step (the generator refuses the step).
    /// </summary>
    public const long NoNumber = -1;

    /// <summary>
    /// Per row of <paramref name="logits"/> [B, V] (any float dtype, on any device): the index of the largest value,
    /// the lowest on a tie (−0 = +0), with NaN smaller than every number, −∞ included; <see cref="NoNumber"/> (−1) where
    /// the row holds no number (NaN and −∞ only). Returns int64 [B] on the logits' device; no host read.
    /// </summary>
    /// <remarks>
    /// The host reads logits as float32 (<c>ToFloatArray</c>), so the values compared are the float32 ones: float64
    /// logits are rounded first (which may merge neighbours into a tie, as on the host; f32, bf16 and f16 are compared
    /// as they are). The rule is the backend's <see cref="ArgReduceOp.ArgMaxNumber"/> (plain
    /// <see cref="Tensor.ArgMax(int, bool)"/> lets NaN win, as PyTorch): one reduction over [B, V], the launches of an
    /// ArgMax; the −1 comes from the winner the reduction already holds, so saying "no number" costs nothing more.
    /// </remarks>
    public static Tensor Pick(Tensor logits)
    {
        Check(logits);
        if (logits.DType != DType.F64) return logits.ArgMaxNumber(1);
        using var rounded = logits.To(DType.F32);
        return rounded.ArgMaxNumber(1);
    }

    /// <summary>
    /// <see cref="Pick"/> written into <paramref name="ids"/> (int64 [B], any stride, on the logits' device): a decode
    /// step that keeps its next ids in a buffer of its own (a CUDA graph's) writes them there, without a copy after.
    /// A row with no number gets <see cref="NoNumber"/> there too: whoever feeds that buffer to the next step reads and
    /// checks it first (CUDA's index_select gives a zero row for −1, reading nothing; the CPU's throws).
    /// </summary>
    public static void PickInto(Tensor logits, Tensor ids)
    {
        Check(logits);
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.DType != DType.I64 || ids.Rank != 1 || ids.Dim(0) != logits.Dim(0) || ids.Device != logits.Device)
            throw new ArgumentException($"GreedyToken: ids {ids.ShapeString()} {ids.DType.Name()} on {ids.Device} must be int64 [{logits.Dim(0)}] on {logits.Device}");
        using var rounded = logits.DType == DType.F64 ? logits.To(DType.F32) : null;
        var x = rounded ?? logits;
        using var column = ids.Unsqueeze(1); // the backend writes the keep-dim shape [B, 1]
        x.Backend.ArgReduce(ArgReduceOp.ArgMaxNumber, x, 1, column);
    }

    private static void Check(Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.Rank != 2 || !logits.DType.IsFloat())
            throw new ArgumentException($"GreedyToken: logits {logits.ShapeString()} {logits.DType.Name()} must be float [rows, vocab]");
    }
}
