using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    /// <remarks>
    /// Every index value is read and checked before anything is written: one outside [0, dst.Dim(axis)) throws
    /// <see cref="ArgumentOutOfRangeException"/> naming it, its position and the size; a repeated one throws
    /// <see cref="ArgumentException"/> naming it and both positions (the result would depend on the order of the
    /// writes, which the CUDA kernel does not fix). With distinct values every element is written once, so the loop may
    /// run on several cores and the result is the same bits whatever the thread count.
    /// </remarks>
    public void IndexCopy(Tensor dst, int axis, Tensor index, Tensor src)
    {
        const string op = "IndexCopy";
        IndexCopyArgs.Check(dst, axis, index, src);
        int k = index.Dim(0);
        if (k == 0 || src.Count == 0) return;
        CheckDistinctInRange(index, dst.Dim(axis), axis, op);

        // Iterate over src's shape: dst is addressed with its own strides except along the axis, where its stride is 0
        // and the kernel adds index·stride; the index has stride 0 on every other dimension (IndexSelect's layout, turned
        // around: the gathered side is the one written).
        var dstStrides = dst.Strides.ToArray();
        long axisStride = dstStrides[axis];
        dstStrides[axis] = 0;
        var indexStrides = new long[src.Rank];
        indexStrides[axis] = index.Strides[0];
        var strides = new[] { src.Strides.ToArray(), indexStrides, dstStrides };
        var offsets = new[] { src.Offset, index.Offset, dst.Offset };
        nint sp = src.Storage.Pointer, ip = index.Storage.Pointer, dp = dst.Storage.Pointer;
        int size = dst.Dim(axis);
        bool wide = index.DType == DType.I64;
        switch (dst.ElementSize)
        {
            case 1: Run<byte>(); break;
            case 2: Run<ushort>(); break;
            case 4: Run<uint>(); break;
            default: Run<ulong>(); break;
        }

        void Run<TE>() where TE : unmanaged
        {
            if (wide) StridedLoop.Run(src.Shape, strides, offsets, new IndexCopyKernel<TE, long>(dp, ip, sp, axisStride, size));
            else StridedLoop.Run(src.Shape, strides, offsets, new IndexCopyKernel<TE, int>(dp, ip, sp, axisStride, size));
        }
    }

    /// <summary>
    /// Throws unless every value of the 1-D <paramref name="index"/> lies in [0, <paramref name="size"/>) and none repeats;
    /// the first bad value (in index order) is named with its position.
    /// </summary>
    private static unsafe void CheckDistinctInRange(Tensor index, int size, int axis, string op)
    {
        int k = index.Dim(0);
        long stride = index.Strides[0];
        bool wide = index.DType == DType.I64;
        byte* basePtr = (byte*)index.DataPointer;
        // Which position holds each value seen so far: a dense table when it is no larger than a few times the index
        // (a vocabulary row and its seen ids), else a dictionary, so a short index into a long axis stays cheap.
        bool dense = size <= 4L * k + 1024;
        var firstAt = dense ? new int[size] : null; // position + 1; 0 = not seen
        var seen = dense ? null : new Dictionary<long, int>(k);
        for (int j = 0; j < k; j++)
        {
            long v = wide ? ((long*)basePtr)[j * stride] : ((int*)basePtr)[j * stride];
            if ((ulong)v >= (ulong)size)
                throw new ArgumentOutOfRangeException(nameof(index),
                    $"{op}: index {v} at position [{j}] is out of range for dimension {axis} of size {size}" + (v < 0 ? " (negative indices are not allowed)" : ""));
            int before;
            if (dense)
            {
                before = firstAt![v] - 1;
                if (before < 0) firstAt[v] = j + 1;
            }
            else if (!seen!.TryAdd(v, j)) before = seen[v];
            else before = -1;
            if (before >= 0)
                throw new ArgumentException($"{op}: index {v} appears at positions [{before}] and [{j}]; the values must be distinct " +
                    "(which copy lands last would decide the result)");
        }
    }

    /// <summary>dst[off + index·axisStride] = src over src's shape, copying element bits: TE an unsigned integer of the element's size, TI the index type.</summary>
    private readonly unsafe struct IndexCopyKernel<TE, TI>(nint dst, nint index, nint src, long axisStride, int axisSize) : IRowKernel
        where TE : unmanaged
        where TI : unmanaged
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            TE* sp = (TE*)src + off[0];
            TI* ip = (TI*)index + off[1];
            TE* dp = (TE*)dst + off[2];
            long ss = st[0], si = st[1], sd = st[2];
            if (si == 0)
            {
                // One index for the whole row (a row of the axis copied into place): a plain strided copy.
                TE* to = dp + Checked(ReadIndex(ip), axisSize) * axisStride;
                if (ss == 1 && sd == 1) Buffer.MemoryCopy(sp, to, n * (long)sizeof(TE), n * (long)sizeof(TE));
                else for (int i = 0; i < n; i++) to[i * sd] = sp[i * ss];
                return;
            }
            // A run of indices (the axis innermost, e.g. ids into one vocabulary row).
            for (int i = 0; i < n; i++)
                dp[i * sd + Checked(ReadIndex(ip + i * si), axisSize) * axisStride] = sp[i * ss];
        }
    }
}
