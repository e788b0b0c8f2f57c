namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <inheritdoc/>
    public void Unary(UnaryOp op, Tensor x, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        // As the CPU: y's dtype picks the arithmetic and x is converted to it (Tensor.Map computes exp of an integer
        // tensor into F32); integer arithmetic has only the four ops below.
        if (!y.DType.IsFloat() && op is not (UnaryOp.Neg or UnaryOp.Abs or UnaryOp.Square or UnaryOp.Relu))
            throw new NotSupportedException($"Unary on CUDA: {op} into {y.DType.Name()} (integer outputs take neg, abs, square, relu; compute {op} into a float tensor)");
        if (Packable(x.DType, y, x) && x.DType == y.DType)
        {
            long packs = n / PackLength(x.DType);
            using var p = new KernelArgs().Add(packs).Add(n).Add((int)op).Ptr(y).Ptr(x).Add(Code(x.DType));
            _kernels.Launch("elementwise.cu", "unary_packed", _kernels.GridFor(Math.Max(packs, 1)), 256, p);
            return;
        }
        var L = KernelLayout.Create("Unary", y.Shape, y.Strides.ToArray(), x.Strides.ToArray());
        using var a = new KernelArgs().Add(L).Add(n).Add((int)op).Ptr(y).Add(Code(y.DType)).Ptr(x).Add(Code(x.DType));
        _kernels.Launch("elementwise.cu", "unary", _kernels.GridFor(n), 256, a);
    }

    /// <inheritdoc/>
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        if (op < BinaryOp.Eq && a.DType == y.DType && b.DType == y.DType && SameShape(a, y) && SameShape(b, y) && Packable(y.DType, y, a, b))
        {
            long packs = n / PackLength(y.DType);
            using var p = new KernelArgs().Add(packs).Add(n).Add((int)op).Ptr(y).Ptr(a).Ptr(b).Add(Code(y.DType));
            _kernels.Launch("elementwise.cu", "binary_packed", _kernels.GridFor(Math.Max(packs, 1)), 256, p);
            return;
        }
        var L = KernelLayout.Create("Binary", y.Shape, y.Strides.ToArray(), a.Strides.ToArray(), b.Strides.ToArray());
        using var args = new KernelArgs().Add(L).Add(n).Add((int)op).Ptr(y).Add(Code(y.DType)).Ptr(a).Ptr(b).Add(Code(a.DType));
        _kernels.Launch("elementwise.cu", "binary", _kernels.GridFor(n), 256, args);
    }

    /// <summary>
    /// Whether the packed kernels (16 bytes per thread per load) can run: f32 or bf16, every tensor contiguous and
    /// 16-byte aligned (the caller checks shapes and dtypes agree).
    /// </summary>
    internal static bool Packable(DType dt, params Tensor[] ts)
    {
        if (dt is not (DType.F32 or DType.BF16)) return false;
        foreach (var t in ts)
            if (!t.IsContiguous || t.DataPointer % 16 != 0) return false;
        return true;
    }

    /// <summary>Elements per 16-byte pack.</summary>
    internal static int PackLength(DType dt) => 16 / dt.SizeOf();

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
