using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Models.Qwen2;

/// <summary>
/// The residual stream between decoder layers in inference, with its last add still to make: the stream is
/// <see cref="Hidden"/> + <see cref="Pending"/> (the previous layer's MLP output), or <see cref="Hidden"/> alone when
/// nothing is pending (the embeddings). Leaving the add to whoever normalises the stream next (the next layer's input
/// norm, or the model's final norm) lets it run in the same kernel as that norm (<see cref="Tensor.AddRmsNorm"/>): one
/// launch fewer per layer in decode, with the bits of the add then the norm.
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

    /// <summary>The stream made whole (one add, or Hidden itself when nothing is pending).</summary>
    public Tensor Resolve() => Pending is null ? Hidden : Hidden + Pending;
}
