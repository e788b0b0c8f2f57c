using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Models.Qwen2;

/// <summary>
/// The residual stream between decoder layers in inference, with its last add still to make: the stream is
/// <see cref="Hidden"/> + <see cref="Pending"/> (the previous layer's MLP output), or <see cref="Hidden"/> alone when
/// nothing is pending (the embeddings). Leaving the add to whoever normalises the stream next (the next layer's input
/// norm, or the model's final norm) lets it run in the same kernel as that norm (<see cref="Tensor.AddRmsNorm"/>): one
/// launch fewer per layer in decode, with the bits of the add then the norm. Where a Linear layer (or a gated MLP's gate
/// and up products) reads the norm, the product joins that op too (<see cref="NormalizeLinear"/>,
/// <see cref="NormalizeSwiGlu"/>): in decode the add, the norm and the product are one GPU kernel.
/// </summary>
/// <param name="Hidden">The stream so far.</param>
/// <param name="Pending">An output to add to it before its next use, or null.</param>
public readonly record struct ResidualStream(Tensor Hidden, Tensor? Pending = null)
{
    /// <summary>The stream made whole and normalised by <paramref name="norm"/>: (Hidden + Pending, norm(Hidden + Pending)).</summary>
    public (Tensor Sum, Tensor Normalized) Normalize(RmsNorm norm)
    {
        ArgumentNullException.ThrowIfNull(norm);
        if (Pending is null) return (Hidden, Hidden.RmsNorm(norm.Weight.Value, norm.Eps));
        return Tensor.AddRmsNorm(Hidden, Pending, norm.Weight.Value, norm.Eps);
    }

    /// <summary>
    /// The stream made whole, normalised by <paramref name="norm"/> and multiplied by a Linear layer's weight [N, hidden]
    /// (and bias [N]): (Hidden + Pending, norm(Hidden + Pending)·weightᵀ + bias), the norm not kept. With an add pending,
    /// one op (<see cref="Tensor.AddRmsNormLinear"/>: in decode one GPU kernel for the add, the norm and the product);
    /// the bits of <see cref="Normalize"/> then the product as a Linear layer makes it (<see cref="Tensor.MatMulBias"/>).
    /// </summary>
    public (Tensor Sum, Tensor Output) NormalizeLinear(RmsNorm norm, Tensor weight, Tensor? bias)
    {
        ArgumentNullException.ThrowIfNull(norm);
        ArgumentNullException.ThrowIfNull(weight);
        if (Pending is not null) return Tensor.AddRmsNormLinear(Hidden, Pending, norm.Weight.Value, norm.Eps, weight, bias);
        using var scope = TensorScope.Begin();
        var normed = Hidden.RmsNorm(norm.Weight.Value, norm.Eps);
        var rows = normed.Reshape(-1, normed.Shape[^1]);
        var wT = weight.Transpose(0, 1);
        var product = bias is null ? rows.MatMul(wT) : Tensor.MatMulBias(rows, wT, bias);
        return (Hidden, scope.Keep(product.Reshape([.. Hidden.Shape[..^1], weight.Shape[0]])));
    }

    /// <summary>
    /// The stream made whole, normalised by <paramref name="norm"/> and through a gated MLP's gate and up products and the
    /// SwiGLU between them: (Hidden + Pending, SwiGlu(n·gateᵀ, n·upᵀ)) with n = norm(Hidden + Pending), n not kept. With
    /// an add pending, one op (<see cref="Tensor.AddRmsNormSwiGlu"/>); the bits of <see cref="Normalize"/> then
    /// <see cref="Tensor.SwiGluLinear"/>.
    /// </summary>
    public (Tensor Sum, Tensor Output) NormalizeSwiGlu(RmsNorm norm, Tensor gateWeight, Tensor upWeight)
    {
        ArgumentNullException.ThrowIfNull(norm);
        if (Pending is not null) return Tensor.AddRmsNormSwiGlu(Hidden, Pending, norm.Weight.Value, norm.Eps, gateWeight, upWeight);
        using var scope = TensorScope.Begin();
        return (Hidden, scope.Keep(Tensor.SwiGluLinear(Hidden.RmsNorm(norm.Weight.Value, norm.Eps), gateWeight, upWeight)));
    }

    /// <summary>The stream made whole (one add, or Hidden itself when nothing is pending).</summary>
    public Tensor Resolve() => Pending is null ? Hidden : Hidden + Pending;
}
