using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Layers;

/// <summary>y = x·Wᵀ + b with W [out, in] (PyTorch's layout, so checkpoints load as they are).</summary>
public sealed class Linear : Module
{
    /// <summary>The weight [out, in].</summary>
    public Variable Weight { get; }

    /// <summary>The bias [out], or null.</summary>
    public Variable? Bias { get; }

    /// <summary>Input features.</summary>
    public int InFeatures { get; }

    /// <summary>Output features.</summary>
    public int OutFeatures { get; }

    /// <summary>Creates a layer initialised as PyTorch's nn.Linear, from <paramref name="seed"/>.</summary>
    public Linear(int inFeatures, int outFeatures, bool bias = true, ulong seed = 0, DType dtype = DType.F32)
    {
        if (inFeatures <= 0 || outFeatures <= 0) throw new ArgumentOutOfRangeException(nameof(inFeatures), $"Linear({inFeatures}, {outFeatures}): sizes must be positive");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = AddParameter("weight", Init.LinearUniform([outFeatures, inFeatures], inFeatures, Init.SeedFor(seed, "weight"), dtype));
        if (bias) Bias = AddParameter("bias", Init.LinearUniform([outFeatures], inFeatures, Init.SeedFor(seed, "bias"), dtype));
    }

    /// <summary>Applies the layer to x [..., in] giving [..., out].</summary>
    public Variable Forward(Variable x)
    {
        if (x.Shape.Length == 0 || x.Shape[^1] != InFeatures)
            throw new ArgumentException($"Linear({InFeatures}→{OutFeatures}): input {x.Value.ShapeString()} does not end in {InFeatures}");
        if (Graph.IsGradDisabled && x.Rank >= 2 && (Bias is null || Bias.DType == x.DType) && Weight.DType == x.DType)
            return new Variable(Infer(x.Value));
        if (Bias is null) return x.MatMul(Weight.Transpose());
        if (Bias.DType != x.DType || Weight.DType != x.DType) return x.MatMul(Weight.Transpose()) + Bias; // a bias of another dtype promotes in the add; a weight of another dtype is MatMul's error
        if (x.Rank == 2) return x.MatMulBias(Weight.Transpose(), Bias);
        var shape = x.Shape.ToArray();
        shape[^1] = OutFeatures;
        return x.Reshape(-1, InFeatures).MatMulBias(Weight.Transpose(), Bias).Reshape(shape);
    }

    /// <summary>
    /// Inference (nothing recorded): the ops of the path above on tensors, without its Variable wrappers, and with the
    /// weight's transposed view and the reshaped input freed at once instead of at the end of the caller's scope (a decode
    /// step issues ~100 of these; on a GPU the host's time per op is what bounds decode).
    /// </summary>
    private Tensor Infer(Tensor x)
    {
        using var wt = Weight.Value.Transpose();
        if (x.Rank == 2) return Bias is null ? x.MatMul(wt) : Tensor.MatMulBias(x, wt, Bias.Value);
        var shape = x.Shape.ToArray();
        shape[^1] = OutFeatures;
        using var x2 = x.Reshape(-1, InFeatures);
        using var y = Bias is null ? x2.MatMul(wt) : Tensor.MatMulBias(x2, wt, Bias.Value);
        return y.Reshape(shape);
    }
}
