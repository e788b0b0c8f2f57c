namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    /// <remarks>
    /// The ops apart, as the Tensor front-ends run them on the CPU: <see cref="AddRmsNorm"/>, then the product (plus the
    /// bias as an elementwise add, as <c>Tensor.MatMulBias</c> here) or the gate and up products and <see cref="SwiGlu"/>
    /// (as <c>Tensor.SwiGluLinear</c>). The very same kernels, so the results are equal by construction.
    /// </remarks>
    public void AddRmsNormLinear(Tensor x, Tensor residual, Tensor normWeight, double eps, Tensor weight, Tensor? bias, Tensor? upWeight, Tensor sum, Tensor y)
    {
        int d = x.Shape[^1], n = weight.Shape[0];
        using var h = Tensor.Empty(x.Shape, x.DType, x.Device);
        AddRmsNorm(x, residual, normWeight, eps, sum, h);
        using var rows = h.Reshape(-1, d);
        using var out2 = y.Reshape(-1, n);
        using var wT = weight.Transpose(0, 1);
        if (upWeight is null)
        {
            if (bias is null)
            {
                MatMul(rows, wT, out2);
                return;
            }
            using var product = Tensor.Empty(out2.Shape, y.DType, y.Device);
            MatMul(rows, wT, product);
            using var b = bias.Expand(out2.Shape.ToArray());
            Binary(BinaryOp.Add, product, b, out2);
            return;
        }
        using var uT = upWeight.Transpose(0, 1);
        using var g = Tensor.Empty(out2.Shape, y.DType, y.Device);
        using var u = Tensor.Empty(out2.Shape, y.DType, y.Device);
        MatMul(rows, wT, g);
        MatMul(rows, uT, u);
        SwiGlu(g, u, out2);
    }
}
