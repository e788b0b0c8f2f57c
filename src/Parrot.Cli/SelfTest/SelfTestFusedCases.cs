using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// The CUDA backend's fused training kernels (backward passes, SwiGLU, embedding gradient, AdamW's bf16 copy),
/// which have no <see cref="IBackend"/> counterpart: on a GPU they run as fused kernels, elsewhere (and for the
/// references) as compositions of tensor ops computed in float32 (float64 for the float64 reference).
/// </summary>
internal static class SelfTestFusedCases
{
    private const double Eps = 1e-6;

    internal static IEnumerable<SelfTestCase> All()
    {
        yield return new("rms norm backward (dx)", RowInputs, x => Fused(x[0], out var cuda)
            ? Gpu(() => { var (dx, _) = RmsBackward(cuda!, x, withWeight: false); return dx; })
            : Composite(x, c => { var (dx, _) = RmsComposite(c); return dx; }));
        yield return new("rms norm backward (dweight)", RowInputs, x => Fused(x[0], out var cuda)
            ? Gpu(() => { var (dx, dw) = RmsBackward(cuda!, x, withWeight: true); dx.Dispose(); return dw!; })
            : Composite(x, c => { var (_, dw) = RmsComposite(c); return dw; }, keepDType: true));
        yield return new("layer norm backward (dx)", RowInputs, x => Fused(x[0], out var cuda)
            ? Gpu(() =>
            {
                var d = x[0].Device; int rows = x[0].Shape[0];
                using var mean = Tensor.Empty([rows], DType.F32, d);
                using var rstd = Tensor.Empty([rows], DType.F32, d);
                using var y = Tensor.Empty(x[0].Shape, x[0].DType, d);
                cuda!.LayerNorm(x[0], x[1], null, 1e-5, y, mean, rstd);
                var dx = Tensor.Empty(x[0].Shape, x[0].DType, d);
                cuda.LayerNormBackward(x[0], x[1], x[2], mean, rstd, dx, null, null);
                return dx;
            })
            : Composite(x, c =>
            {
                var (xx, w, dy) = (c[0], c[1], c[2]);
                var xm = xx - xx.Mean(-1, true);
                var r = (xm.Square().Mean(-1, true) + 1e-5).Rsqrt();
                var xh = xm * r;
                var g = dy * w;
                return r * (g - g.Mean(-1, true) - xh * (g * xh).Mean(-1, true));
            }));
        foreach (bool log in new[] { false, true })
            yield return new(log ? "log-softmax backward" : "softmax backward", (r, t) => [Normal(r, t, 32, 1000), Normal(r, t, 32, 1000)], x => Fused(x[0], out var cuda)
                ? Gpu(() =>
                {
                    using var y = log ? x[0].LogSoftmax(-1) : x[0].Softmax(-1);
                    var dx = Tensor.Empty(y.Shape, y.DType, y.Device);
                    cuda!.SoftmaxBackward(y, x[1], dx, log);
                    return dx;
                })
                : Composite(x, c => log ? c[1] - c[0].LogSoftmax(-1).Exp() * c[1].Sum(-1, true)
                                        : c[0].Softmax(-1) * (c[1] - (c[1] * c[0].Softmax(-1)).Sum(-1, true))));
        yield return new("cross-entropy backward", CrossEntropyInputs, x => Fused(x[0], out var cuda)
            ? Gpu(() =>
            {
                var d = x[0].Device; int rows = x[0].Shape[0];
                using var lse = Tensor.Empty([rows], DType.F32, d);
                using var loss = Tensor.Empty([rows], DType.F32, d);
                cuda!.CrossEntropy(x[0], x[1], -100, loss, lse);
                using var dloss = MeanWeights(x[1], d);
                var dl = Tensor.Empty(x[0].Shape, x[0].DType, d);
                cuda.CrossEntropyBackward(x[0], x[1], -100, lse, dloss, dl);
                return dl;
            })
            : Composite(x, c =>
            {
                var logits = c[0];
                using var classes = Tensor.Arange(logits.Shape[1], DType.I64, logits.Device);
                using var t = x[1].Reshape(-1, 1);
                var onehot = classes.Reshape(1, -1).Eq(t).To(logits.DType);
                using var w = MeanWeights(x[1], logits.Device);
                var wc = w.To(logits.DType).Reshape(-1, 1);
                return (logits.Softmax(-1) - onehot) * wc;
            }));
        yield return EmbeddingBackward("embedding backward", r => Indices(r, 500, 4, 33), 132);
        // A hot id (a padding token in a big batch): 70 % of 16384 positions in one row, sorted by the stable compaction of
        // the ids (the rank sort would be O(len²) in one block).
        yield return EmbeddingBackward("embedding bwd, hot id 70% of 16k", r => HotIndices(r, 500, 16384, hot: 7), 16384);
        yield return new("swiglu forward", (r, t) => [Normal(r, t, 48, 80), Normal(r, t, 48, 80)], x => Fused(x[0], out var cuda)
            ? Gpu(() => { var y = Tensor.Empty(x[0].Shape, x[0].DType, x[0].Device); cuda!.SwiGlu(x[0], x[1], y); return y; })
            : Composite(x, c => c[0].Silu() * c[1]));
        yield return new("swiglu backward", (r, t) => [Normal(r, t, 48, 80), Normal(r, t, 48, 80), Normal(r, t, 48, 80)], x => Fused(x[0], out var cuda)
            ? Gpu(() =>
            {
                using var dg = Tensor.Empty(x[0].Shape, x[0].DType, x[0].Device);
                using var du = Tensor.Empty(x[0].Shape, x[0].DType, x[0].Device);
                cuda!.SwiGluBackward(x[2], x[0], x[1], dg, du);
                return Tensor.Concat(0, dg, du);
            })
            : Composite(x, c =>
            {
                var (g, u, dy) = (c[0], c[1], c[2]);
                var s = g.Sigmoid();
                var dgate = dy * u * s * (1.0 + g * (1.0 - s));
                return Tensor.Concat(0, dgate, dy * g * s);
            }));
        yield return new("adamw with bf16 copy", (r, t) => [Normal(r, DType.F32, 4000), Normal(r, t, 4000)], x =>
        {
            var p = x[0].Clone();
            using var m = Tensor.Zeros(p.Shape, p.DType, p.Device);
            using var v = Tensor.Zeros(p.Shape, p.DType, p.Device);
            var step = new AdamWStep(1e-2, 0.9, 0.999, 1e-8, 0.1, 1);
            if (Fused(p, out var cuda) && p.DType == DType.F32)
            {
                var copy = Tensor.Empty(p.Shape, DType.BF16, p.Device);
                cuda!.AdamW(p, x[1], m, v, step, copy);
                p.Dispose();
                return copy;
            }
            p.Backend.AdamW(p, x[1], m, v, step);
            if (p.DType == DType.F64) return p; // the float64 reference keeps full precision
            using (p) return p.To(DType.BF16);
        }, Tolerance: SelfTestRunner.Bf16Tolerance); // the result is the bf16 copy, whatever the gradients' dtype
        yield return MultiTensorAdamW();
        yield return SelfTestGradClipCases.MultiTensorGradClip();
        yield return SelfTestGradClipCases.ShardSumOfSquares();
        yield return MixedPrecisionOptimizer();
        foreach (var d in DecodeLinear()) yield return d;
        // The training ops of the backend contract (what the autograd rules call): statistics recomputed, the
        // weight gradients summed without atomics.
        yield return new("rms norm bwd, contract (dx)", RowInputs, x => Tensor.RmsNormBackward(x[0], x[1], Eps, x[2], false).Dx);
        yield return new("rms norm bwd, contract (dweight)", RowInputs, x =>
        {
            var (dx, dw) = Tensor.RmsNormBackward(x[0], x[1], Eps, x[2], true);
            dx.Dispose();
            return dw!;
        });
        yield return new("layer norm bwd, contract (dx)", RowInputs, x => Tensor.LayerNormBackward(x[0], x[1], 1e-5, x[2], false, false).Dx);
        yield return new("layer norm bwd, contract (dw, db)", RowInputs, x =>
        {
            var (dx, dw, db) = Tensor.LayerNormBackward(x[0], x[1], 1e-5, x[2], true, true);
            dx.Dispose();
            using (dw) using (db) return Tensor.Concat(0, dw!, db!);
        });
        yield return new("embedding bwd, contract", (r, t) => [Indices(r, 500, 4, 33), Normal(r, t, 4, 33, 64)], x =>
            Tensor.EmbeddingBackward(x[0], x[1], 500, x[1].DType));
    }

