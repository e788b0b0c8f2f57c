namespace Parrot.Tensors;

public partial interface IBackend
{
    /// <summary>
    /// Matrix product c = a · b over the last two dimensions: a [..., M, K], b [..., K, N], c [..., M, N].
    /// The batch dimensions (all but the last two) are identical in the three tensors: the caller has already
    /// broadcast them (a or b may have stride 0 there). a and b may have any strides, including transposed
    /// and sliced matrices, which are read in place; c is contiguous and fully overwritten (K = 0 gives zeros).
    /// Dtypes: a and b F32, BF16 or F16 with c F32, BF16 or F16 (products accumulate in float32; a half c is
    /// rounded once at the end); F64 throughout; or I32/I64 throughout (integer arithmetic, I32 wrapping).
    /// </summary>
    void MatMul(Tensor a, Tensor b, Tensor c);
}
