namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>Threads per block for one-block-per-row kernels over rows of length <paramref name="n"/>.</summary>
    private static uint RowBlock(long n) => n >= 2048 ? 512u : n >= 512 ? 256u : n >= 128 ? 128u : 64u;

    /// <summary>
    /// Threads per row for the one-block-per-row kernels: <see cref="RowBlock(long)"/>, doubled to 1024 for long rows
    /// when the rows are too few to fill the GPU (decode's one-row norms: each thread's loads form a chain of latencies,
    /// so more threads make it shorter).
    /// </summary>
    private uint RowBlock(long n, long rows) => rows < _context.MultiprocessorCount && n >= 2048 ? 1024u : RowBlock(n);

    /// <inheritdoc/>
    public void Softmax(Tensor x, Tensor y, bool log)
    {
        int last = x.Rank - 1;
        if (x.Count == 0) return;
        if (last < 0) throw Missing("Softmax", "a rank-0 tensor");
        var (L, rows) = RowsLayout("Softmax", x, y, last);
        long n = x.Shape[last];
        using var a = new KernelArgs().Add(L).Add(rows).Add(n).Ptr(y).Add(y.Strides[last]).Ptr(x).Add(x.Strides[last]).Add(Code(x.DType)).Add(log ? 1 : 0);
        _kernels.Launch("softmax.cu", "softmax", CudaKernels.RowGrid(rows), RowBlock(n, rows), a);
    }

    /// <inheritdoc/>
    public void LayerNorm(Tensor x, Tensor? weight, Tensor? bias, double eps, Tensor y)
    {
        int last = x.Rank - 1;
        if (x.Count == 0) return;
        var (L, rows) = RowsLayout("LayerNorm", x, y, last);
        long n = x.Shape[last];
        if (weight is not null && bias is not null && weight.DType != bias.DType)
        {
            if (!weight.DType.IsFloat() || !bias.DType.IsFloat())
                throw Missing("LayerNorm", $"weight {weight.DType.Name()} with bias {bias.DType.Name()} of another dtype");
            // The kernel reads both with one dtype code: the narrower converted (exactly) to one holding both.
            var common = PairDType(weight.DType, bias.DType);
            using var w = ConvertedOrNull(weight, common);
            using var b = ConvertedOrNull(bias, common);
            LayerNorm(x, w ?? weight, b ?? bias, eps, y);
            return;
        }
        DType wdt = weight?.DType ?? bias?.DType ?? DType.F32;
        using var a = new KernelArgs().Add(L).Add(rows).Add(n).Ptr(y).Add(y.Strides[last]).Ptr(x).Add(x.Strides[last]).Add(Code(x.DType))
            .Ptr(weight).Ptr(bias).Add(Code(wdt)).Add(weight?.Strides[0] ?? 0L).Add(bias?.Strides[0] ?? 0L).Add(eps).Add(0UL).Add(0UL);
        _kernels.Launch("norms.cu", "layer_norm", CudaKernels.RowGrid(rows), RowBlock(n, rows), a);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// One kernel (add_rms_norm: a launch and a pass over the row fewer than the two ops) when every operand is
    /// contiguous and of one dtype, f32 or bf16 (<see cref="CanAddRmsNorm"/>): its arithmetic is binary_packed's add and
    /// rms_norm's float path exactly, with the same threads per row, so the bits equal the two ops'. Otherwise the two ops.
    /// </remarks>
    public void AddRmsNorm(Tensor x, Tensor residual, Tensor weight, double eps, Tensor sum, Tensor y)
    {
        if (!CanAddRmsNorm(x, residual, weight, sum, y))
        {
            Binary(BinaryOp.Add, x, residual, sum);
            RmsNorm(sum, weight, eps, y);
            return;
        }
        long n = x.Shape[^1], rows = x.Count / Math.Max(n, 1);
        if (rows == 0 || n == 0) return;
        using var a = new KernelArgs().Add(rows).Add(n).Ptr(sum).Ptr(y).Ptr(x).Ptr(residual).Ptr(weight).Add(Code(x.DType)).Add((float)eps);
        _kernels.Launch("norms.cu", "add_rms_norm", CudaKernels.RowGrid(rows), RowBlock(n, rows), a);
    }

    /// <summary>Whether <see cref="AddRmsNorm"/> takes these operands.</summary>
    public static bool CanAddRmsNorm(Tensor x, Tensor residual, Tensor weight, Tensor sum, Tensor y) =>
        x.DType is DType.F32 or DType.BF16 && x.Rank >= 1 && new[] { residual, weight, sum, y }.All(t => t.DType == x.DType)
        && new[] { x, residual, weight, sum, y }.All(t => t.IsContiguous) && residual.Shape.SequenceEqual(x.Shape)
        && sum.Shape.SequenceEqual(x.Shape) && y.Shape.SequenceEqual(x.Shape) && weight.Rank == 1 && weight.Shape[0] == x.Shape[^1];

    /// <inheritdoc/>
    public void RmsNorm(Tensor x, Tensor weight, double eps, Tensor y)
    {
        int last = x.Rank - 1;
        if (x.Count == 0) return;
        var (L, rows) = RowsLayout("RmsNorm", x, y, last);
        long n = x.Shape[last];
        using var a = new KernelArgs().Add(L).Add(rows).Add(n).Ptr(y).Add(Code(y.DType)).Add(y.Strides[last])
            .Ptr(x).Add(Code(x.DType)).Add(x.Strides[last]).Ptr(weight).Add(Code(weight.DType)).Add(weight.Strides[0]).Add((float)eps).Add(0UL);
        _kernels.Launch("norms.cu", "rms_norm", CudaKernels.RowGrid(rows), RowBlock(n, rows), a);
    }

    /// <inheritdoc/>
    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor lossPerRow, Tensor? logSumExp)
    {
        // The kernel saves a float32 log-sum-exp into a contiguous vector; anything else goes through one.
        if (logSumExp is not null && (logSumExp.DType != DType.F32 || !logSumExp.IsContiguous))
        {
            using var lse = Tensor.Empty(logSumExp.Shape, DType.F32, Device);
            CrossEntropyCore(logits, targets, ignoreIndex, lossPerRow, lse);
            Copy(lse, logSumExp);
            return;
        }
        CrossEntropyCore(logits, targets, ignoreIndex, lossPerRow, logSumExp);
    }

    private void CrossEntropyCore(Tensor logits, Tensor targets, int ignoreIndex, Tensor lossPerRow, Tensor? logSumExp)
    {
        long rows = logits.Shape[0], n = logits.Shape[1];
        if (rows == 0) return;
        // No host wait for the targets: Tensor.CrossEntropy queued their check (DeferredIndexChecks), which throws at
        // the next read of a value; meanwhile a bad target's row gets a NaN loss and nothing is read out of bounds.
        using var a = new KernelArgs().Add(rows).Add(n).Ptr(logits).Add(Code(logits.DType)).Add(logits.Strides[0]).Add(logits.Strides[1])
            .Ptr(targets).Add(targets.Strides[0]).Add((long)ignoreIndex).Ptr(lossPerRow).Add(Code(lossPerRow.DType)).Add(lossPerRow.Strides[0]).Ptr(logSumExp);
        _kernels.Launch("cross_entropy.cu", "cross_entropy_forward", CudaKernels.RowGrid(rows), RowBlock(n), a);
    }
}
