using Parrot.Tensors;

namespace Parrot.Nn;

/// <summary>
/// The greedy token of logits, taken on their device: the same id as the generator's host pick (TokenSampler's
/// argmax in float64), so that a decode may read back one id per row instead of the whole row of logits.
/// </summary>
public static class GreedyToken
{
    /// <summary>
    /// Per row of <paramref name="logits"/> [B, V] (any float dtype, on any device): the index of the largest value,
    /// the lowest on a tie (−0 = +0), with NaN smaller than every number, −∞ included (a row of NaN only gives 0).
    /// Returns int64 [B] on the logits' device; no host read.
    /// </summary>
    /// <remarks>
    /// The host reads logits as float32 (<c>ToFloatArray</c>), so the values compared are the float32 ones (float64 logits
    /// are rounded first, which may merge neighbours into a tie, as on the host; f32, bf16 and f16 are already exact).
    /// <see cref="Tensor.ArgMax(int, bool)"/> alone lets NaN win (as PyTorch), the host pick lets it lose. So the ArgMax
    /// runs over float64 keys: NaN → −∞ and −∞ → −1e300, below every float32 number but above the NaNs, which keeps the
    /// order of everything else (float32 widens exactly) and the ties where they were. A few elementwise passes over
    /// [B, V]: microseconds on a GPU, against the 0.6 MB per row a logits read moves and the host's scan.
    /// </remarks>
    public static Tensor Pick(Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.Rank != 2 || !logits.DType.IsFloat())
            throw new ArgumentException($"GreedyToken: logits {logits.ShapeString()} {logits.DType.Name()} must be float [rows, vocab]");
        using var scope = TensorScope.Begin();
        // float32, bf16 and f16 widen exactly; float64 goes through float32 first.
        var x = (logits.DType == DType.F64 ? logits.To(DType.F32) : logits).To(DType.F64);
        var low = Tensor.Scalar(-1e300, DType.F64, logits.Device);
        var never = Tensor.Scalar(double.NegativeInfinity, DType.F64, logits.Device);
        var keys = Tensor.Where(x.Ne(x), never, x.Maximum(low));
        return scope.Keep(keys.ArgMax(1));
    }
}
