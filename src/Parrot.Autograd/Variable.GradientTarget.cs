using Parrot.Tensors;

namespace Parrot.Autograd;

public sealed partial class Variable
{
    private Func<Tensor?>? _gradientTarget;

    /// <summary>
    /// Gives this (non-leaf) variable a place its gradient may be written into (<see cref="Node.GradientTarget"/>):
    /// <paramref name="claim"/> returns a tensor of this shape the first time and null after, until its owner's backward
    /// releases it. SplitLinear's outputs offer their column range of the one gradient buffer their product's backward
    /// reads, so the rule that makes that gradient writes it there and no copy gathers it.
    /// </summary>
    internal void OfferGradientTarget(Func<Tensor?> claim) => _gradientTarget = claim;

    /// <summary>The place for this variable's gradient, for the one rule that asks first; null when it has none.</summary>
    internal Tensor? ClaimGradientTarget() => Graph.GradientTargets ? _gradientTarget?.Invoke() : null;

    /// <summary>
    /// A view op's output offers its input's target seen through the same view (<paramref name="view"/>: null when
    /// the target's strides do not allow it), so a gradient written there arrives at the input unchanged through the
    /// view's backward (a view too).
    /// </summary>
    private Variable OfferThrough(Variable input, Func<Tensor, Tensor?> view)
    {
        if (input._gradientTarget is not null && GradFn is not null)
            _gradientTarget = () => input.ClaimGradientTarget() is { } t ? view(t) : null;
        return this;
    }
}
