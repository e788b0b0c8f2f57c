namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>Rows and columns of c per block of native/matmul_int.cu (MMI_TILE); the block has its square of threads.</summary>
    internal const int MatMulIntTile = 16;

    /// <summary>
    /// c = a·b for int32 or int64 operands (all three of one dtype, as the CPU backend requires), native/matmul_int.cu:
    /// sums wrap as the CPU's (int32 at 2^32, int64 at 2^64), so the result is the CPU's bit for bit. Any strides: the
    /// batch dims go to the kernel as a layout over c, a and b, the matrices' row and column strides as they are.
    /// </summary>
    private void MatMulInt(Tensor a, Tensor b, Tensor c)
    {
        if (a.DType != b.DType || b.DType != c.DType || c.DType is not (DType.I32 or DType.I64))
            throw new ArgumentException($"MatMul on CUDA: integer products take int32 or int64 operands and output of one dtype, got {a.DType.Name()} · {b.DType.Name()} → {c.DType.Name()}");
        var (L, blocks) = PlanMatMulInt(a, b, c);
        int r = c.Rank;
        int M = c.Shape[r - 2], N = c.Shape[r - 1], K = a.Shape[r - 1];
        using var args = new KernelArgs().Add(L).Add(M).Add(N).Add(K)
            .Ptr(c).Add(c.Strides[r - 2]).Add(c.Strides[r - 1])
            .Ptr(a).Add(a.Strides[r - 2]).Add(a.Strides[r - 1])
            .Ptr(b).Add(b.Strides[r - 2]).Add(b.Strides[r - 1]).Add(Code(c.DType));
        _kernels.Launch("matmul_int.cu", "matmul_int", blocks, MatMulIntTile * MatMulIntTile, args);
    }

    /// <summary>
    /// The batch layout (operands c, a, b over c's leading dims) and the block count (batch × tile rows × tile columns)
    /// of matmul_int. Pure host logic, tested on the CPU.
    /// </summary>
    internal static (KernelLayout Layout, uint Blocks) PlanMatMulInt(Tensor a, Tensor b, Tensor c)
    {
        int r = c.Rank;
        int M = c.Shape[r - 2], N = c.Shape[r - 1];
        var L = KernelLayout.Create("MatMul", c.Shape[..(r - 2)], c.Strides[..(r - 2)].ToArray(), a.Strides[..(r - 2)].ToArray(), b.Strides[..(r - 2)].ToArray());
        long batch = 1;
        for (int d = 0; d < r - 2; d++) batch *= c.Shape[d];
        long blocks = batch * ((M + MatMulIntTile - 1) / MatMulIntTile) * ((N + MatMulIntTile - 1) / MatMulIntTile);
        if (blocks > int.MaxValue)
            throw Missing("MatMul", $"an integer product of more than {int.MaxValue} tiles ({c.ShapeString()})");
        return (L, (uint)blocks);
    }
}
