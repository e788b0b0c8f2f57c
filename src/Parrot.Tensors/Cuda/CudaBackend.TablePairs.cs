namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// The dtype in which a pair of float operands that a kernel reads with one dtype code (LayerNorm's weight and bias,
    /// Rope's cos and sin) holds both exactly: the pair's own when they agree, else F64 if either is F64, else F32
    /// (f16 and bf16 are both subsets of f32). The CPU loads each into its compute type, so the kernels, given the
    /// converted one, read the same values.
    /// </summary>
    internal static DType PairDType(DType a, DType b) => a == b ? a : a == DType.F64 || b == DType.F64 ? DType.F64 : DType.F32;

    /// <summary>
    /// <paramref name="t"/> converted to <paramref name="dtype"/>, or null when it is null or already of that dtype. Only
    /// its distinct elements are converted: dims it is broadcast along (stride 0, as Rope's expanded tables) are narrowed
    /// to one before the copy and expanded again after, so a [T, D] table viewed as [B, H, T, D] costs a [T, D] copy.
    /// </summary>
    internal static Tensor? ConvertedOrNull(Tensor? t, DType dtype)
    {
        if (t is null || t.DType == dtype) return null;
        using var scope = TensorScope.Begin();
        var distinct = t;
        for (int d = 0; d < t.Rank; d++)
            if (t.Strides[d] == 0 && t.Shape[d] > 1) distinct = distinct.Narrow(d, 0, 1);
        var converted = distinct.To(dtype);
        return scope.Keep(distinct == t ? converted : converted.Expand(t.Shape.ToArray()));
    }
}
