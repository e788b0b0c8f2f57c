namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <inheritdoc/>
    public void Unary(UnaryOp op, Tensor x, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        if (!x.DType.IsFloat() && op is not (UnaryOp.Neg or UnaryOp.Abs or UnaryOp.Square or UnaryOp.Relu))
            throw Missing("Unary", $"{op} of {x.DType.Name()}");
        var L = KernelLayout.Create("Unary", y.Shape, y.Strides.ToArray(), x.Strides.ToArray());
        using var a = new KernelArgs().Add(L).Add(n).Add((int)op).Ptr(y).Ptr(x).Add(Code(x.DType));
        _kernels.Launch("elementwise.cu", "unary", _kernels.GridFor(n), 256, a);
    }

    /// <inheritdoc/>
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        var L = KernelLayout.Create("Binary", y.Shape, y.Strides.ToArray(), a.Strides.ToArray(), b.Strides.ToArray());
        using var args = new KernelArgs().Add(L).Add(n).Add((int)op).Ptr(y).Add(Code(y.DType)).Ptr(a).Ptr(b).Add(Code(a.DType));
        _kernels.Launch("elementwise.cu", "binary", _kernels.GridFor(n), 256, args);
    }

    /// <inheritdoc/>
    public void Where(Tensor cond, Tensor a, Tensor b, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        var L = KernelLayout.Create("Where", y.Shape, y.Strides.ToArray(), cond.Strides.ToArray(), a.Strides.ToArray(), b.Strides.ToArray());
        using var args = new KernelArgs().Add(L).Add(n).Ptr(y).Ptr(cond).Ptr(a).Ptr(b).Add(Code(y.DType));
        _kernels.Launch("elementwise.cu", "where_select", _kernels.GridFor(n), 256, args);
    }
}
