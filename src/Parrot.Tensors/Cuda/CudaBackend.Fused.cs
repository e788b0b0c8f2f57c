namespace Parrot.Tensors.Cuda;

/// <summary>
/// The fused training kernels: the <see cref="IBackend"/> training ops (IBackend.Training.cs: the backward passes
/// of the row ops, SwiGLU, the embedding gradient), and beyond the contract the forward passes that save per-row
/// statistics and backward passes that take them. Row tensors are [rows, n] and made contiguous when they are
/// not; statistics are float32 [rows]. Outputs that are not contiguous, and float64 accumulators, go through a
/// contiguous float32 stand-in.
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
        _kernels.Launch("norms.cu", "rms_norm", CudaKernels.RowGrid(rows), RowBlock(n, rows), a);
    }

    /// <summary>
    /// RMSNorm backward: <paramref name="dx"/> (x's dtype) from dy, and when given, the weight gradient added into
    /// <paramref name="dweight"/> (float32 [n]); <paramref name="rstd"/> from the forward.
    /// </summary>
    public void RmsNormBackward(Tensor x, Tensor weight, Tensor dy, Tensor rstd, Tensor dx, Tensor? dweight)
    {
        RequireF32(rstd, RowsOf(x).Rows, "RmsNormBackward", "rstd");
        RequireF32(dweight, RowsOf(x).N, "RmsNormBackward", "dweight");
        NormBackward(false, x, weight, 0, dy, null, rstd, dx, dweight, null);
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
        _kernels.Launch("norms.cu", "layer_norm", CudaKernels.RowGrid(rows), RowBlock(n, rows), a);
    }

    /// <summary>LayerNorm backward from the forward's statistics: dx (x's dtype); dweight and dbias (float32 [n]) accumulate when given.</summary>
    public void LayerNormBackward(Tensor x, Tensor? weight, Tensor dy, Tensor mean, Tensor rstd, Tensor dx, Tensor? dweight, Tensor? dbias)
    {
        var (rows, n) = RowsOf(x);
        RequireF32(mean, rows, "LayerNormBackward", "mean");
        RequireF32(rstd, rows, "LayerNormBackward", "rstd");
        RequireF32(dweight, n, "LayerNormBackward", "dweight");
        RequireF32(dbias, n, "LayerNormBackward", "dbias");
        NormBackward(true, x, weight, 0, dy, mean, rstd, dx, dweight, dbias);
    }

    /// <inheritdoc/>
    public void RmsNormBackward(Tensor x, Tensor weight, double eps, Tensor dy, Tensor dx, Tensor? dweight) =>
        NormBackward(false, x, weight, eps, dy, null, null, dx, dweight, null);

    /// <inheritdoc/>
    public void LayerNormBackward(Tensor x, Tensor? weight, double eps, Tensor dy, Tensor dx, Tensor? dweight, Tensor? dbias) =>
        NormBackward(true, x, weight, eps, dy, null, null, dx, dweight, dbias);

    /// <summary>
    /// Both norm backwards: one block per row for dx (the statistics recomputed into scratch vectors when none are
    /// given), then the weight and bias gradients without atomics: fixed chunks of rows summed in order into
    /// partial vectors, and the partials summed in order (bit-reproducible).
    /// </summary>
    private void NormBackward(bool layer, Tensor x, Tensor? weight, double eps, Tensor dy, Tensor? mean, Tensor? rstd, Tensor dx, Tensor? dweight, Tensor? dbias)
    {
        var (rows, n) = RowsOf(x);
        if (rows == 0 || n == 0) return;
        bool recompute = rstd is null;
        using var rs = recompute ? Tensor.Empty([(int)rows], DType.F32, Device) : null;
        using var ms = recompute && layer ? Tensor.Empty([(int)rows], DType.F32, Device) : null;
        var rstdT = rstd ?? rs!;
        var meanT = layer ? mean ?? ms : null;
        IntoDense(dx, d =>
        {
            using var xc = Dense(x);
            using var dyc = dy.DType == x.DType ? Dense(dy) : dy.To(x.DType);
            using var wc = weight is null ? null : Dense(weight);
            var a = new KernelArgs().Add(rows).Add(n).Ptr(d).Ptr(dyc).Ptr(xc).Add(Code(x.DType)).Ptr(wc).Add(Code(weight?.DType ?? DType.F32));
            using (a)
            {
                if (layer) a.Ptr(meanT).Ptr(rstdT).Add(recompute ? 1 : 0).Add(eps);
                else a.Ptr(rstdT).Add(recompute ? 1 : 0).Add((float)eps);
                // The forward's block size: a recomputed statistic then sums in the forward's order (same value to the bit).
                _kernels.Launch("norms.cu", layer ? "layer_norm_backward" : "rms_norm_backward", CudaKernels.RowGrid(rows), RowBlock(n, rows), a);
            }
            if (dweight is null && dbias is null) return;
            Accumulate(dweight, dw => Accumulate(dbias, db =>
            {
                long chunks = Math.Min(rows, 64);
                using var pw = dw is null ? null : Tensor.Empty([(int)(chunks * n)], DType.F32, Device);
                using var pb = db is null ? null : Tensor.Empty([(int)(chunks * n)], DType.F32, Device);
                using (var p = new KernelArgs().Add(rows).Add(n).Add(chunks).Ptr(dyc).Ptr(xc).Add(Code(x.DType)).Ptr(meanT).Ptr(rstdT).Ptr(pw).Ptr(pb))
                    _kernels.Launch("norms.cu", "norm_weight_grad_partial", (uint)((n + 255) / 256), 256, p, gridY: (uint)chunks);
                using (var r = new KernelArgs().Add(n).Add(chunks).Ptr(pw).Ptr(dw).Ptr(pb).Ptr(db))
                    _kernels.Launch("norms.cu", "norm_weight_grad_reduce", _kernels.GridFor(n), 256, r);
            }));
        });
    }

    /// <inheritdoc/>
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log)
    {
        var (rows, n) = RowsOf(y);
        if (rows == 0 || n == 0) return;
        IntoDense(dx, d =>
        {
            using var yc = Dense(y);
            using var dyc = dy.DType == y.DType ? Dense(dy) : dy.To(y.DType);
            using var a = new KernelArgs().Add(rows).Add(n).Ptr(d).Ptr(dyc).Ptr(yc).Add(Code(y.DType)).Add(log ? 1 : 0);
            _kernels.Launch("softmax.cu", "softmax_backward", CudaKernels.RowGrid(rows), RowBlock(n), a);
        });
    }

    /// <inheritdoc/>
    public void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor logSumExp, Tensor dloss, Tensor dlogits)
    {
        long rows = logits.Shape[0], n = logits.Shape[1];
        if (rows == 0 || n == 0) return;
        IntoDense(dlogits, d =>
        {
            using var lc = Dense(logits);
            using var tc = targets.DType == DType.I64 ? Dense(targets) : targets.To(DType.I64);
            using var lse = logSumExp.DType == DType.F32 ? Dense(logSumExp) : logSumExp.To(DType.F32);
            using var g = dloss.DType == DType.F32 ? Dense(dloss) : dloss.To(DType.F32);
            using var a = new KernelArgs().Add(rows).Add(n).Ptr(d).Ptr(lc).Add(Code(logits.DType)).Ptr(tc).Add((long)ignoreIndex).Ptr(lse).Ptr(g);
            _kernels.Launch("cross_entropy.cu", "cross_entropy_backward", CudaKernels.RowGrid(rows), RowBlock(n), a);
        });
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Deterministic, without float atomics: the token positions are sorted by row on the device (<see cref="SortByKey"/>:
    /// histogram, multi-block prefix sum, placement by integer atomics, then each row's positions put in ascending order —
    /// by rank for a short row, by a stable compaction of the ids for a long one, so a hot id costs O(tokens), not O(len²)),
    /// then one block owns each used row and sums its tokens in ascending order in float32 (float64 for F64), adding
    /// the total to the row once.
    /// </remarks>
    public void EmbeddingBackward(Tensor ids, Tensor dy, Tensor dweight)
    {
        long tokens = ids.Count, vocab = dweight.Shape[0], dim = dweight.Shape[^1];
        if (!dweight.IsContiguous || dweight.Rank != 2) throw new ArgumentException($"EmbeddingBackward: dweight must be a contiguous matrix [V, D], got {dweight.ShapeString()}");
        if (tokens == 0 || dim == 0) return;
        using var ic = ids.DType == DType.I64 ? Dense(ids) : ids.To(DType.I64);
        using var dyc = dy.Alias();
        var (starts, sorted) = SortByKey(ic, tokens, vocab, perGroup: vocab, group: tokens);
        using (starts)
        using (sorted)
        using (var a = new KernelArgs().Add(vocab).Add(dim).Ptr(dweight).Add(Code(dweight.DType)).Ptr(starts).Ptr(sorted).Ptr(dyc).Add(Code(dy.DType)).Add(dy.Strides[0]).Add(dy.Strides[1]))
            _kernels.Launch("indexing.cu", "embedding_backward", CudaKernels.RowGrid(vocab), RowBlock(dim), a);
    }

    /// <inheritdoc/>
    public void SwiGlu(Tensor gate, Tensor up, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        IntoDense(y, d =>
        {
            using var g = Dense(gate);
            using var u = Dense(up);
            if (Packable(y.DType, d, g, u))
            {
                long packs = n / PackLength(y.DType);
                using var p = new KernelArgs().Add(packs).Add(n).Ptr(d).Ptr(g).Ptr(u).Add(Code(y.DType));
                _kernels.Launch("elementwise.cu", "swiglu_forward_packed", _kernels.GridFor(Math.Max(packs, 1)), 256, p);
                return;
            }
            using var a = new KernelArgs().Add(n).Ptr(d).Ptr(g).Ptr(u).Add(Code(y.DType));
            _kernels.Launch("elementwise.cu", "swiglu_forward", _kernels.GridFor(n), 256, a);
        });
    }

    /// <inheritdoc/>
    public void SwiGluBackward(Tensor dy, Tensor gate, Tensor up, Tensor dgate, Tensor dup)
    {
        long n = dy.Count;
        if (n == 0) return;
        IntoDense(dgate, dg => IntoDense(dup, du =>
        {
            using var d = dy.DType == gate.DType ? Dense(dy) : dy.To(gate.DType);
            using var g = Dense(gate);
            using var u = Dense(up);
            if (Packable(gate.DType, dg, du, d, g, u))
            {
                long packs = n / PackLength(gate.DType);
                using var p = new KernelArgs().Add(packs).Add(n).Ptr(dg).Ptr(du).Ptr(d).Ptr(g).Ptr(u).Add(Code(gate.DType));
                _kernels.Launch("elementwise.cu", "swiglu_backward_packed", _kernels.GridFor(Math.Max(packs, 1)), 256, p);
                return;
            }
            using var a = new KernelArgs().Add(n).Ptr(dg).Ptr(du).Ptr(d).Ptr(g).Ptr(u).Add(Code(gate.DType));
            _kernels.Launch("elementwise.cu", "swiglu_backward", _kernels.GridFor(n), 256, a);
        }));
    }

    /// <summary>Runs <paramref name="body"/> on <paramref name="dst"/>, or on a contiguous stand-in copied into it afterwards.</summary>
    private void IntoDense(Tensor dst, Action<Tensor> body)
    {
        if (dst.IsContiguous) { body(dst); return; }
        using var tmp = Tensor.Empty(dst.Shape, dst.DType, Device);
        body(tmp);
        Copy(tmp, dst);
    }

    /// <summary>Runs <paramref name="body"/> with a float32 accumulator: <paramref name="acc"/> itself, or a zeroed stand-in added to it afterwards.</summary>
    private void Accumulate(Tensor? acc, Action<Tensor?> body)
    {
        if (acc is null || (acc.DType == DType.F32 && acc.IsContiguous)) { body(acc); return; }
        using var tmp = Tensor.Zeros(acc.Shape, DType.F32, Device);
        body(tmp);
        using var wide = tmp.To(acc.DType);
        Binary(BinaryOp.Add, acc, wide, acc);
    }
}
