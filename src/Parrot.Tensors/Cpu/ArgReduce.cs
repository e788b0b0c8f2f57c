using System.Numerics;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void ArgReduce(ArgReduceOp op, Tensor x, int axis, Tensor y)
    {
        if (y.DType != DType.I64) throw new ArgumentException($"{op}: the output must be int64, got {y.DType.Name()}");
        if (y.Rank != x.Rank || axis < 0 || axis >= x.Rank)
            throw new ArgumentException($"{op}: output {y.ShapeString()} / axis {axis} do not fit input {x.ShapeString()}");
        for (int d = 0; d < x.Rank; d++)
            if (y.Shape[d] != (d == axis ? 1 : x.Shape[d]))
                throw new ArgumentException($"{op}: output {y.ShapeString()} is not the keep-dim shape for axis {axis} of {x.ShapeString()}");
        var outer = Without(x.Shape, axis);
        var rows = new RowSet(outer, [Without(x.Strides, axis), Without(y.Strides, axis)], [x.Offset, y.Offset]);
        if (rows.Count == 0) return;
        int n = x.Shape[axis];
        if (n == 0) throw new ArgumentException($"{op}: axis {axis} of {x.ShapeString()} is empty");
        switch (ComputeTypeOf(x.DType))
        {
            case ComputeType.Float: new ArgRows<float>(x, y, rows, axis, op, DType.F32).Run(); break;
            case ComputeType.Double: new ArgRows<double>(x, y, rows, axis, op, DType.F64).Run(); break;
            // Integers have no NaN or −∞: ArgMaxNaNLowest and ArgMaxNumber are ArgMax there.
            default: new ArgRows<long>(x, y, rows, axis, op is ArgReduceOp.ArgMaxNaNLowest or ArgReduceOp.ArgMaxNumber ? ArgReduceOp.ArgMax : op, DType.I64).Run(); break;
        }
    }

    private static int[] Without(ReadOnlySpan<int> values, int axis) => [.. values[..axis], .. values[(axis + 1)..]];

    private static long[] Without(ReadOnlySpan<long> values, int axis) => [.. values[..axis], .. values[(axis + 1)..]];

    private sealed unsafe class ArgRows<T>(Tensor x, Tensor y, RowSet rows, int axis, ArgReduceOp op, DType natural)
        where T : unmanaged, INumber<T>
    {
        private readonly nint _x = x.Storage.Pointer, _y = y.Storage.Pointer;
        private readonly DType _xt = x.DType;
        private readonly long _stride = x.Strides[axis];
        private readonly int _n = x.Shape[axis];
        private readonly bool _max = op != ArgReduceOp.ArgMin, _nanLowest = op is ArgReduceOp.ArgMaxNaNLowest or ArgReduceOp.ArgMaxNumber,
            _numberOnly = op == ArgReduceOp.ArgMaxNumber;

        public void Run() => RowSet.Parallel(rows.Count, _n, (start, end) =>
        {
            Span<long> off = stackalloc long[2];
            for (long r = start; r < end; r++)
            {
                rows.Offsets(r, off);
                ((long*)_y)[off[1]] = Row(off[0]);
            }
        });

        /// <summary>Index of the winner of one row: the extreme value is found first, then its first position.</summary>
        private long Row(long off)
        {
            if (_xt == natural && _stride == 1)
            {
                var (e, index) = Winner((T*)_x + off, _n);
                return Result(e, index);
            }
            T* s = RowIO.Scratch<T>(0);
            T best = T.Zero;
            long bestIndex = -1;
            for (int c = 0; c < _n; c += StridedLoop.Chunk)
            {
                int m = Math.Min(StridedLoop.Chunk, _n - c);
                RowIO.Load(RowIO.Address(_x, _xt, off + c * _stride), _xt, _stride, m, s);
                var (e, i) = Winner(s, m);
                if (i < 0) continue; // NaN only, under NaN-lowest: nothing here beats anything
                // A later chunk wins only when strictly better, so ties keep the lower index; NaN beats numbers
                // (not under NaN-lowest, where Winner never returns a NaN while a number is left).
                if (bestIndex < 0 || (T.IsNaN(e) && !T.IsNaN(best)) || (_max ? e > best : e < best))
                {
                    best = e;
                    bestIndex = c + i;
                }
                if (T.IsNaN(best)) break;
            }
            return Result(best, bestIndex);
        }

        /// <summary>
        /// The row's answer from its winner (value, index; index −1: a row of NaN only, under NaN-lowest): ArgMaxNumber's
        /// −1 where the winner is no number above −∞ (under NaN-lowest that is a row of NaN and −∞ only), else the index
        /// (0 for a row of NaN only).
        /// </summary>
        private long Result(T value, long index) =>
            _numberOnly && (index < 0 || !(value > T.CreateTruncating(double.NegativeInfinity))) ? -1 : Math.Max(index, 0);

        /// <summary>The winning value of n ≥ 1 contiguous values and its first index (−1: only NaN, under NaN-lowest).</summary>
        private (T Value, long Index) Winner(T* p, long n)
        {
            T e = _nanLowest ? LargestNumber(p, n) : ReduceMath.Extreme(p, n, _max);
            return (e, ReduceMath.IndexOf(p, n, e));
        }

        private static T LargestNumber(T* p, long n) => typeof(T) == typeof(float)
            ? T.CreateTruncating(ReduceMath.LargestNumber((float*)p, n))
            : T.CreateTruncating(ReduceMath.LargestNumber((double*)p, n));
    }
}
