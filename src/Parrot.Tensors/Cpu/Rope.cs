using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y)
    {
        int dim = y.Shape[^1];
        if (dim % 2 != 0) throw new ArgumentException($"Rope: the last dimension must be even, got {y.ShapeString()}");
        if (y.Count == 0) return;
        var plan = new RopePlan(x, cos, sin, y);
        if (y.DType == DType.F64) plan.Execute<double>();
        else plan.Execute<float>();
    }

    /// <summary>
    /// Rows of the last dimension, shared out between the cores. Each row is rotated as a whole
    /// (d pairs with d + D/2), so rows are never cut into chunks.
    /// </summary>
    private sealed unsafe class RopePlan
    {
        private readonly int[] _outer;          // shape without the last dimension
        private readonly long[][] _strides;     // per operand (x, cos, sin, y), its strides on _outer
        private readonly long[] _inner;         // per operand, its stride along the last dimension
        private readonly long[] _offsets;
        private readonly nint[] _pointers;
        private readonly DType[] _types;
        private readonly int _dim;
        private readonly long _rows;

        public RopePlan(Tensor x, Tensor cos, Tensor sin, Tensor y)
        {
            Tensor[] ops = [x, cos, sin, y];
            _dim = y.Shape[^1];
            _outer = y.Shape[..^1].ToArray();
            _strides = ops.Select(t => t.Strides[..^1].ToArray()).ToArray();
            _inner = ops.Select(t => t.Strides[^1]).ToArray();
            _offsets = ops.Select(t => t.Offset).ToArray();
            _pointers = ops.Select(t => t.Storage.Pointer).ToArray();
            _types = ops.Select(t => t.DType).ToArray();
            _rows = y.Count / _dim;
        }

        public void Execute<T>() where T : unmanaged, IFloatingPointIeee754<T>
        {
            long work = _rows * _dim;
            int workers = work >= StridedLoop.ParallelThreshold ? (int)Math.Min(CpuParallel.Workers, _rows) : 1;
            if (workers <= 1) { Range<T>(0, _rows); return; }
            CpuParallel.For(workers, w => Range<T>(_rows * w / workers, _rows * (w + 1) / workers));
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Range<T>(long begin, long end) where T : unmanaged, IFloatingPointIeee754<T>
        {
            if (begin >= end) return;
            var natural = typeof(T) == typeof(double) ? DType.F64 : DType.F32;
            int rank = _outer.Length;
            Span<int> index = stackalloc int[Math.Max(rank, 1)];
            Span<long> off = stackalloc long[4];
            long r = begin;
            for (int d = rank - 1; d >= 0; d--) { index[d] = (int)(r % _outer[d]); r /= _outer[d]; }
            for (int k = 0; k < 4; k++)
            {
                off[k] = _offsets[k];
                for (int d = 0; d < rank; d++) off[k] += index[d] * _strides[k][d];
            }

            // Operands already holding contiguous T rows are used in place; the others go through
            // per-worker buffers (rows are head_dim long, so these are small).
            var buffer = new T[4 * _dim];
            fixed (T* buf = buffer)
            {
                for (long row = begin; row < end; row++)
                {
                    T* xp = Row<T>(0, off[0], natural, buf);
                    T* cp = Row<T>(1, off[1], natural, buf + _dim);
                    T* sp = Row<T>(2, off[2], natural, buf + 2 * _dim);
                    bool directY = _types[3] == natural && _inner[3] == 1;
                    nint ya = RowIO.Address(_pointers[3], _types[3], off[3]);
                    T* yp = directY ? (T*)ya : buf + 3 * _dim;
                    RotateHalf(xp, cp, sp, yp, _dim / 2);
                    if (!directY) RowIO.Store(yp, ya, _types[3], _inner[3], _dim);

                    for (int d = rank - 1; d >= 0; d--)
                    {
                        if (++index[d] < _outer[d])
                        {
                            for (int k = 0; k < 4; k++) off[k] += _strides[k][d];
                            break;
                        }
                        index[d] = 0;
                        for (int k = 0; k < 4; k++) off[k] -= (long)(_outer[d] - 1) * _strides[k][d];
                    }
                }
            }
        }

        /// <summary>Operand k's row as contiguous T: its own memory when possible, else loaded into scratch.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private T* Row<T>(int k, long offset, DType natural, T* scratch) where T : unmanaged, IFloatingPointIeee754<T>
        {
            nint a = RowIO.Address(_pointers[k], _types[k], offset);
            if (_types[k] == natural && _inner[k] == 1) return (T*)a;
            RowIO.Load(a, _types[k], _inner[k], _dim, scratch);
            return scratch;
        }
    }

    /// <summary>
    /// y = x·c + rotate_half(x)·s over one row of 2·half values. Products are rounded before they are
    /// added (no fused multiply-add), the order PyTorch evaluates q·cos + rotate_half(q)·sin in, so
    /// float32 results match Hugging Face's exactly. Each step reads x[d] and x[d+half] before writing
    /// y[d] and y[d+half], so y may alias x.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void RotateHalf<T>(T* x, T* c, T* s, T* y, int half) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = 0;
        if (VectorWidth.Use512 && Vector512<T>.IsSupported)
        {
            for (; d + Vector512<T>.Count <= half; d += Vector512<T>.Count)
            {
                var a = Vector512.Load(x + d);
                var b = Vector512.Load(x + half + d);
                var lo = a * Vector512.Load(c + d) - b * Vector512.Load(s + d);
                var hi = b * Vector512.Load(c + half + d) + a * Vector512.Load(s + half + d);
                lo.Store(y + d);
                hi.Store(y + half + d);
            }
        }
        if (VectorWidth.Use256 && Vector256<T>.IsSupported) // the whole row without Vector512, its tail with it
        {
            for (; d + Vector256<T>.Count <= half; d += Vector256<T>.Count)
            {
                var a = Vector256.Load(x + d);
                var b = Vector256.Load(x + half + d);
                var lo = a * Vector256.Load(c + d) - b * Vector256.Load(s + d);
                var hi = b * Vector256.Load(c + half + d) + a * Vector256.Load(s + half + d);
                lo.Store(y + d);
                hi.Store(y + half + d);
            }
        }
        for (; d < half; d++)
        {
            T a = x[d], b = x[half + d];
            y[d] = a * c[d] - b * s[d];
            y[half + d] = b * c[half + d] + a * s[half + d];
        }
    }
}
