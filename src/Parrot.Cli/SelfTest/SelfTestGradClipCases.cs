using Parrot.Autograd;
using Parrot.Nn.Optim;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// Global gradient-norm clipping over many gradients (GradClip): on a GPU the multi-tensor kernels of
/// native/grad_norm.cu (CudaBackend.GradNormClip), elsewhere a sum of squares and a read per gradient.
/// </summary>
internal static class SelfTestGradClipCases
{
    /// <summary>
    /// 70 gradients (two tables of the kernels), of 1 to 100003 elements, in the case's dtype and two in float32:
    /// DataParallel's prescale by 1/3 under a limit that is not reached, then clipping to norm 1. The result is both
    /// norms (divided by √elements, so they weigh like the clipped gradients) followed by the gradients. On a GPU the
    /// same calls also run the per-tensor path there (<see cref="CudaBackend.MultiTensorGradClip"/> off), and the
    /// gradients must be its bits (after the clipping: when the two norms are equal, the contract) and the norms equal
    /// to 1e-12.
    /// </summary>
    internal static SelfTestCase MultiTensorGradClip() => new("grad norm + clip (multi-tensor)", (r, t) =>
        {
            var x = new List<Tensor> { Normal(r, t, 1), Normal(r, t, 7), Normal(r, t, 1000), Normal(r, t, 100003), Normal(r, DType.F32, 300), Normal(r, DType.F32, 5000) };
            for (int i = 0; i < 64; i++) x.Add(Normal(r, t, 1 + i * 37 % 200));
            return [.. x];
        }, x =>
        {
            var (grads, n1, n2) = ScaleThenClip(x);
            if (x[0].Device.Kind == DeviceKind.Cuda && x[0].Backend is CudaBackend cuda)
            {
                bool before = cuda.MultiTensorGradClip; // off under PARROT_MULTI_TENSOR_CLIP=0: then both runs are per-tensor
                cuda.MultiTensorGradClip = false;
                try
                {
                    var (old, o1, o2) = ScaleThenClip(x);
                    CompareWithPerTensorPath(grads, n1, n2, old, o1, o2);
                    foreach (var g in old) g.Dispose();
                }
                finally { cuda.MultiTensorGradClip = before; }
            }
            double rms = Math.Sqrt(x.Sum(g => (double)g.Count));
            return FiguresThenTensors([n1 / rms, n2 / rms], grads);
        });

    /// <summary>
    /// ZeRO-2's local share of the norm (<see cref="GradClip.ScaleAndSumOfSquares"/>, what DataParallel adds over ranks):
    /// the same 70 tensors scaled by 1/3, Σ‖g‖² returned without clipping. The result is the sum (over the element count)
    /// followed by the scaled tensors; on a GPU the per-tensor path runs there too and must give the sum to 1e-12 and the
    /// tensors bit for bit.
    /// </summary>
    internal static SelfTestCase ShardSumOfSquares() => new("ZeRO-2 sum of squares (multi-tensor)", (r, t) =>
        {
            var x = new List<Tensor> { Normal(r, t, 1), Normal(r, t, 100003), Normal(r, DType.F32, 5000) };
            for (int i = 0; i < 67; i++) x.Add(Normal(r, t, 1 + i * 53 % 300));
            return [.. x];
        }, x =>
        {
            var (scaled, sum) = ScaleAndSum(x);
            if (x[0].Device.Kind == DeviceKind.Cuda && x[0].Backend is CudaBackend cuda)
            {
                bool before = cuda.MultiTensorGradClip;
                cuda.MultiTensorGradClip = false;
                try
                {
                    var (old, oldSum) = ScaleAndSum(x);
                    CompareWithPerTensorPath(scaled, sum, 0, old, oldSum, 0); // second "norms" equal: the scaled bits always compared
                    foreach (var g in old) g.Dispose();
                }
                finally { cuda.MultiTensorGradClip = before; }
            }
            return FiguresThenTensors([sum / x.Sum(g => (double)g.Count)], scaled);
        });

    /// <summary>A case's result: <paramref name="figures"/> then every tensor flattened, in float64 (the tensors are disposed).</summary>
    private static Tensor FiguresThenTensors(double[] figures, Tensor[] tensors)
    {
        var parts = new List<Tensor> { Tensor.FromArray(figures, tensors[0].Device) };
        foreach (var g in tensors)
        {
            using (g)
            using (var flat = g.Reshape(-1))
                parts.Add(flat.To(DType.F64));
        }
        var y = Tensor.Concat(0, [.. parts]);
        foreach (var p in parts) p.Dispose();
        return y;
    }

