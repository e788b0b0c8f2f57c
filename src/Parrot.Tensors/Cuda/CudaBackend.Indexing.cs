namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <inheritdoc/>
    public void IndexSelect(Tensor x, int axis, Tensor index, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        var xs = x.Strides.ToArray(); xs[axis] = 0;
        var idx = new long[y.Rank]; idx[axis] = index.Strides[0];
        var L = KernelLayout.Create("IndexSelect", y.Shape, y.Strides.ToArray(), xs, idx);
        using var a = new KernelArgs().Add(L).Add(n).Ptr(y).Ptr(x).Add(x.Strides[axis]).Ptr(index).Add(Code(index.DType)).Add(Code(x.DType));
        _kernels.Launch("indexing.cu", "index_select", _kernels.GridFor(n), 256, a);
    }

    /// <inheritdoc/>
    public void Gather(Tensor x, int axis, Tensor index, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        var xs = x.Strides.ToArray(); xs[axis] = 0;
        var L = KernelLayout.Create("Gather", index.Shape, y.Strides.ToArray(), xs, index.Strides.ToArray());
        using var a = new KernelArgs().Add(L).Add(n).Ptr(y).Ptr(x).Add(x.Strides[axis]).Ptr(index).Add(Code(index.DType)).Add(Code(x.DType));
        _kernels.Launch("indexing.cu", "gather", _kernels.GridFor(n), 256, a);
    }

    /// <summary>Scatter-add with atomics: contributions to one element are summed in no fixed order (float results may differ from the CPU's in the last bits).</summary>
    public void ScatterAdd(Tensor dst, int axis, Tensor index, Tensor src)
    {
        long n = index.Count;
        if (n == 0) return;
        var ds = dst.Strides.ToArray(); ds[axis] = 0;
        var L = KernelLayout.Create("ScatterAdd", index.Shape, ds, src.Strides.ToArray(), index.Strides.ToArray());
        using var a = new KernelArgs().Add(L).Add(n).Ptr(dst).Add(dst.Strides[axis]).Ptr(src).Ptr(index).Add(Code(index.DType)).Add(Code(dst.DType));
        _kernels.Launch("indexing.cu", "scatter_add", _kernels.GridFor(n), 256, a);
    }

    /// <inheritdoc/>
    public void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y)
    {
        int last = x.Rank - 1;
        int half = x.Shape[last] / 2;
        var shape = x.Shape.ToArray(); shape[last] = half;
        long n = x.Count / 2;
        if (n == 0) return;
        if (cos.DType != sin.DType) throw Missing("Rope", $"cos {cos.DType.Name()} with sin {sin.DType.Name()}");
        var L = KernelLayout.Create("Rope", shape, y.Strides.ToArray(), x.Strides.ToArray(), cos.Strides.ToArray(), sin.Strides.ToArray());
        using var a = new KernelArgs().Add(L).Add(n).Add((long)half).Ptr(y).Add(y.Strides[last]).Ptr(x).Add(x.Strides[last])
            .Ptr(cos).Ptr(sin).Add(Code(cos.DType)).Add(cos.Strides[last]).Add(sin.Strides[last]).Add(Code(x.DType));
        _kernels.Launch("rope.cu", "rope", _kernels.GridFor(n), 256, a);
    }
}
