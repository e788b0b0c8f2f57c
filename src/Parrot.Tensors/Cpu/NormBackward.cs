using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void RmsNormBackward(Tensor x, Tensor weight, double eps, Tensor dy, Tensor dx, Tensor? dweight)
    {
        CheckRowBackward("RmsNormBackward", x, dy, dx);
        int d = x.Shape[^1];
        CheckVector("RmsNormBackward", "weight", weight, d);
        CheckAccumulator("RmsNormBackward", "dweight", dweight, d, x.DType);
        var rows = RowSet.LastAxis(x, dy, dx);
        if (rows.Count == 0 || d == 0) return;
        if (x.DType == DType.F64) new NormBackwardRows<double>(x, weight, eps, dy, dx, dweight, null, rows, layer: false, DType.F64).Run();
        else new NormBackwardRows<float>(x, weight, eps, dy, dx, dweight, null, rows, layer: false, DType.F32).Run();
    }

    /// <inheritdoc/>
    public void LayerNormBackward(Tensor x, Tensor? weight, double eps, Tensor dy, Tensor dx, Tensor? dweight, Tensor? dbias)
    {
        CheckRowBackward("LayerNormBackward", x, dy, dx);
        int d = x.Shape[^1];
        CheckVector("LayerNormBackward", "weight", weight, d);
        CheckAccumulator("LayerNormBackward", "dweight", dweight, d, x.DType);
        CheckAccumulator("LayerNormBackward", "dbias", dbias, d, x.DType);
        var rows = RowSet.LastAxis(x, dy, dx);
        if (rows.Count == 0 || d == 0) return;
        if (x.DType == DType.F64) new NormBackwardRows<double>(x, weight, eps, dy, dx, dweight, dbias, rows, layer: true, DType.F64).Run();
        else new NormBackwardRows<float>(x, weight, eps, dy, dx, dweight, dbias, rows, layer: true, DType.F32).Run();
    }

    /// <summary>x (the forward's input or output), dy and dx: one shape of rank ≥ 1; x and dx one float dtype; dy any float dtype.</summary>
    private static void CheckRowBackward(string op, Tensor x, Tensor dy, Tensor dx)
    {
        if (!x.DType.IsFloat() || x.Rank == 0 || !x.Shape.SequenceEqual(dy.Shape) || !x.Shape.SequenceEqual(dx.Shape) || dx.DType != x.DType || !dy.DType.IsFloat())
            throw new ArgumentException($"{op}: input {x.ShapeString()} {x.DType.Name()}, dy {dy.ShapeString()} {dy.DType.Name()} and dx {dx.ShapeString()} {dx.DType.Name()} must share a shape of rank ≥ 1; dx must have the input's float dtype");
    }

    /// <summary>A gradient accumulator: null, or a contiguous vector [d] of the compute type (float32, float64 for F64 inputs).</summary>
    private static void CheckAccumulator(string op, string name, Tensor? acc, int d, DType inputType)
    {
        if (acc is null) return;
        var want = inputType == DType.F64 ? DType.F64 : DType.F32;
        if (acc.Rank != 1 || acc.Shape[0] != d || acc.DType != want || !acc.IsContiguous)
            throw new ArgumentException($"{op}: {name} must be a contiguous {want.Name()} vector [{d}], got {acc.ShapeString()} {acc.DType.Name()}");
    }

    /// <summary>
    /// The rows of RMSNorm and LayerNorm backward. The statistics are recomputed from x as the forward computes
    /// them. Weight and bias gradients are summed per fixed block of rows into partial vectors, then the blocks
    /// are added in order: the result does not depend on the thread count.
    /// </summary>
    private sealed unsafe class NormBackwardRows<T>(Tensor x, Tensor? weight, double eps, Tensor dy, Tensor dx, Tensor? dweight, Tensor? dbias,
        RowSet rows, bool layer, DType natural)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private const int MaxBlocks = 64;
        private readonly nint _x = x.Storage.Pointer, _dy = dy.Storage.Pointer, _dx = dx.Storage.Pointer;
        private readonly DType _xt = x.DType, _dyt = dy.DType;
        private readonly long _xs = x.Strides[^1], _dys = dy.Strides[^1], _dxs = dx.Strides[^1];
        private readonly int _n = x.Shape[^1];

        public void Run()
        {
            using var w = LoadVector(weight, _n, T.One);
            nint wp = w.Pointer;
            bool hasW = weight is not null, wantW = dweight is not null, wantB = dbias is not null;
            long count = rows.Count;
            int blocks = (int)Math.Min(count, MaxBlocks);
            long vec = _n * (long)sizeof(T);
            using var partW = new NativeBuffer(wantW ? blocks * vec : 0);
            using var partB = new NativeBuffer(wantB ? blocks * vec : 0);
            nint pw = partW.Pointer, pb = partB.Pointer;
            RowSet.Parallel(blocks, count / blocks * 8L * _n, (bStart, bEnd) =>
            {
                bool directX = _xt == natural && _xs == 1, directDy = _dyt == natural && _dys == 1, directDx = _xt == natural && _dxs == 1;
                using var buffer = new NativeBuffer(5 * vec);
                T* xb = buffer.As<T>(), dyb = xb + _n, g = dyb + _n, xh = g + _n, dxb = xh + _n;
                Span<long> off = stackalloc long[3];
                for (long b = bStart; b < bEnd; b++)
                {
                    T* accW = wantW ? (T*)pw + b * _n : null, accB = wantB ? (T*)pb + b * _n : null;
                    if (accW != null) new Span<T>(accW, _n).Clear();
                    if (accB != null) new Span<T>(accB, _n).Clear();
                    for (long r = count * b / blocks, end = count * (b + 1) / blocks; r < end; r++)
                    {
                        rows.Offsets(r, off);
                        nint xa = RowIO.Address(_x, _xt, off[0]), dya = RowIO.Address(_dy, _dyt, off[1]), dxa = RowIO.Address(_dx, _xt, off[2]);
                        T* xp = directX ? (T*)xa : xb, dyp = directDy ? (T*)dya : dyb, dxp = directDx ? (T*)dxa : dxb;
                        if (!directX) RowIO.Load(xa, _xt, _xs, _n, xp);
                        if (!directDy) RowIO.Load(dya, _dyt, _dys, _n, dyp);
                        if (layer) LayerRow(xp, dyp, hasW ? (T*)wp : null, dxp, g, xh, accW, accB, _n, eps);
                        else RmsRow(xp, dyp, (T*)wp, dxp, g, xh, accW, _n, eps);
                        if (!directDx) RowIO.Store(dxp, dxa, _xt, _dxs, _n);
                    }
                }
            });
            if (wantW) AddBlocks((T*)pw, blocks, dweight!);
            if (wantB) AddBlocks((T*)pb, blocks, dbias!);
        }

        private void AddBlocks(T* parts, int blocks, Tensor acc)
        {
            var total = new Span<T>((T*)acc.Storage.Pointer + acc.Offset, _n);
            for (int b = 0; b < blocks; b++) TensorPrimitives.Add(total, new ReadOnlySpan<T>(parts + (long)b * _n, _n), total);
        }

        /// <summary>r = 1/√(mean(x²) + eps) as the forward; g = w⊙dy; dx = r·g − x·r³·Σ(g⊙x)/n; accW += dy⊙x·r.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void RmsRow(T* x, T* dy, T* w, T* dx, T* g, T* xh, T* accW, int n, double eps)
        {
            T r;
            if (typeof(T) == typeof(float))
            {
                float variance = (float)ReduceMath.SumSquaredDeviations((float*)x, n, 0f) / n;
                r = T.CreateTruncating(1f / MathF.Sqrt(variance + (float)eps));
            }
            else r = T.CreateTruncating(1.0 / Math.Sqrt(ReduceMath.SumSquaredDeviations((double*)x, n, 0.0) / n + eps));
            var xs = new ReadOnlySpan<T>(x, n);
            var dys = new ReadOnlySpan<T>(dy, n);
            var gs = new Span<T>(g, n);
            var dxs = new Span<T>(dx, n);
            TensorPrimitives.Multiply(dys, new ReadOnlySpan<T>(w, n), gs);
            T c = r * r * r * TensorPrimitives.Dot<T>(gs, xs) / T.CreateTruncating(n);
            TensorPrimitives.Multiply(gs, r, dxs);
            TensorPrimitives.MultiplyAdd(xs, -c, dxs, dxs);
            if (accW != null)
            {
                var xhs = new Span<T>(xh, n);
                var acc = new Span<T>(accW, n);
                TensorPrimitives.Multiply(xs, r, xhs);
                TensorPrimitives.MultiplyAdd(dys, xhs, acc, acc);
            }
        }

        /// <summary>x̂ = (x − mean)·r (statistics in float64 as the forward); g = dy⊙w; dx = r·(g − mean(g) − x̂·mean(g⊙x̂)).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void LayerRow(T* x, T* dy, T* w, T* dx, T* g, T* xh, T* accW, T* accB, int n, double eps)
        {
            var (mean, sq) = LayerNormStatistics(x, n);
            T m = T.CreateTruncating(mean), r = T.CreateTruncating(1.0 / Math.Sqrt(sq / n + eps)), nn = T.CreateTruncating(n);
            var xs = new ReadOnlySpan<T>(x, n);
            var dys = new ReadOnlySpan<T>(dy, n);
            var xhs = new Span<T>(xh, n);
            var dxs = new Span<T>(dx, n);
            TensorPrimitives.Subtract(xs, m, xhs);
            TensorPrimitives.Multiply(xhs, r, xhs);
            ReadOnlySpan<T> gs = dys;
            if (w != null)
            {
                TensorPrimitives.Multiply(dys, new ReadOnlySpan<T>(w, n), new Span<T>(g, n));
                gs = new ReadOnlySpan<T>(g, n);
            }
            T meanG = TensorPrimitives.Sum(gs) / nn, meanGx = TensorPrimitives.Dot(gs, xhs) / nn;
            TensorPrimitives.Subtract(gs, meanG, dxs);
            TensorPrimitives.MultiplyAdd(xhs, -meanGx, dxs, dxs);
            TensorPrimitives.Multiply(dxs, r, dxs);
            if (accW != null) TensorPrimitives.MultiplyAdd(dys, xhs, new ReadOnlySpan<T>(accW, n), new Span<T>(accW, n));
            if (accB != null) TensorPrimitives.Add(dys, new ReadOnlySpan<T>(accB, n), new Span<T>(accB, n));
        }
    }
}
