using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public unsafe void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep s)
    {
        long n = param.Count;
        nint p = param.DataPointer, g = grad.DataPointer, mp = m.DataPointer, vp = v.DataPointer;
        DType pt = param.DType, gt = grad.DType;
        // The scalars are computed in double, as PyTorch computes them in Python.
        double decay = 1 - s.LearningRate * s.WeightDecay;
        double bc1 = 1 - Math.Pow(s.Beta1, s.Step), bc2 = 1 - Math.Pow(s.Beta2, s.Step);
        double stepSize = s.LearningRate / bc1, bc2Sqrt = Math.Sqrt(bc2);
        int chunks = (int)((n + StridedLoop.Chunk - 1) / StridedLoop.Chunk);
        int workers = n >= StridedLoop.ParallelThreshold ? Math.Min(CpuParallel.Workers, chunks) : 1;
        CpuParallel.For(Math.Max(workers, 1), w =>
        {
            for (int c = chunks * w / workers; c < chunks * (w + 1) / workers; c++)
            {
                long start = (long)c * StridedLoop.Chunk;
                int len = (int)Math.Min(StridedLoop.Chunk, n - start);
                if (pt == DType.F32)
                {
                    float* gb = RowIO.Scratch<float>(0);
                    RowIO.Load(RowIO.Address(g, gt, start), gt, 1, len, gb);
                    Update((float*)p + start, gb, (float*)mp + start, (float*)vp + start, len, s, decay, stepSize, bc2Sqrt);
                }
                else
                {
                    double* gb = RowIO.Scratch<double>(0);
                    RowIO.Load(RowIO.Address(g, gt, start), gt, 1, len, gb);
                    Update((double*)p + start, gb, (double*)mp + start, (double*)vp + start, len, s, decay, stepSize, bc2Sqrt);
                }
            }
        });
    }

    // Mirrors torch.optim.AdamW's single-tensor path op by op, with the operand grouping of PyTorch's CPU
    // addcmul/addcdiv kernels (found by matching a float64 run bit for bit); scalars are rounded to the
    // tensor's type where PyTorch's kernels do (a float32 tensor op with a Python scalar computes in float32).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Update<T>(T* p, T* g, T* m, T* v, int n, AdamWStep s, double decay, double stepSize, double bc2Sqrt)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        T dec = T.CreateTruncating(decay), b1 = T.CreateTruncating(s.Beta1), w1 = T.CreateTruncating(1 - s.Beta1), b2 = T.CreateTruncating(s.Beta2),
            w2 = T.CreateTruncating(1 - s.Beta2), ss = T.CreateTruncating(-stepSize), bc = T.CreateTruncating(bc2Sqrt),
            eps = T.CreateTruncating(s.Epsilon);
        bool decayOn = s.WeightDecay != 0;
        for (int i = 0; i < n; i++)
        {
            T pi = p[i], gi = g[i], mi = m[i];
            if (decayOn) pi *= dec;
            // exp_avg.mul_(β1).add_(g, alpha=1−β1), PyTorch 1.13's form (the oracle installed here; PyTorch ≥ 2
            // writes it as lerp_, which can differ in the last bit).
            mi = mi * b1 + w1 * gi;
            T vi = v[i] * b2 + w2 * (gi * gi);        // addcmul: self + value·(t1·t2)
            T denom = T.Sqrt(vi) / bc + eps;
            p[i] = pi + ss * (mi / denom);            // addcdiv: self + value·(t1/t2)
            m[i] = mi;
            v[i] = vi;
        }
    }
}