    /// <summary>
    /// A linear layer's decode step with the bias (and GELU) fused into the product: on a GPU, MatMulEpilogue, which
    /// runs native/gemv.cu for these few rows; elsewhere x·wᵀ + b (then tanh-form GELU) in float32.
    /// </summary>
    internal static IEnumerable<SelfTestCase> DecodeLinear()
    {
        foreach (bool gelu in new[] { false, true })
            yield return new(gelu ? "linear decode bias+gelu (epilogue)" : "linear decode bias (epilogue)",
                (r, t) => [Normal(r, t, 3, 1000), Normal(r, t, 513, 1000), Normal(r, t, 513)], x => Fused(x[0], out var cuda)
                ? Gpu(() =>
                {
                    using var wt = x[1].Transpose(0, 1);
                    var y = Tensor.Empty([x[0].Shape[0], x[1].Shape[0]], x[0].DType, x[0].Device);
                    cuda!.MatMulEpilogue(x[0], wt, y, x[2], gelu);
                    return y;
                })
                : Composite(x, c =>
                {
                    var y = Tensor.MatMul(c[0], c[1].Transpose(0, 1)) + c[2];
                    return gelu ? y.Map(UnaryOp.GeluTanh) : y;
                }));
    }

    /// <summary>Two AdamW steps over three parameters of different sizes: one fused multi-tensor launch per step on a GPU.</summary>
    /// <summary>
    /// The CUDA embedding gradient (a 500 × 64 table, <paramref name="tokens"/> positions of the ids
    /// <paramref name="ids"/> draws) against a scatter-add of the rows elsewhere.
    /// </summary>
    private static SelfTestCase EmbeddingBackward(string name, Func<Random, Tensor> ids, int tokens) =>
        new(name, (r, t) => [ids(r), Normal(r, t, tokens, 64)], x => Fused(x[1], out var cuda)
            ? Gpu(() =>
            {
                var dw = Tensor.Zeros([500, 64], DType.F32, x[1].Device);
                cuda!.EmbeddingBackward(x[0], x[1], dw);
                return dw;
            })
            : Composite(x, c =>
            {
                var dw = Tensor.Zeros([500, 64], c[1].DType, c[1].Device);
                using var column = x[0].Reshape(tokens, 1);
                using var idx = column.Expand(tokens, 64);
                return dw.ScatterAdd(0, idx, c[1]);
            }, keepDType: true));