    private static (Tensor[] Scaled, double Sum) ScaleAndSum(Tensor[] x)
    {
        var copies = x.Select(g => TensorScope.Detach(g.Clone())).ToArray();
        return (copies, GradClip.ScaleAndSumOfSquares(copies, 1.0 / 3));
    }

    /// <summary>
    /// Bench rows "grad norm 0.5B multi-tensor" / "… per-tensor": ClipGradNorm without a limit over Qwen2-0.5B's 290
    /// parameter shapes in bf16 (the gradients of bf16 training), the multi-tensor kernels against the per-tensor path
    /// (a SumOfSquares and a host read per gradient); one call between events, host waits included. GB/s of gradient
    /// bytes read.
    /// </summary>
    internal static void Bench(CudaBackend cuda, Device device, Action<DeviceBench.Result> add)
    {
        var shapes = new List<int[]> { new[] { 151936, 896 }, new[] { 896 } };
        for (int layer = 0; layer < 24; layer++)
            shapes.AddRange([[896, 896], [896], [128, 896], [128], [128, 896], [128], [896, 896], [4864, 896], [4864, 896], [896, 4864], [896], [896]]);
        var vars = shapes.Select((s, i) => new Variable(TensorScope.Detach(Tensor.Zeros(s, DType.BF16, device)), requiresGrad: true)).ToArray();
        try
        {
            for (int i = 0; i < vars.Length; i++)
            {
                using var g = Tensor.Full(shapes[i], 1e-3, DType.BF16, device); // values do not change the time: no host draw
                vars[i].Backward(g);
            }
            double bytes = vars.Sum(v => (double)v.Value.Count) * 2;
            bool before = cuda.MultiTensorGradClip;
            try
            {
                foreach (bool multi in new[] { true, false })
                {
                    cuda.MultiTensorGradClip = multi;
                    double ms = cuda.MedianMilliseconds(() => GradClip.ClipGradNorm(vars));
                    add(new(multi ? "grad norm 0.5B multi-tensor" : "grad norm 0.5B per-tensor", $"{vars.Length} bf16 grads", ms, bytes / (ms * 1e-3) / 1e9, "GB/s",
                        multi ? "grad_norm.cu: 2 launches a table of 64, one host read" : "SumOfSquares + a host read per gradient (PARROT_MULTI_TENSOR_CLIP=0)"));
                }
            }
            finally { cuda.MultiTensorGradClip = before; }
        }
        finally
        {
            foreach (var v in vars) { v.ZeroGrad(); v.Value.Dispose(); }
        }
    }

    /// <summary>Variables whose gradients are copies of <paramref name="x"/>; scaled by 1/3 (no clipping), then clipped to 1.</summary>
    private static (Tensor[] Grads, double N1, double N2) ScaleThenClip(Tensor[] x)
    {
        var vars = x.Select(g => new Variable(TensorScope.Detach(Tensor.Zeros(g.Shape, g.DType, g.Device)), requiresGrad: true)).ToArray();
        for (int i = 0; i < x.Length; i++)
        {
            using var copy = x[i].Clone(); // the variable may keep it: the case's inputs stay as they are
            vars[i].Backward(copy);
        }
        double n1 = GradClip.ScaleAndClipGradNorm(vars, 1.0 / 3, maxNorm: 1e9);
        double n2 = GradClip.ClipGradNorm(vars, maxNorm: 1.0);
        var grads = vars.Select(v => TensorScope.Detach(v.Grad!.Clone())).ToArray();
        foreach (var v in vars) { v.ZeroGrad(); v.Value.Dispose(); }
        return (grads, n1, n2);
    }

    private static void CompareWithPerTensorPath(Tensor[] grads, double n1, double n2, Tensor[] old, double o1, double o2)
    {
        if (!(Math.Abs(n1 - o1) <= 1e-12 * o1) || !(Math.Abs(n2 - o2) <= 1e-12 * o2))
            throw new InvalidOperationException($"multi-tensor norms {n1:R}, {n2:R}; per-tensor path {o1:R}, {o2:R}");
        if (n2 != o2) return; // different coefficients may round a gradient differently: the contract is bits for equal norms
        for (int i = 0; i < grads.Length; i++)
        {
            double[] a = grads[i].ToDoubleArray(), b = old[i].ToDoubleArray();
            if (SelfTestCase.FirstBitDifference(a, b) is int j and >= 0)
                throw new InvalidOperationException($"gradient {i} ({grads[i].DType.Name()}, {a.Length} elements), element {j}: multi-tensor {a[j]:R}, per-tensor path {b[j]:R}");
        }
    }
}
