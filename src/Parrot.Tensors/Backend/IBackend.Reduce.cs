namespace Parrot.Tensors;

public partial interface IBackend
{
    /// <summary>
    /// y = op over <paramref name="axes"/> of x. y has x's rank with size 1 on every reduced axis (the
    /// keep-dim shape) and any strides. <paramref name="axes"/> are distinct and in 0..rank-1; an empty list
    /// reduces nothing (y = x, cast). x may have any strides and dtype; y's dtype is what the caller wants
    /// the result stored as: x's dtype for floats, I64 for Sum/Prod/SumOfSquares of integers and Bool.
    /// Floats accumulate Sum/Mean/Prod in float64 (F32/BF16/F16 are summed in float32 over short blocks
    /// first), integers in wrapping int64; Max and Min propagate NaN. An empty reduced set gives 0 for
    /// Sum and SumOfSquares, 1 for Prod, NaN for Mean; Max and Min of an empty set throw <see cref="ArgumentException"/>.
    /// </summary>
    void Reduce(ReduceOp op, Tensor x, int[] axes, Tensor y);

    /// <summary>
    /// y = the index along <paramref name="axis"/> of x's largest (ArgMax, ArgMaxNaNLowest, ArgMaxNumber) or smallest (ArgMin) value.
    /// y is I64 with x's rank and size 1 on <paramref name="axis"/>; x has any dtype but Bool and any
    /// strides, and a non-empty <paramref name="axis"/>. Ties give the lowest index; -0 and +0 are equal; values are
    /// compared in x's dtype. ArgMax and ArgMin: a NaN beats every number (the first NaN's index is returned), as in
    /// PyTorch. ArgMaxNaNLowest: a NaN loses to every number, −∞ included (a row of NaN only gives 0). ArgMaxNumber:
    /// ArgMaxNaNLowest's choice where the winner is a number above −∞, else −1 (the row holds no number: NaN and −∞ only).
    /// </summary>
    void ArgReduce(ArgReduceOp op, Tensor x, int axis, Tensor y);

    /// <summary>
    /// The <paramref name="values"/> and <paramref name="indices"/> of the k largest elements along the last
    /// axis of x, largest first; equal values are ordered by lower index first, and NaN counts as larger
    /// than every number. x is [..., n] of any dtype but Bool, any strides; values is [..., k] of x's dtype
    /// and indices [..., k] I64, any strides; 0 ≤ k ≤ n.
    /// </summary>
    void TopK(Tensor x, int k, Tensor values, Tensor indices);
}

/// <summary>Reductions for <see cref="IBackend.Reduce"/>.</summary>
public enum ReduceOp
{
    /// <summary>Σx (0 over an empty set).</summary>
    Sum,
    /// <summary>Σx / count (NaN over an empty set).</summary>
    Mean,
    /// <summary>Largest value, NaN propagating.</summary>
    Max,
    /// <summary>Smallest value, NaN propagating.</summary>
    Min,
    /// <summary>Πx (1 over an empty set).</summary>
    Prod,
    /// <summary>Σx² (0 over an empty set): L2 norms, gradient clipping, variance.</summary>
    SumOfSquares,
}

/// <summary>Index-returning reductions for <see cref="IBackend.ArgReduce"/>.</summary>
public enum ArgReduceOp
{
    /// <summary>Index of the largest value.</summary>
    ArgMax,
    /// <summary>Index of the smallest value.</summary>
    ArgMin,
    /// <summary>
    /// Index of the largest value with NaN below every number: a greedy token pick (the generator's host rule), which
    /// must never pick a NaN logit while a number is left.
    /// </summary>
    ArgMaxNaNLowest,
    /// <summary>
    /// <see cref="ArgMaxNaNLowest"/>'s index where it picks a number above −∞, else −1: the greedy token pick, which
    /// so says on the device, in the same pass, that a row holds no number (every value NaN or −∞, as every row of a
    /// checkpoint with NaN weights) instead of giving id 0 as if it were a choice. Integers: ArgMax.
    /// </summary>
    ArgMaxNumber,
}