    internal static SelfTestCase MultiTensorAdamW() => new("adamw multi-tensor (3 params)",
        (r, t) => [Normal(r, DType.F32, 300), Normal(r, t, 300), Normal(r, DType.F32, 5000), Normal(r, t, 5000), Normal(r, DType.F32, 17), Normal(r, t, 17)], x =>
        {
            var ps = new[] { x[0].Clone(), x[2].Clone(), x[4].Clone() };
            var grads = new[] { x[1], x[3], x[5] };
            var ms = ps.Select(p => Tensor.Zeros(p.Shape, p.DType, p.Device)).ToArray();
            var vs = ps.Select(p => Tensor.Zeros(p.Shape, p.DType, p.Device)).ToArray();
            for (int step = 1; step <= 2; step++)
            {
                var s = new AdamWStep(1e-2, 0.9, 0.95, 1e-8, 0.05, step);
                if (Fused(ps[0], out var cuda))
                    cuda!.AdamWMulti(Enumerable.Range(0, 3).Select(i => new CudaBackend.AdamWTensor(ps[i], grads[i], ms[i], vs[i])).ToList(), s);
                else
                    for (int i = 0; i < 3; i++) ps[i].Backend.AdamW(ps[i], grads[i], ms[i], vs[i], s);
            }
            foreach (var t in ms.Concat(vs)) t.Dispose();
            var y = Tensor.Concat(0, ps);
            foreach (var p in ps) p.Dispose();
            return y;
        });

