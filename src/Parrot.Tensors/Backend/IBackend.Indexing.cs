namespace Parrot.Tensors;

/// <summary>
/// Indexing ops (index_select, gather, scatter-add, index_copy) and rotary position embedding.
/// The <see cref="Tensor"/> front-ends check shapes, dtypes and every index value before calling
/// these, so a backend may assume its indices are in range; the CPU kernels still refuse an
/// out-of-range index instead of touching memory outside a tensor. Index tensors are I64 or I32,
/// on the same device as the data, with any strides (including 0). The axis is already normalised to
/// 0..rank-1.
/// </summary>
public partial interface IBackend
{
    /// <summary>
    /// PyTorch's index_select: y = x with dimension <paramref name="axis"/> replaced by the rows
    /// <paramref name="index"/> picks, y[..., i, ...] = x[..., index[i], ...].
    /// x: any shape and dtype, any strides. index: 1-D [k], I64 or I32, values in [0, x.Dim(axis)).
    /// y: x's shape with size k at <paramref name="axis"/>, x's dtype, any strides that do not overlap.
    /// Copies element bits, so every dtype works.
    /// </summary>
    void IndexSelect(Tensor x, int axis, Tensor index, Tensor y);

    /// <summary>
    /// PyTorch's gather: y[p] = x[p with coordinate <paramref name="axis"/> replaced by index[p]] for
    /// every position p of <paramref name="index"/> (for rank 3 and axis 1: y[i, j, k] = x[i, index[i, j, k], k]).
    /// x: rank r, any dtype and strides. index: rank r, I64 or I32, index.Dim(d) ≤ x.Dim(d) for d ≠ axis,
    /// values in [0, x.Dim(axis)). y: index's shape, x's dtype. Copies element bits.
    /// </summary>
    void Gather(Tensor x, int axis, Tensor index, Tensor y);

    /// <summary>
    /// PyTorch's scatter_add_, in place: dst[p with coordinate <paramref name="axis"/> replaced by index[p]] += src[p]
    /// for every position p of <paramref name="index"/>. dst, index and src have one rank r;
    /// index.Dim(d) ≤ src.Dim(d) for every d and ≤ dst.Dim(d) for d ≠ axis; values in [0, dst.Dim(axis)).
    /// src and dst share a dtype (F32, F64, BF16, F16, I32, I64 or U8); the addition is done in that
    /// dtype's arithmetic (16-bit floats: float32 then rounded to nearest even per addition, integers wrap).
    /// dst must not overlap itself (no broadcast dims). The result does not depend on the thread count:
    /// each destination element receives its contributions in ascending order along <paramref name="axis"/>.
    /// </summary>
    void ScatterAdd(Tensor dst, int axis, Tensor index, Tensor src);

    /// <summary>
    /// PyTorch's index_copy_, in place: dst[..., index[j], ...] = src[..., j, ...] along <paramref name="axis"/> — the
    /// inverse of <see cref="IndexSelect"/>, writing the rows it would read. dst: any shape and dtype, any strides that do
    /// not overlap (no broadcast dims). index: 1-D [k], I64 or I32, any stride. src: dst's shape with size k at
    /// <paramref name="axis"/>, dst's dtype, any strides, not sharing memory with dst. Copies element bits, so every
    /// dtype works and the result is exact. There is no Tensor front-end (yet): the one caller, the sampler's penalised
    /// chunk sums, passes ids it has checked on the host, so the backends check what the contract needs themselves (the
    /// devices, dtypes and shapes alike on every backend: IndexCopyArgs).
    /// The index values must be distinct: with a repeated one the result would depend on which write lands last. The CPU
    /// refuses a repeated or out-of-range index (naming it, before anything is written); on CUDA one launch writes every
    /// element without a host wait, so the caller guarantees distinct, in-range values (an out-of-range one is skipped,
    /// never written outside dst; of repeated ones, any may win).
    /// </summary>
    void IndexCopy(Tensor dst, int axis, Tensor index, Tensor src);

    /// <summary>
    /// Rotary position embedding in the Hugging Face rotate-half convention, over the last dimension:
    /// y = x·cos + rotate_half(x)·sin with rotate_half(x) = cat(−x[D/2:], x[:D/2]), i.e. for d &lt; D/2
    /// y[d] = x[d]·cos[d] − x[d+D/2]·sin[d] and y[d+D/2] = x[d+D/2]·cos[d+D/2] + x[d]·sin[d+D/2].
    /// x, cos, sin and y all have x's shape [..., D] with D even (cos and sin arrive already broadcast,
    /// stride 0 on broadcast dims; in Qwen2 attention x is [batch, heads, seq, head_dim] and the
    /// tables are [seq, head_dim] or [batch, 1, seq, head_dim] expanded to it). x and y: F32, F64, BF16
    /// or F16, one dtype; cos and sin: any float dtype. Computed in float32 (float64 for F64), each
    /// product rounded before the sum as PyTorch does, so F32 results equal Hugging Face's bit for bit
    /// given the same tables; 16-bit results are rounded once to nearest even. y may be x itself (in place).
    /// </summary>
    void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y);
}
