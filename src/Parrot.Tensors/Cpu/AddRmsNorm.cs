namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    /// <remarks>
    /// The two ops apart: on the CPU a fused pass would save one re-read of a row that is still in L1, nothing worth a
    /// second copy of RmsNorm's arithmetic, and running the very same kernels makes the results equal by construction.
    /// </remarks>
    public void AddRmsNorm(Tensor x, Tensor residual, Tensor weight, double eps, Tensor sum, Tensor y)
    {
        if (!x.DType.IsFloat() || residual.DType != x.DType || sum.DType != x.DType
            || !residual.Shape.SequenceEqual(x.Shape) || !sum.Shape.SequenceEqual(x.Shape))
            throw new ArgumentException($"AddRmsNorm: x {x.ShapeString()} {x.DType.Name()}, residual {residual.ShapeString()} {residual.DType.Name()} and sum {sum.ShapeString()} {sum.DType.Name()} must share a float dtype and a shape");
        Binary(BinaryOp.Add, x, residual, sum);
        RmsNorm(sum, weight, eps, y);
    }
}
