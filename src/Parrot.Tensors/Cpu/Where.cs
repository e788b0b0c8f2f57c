using System.Numerics;
using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Where(Tensor cond, Tensor a, Tensor b, Tensor y)
    {
        var strides = StridesOf(y, cond, a, b);
        var offsets = OffsetsOf(y, cond, a, b);
        switch (ComputeTypeOf(y.DType))
        {
            case ComputeType.Float: StridedLoop.Run(y.Shape, strides, offsets, new WhereKernel<float>(y, cond, a, b)); break;
            case ComputeType.Double: StridedLoop.Run(y.Shape, strides, offsets, new WhereKernel<double>(y, cond, a, b)); break;
            default: StridedLoop.Run(y.Shape, strides, offsets, new WhereKernel<long>(y, cond, a, b)); break;
        }
    }

    private readonly unsafe struct WhereKernel<T>(Tensor y, Tensor c, Tensor a, Tensor b) : IRowKernel
        where T : unmanaged, INumber<T>
    {
        private readonly nint _y = y.Storage.Pointer, _c = c.Storage.Pointer, _a = a.Storage.Pointer, _b = b.Storage.Pointer;
        private readonly DType _yt = y.DType, _ct = c.DType, _at = a.DType, _bt = b.DType;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            T* ap = RowIO.Scratch<T>(0), bp = RowIO.Scratch<T>(1);
            byte* cp = (byte*)RowIO.Address(_c, _ct, off[1]);
            RowIO.Load(RowIO.Address(_a, _at, off[2]), _at, st[2], n, ap);
            RowIO.Load(RowIO.Address(_b, _bt, off[3]), _bt, st[3], n, bp);
            long cs = st[1];
            for (int i = 0; i < n; i++) if (cp[i * cs] == 0) ap[i] = bp[i];
            RowIO.Store(ap, RowIO.Address(_y, _yt, off[0]), _yt, st[0], n);
        }
    }
}
