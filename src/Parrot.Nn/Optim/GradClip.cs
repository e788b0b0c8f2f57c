using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Optim;

/// <summary>Global gradient-norm clipping (torch.nn.utils.clip_grad_norm_).</summary>
public static class GradClip
{
    /// <summary>
    /// The L2 norm of all gradients taken together, computed in float64; when it exceeds
    /// <paramref name="maxNorm"/>, every gradient is scaled by maxNorm / (norm + 1e-6) as PyTorch does.
    /// Returns the norm before clipping (NaN/∞ if a gradient is not finite; then nothing is scaled).
    /// </summary>
    public static double ClipGradNorm(IEnumerable<Variable> parameters, double maxNorm = double.PositiveInfinity)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var grads = parameters.Select(p => p.Grad).OfType<Tensor>().ToList();
        double total = TotalNorm(grads);
        if (double.IsFinite(total) && !double.IsPositiveInfinity(maxNorm))
        {
            double coef = maxNorm / (total + 1e-6);
            if (coef < 1)
                foreach (var g in grads)
                {
                    using var scaled = g * coef;
                    g.CopyFrom(scaled);
                }
        }
        return total;
    }

    /// <summary>√(Σ‖g‖²) over the tensors; each tensor's sum of squares is one fused pass, the total is added in float64.</summary>
    public static double TotalNorm(IEnumerable<Tensor> tensors)
    {
        double sum = 0;
        foreach (var g in tensors)
        {
            using var ss = g.SumOfSquares();
            sum += ss.Item();
        }
        return Math.Sqrt(sum);
    }
}
