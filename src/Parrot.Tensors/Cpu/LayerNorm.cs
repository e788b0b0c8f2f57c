using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void LayerNorm(Tensor x, Tensor? weight, Tensor? bias, double eps, Tensor y)
    {
        if (!x.DType.IsFloat() || x.Rank == 0 || !x.Shape.SequenceEqual(y.Shape) || x.DType != y.DType)
            throw new ArgumentException($"LayerNorm: input {x.ShapeString()} {x.DType.Name()} and output {y.ShapeString()} {y.DType.Name()} must share a shape of rank ≥ 1 and a float dtype");
        int d = x.Shape[^1];
        CheckVector("LayerNorm", "weight", weight, d);
        CheckVector("LayerNorm", "bias", bias, d);
        var rows = RowSet.LastAxis(x, y);
        if (rows.Count == 0 || d == 0) return;
        if (x.DType == DType.F64) new LayerNormRows<double>(x, weight, bias, eps, y, rows, DType.F64).Run();
        else new LayerNormRows<float>(x, weight, bias, eps, y, rows, DType.F32).Run();
    }

    private static void CheckVector(string op, string name, Tensor? v, int d)
    {
        if (v is null) return;
        if (v.Rank != 1 || v.Shape[0] != d || !v.DType.IsFloat())
            throw new ArgumentException($"{op}: {name} must be a float vector [{d}], got {v.ShapeString()} {v.DType.Name()}");
    }

    /// <summary>Loads a 1-D tensor of any dtype and stride into a new buffer of T (or fills it with <paramref name="missing"/>).</summary>
    private static unsafe NativeBuffer LoadVector<T>(Tensor? v, int n, T missing) where T : unmanaged, INumber<T>
    {
        var buffer = new NativeBuffer(n * (long)sizeof(T));
        T* p = buffer.As<T>();
        if (v is null) new Span<T>(p, n).Fill(missing);
        else
            for (int c = 0; c < n; c += StridedLoop.Chunk)
                RowIO.Load(RowIO.Address(v.Storage.Pointer, v.DType, v.Offset + c * v.Strides[0]), v.DType, v.Strides[0], Math.Min(StridedLoop.Chunk, n - c), p + c);
        return buffer;
    }

    /// <summary>
    /// A row's mean and sum of squared deviations from it, two passes summed in float64 (a float32 row with the float32
    /// kernels): the statistics of the LayerNorm forward, recomputed identically by its backward.
    /// </summary>
    private static unsafe (double Mean, double SumSquares) LayerNormStatistics<T>(T* x, int n) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            double mean = ReduceMath.Sum((float*)x, n) / n;
            return (mean, ReduceMath.SumSquaredDeviations((float*)x, n, (float)mean));
        }
        else
        {
            double mean = ReduceMath.Sum((double*)x, n) / n;
            return (mean, ReduceMath.SumSquaredDeviations((double*)x, n, mean));
        }
    }

    /// <summary>Two-pass statistics (mean, then squared deviations) in float64, then one normalising pass.</summary>
    private sealed unsafe class LayerNormRows<T>(Tensor x, Tensor? weight, Tensor? bias, double eps, Tensor y, RowSet rows, DType natural)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private readonly nint _x = x.Storage.Pointer, _y = y.Storage.Pointer;
        private readonly DType _xt = x.DType, _yt = y.DType;
        private readonly long _xs = x.Strides[^1], _ys = y.Strides[^1];
        private readonly int _n = x.Shape[^1];

        public void Run()
        {
            using var w = LoadVector(weight, _n, T.One);
            using var b = LoadVector(bias, _n, T.Zero);
            nint wp = w.Pointer, bp = b.Pointer;
            RowSet.Parallel(rows.Count, 4L * _n, (start, end) =>
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
                    Row(xp, yp, (T*)wp, (T*)bp, _n, eps);
                    if (!directY) RowIO.Store(yp, ya, _yt, _ys, _n);
                }
            });
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Row(T* x, T* y, T* w, T* b, int n, double eps)
        {
            var (mean, sq) = LayerNormStatistics(x, n);
            T m = T.CreateTruncating(mean), rstd = T.CreateTruncating(1.0 / Math.Sqrt(sq / n + eps));
            int i = 0;
            if (VectorWidth.Use512)
            {
                int width = Vector512<T>.Count;
                var vm = Vector512.Create(m);
                var vr = Vector512.Create(rstd);
                for (; i + width <= n; i += width)
                    ((Vector512.Load(x + i) - vm) * vr * Vector512.Load(w + i) + Vector512.Load(b + i)).Store(y + i);
            }
            else if (VectorWidth.Use256)
            {
                int width = Vector256<T>.Count;
                var vm = Vector256.Create(m);
                var vr = Vector256.Create(rstd);
                for (; i + width <= n; i += width)
                    ((Vector256.Load(x + i) - vm) * vr * Vector256.Load(w + i) + Vector256.Load(b + i)).Store(y + i);
            }
            for (; i < n; i++) y[i] = (x[i] - m) * rstd * w[i] + b[i];
        }
    }
}
