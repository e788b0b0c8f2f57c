using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log)
    {
        CheckRowBackward(log ? "LogSoftmaxBackward" : "SoftmaxBackward", y, dy, dx);
        var rows = RowSet.LastAxis(y, dy, dx);
        int n = y.Shape[^1];
        if (rows.Count == 0 || n == 0) return;
        if (y.DType == DType.F64) new SoftmaxBackwardRows<double>(y, dy, dx, rows, log, DType.F64).Run();
        else new SoftmaxBackwardRows<float>(y, dy, dx, rows, log, DType.F32).Run();
    }

    /// <summary>Two passes over a row: the sum (Σdy⊙y, or Σdy for log-softmax), then dx.</summary>
    private sealed unsafe class SoftmaxBackwardRows<T>(Tensor y, Tensor dy, Tensor dx, RowSet rows, bool log, DType natural)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private readonly nint _y = y.Storage.Pointer, _dy = dy.Storage.Pointer, _dx = dx.Storage.Pointer;
        private readonly DType _yt = y.DType, _dyt = dy.DType;
        private readonly long _ys = y.Strides[^1], _dys = dy.Strides[^1], _dxs = dx.Strides[^1];
        private readonly int _n = y.Shape[^1];

        public void Run() => RowSet.Parallel(rows.Count, 6L * _n, (start, end) =>
        {
            bool directY = _yt == natural && _ys == 1, directDy = _dyt == natural && _dys == 1, directDx = _yt == natural && _dxs == 1;
            using var buffer = new NativeBuffer(4L * _n * sizeof(T));
            T* yb = buffer.As<T>(), dyb = yb + _n, tmp = dyb + _n, dxb = tmp + _n;
            Span<long> off = stackalloc long[3];
            for (long r = start; r < end; r++)
            {
                rows.Offsets(r, off);
                nint ya = RowIO.Address(_y, _yt, off[0]), dya = RowIO.Address(_dy, _dyt, off[1]), dxa = RowIO.Address(_dx, _yt, off[2]);
                T* yp = directY ? (T*)ya : yb, dyp = directDy ? (T*)dya : dyb, dxp = directDx ? (T*)dxa : dxb;
                if (!directY) RowIO.Load(ya, _yt, _ys, _n, yp);
                if (!directDy) RowIO.Load(dya, _dyt, _dys, _n, dyp);
                Row(yp, dyp, dxp, tmp, _n, log);
                if (!directDx) RowIO.Store(dxp, dxa, _yt, _dxs, _n);
            }
        });

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Row(T* y, T* dy, T* dx, T* tmp, int n, bool log)
        {
            var ys = new ReadOnlySpan<T>(y, n);
            var dys = new ReadOnlySpan<T>(dy, n);
            var dxs = new Span<T>(dx, n);
            if (log)
            {
                T sum = TensorPrimitives.Sum(dys);
                var e = new Span<T>(tmp, n);
                Transcendentals.Exp(ys, e);
                TensorPrimitives.MultiplyAdd(e, -sum, dys, dxs);
            }
            else
            {
                T dot = TensorPrimitives.Dot(dys, ys);
                TensorPrimitives.Subtract(dys, dot, dxs);
                TensorPrimitives.Multiply(dxs, ys, dxs);
            }
        }
    }
}
