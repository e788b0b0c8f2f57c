namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void IndexSelect(Tensor x, int axis, Tensor index, Tensor y)
    {
        // index_select is a gather whose index is broadcast over every dimension but the axis: the
        // index gets stride 0 there, so whole rows share one index and the kernel copies them as blocks.
        var indexStrides = new long[y.Rank];
        indexStrides[axis] = index.Strides[0];
        var xStrides = x.Strides.ToArray();
        long axisStride = xStrides[axis];
        xStrides[axis] = 0;
        RunGather(x, axisStride, x.Shape[axis], xStrides, index, indexStrides, y, "IndexSelect");
    }
}
