namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <inheritdoc/>
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep s) => AdamW(param, grad, m, v, s, null);

    /// <summary>
    /// AdamW as <see cref="IBackend.AdamW"/>, and when <paramref name="bf16Weights"/> is given (contiguous, param's
    /// shape, BF16) the updated float32 master weights are also written there rounded to bf16, in the same pass.
    /// </summary>
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep s, Tensor? bf16Weights)
    {
        long n = param.Count;
        if (n == 0) return;
        if (bf16Weights is not null && (bf16Weights.DType != DType.BF16 || bf16Weights.Count != n || !bf16Weights.IsContiguous))
            throw new ArgumentException($"AdamW: the bf16 copy must be a contiguous BF16 tensor of {n} elements, got {bf16Weights.DType.Name()} {bf16Weights.ShapeString()}");
        double decay = 1 - s.LearningRate * s.WeightDecay;
        double bc1 = 1 - Math.Pow(s.Beta1, s.Step), bc2 = 1 - Math.Pow(s.Beta2, s.Step);
        using var a = new KernelArgs().Add(n).Ptr(param).Ptr(grad).Add(Code(grad.DType)).Ptr(m).Ptr(v).Add(Code(param.DType))
            .Add(decay).Add(s.Beta1).Add(s.Beta2).Add(s.Epsilon).Add(s.LearningRate / bc1).Add(Math.Sqrt(bc2)).Ptr(bf16Weights);
        _kernels.Launch("adamw.cu", "adamw", _kernels.GridFor(n), 256, a);
    }

    /// <summary>Not written yet: the fused flash-attention kernel (forward and backward) is issue #7's next step.</summary>
    public void Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, int queryOffset, double scale, Tensor output, Tensor? logSumExp) =>
        throw Missing("Attention", "fused scaled-dot-product attention");
}
