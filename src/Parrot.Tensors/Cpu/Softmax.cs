using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Softmax(Tensor x, Tensor y, bool log)
    {
        string op = log ? "LogSoftmax" : "Softmax";
        if (!x.Shape.SequenceEqual(y.Shape) || x.DType != y.DType || !x.DType.IsFloat() || x.Rank == 0)
            throw new ArgumentException($"{op}: input {x.ShapeString()} {x.DType.Name()} and output {y.ShapeString()} {y.DType.Name()} must share a shape of rank ≥ 1 and a float dtype");
        var rows = RowSet.LastAxis(x, y);
        int n = x.Shape[^1];
        if (rows.Count == 0 || n == 0) return;
        if (x.DType == DType.F64) new SoftmaxRows<double>(x, y, rows, log, DType.F64).Run();
        else new SoftmaxRows<float>(x, y, rows, log, DType.F32).Run();
    }

    /// <summary>
    /// One row at a time, three passes kept in cache: the max, exp(x - max) with its float64 sum, then the
    /// scaling. Rows already in the compute type and contiguous are read and written in place; others go
    /// through a row buffer.
    /// </summary>
    private sealed unsafe class SoftmaxRows<T>(Tensor x, Tensor y, RowSet rows, bool log, DType natural)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private readonly nint _x = x.Storage.Pointer, _y = y.Storage.Pointer;
        private readonly DType _xt = x.DType, _yt = y.DType;
        private readonly long _xs = x.Strides[^1], _ys = y.Strides[^1];
        private readonly int _n = x.Shape[^1];

        public void Run() => RowSet.Parallel(rows.Count, 8L * _n, (start, end) =>
        {
            bool directX = _xt == natural && _xs == 1, directY = _yt == natural && _ys == 1;
            using var buffer = new NativeBuffer(directX && directY ? 0 : _n * (long)sizeof(T));
            Span<long> off = stackalloc long[2];
            for (long r = start; r < end; r++)
            {
                rows.Offsets(r, off);
                nint xa = RowIO.Address(_x, _xt, off[0]), ya = RowIO.Address(_y, _yt, off[1]);
                T* xp = directX ? (T*)xa : buffer.As<T>();
                T* yp = directY ? (T*)ya : buffer.As<T>();
                if (!directX) RowIO.Load(xa, _xt, _xs, _n, xp);
                Row(xp, yp, _n, log);
                if (!directY) RowIO.Store(yp, ya, _yt, _ys, _n);
            }
        });

        /// <summary>Softmax of one contiguous row; y may alias x.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Row(T* x, T* y, int n, bool log)
        {
            T max = ReduceMath.Extreme(x, n, max: true);
            // An all -inf row has max = -inf and x - max = NaN everywhere: NaN out, as PyTorch gives.
            if (log)
            {
                double sum = typeof(T) == typeof(float)
                    ? ReduceMath.SumExp((float*)x, n, float.CreateTruncating(max))
                    : ReduceMath.SumExp((double*)x, n, double.CreateTruncating(max));
                var ys = new Span<T>(y, n);
                TensorPrimitives.Subtract(new ReadOnlySpan<T>(x, n), max, ys);
                TensorPrimitives.Subtract(ys, T.CreateTruncating(Math.Log(sum)), ys);
            }
            else
            {
                double sum = typeof(T) == typeof(float)
                    ? ReduceMath.ExpShiftedSum((float*)x, (float*)y, n, float.CreateTruncating(max))
                    : ReduceMath.ExpShiftedSum((double*)x, (double*)y, n, double.CreateTruncating(max));
                var ys = new Span<T>(y, n);
                TensorPrimitives.Multiply(ys, T.CreateTruncating(1.0 / sum), ys);
            }
        }
    }
}
