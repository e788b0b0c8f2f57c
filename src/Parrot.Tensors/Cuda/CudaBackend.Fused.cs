namespace Parrot.Tensors.Cuda;

/// <summary>
/// Fused training kernels beyond <see cref="IBackend"/>: the backward passes of the row ops, SwiGLU, the
/// embedding gradient, and the forward passes that save what those need (per-row statistics, log-sum-exp).
/// Row tensors are [rows, n] and made contiguous when they are not; statistics are float32 [rows].
/// </summary>
public sealed partial class CudaBackend
{
    private static (long Rows, long N) RowsOf(Tensor t) => (t.Rank == 0 ? 1 : t.Count / Math.Max(t.Shape[^1], 1), t.Rank == 0 ? 1 : t.Shape[^1]);

    private static Tensor Dense(Tensor t) => t.IsContiguous ? t.Alias() : t.Contiguous();

    private static void RequireF32(Tensor? t, long count, string op, string name)
    {
        if (t is not null && (t.DType != DType.F32 || t.Count != count || !t.IsContiguous))
            throw new ArgumentException($"{op}: {name} must be a contiguous float32 tensor of {count} elements, got {t.DType.Name()} {t.ShapeString()}");
    }

    /// <summary>RMSNorm forward as <see cref="IBackend.RmsNorm"/>, also saving each row's 1/rms in <paramref name="rstd"/>.</summary>
    public void RmsNorm(Tensor x, Tensor weight, double eps, Tensor y, Tensor rstd)
    {
        var (rows, n) = RowsOf(x);
        RequireF32(rstd, rows, "RmsNorm", "rstd");
        if (rows == 0) return;
        int last = x.Rank - 1;
        var (L, _) = RowsLayout("RmsNorm", x, y, last);
        using var a = new KernelArgs().Add(L).Add(rows).Add(n).Ptr(y).Add(Code(y.DType)).Add(y.Strides[last])
            .Ptr(x).Add(Code(x.DType)).Add(x.Strides[last]).Ptr(weight).Add(Code(weight.DType)).Add(weight.Strides[0]).Add((float)eps).Ptr(rstd);
        _kernels.Launch("norms.cu", "rms_norm", CudaKernels.RowGrid(rows), RowBlock(n), a);
    }

    /// <summary>
    /// RMSNorm backward: <paramref name="dx"/> (x's dtype, contiguous) from dy, and when given, the weight
    /// gradient added into <paramref name="dweight"/> (float32 [n]); <paramref name="rstd"/> from the forward.
    /// </summary>
    public void RmsNormBackward(Tensor x, Tensor weight, Tensor dy, Tensor rstd, Tensor dx, Tensor? dweight)
    {
        var (rows, n) = RowsOf(x);
        RequireF32(dweight, n, "RmsNormBackward", "dweight");
        if (!dx.IsContiguous || dx.DType != x.DType) throw new ArgumentException("RmsNormBackward: dx must be contiguous with x's dtype");
        if (rows == 0) return;
        using var xc = Dense(x);
        using var dyc = dy.DType == x.DType ? Dense(dy) : dy.To(x.DType);
        using var a = new KernelArgs().Add(rows).Add(n).Ptr(dx).Ptr(dyc).Ptr(xc).Add(Code(x.DType)).Ptr(weight).Add(Code(weight.DType)).Ptr(rstd).Ptr(dweight);
        _kernels.Launch("norms.cu", "rms_norm_backward", CudaKernels.RowGrid(rows), RowBlock(n), a);
    }

    /// <summary>LayerNorm forward as <see cref="IBackend.LayerNorm"/>, also saving each row's mean and 1/std.</summary>
    public void LayerNorm(Tensor x, Tensor? weight, Tensor? bias, double eps, Tensor y, Tensor mean, Tensor rstd)
    {
        var (rows, n) = RowsOf(x);
        RequireF32(mean, rows, "LayerNorm", "mean");
        RequireF32(rstd, rows, "LayerNorm", "rstd");
        if (rows == 0) return;
        int last = x.Rank - 1;
        var (L, _) = RowsLayout("LayerNorm", x, y, last);
        DType wdt = weight?.DType ?? bias?.DType ?? DType.F32;
        using var a = new KernelArgs().Add(L).Add(rows).Add(n).Ptr(y).Add(y.Strides[last]).Ptr(x).Add(x.Strides[last]).Add(Code(x.DType))
            .Ptr(weight).Ptr(bias).Add(Code(wdt)).Add(weight?.Strides[0] ?? 0L).Add(bias?.Strides[0] ?? 0L).Add(eps).Ptr(mean).Ptr(rstd);
        _kernels.Launch("norms.cu", "layer_norm", CudaKernels.RowGrid(rows), RowBlock(n), a);
    }

