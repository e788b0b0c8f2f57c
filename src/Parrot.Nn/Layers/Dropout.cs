using Parrot.Autograd;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;

namespace Parrot.Nn.Layers;

/// <summary>
/// Inverted dropout: in training, zeroes each element with probability p and scales the rest by 1/(1−p);
/// identity in evaluation. Masks are seeded from (seed, call count) so runs are reproducible.
/// </summary>
public sealed class Dropout(double p, ulong seed = 0) : Module
{
    private ulong _calls;

    /// <summary>Drop probability.</summary>
    public double P { get; } = p is >= 0 and < 1 ? p : throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1)");

    /// <summary>Applies dropout.</summary>
    public Variable Forward(Variable x)
    {
        if (!Training || P == 0) return x;
        // The mask's seed is a launch argument: a CUDA graph would record this call's seed and drop the same elements on
        // every replay (silently wrong training), so a capture refuses it rather than record it.
        if (x.Value.Backend is CudaBackend { IsCapturing: true })
            throw new InvalidOperationException($"Dropout(p = {P}): not inside a CUDA graph capture — the graph would replay this call's mask on every replay; run steps with dropout eagerly");
        using var u = Tensor.Uniform(x.Shape, Init.SeedFor(seed, "dropout") + _calls++, 0, 1, DType.F32, x.Value.Device);
        using var threshold = Tensor.Scalar(P, DType.F32, x.Value.Device);
        using var keep = u.Ge(threshold);
        using var mask = keep.To(x.DType);
        return x * new Variable(mask * (1 / (1 - P)));
    }
}
