namespace Parrot.Tensors;

public partial interface IBackend
{
    /// <summary>
    /// One AdamW update in place, with PyTorch's semantics and order of operations:
    /// p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
    /// p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε).
    /// <paramref name="param"/>, <paramref name="m"/>, <paramref name="v"/> are contiguous and share a float dtype
    /// (F32 or F64: the master copy); <paramref name="grad"/> has the same shape, any float dtype, contiguous.
    /// </summary>
    void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep step);
}

/// <summary>The scalars of one AdamW step (t counts from 1).</summary>
public readonly record struct AdamWStep(double LearningRate, double Beta1, double Beta2, double Epsilon, double WeightDecay, long Step);
