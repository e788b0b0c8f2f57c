using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Gather(Tensor x, int axis, Tensor index, Tensor y)
    {
        // Iterate over y's (= index's) shape. x is addressed with its own strides, except along the
        // axis where its stride is 0 and the kernel adds index·stride instead.
        var xStrides = x.Strides.ToArray();
        long axisStride = xStrides[axis];
        xStrides[axis] = 0;
        RunGather(x, axisStride, x.Shape[axis], xStrides, index, index.Strides.ToArray(), y, "Gather");
    }

    /// <summary>
    /// y[p] = x[xOffset(p) + index[p]·axisStride] over y's shape, where xStrides and indexStrides describe
    /// x and index on y's shape. Shared by Gather and IndexSelect, which differ only in those strides.
    /// </summary>
    internal static void RunGather(Tensor x, long axisStride, int axisSize, long[] xStrides,
        Tensor index, long[] indexStrides, Tensor y, string op)
    {
        var strides = new[] { y.Strides.ToArray(), indexStrides, xStrides };
        var offsets = new[] { y.Offset, index.Offset, x.Offset };
        nint yp = y.Storage.Pointer, ip = index.Storage.Pointer, xp = x.Storage.Pointer;
        bool wide = index.DType == DType.I64;
        if (index.DType is not (DType.I64 or DType.I32))
            throw new ArgumentException($"{op}: index must be int64 or int32, got {index.DType.Name()}");
        switch (x.ElementSize)
        {
            case 1:
                if (wide) StridedLoop.Run(y.Shape, strides, offsets, new GatherKernel<byte, long>(yp, ip, xp, axisStride, axisSize));
                else StridedLoop.Run(y.Shape, strides, offsets, new GatherKernel<byte, int>(yp, ip, xp, axisStride, axisSize));
                break;
            case 2:
                if (wide) StridedLoop.Run(y.Shape, strides, offsets, new GatherKernel<ushort, long>(yp, ip, xp, axisStride, axisSize));
                else StridedLoop.Run(y.Shape, strides, offsets, new GatherKernel<ushort, int>(yp, ip, xp, axisStride, axisSize));
                break;
            case 4:
                if (wide) StridedLoop.Run(y.Shape, strides, offsets, new GatherKernel<uint, long>(yp, ip, xp, axisStride, axisSize));
                else StridedLoop.Run(y.Shape, strides, offsets, new GatherKernel<uint, int>(yp, ip, xp, axisStride, axisSize));
                break;
            default:
                if (wide) StridedLoop.Run(y.Shape, strides, offsets, new GatherKernel<ulong, long>(yp, ip, xp, axisStride, axisSize));
                else StridedLoop.Run(y.Shape, strides, offsets, new GatherKernel<ulong, int>(yp, ip, xp, axisStride, axisSize));
                break;
        }
    }

    /// <summary>Copies element bits: TE is an unsigned integer of the element's size, TI the index type.</summary>
    private readonly unsafe struct GatherKernel<TE, TI>(nint y, nint index, nint x, long axisStride, int axisSize) : IRowKernel
        where TE : unmanaged
        where TI : unmanaged
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            TE* yp = (TE*)y + off[0];
            TI* ip = (TI*)index + off[1];
            TE* xp = (TE*)x + off[2];
            long sy = st[0], si = st[1], sx = st[2];
            if (si == 0)
            {
                // One index for the whole row (index_select / embedding rows): a plain strided copy.
                TE* src = xp + Checked(ReadIndex(ip), axisSize) * axisStride;
                if (sy == 1 && sx == 1) Buffer.MemoryCopy(src, yp, n * (long)sizeof(TE), n * (long)sizeof(TE));
                else for (int i = 0; i < n; i++) yp[i * sy] = src[i * sx];
                return;
            }
            if (sy == 1 && si == 1 && sx == 0)
            {
                // A run of indices into one row of x (index_select / gather along the last axis):
                // keep the loop free of stride multiplications.
                if (axisStride == 1) for (int i = 0; i < n; i++) yp[i] = xp[Checked(ReadIndex(ip + i), axisSize)];
                else for (int i = 0; i < n; i++) yp[i] = xp[Checked(ReadIndex(ip + i), axisSize) * axisStride];
                return;
            }
            for (int i = 0; i < n; i++)
                yp[i * sy] = xp[i * sx + Checked(ReadIndex(ip + i * si), axisSize) * axisStride];
        }
    }
}
