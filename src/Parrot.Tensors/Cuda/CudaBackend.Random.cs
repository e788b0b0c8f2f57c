namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// Seeded random numbers drawn on the device by <c>native/random.cu</c>: the CPU backend's counter-based formula
    /// (<c>Cpu/Random.cs</c>: element i a function of (seed, i) alone, computed in 64-bit integers and doubles, stored
    /// as the CPU stores doubles), one launch, no host synchronisation, capturable in a CUDA graph. Uniform gives the
    /// CPU's tensor bit for bit in every dtype. Normal (Box–Muller) calls CUDA's double <c>log</c>, <c>sqrt</c> and
    /// <c>sincos</c> where the CPU calls glibc's <c>log</c>, <c>sqrt</c>, <c>cos</c> and <c>sin</c>: sqrt is correctly
    /// rounded on both, log and sin/cos may differ by an ulp or two, so float64 values agree with the CPU's within a few
    /// ulp (of |std·z|; more of the result only where the mean cancels it) and narrower dtypes store the CPU's bits
    /// unless the double lies within those ulp of a rounding boundary (tools/cuda-emu/random_test.cpp: none of 2²²
    /// draws within 4 ulp for f32, bf16 or f16). NaN results (from non-finite parameters) are NaN on both, their
    /// payload bits may differ. The destination must be contiguous, as on the CPU.
    /// </summary>
    public void Random(Tensor dst, RandomKind kind, ulong seed, double p0, double p1)
    {
        if (!dst.IsContiguous) throw new ArgumentException("Random: the destination must be contiguous", nameof(dst));
        string kernel = RandomKernel(kind);
        long n = dst.Count;
        if (n == 0) return;
        // Normal's threads take a pair of elements each (one log and one sincos for two values).
        long threads = kind == RandomKind.Normal ? (n + 1) / 2 : n;
        using var a = new KernelArgs().Add(n).Ptr(dst).Add(Code(dst.DType)).Add(seed).Add(p0).Add(p1);
        _kernels.Launch("random.cu", kernel, _kernels.GridFor(threads), 256, a);
    }

    /// <summary>
    /// <see cref="Random"/> with the seed baseSeed + counter[0] read by the kernel (random_uniform_at / random_normal_at:
    /// the same body as random_uniform / random_normal, so the same bits as Random with that seed), then
    /// random_counter_step adds one to the counter, a one-thread launch after the draw on the same stream: inside one
    /// launch no thread knows when every block has read the counter. Two launches, no host wait, the same arguments every
    /// call: a captured graph draws the next seed's tensor on every replay. The counter advances also for an empty dst.
    /// </summary>
    public void RandomAt(Tensor dst, RandomKind kind, ulong baseSeed, Tensor counter, double p0, double p1)
    {
        if (!dst.IsContiguous) throw new ArgumentException("RandomAt: the destination must be contiguous", nameof(dst));
        Cpu.CpuBackend.RequireCounter(counter, nameof(counter), dst);
        long n = dst.Count;
        if (n > 0)
        {
            long threads = kind == RandomKind.Normal ? (n + 1) / 2 : n;
            using var a = new KernelArgs().Add(n).Ptr(dst).Add(Code(dst.DType)).Add(baseSeed).Ptr(counter).Add(p0).Add(p1);
            _kernels.Launch("random.cu", RandomKernel(kind) + "_at", _kernels.GridFor(threads), 256, a);
        }
        else _ = RandomKernel(kind); // the same refusal of a bad kind as a non-empty draw
        using var c = new KernelArgs().Ptr(counter);
        _kernels.Launch("random.cu", "random_counter_step", 1, 32, c);
    }

    /// <summary>The kernel of random.cu that draws <paramref name="kind"/>.</summary>
    internal static string RandomKernel(RandomKind kind) => kind switch
    {
        RandomKind.Uniform => "random_uniform",
        RandomKind.Normal => "random_normal",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Random: not a RandomKind"),
    };
}
