namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// The residual step of a pre-norm decoder and the Linear layer that reads its norm, for inference: with
    /// (sum, h) = <see cref="AddRmsNorm"/>(x, residual, normWeight, eps), returns (sum, h·weightᵀ + bias) for weight
    /// [N, D] as a Linear layer stores it and bias [N] (or none); h is not kept. Bit for bit AddRmsNorm then
    /// <see cref="MatMulBias"/> (<see cref="MatMul(Tensor, Tensor, DType?)"/> without a bias) over h's rows; one backend
    /// op (<see cref="IBackend.AddRmsNormLinear"/>: in decode one GPU kernel where there were two) when every operand
    /// shares x's device and dtype (f32, bf16 or f16) and x and residual share a shape; otherwise those ops.
    /// </summary>
    /// <returns>The sum [..., D] and the product [..., N].</returns>
    public static (Tensor Sum, Tensor Output) AddRmsNormLinear(Tensor x, Tensor residual, Tensor normWeight, double eps, Tensor weight, Tensor? bias = null) =>
        NormProduct("AddRmsNormLinear", x, residual, normWeight, eps, weight, bias, null);

    /// <summary>
    /// The residual step of a pre-norm decoder and the first half of the gated MLP that reads its norm, for inference:
    /// with (sum, h) = <see cref="AddRmsNorm"/>(x, residual, normWeight, eps), returns (sum, SwiGlu(h·gateWeightᵀ,
    /// h·upWeightᵀ)) for weights [N, D]; h is not kept. Bit for bit AddRmsNorm then <see cref="SwiGluLinear"/>; one
    /// backend op (<see cref="IBackend.AddRmsNormLinear"/>) under the conditions of <see cref="AddRmsNormLinear"/>.
    /// </summary>
    /// <returns>The sum [..., D] and the gated product [..., N].</returns>
    public static (Tensor Sum, Tensor Output) AddRmsNormSwiGlu(Tensor x, Tensor residual, Tensor normWeight, double eps, Tensor gateWeight, Tensor upWeight)
    {
        ArgumentNullException.ThrowIfNull(upWeight);
        return NormProduct("AddRmsNormSwiGlu", x, residual, normWeight, eps, gateWeight, null, upWeight);
    }

    private static (Tensor Sum, Tensor Output) NormProduct(string op, Tensor x, Tensor residual, Tensor normWeight, double eps, Tensor weight, Tensor? bias, Tensor? up)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(residual);
        ArgumentNullException.ThrowIfNull(normWeight);
        ArgumentNullException.ThrowIfNull(weight);
        x.EnsureAlive(op); residual.EnsureAlive(op); normWeight.EnsureAlive(op); weight.EnsureAlive(op); bias?.EnsureAlive(op); up?.EnsureAlive(op);
        if (x.Rank == 0 || weight.Rank != 2 || weight.Shape[1] != x.Shape[^1] || (up is not null && !up.Shape.SequenceEqual(weight.Shape))
            || (bias is not null && (bias.Rank != 1 || bias.Shape[0] != weight.Shape[0])))
            throw new ArgumentException($"{op}: needs x [..., D], weight{(up is null ? "" : "s")} [N, D]{(bias is null ? "" : " and bias [N]")}, got x {x.ShapeString()}, "
                                        + $"weight {weight.ShapeString()}{(up is null ? "" : $", up {up.ShapeString()}")}{(bias is null ? "" : $", bias {bias.ShapeString()}")}");
        int d = x.Shape[^1], n = weight.Shape[0];
        int[] outShape = [.. x.Shape[..^1], n];
        using var scope = TensorScope.Begin();
        bool oneOp = x.DType is DType.F32 or DType.BF16 or DType.F16 && residual.Shape.SequenceEqual(x.Shape)
            && new[] { residual, normWeight, weight, bias, up }.All(t => t is null || (t.DType == x.DType && t.Device == x.Device));
        if (!oneOp)
        {
            // The ops apart (broadcasting, mixed dtypes or devices: they check and promote as usual).
            var (s, h) = AddRmsNorm(x, residual, normWeight, eps);
            var rows = h.Reshape(-1, d);
            var o = up is not null ? SwiGluLinear(rows, weight, up) : bias is null ? MatMul(rows, weight.Transpose(0, 1)) : MatMulBias(rows, weight.Transpose(0, 1), bias);
            return (scope.Keep(s), scope.Keep(o.Reshape(outShape)));
        }
        x.CheckNormVector(op, "normWeight", normWeight);
        var sum = Empty(x._shape, x.DType, x.Device);
        var y = Empty(outShape, x.DType, x.Device);
        x.Backend.AddRmsNormLinear(x.IsContiguous ? x : x.Contiguous(), residual.IsContiguous ? residual : residual.Contiguous(),
            normWeight.IsContiguous ? normWeight : normWeight.Contiguous(), eps, weight, bias is null || bias.IsContiguous ? bias : bias.Contiguous(), up, sum, y);
        return (scope.Keep(sum), scope.Keep(y));
    }
}
