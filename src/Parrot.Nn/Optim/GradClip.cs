using Parrot.Autograd;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;

namespace Parrot.Nn.Optim;

/// <summary>Global gradient-norm clipping (torch.nn.utils.clip_grad_norm_).</summary>
public static class GradClip
{
    /// <summary>
    /// The L2 norm of all gradients taken together, computed in float64; when it exceeds
    /// <paramref name="maxNorm"/>, every gradient is scaled by maxNorm / (norm + 1e-6) as PyTorch does.
    /// Returns the norm before clipping (NaN/∞ if a gradient is not finite; then nothing is scaled).
    /// See <see cref="ScaleAndClipGradNorm"/> for how the norm is taken and for the CUDA path.
    /// </summary>
    public static double ClipGradNorm(IEnumerable<Variable> parameters, double maxNorm = double.PositiveInfinity) =>
        ScaleAndClipGradNorm(parameters, 1, maxNorm);

    /// <summary>
    /// Multiplies every gradient by <paramref name="scale"/> (as <c>g * scale</c>: the scalar in g's dtype), then clips
    /// as <see cref="ClipGradNorm"/>: the norm is √Σ‖g‖² with each tensor's sum of squares stored in float32 (float64 for
    /// F64 gradients; <see cref="TotalNorm"/>), added in parameter order in float64; when the norm is finite and
    /// coef = maxNorm / (norm + 1e-6) is below 1, every gradient becomes <c>g * coef</c>. Returns the norm before clipping.
    /// <para>
    /// When every gradient is on one CUDA device (and <see cref="CudaBackend.MultiTensorGradClip"/> is on) this runs
    /// <see cref="CudaBackend.GradNormClip"/>: a few launches per 64 gradients and one host read, of the norm, after
    /// the scaling is queued, instead of a read per gradient. Its norm equals this path's to a few float64 ulps (only the
    /// order of each tensor's sum of squares differs), and its gradients are this path's bits whenever the two
    /// coefficients agree. Elsewhere (CPU, other devices) each gradient takes its own ops, as below.
    /// </para>
    /// </summary>
    public static double ScaleAndClipGradNorm(IEnumerable<Variable> parameters, double scale, double maxNorm = double.PositiveInfinity)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!double.IsFinite(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "gradient scale must be finite");
        if (double.IsNaN(maxNorm) || maxNorm < 0) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "the largest gradient norm must be ≥ 0 (∞ for no clipping)");
        var grads = parameters.Select(p => p.Grad).OfType<Tensor>().ToList();
        if (MultiTensorBackend(grads) is CudaBackend cuda)
        {
            using var normCoefSum = cuda.GradNormClip(grads, scale, maxNorm);
            return normCoefSum.ToDoubleArray()[0]; // the one wait: every launch above is queued
        }
        double total = Math.Sqrt(ScaleEach(grads, scale));
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

    /// <summary>
    /// Multiplies every tensor by <paramref name="scale"/> as <see cref="ScaleAndClipGradNorm"/> does and returns their
    /// summed squares, Σ‖g‖², taken as <see cref="TotalNorm"/> takes them (each tensor's sum stored in float32, float64
    /// for F64; added in list order in float64), without clipping: a rank's share of a global norm (ZeRO-2 adds every
    /// rank's before the square root). On one CUDA device the same launches as the clipping path and one 24-byte read.
    /// </summary>
    public static double ScaleAndSumOfSquares(IReadOnlyList<Tensor> tensors, double scale)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (!double.IsFinite(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "gradient scale must be finite");
        if (MultiTensorBackend(tensors) is CudaBackend cuda)
        {
            using var normCoefSum = cuda.GradNormClip(tensors, scale, double.PositiveInfinity);
            return normCoefSum.ToDoubleArray()[2];
        }
        return ScaleEach(tensors, scale);
    }

    /// <summary>The per-tensor path: each tensor becomes <c>g * scale</c> (unless 1), then Σ‖g‖² as <see cref="TotalNorm"/>.</summary>
    private static double ScaleEach(IReadOnlyList<Tensor> tensors, double scale)
    {
        if (scale != 1)
            foreach (var g in tensors)
            {
                using var scaled = g * scale;
                g.CopyFrom(scaled);
            }
        return SumOfSquares(tensors);
    }

    /// <summary>The CUDA backend every gradient lives on, when there is one, its multi-tensor path is on and every gradient is contiguous.</summary>
    private static CudaBackend? MultiTensorBackend(IReadOnlyList<Tensor> grads)
    {
        if (grads.Count == 0 || grads[0].Device.Kind != DeviceKind.Cuda || grads[0].Backend is not CudaBackend cuda || !cuda.MultiTensorGradClip) return null;
        foreach (var g in grads)
            if (!ReferenceEquals(g.Backend, cuda) || !g.IsContiguous || !g.DType.IsFloat()) return null;
        // A gradient listed twice would be scaled by two table entries at once; the per-tensor path scales it twice, in order.
        if (grads.Select(g => (g.Storage, g.Offset)).Distinct().Count() != grads.Count) return null;
        return cuda;
    }

    /// <summary>
    /// √(Σ‖g‖²) over the tensors; each tensor's sum of squares is one fused pass (accumulated in float64) stored in float32
    /// (float64 for F64 tensors), the total added in float64. Not in the tensor's own dtype: an f16 sum overflows past
    /// 65504 (every f16 gradient set of norm above 256 came out ∞, never clipped) and a bf16 one keeps 8 bits.
    /// </summary>
    public static double TotalNorm(IEnumerable<Tensor> tensors) => Math.Sqrt(SumOfSquares(tensors));

    /// <summary>Σ‖g‖² as <see cref="TotalNorm"/> takes it (before the square root).</summary>
    private static double SumOfSquares(IEnumerable<Tensor> tensors)
    {
        double sum = 0;
        foreach (var g in tensors)
        {
            // The keep-dim shape the backend op takes: [1, …, 1].
            using var ss = Tensor.Empty(Enumerable.Repeat(1, g.Rank).ToArray(), g.DType == DType.F64 ? DType.F64 : g.DType.IsFloat() ? DType.F32 : DType.I64, g.Device);
            g.Backend.Reduce(ReduceOp.SumOfSquares, g, Enumerable.Range(0, g.Rank).ToArray(), ss);
            sum += ss.Item();
        }
        return sum;
    }
}