    /// <summary>
    /// Two steps of the bf16 training optimizer (MixedPrecisionAdamW) over a large parameter (its own launch on a GPU)
    /// and two small ones (queued, one shared launch): the updated weights, concatenated.
    /// </summary>
    internal static SelfTestCase MixedPrecisionOptimizer() => new("mixed-precision AdamW (1M + 2 small params)",
        (r, t) => [Normal(r, t, (1 << 20) + 3), Normal(r, t, (1 << 20) + 3), Normal(r, t, 300), Normal(r, t, 300), Normal(r, t, 17), Normal(r, t, 17)], x =>
        {
            var ps = new[] { x[0], x[2], x[4] }.Select(w => new global::Parrot.Autograd.Variable(TensorScope.Detach(w.Clone()), requiresGrad: true)).ToArray();
            using var opt = new global::Parrot.Nn.Optim.MixedPrecisionAdamW(ps, 1e-2, 0.9, 0.95, 1e-8, 0.05);
            for (int step = 0; step < 2; step++)
            {
                opt.ZeroGrad();
                global::Parrot.Autograd.Variable? loss = null;
                for (int i = 0; i < 3; i++)
                {
                    var term = (ps[i] * new global::Parrot.Autograd.Variable(x[2 * i + 1])).Sum();
                    loss = loss is null ? term : loss + term;
                }
                loss!.Backward();
                opt.Step();
            }
            var y = Tensor.Concat(0, ps.Select(p => p.Value).ToArray());
            foreach (var p in ps) p.Value.Dispose();
            return y;
        });

    private static Tensor[] RowInputs(Random r, DType t) => [Normal(r, t, 40, 384), Normal(r, t, 384), Normal(r, t, 40, 384)];

    private static Tensor[] CrossEntropyInputs(Random r, DType t)
    {
        var targets = new long[64];
        for (int i = 0; i < targets.Length; i++) targets[i] = i % 17 == 3 ? -100 : r.Next(3000);
        return [Normal(r, t, 64, 3000), Tensor.FromArray(targets, 64)];
    }

    /// <summary>d(mean loss)/d(row loss): 1/count for counted rows, 0 for ignored ones (float32 [rows]).</summary>
    private static Tensor MeanWeights(Tensor targets, Device device)
    {
        var t = targets.ToLongArray();
        int count = t.Count(v => v != -100);
        var w = t.Select(v => v == -100 ? 0f : 1f / count).ToArray();
        using var host = Tensor.FromArray(w, w.Length);
        return host.To(device);
    }

    private static bool Fused(Tensor t, out CudaBackend? cuda)
    {
        cuda = t.Device.Kind == DeviceKind.Cuda ? t.Backend as CudaBackend : null;
        return cuda is not null;
    }

    private static Tensor Gpu(Func<Tensor> body) => body();

    /// <summary>
    /// Runs <paramref name="body"/> on the float inputs converted to float32 (float64 when they are float64) and
    /// rounds the result back to the inputs' dtype (unless <paramref name="keepDType"/>: float32 accumulators).
    /// </summary>
    private static Tensor Composite(Tensor[] x, Func<Tensor[], Tensor> body, bool keepDType = false)
    {
        var floatType = x.First(t => t.DType.IsFloat()).DType;
        var compute = floatType == DType.F64 ? DType.F64 : DType.F32;
        using var scope = TensorScope.Begin();
        var c = x.Select(t => t.DType.IsFloat() ? t.To(compute) : t.Alias()).ToArray();
        var y = body(c);
        return scope.Keep(keepDType ? y : y.To(floatType));
    }

    private static (Tensor Dx, Tensor? Dw) RmsBackward(CudaBackend cuda, Tensor[] x, bool withWeight)
    {
        var d = x[0].Device; int rows = x[0].Shape[0];
        using var rstd = Tensor.Empty([rows], DType.F32, d);
        using var y = Tensor.Empty(x[0].Shape, x[0].DType, d);
        cuda.RmsNorm(x[0], x[1], Eps, y, rstd);
        var dx = Tensor.Empty(x[0].Shape, x[0].DType, d);
        var dw = withWeight ? Tensor.Zeros([x[0].Shape[1]], DType.F32, d) : null;
        cuda.RmsNormBackward(x[0], x[1], x[2], rstd, dx, dw);
        return (dx, dw);
    }

    private static (Tensor Dx, Tensor Dw) RmsComposite(Tensor[] c)
    {
        var (xx, w, dy) = (c[0], c[1], c[2]);
        int n = xx.Shape[1];
        var r = (xx.Square().Mean(-1, true) + Eps).Rsqrt();
        var g = dy * w;
        var dot = (g * xx).Sum(-1, true);
        var dx = r * g - xx * (r * r * r) * dot / n;
        var dw = (dy * xx * r).Sum(0);
        return (dx, dw);
    }
}
