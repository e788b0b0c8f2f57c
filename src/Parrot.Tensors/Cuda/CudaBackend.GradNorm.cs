namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// Whether GradClip takes <see cref="GradNormClip"/> when every gradient lives on this backend. On unless the
    /// environment variable PARROT_MULTI_TENSOR_CLIP is "0" when the backend is created; off, the norm is computed per
    /// tensor with a host read each (the path before): for side-by-side timings and the selftest's bit-for-bit check.
    /// </summary>
    public bool MultiTensorGradClip { get; set; } = MultiTensorGradClipDefault(Environment.GetEnvironmentVariable("PARROT_MULTI_TENSOR_CLIP"));

    /// <summary>The default of <see cref="MultiTensorGradClip"/> for a value of PARROT_MULTI_TENSOR_CLIP: off only for "0".</summary>
    internal static bool MultiTensorGradClipDefault(string? value) => value?.Trim() != "0";

    /// <summary>One gradient of a grad_norm.cu table (its GradNormEntry).</summary>
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct GradNormEntry
    {
        internal ulong G;
        internal long N, First;
        internal int Blocks, DType;
    }

    [System.Runtime.CompilerServices.InlineArray(GradNormTable)]
    private struct GradNormEntries { private GradNormEntry _first; }

    /// <summary>Gradients per launch: GN_TABLE of grad_norm.cu.</summary>
    internal const int GradNormTable = 64;

    /// <summary>
    /// Sum-of-squares blocks of a gradient of <paramref name="n"/> elements: gn_blocks of grad_norm.cu (one per
    /// GN_BLOCK_ELEMENTS = 8192 elements, 1 to GN_MAX_BLOCKS = 256). A function of the size only, so the partial sums and
    /// the order they are added in are the same on every GPU.
    /// </summary>
    internal static int GradNormBlocks(long n) => (int)Math.Clamp((n + 8191) / 8192, 1, 256);

    /// <summary>
    /// Global gradient-norm clipping over many tensors with no host synchronisation (native/grad_norm.cu): when
    /// <paramref name="scale"/> ≠ 1 every gradient is first replaced by g·scale rounded as <c>g * scale</c>; then the
    /// norm √Σ‖g‖² is taken (each tensor's float64 sum of squares stored in float32, float64 for F64, as GradClip.TotalNorm's, the
    /// sums added in list order in float64), and when it and <paramref name="maxNorm"/> are finite and
    /// coef = maxNorm / (norm + 1e-6) is below 1, every gradient becomes g·coef rounded as <c>g * coef</c>. Returns a
    /// float64 device tensor [norm, coef, Σ‖g‖²] (coef exactly 1 when nothing was scaled), written by queued kernels: reading it
    /// is the step's one wait. The norm equals the per-tensor path's to a few float64 ulps (only the order of each
    /// tensor's sum differs), and the gradients are that path's bits whenever the coefficients agree. Launches: two per
    /// 64 gradients for the norm, one per 64 for the scale (whose blocks return at once when coef is 1). Every gradient
    /// is a contiguous f32, bf16, f16 or f64 tensor on this device.
    /// </summary>
    public Tensor GradNormClip(IReadOnlyList<Tensor> grads, double scale, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(grads);
        if (!double.IsFinite(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "GradNormClip: the gradient scale must be finite");
        if (double.IsNaN(maxNorm) || maxNorm < 0) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "GradNormClip: the largest norm must be ≥ 0 (∞ for no clipping)");
        for (int i = 0; i < grads.Count; i++)
        {
            var g = grads[i] ?? throw new ArgumentException($"GradNormClip: gradient {i} is null");
            g.EnsureAlive("GradNormClip");
            if (!ReferenceEquals(g.Backend, this)) throw new ArgumentException($"GradNormClip: gradient {i} is on {g.Device}, not on this backend's {Device}");
            if (g.DType is not (DType.F32 or DType.BF16 or DType.F16 or DType.F64)) throw new ArgumentException($"GradNormClip: gradient {i} is {g.DType.Name()}; gradients are float tensors");
            if (!g.IsContiguous) throw new ArgumentException($"GradNormClip: gradient {i} ({g.ShapeString()}) is not contiguous");
        }
        var result = Tensor.Empty([3], DType.F64, Device);
        if (grads.Count == 0)
        {
            // No gradient: norm 0, nothing to scale, sum 0 (as the per-tensor path's empty sum).
            Fill(result, 0);
            using var one = result.Narrow(0, 1, 1);
            Fill(one, 1);
            return result;
        }
        int tables = (grads.Count + GradNormTable - 1) / GradNormTable;
        var entries = new GradNormEntries[tables];
        var counts = new int[tables];
        int mostSlots = 0;
        for (int k = 0; k < tables; k++)
        {
            counts[k] = Math.Min(GradNormTable, grads.Count - k * GradNormTable);
            int slots = 0;
            for (int i = 0; i < counts[k]; i++)
            {
                var g = grads[k * GradNormTable + i];
                int blocks = GradNormBlocks(g.Count);
                entries[k][i] = new GradNormEntry { G = (ulong)g.DataPointer, N = g.Count, First = slots, Blocks = blocks, DType = Code(g.DType) };
                slots += blocks;
            }
            mostSlots = Math.Max(mostSlots, slots);
        }
        // One partials buffer serves every table: the stream runs each table's finish before the next table's sums.
        using var partials = Tensor.Empty([mostSlots], DType.F64, Device);
        for (int k = 0; k < tables; k++)
        {
            int most = 0;
            for (int i = 0; i < counts[k]; i++) most = Math.Max(most, entries[k][i].Blocks);
            using (var a = new KernelArgs().Add(entries[k]).Add(counts[k]).Ptr(partials).Add(scale))
                _kernels.Launch("grad_norm.cu", "grad_sumsq_multi", (uint)most, 256, a, gridY: (uint)counts[k]);
            using (var a = new KernelArgs().Add(entries[k]).Add(counts[k]).Ptr(partials).Add(k == 0 ? 1 : 0).Add(k == tables - 1 ? 1 : 0).Add(maxNorm).Ptr(result))
                _kernels.Launch("grad_norm.cu", "grad_norm_finish", 1, 256, a);
        }
        for (int k = 0; k < tables; k++)
        {
            long largest = 0;
            for (int i = 0; i < counts[k]; i++) largest = Math.Max(largest, entries[k][i].N);
            if (largest == 0) continue;
            uint blocks = (uint)Math.Clamp((largest + 255) / 256, 1, Math.Max(1, _context.MultiprocessorCount * 8 / counts[k] + 1));
            using var a = new KernelArgs().Add(entries[k]).Add(counts[k]).Ptr(result);
            _kernels.Launch("grad_norm.cu", "grad_scale_multi", blocks, 256, a, gridY: (uint)counts[k]);
        }
        return result;
    }
}