    /// <summary>LayerNorm backward: dx (contiguous, x's dtype); dweight and dbias (float32 [n]) accumulate when given.</summary>
    public void LayerNormBackward(Tensor x, Tensor? weight, Tensor dy, Tensor mean, Tensor rstd, Tensor dx, Tensor? dweight, Tensor? dbias)
    {
        var (rows, n) = RowsOf(x);
        RequireF32(dweight, n, "LayerNormBackward", "dweight");
        RequireF32(dbias, n, "LayerNormBackward", "dbias");
        if (!dx.IsContiguous || dx.DType != x.DType) throw new ArgumentException("LayerNormBackward: dx must be contiguous with x's dtype");
        if (rows == 0) return;
        using var xc = Dense(x);
        using var dyc = dy.DType == x.DType ? Dense(dy) : dy.To(x.DType);
        using var a = new KernelArgs().Add(rows).Add(n).Ptr(dx).Ptr(dyc).Ptr(xc).Add(Code(x.DType)).Ptr(weight).Add(Code(weight?.DType ?? DType.F32))
            .Ptr(mean).Ptr(rstd).Ptr(dweight).Ptr(dbias);
        _kernels.Launch("norms.cu", "layer_norm_backward", CudaKernels.RowGrid(rows), RowBlock(n), a);
    }

    /// <summary>Softmax backward from the forward's output y: dx = y⊙(dy − Σdy⊙y), or for log-softmax dx = dy − exp(y)·Σdy.</summary>
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log)
    {
        var (rows, n) = RowsOf(y);
        if (!dx.IsContiguous || dx.DType != y.DType) throw new ArgumentException("SoftmaxBackward: dx must be contiguous with y's dtype");
        if (rows == 0) return;
        using var yc = Dense(y);
        using var dyc = dy.DType == y.DType ? Dense(dy) : dy.To(y.DType);
        using var a = new KernelArgs().Add(rows).Add(n).Ptr(dx).Ptr(dyc).Ptr(yc).Add(Code(y.DType)).Add(log ? 1 : 0);
        _kernels.Launch("softmax.cu", "softmax_backward", CudaKernels.RowGrid(rows), RowBlock(n), a);
    }

    /// <summary>Cross-entropy forward as <see cref="IBackend.CrossEntropy"/>, also saving each row's log-sum-exp (float32 [rows]).</summary>
    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor lossPerRow, Tensor logSumExp)
    {
        long rows = logits.Shape[0];
        RequireF32(logSumExp, rows, "CrossEntropy", "logSumExp");
        CrossEntropyCore(logits, targets, ignoreIndex, lossPerRow, logSumExp);
    }

    /// <summary>
    /// Cross-entropy backward without materialising the probabilities: dlogits = (softmax − onehot)·dloss[row],
    /// 0 on ignored rows. dloss is float32 [rows] (already divided by the count for a mean); dlogits contiguous.
    /// </summary>
    public void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor logSumExp, Tensor dloss, Tensor dlogits)
    {
        long rows = logits.Shape[0], n = logits.Shape[1];
        RequireF32(logSumExp, rows, "CrossEntropyBackward", "logSumExp");
        RequireF32(dloss, rows, "CrossEntropyBackward", "dloss");
        if (!dlogits.IsContiguous || dlogits.DType != logits.DType) throw new ArgumentException("CrossEntropyBackward: dlogits must be contiguous with the logits' dtype");
        if (rows == 0) return;
        using var lc = Dense(logits);
        using var tc = targets.DType == DType.I64 ? Dense(targets) : targets.To(DType.I64);
        using var a = new KernelArgs().Add(rows).Add(n).Ptr(dlogits).Ptr(lc).Add(Code(logits.DType)).Ptr(tc).Add((long)ignoreIndex).Ptr(logSumExp).Ptr(dloss);
        _kernels.Launch("cross_entropy.cu", "cross_entropy_backward", CudaKernels.RowGrid(rows), RowBlock(n), a);
    }

    /// <summary>Embedding backward: dweight[ids[t], :] += dy[t, :] into a float32 [vocab, dim] accumulator.</summary>
    public void EmbeddingBackward(Tensor ids, Tensor dy, Tensor dweight)
    {
        long tokens = ids.Count, dim = dweight.Shape[^1];
        RequireF32(dweight, dweight.Count, "EmbeddingBackward", "dweight");
        if (tokens == 0) return;
        using var ic = Dense(ids);
        using var dyc = Dense(dy);
        using var a = new KernelArgs().Add(tokens).Add(dim).Ptr(dweight).Ptr(ic).Add(Code(ids.DType)).Ptr(dyc).Add(Code(dy.DType));
        _kernels.Launch("indexing.cu", "embedding_backward", CudaKernels.RowGrid(tokens), RowBlock(dim), a);
    }

    /// <summary>SwiGLU forward y = silu(gate)⊙up (one dtype, contiguous outputs).</summary>
    public void SwiGlu(Tensor gate, Tensor up, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        using var g = Dense(gate);
        using var u = Dense(up);
        using var a = new KernelArgs().Add(n).Ptr(y).Ptr(g).Ptr(u).Add(Code(y.DType));
        _kernels.Launch("elementwise.cu", "swiglu_forward", _kernels.GridFor(n), 256, a);
    }

    /// <summary>SwiGLU backward: dgate = dy⊙up⊙σ(g)(1 + g(1 − σ(g))), dup = dy⊙silu(g).</summary>
    public void SwiGluBackward(Tensor dy, Tensor gate, Tensor up, Tensor dgate, Tensor dup)
    {
        long n = dy.Count;
        if (n == 0) return;
        using var d = Dense(dy);
        using var g = Dense(gate);
        using var u = Dense(up);
        using var a = new KernelArgs().Add(n).Ptr(dgate).Ptr(dup).Ptr(d).Ptr(g).Ptr(u).Add(Code(gate.DType));
        _kernels.Launch("elementwise.cu", "swiglu_backward", _kernels.GridFor(n), 256, a);
    }
}
