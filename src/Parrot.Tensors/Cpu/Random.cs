using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Random(Tensor dst, RandomKind kind, ulong seed, double p0, double p1)
    {
        if (!dst.IsContiguous) throw new ArgumentException("Random: the destination must be contiguous", nameof(dst));
        StridedLoop.Run(dst.Shape, StridesOf(dst), OffsetsOf(dst), new RandomKernel(dst, kind, seed, p0, p1));
    }

    /// <inheritdoc/>
    /// <remarks>The counter lies in host memory: read where it lies, the draw is <see cref="Random"/>'s, then it is written back plus one.</remarks>
    public unsafe void RandomAt(Tensor dst, RandomKind kind, ulong baseSeed, Tensor counter, double p0, double p1)
    {
        RequireCounter(counter, nameof(counter), dst);
        ulong* c = (ulong*)counter.DataPointer;
        Random(dst, kind, unchecked(baseSeed + *c), p0, p1);
        *c = unchecked(*c + 1);
    }

    /// <summary>
    /// RandomAt's counter: one int64 element, contiguous (shared by the backends' checks), on <paramref name="dst"/>'s
    /// device where given: the backend dereferences its address as its own memory (the CPU a GPU address: a crash; a
    /// kernel a host address: an illegal access that ends the CUDA context).
    /// </summary>
    internal static void RequireCounter(Tensor counter, string name, Tensor? dst = null)
    {
        if (counter.DType != DType.I64 || counter.Count != 1 || !counter.IsContiguous)
            throw new ArgumentException($"RandomAt: the counter must be one contiguous int64 element, not {counter.ShapeString()} {counter.DType.Name()}", name);
        if (dst is not null && counter.Device != dst.Device)
            throw new ArgumentException($"RandomAt: the counter is on {counter.Device}, the destination on {dst.Device}: they must share a device", name);
    }

    /// <summary>
    /// Counter-based sampling: element i's value is a pure function of (seed, i). native/random.cu computes the same
    /// formula on CUDA: change both (RandomDeviceTests and tools/cuda-emu/random_test.cpp pin the same golden bits).
    /// </summary>
    private readonly unsafe struct RandomKernel(Tensor dst, RandomKind kind, ulong seed, double p0, double p1) : IRowKernel
    {
        private readonly nint _dst = dst.Storage.Pointer;
        private readonly DType _dt = dst.DType;
        private readonly long _base = dst.Offset;
        private readonly ulong _key = Mix(seed ^ 0x5DEECE66DUL);

        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            long flat = off[0] - _base; // contiguous: the offset is the flat index
            double* buf = RowIO.Scratch<double>(0);
            for (int j = 0; j < n; j++) buf[j] = Sample(flat + j);
            RowIO.Store(buf, RowIO.Address(_dst, _dt, off[0]), _dt, st[0], n);
        }

        private double Sample(long i)
        {
            if (kind == RandomKind.Uniform) return p0 + (p1 - p0) * Unit(Hash((ulong)i));
            // Box–Muller on the pair (2k, 2k+1): both members of a pair come from the same two uniforms.
            long k = i >> 1;
            double u1 = 1.0 - Unit(Hash((ulong)(2 * k))); // (0, 1], so the log is finite
            double u2 = Unit(Hash((ulong)(2 * k + 1)));
            double r = Math.Sqrt(-2.0 * Math.Log(u1));
            double z = (i & 1) == 0 ? r * Math.Cos(2 * Math.PI * u2) : r * Math.Sin(2 * Math.PI * u2);
            return p0 + p1 * z;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private ulong Hash(ulong i) => Mix(_key + (i + 1) * 0x9E3779B97F4A7C15UL);

        /// <summary>53 random bits as a double in [0, 1).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static double Unit(ulong h) => (h >> 11) * (1.0 / (1UL << 53));

        /// <summary>SplitMix64's finaliser: a bijective 64-bit mix.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static ulong Mix(ulong z)
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
