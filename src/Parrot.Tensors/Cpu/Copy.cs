using System.Numerics;
using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public unsafe void Copy(Tensor src, Tensor dst)
    {
        if (src.DType == dst.DType && src.IsContiguous && dst.IsContiguous)
        {
            CopyContiguous((byte*)src.DataPointer, (byte*)dst.DataPointer, dst.Count * dst.ElementSize);
            return;
        }
        var strides = StridesOf(dst, src);
        var offsets = OffsetsOf(dst, src);
        nint d = dst.Storage.Pointer, s = src.Storage.Pointer;
        if (src.DType == dst.DType)
        {
            switch (src.ElementSize)
            {
                case 1: StridedLoop.Run(dst.Shape, strides, offsets, new RawCopy<byte>(d, s)); return;
                case 2: StridedLoop.Run(dst.Shape, strides, offsets, new RawCopy<ushort>(d, s)); return;
                case 4: StridedLoop.Run(dst.Shape, strides, offsets, new RawCopy<uint>(d, s)); return;
                default: StridedLoop.Run(dst.Shape, strides, offsets, new RawCopy<ulong>(d, s)); return;
            }
        }
        bool bothInt = !src.DType.IsFloat() && !dst.DType.IsFloat();
        if (bothInt) StridedLoop.Run(dst.Shape, strides, offsets, new CastCopy<long>(d, dst.DType, s, src.DType));
        else if (src.DType == DType.F64 || dst.DType == DType.F64 || src.DType == DType.I64)
            StridedLoop.Run(dst.Shape, strides, offsets, new CastCopy<double>(d, dst.DType, s, src.DType));
        else StridedLoop.Run(dst.Shape, strides, offsets, new CastCopy<float>(d, dst.DType, s, src.DType));
    }

    private static unsafe void CopyContiguous(byte* src, byte* dst, long bytes)
    {
        const long parallelBytes = 1 << 22;
        if (bytes < parallelBytes || CpuParallel.Workers == 1) { Buffer.MemoryCopy(src, dst, bytes, bytes); return; }
        int w = CpuParallel.Workers;
        CpuParallel.For(w, i =>
        {
            long a = bytes * i / w, b = bytes * (i + 1) / w;
            Buffer.MemoryCopy(src + a, dst + a, b - a, b - a);
        });
    }

    /// <summary>Same-dtype copy: moves element bits without looking at them.</summary>
    private readonly unsafe struct RawCopy<T>(nint dst, nint src) : IRowKernel where T : unmanaged
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            T* d = (T*)dst + off[0];
            T* s = (T*)src + off[1];
            long sd = st[0], ss = st[1];
            if (sd == 1 && ss == 1) { Buffer.MemoryCopy(s, d, n * (long)sizeof(T), n * (long)sizeof(T)); return; }
            if (sd == 1 && ss == 0) { new Span<T>(d, n).Fill(*s); return; }
            for (int i = 0; i < n; i++) d[i * sd] = s[i * ss];
        }
    }

    /// <summary>Converting copy through the compute type T.</summary>
    private readonly unsafe struct CastCopy<T>(nint dst, DType dstType, nint src, DType srcType) : IRowKernel
        where T : unmanaged, INumber<T>
    {
        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            T* buf = RowIO.Scratch<T>(0);
            RowIO.Load(RowIO.Address(src, srcType, off[1]), srcType, st[1], n, buf);
            RowIO.Store(buf, RowIO.Address(dst, dstType, off[0]), dstType, st[0], n);
        }
    }

    /// <inheritdoc/>
    public unsafe void Fill(Tensor dst, double value)
    {
        // Convert once through a one-element F64 source broadcast over dst: the same rounding as a cast.
        double v = value;
        var one = NativeStorage.Allocate(8);
        try
        {
            *(double*)one.Pointer = v;
            using var scalar = new Tensor(one, dst.Shape.ToArray(), new long[dst.Rank], 0, DType.F64, retain: true);
            Copy(scalar, dst);
        }
        finally { one.Release(); }
    }
}
