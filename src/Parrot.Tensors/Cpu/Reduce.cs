using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Reduce(ReduceOp op, Tensor x, int[] axes, Tensor y)
    {
        var plan = new ReducePlan(op, x, axes, y);
        if (plan.Outputs == 0) return;
        if (plan.Reduced == 0)
        {
            if (op is ReduceOp.Max or ReduceOp.Min)
                throw new ArgumentException($"{op}: cannot reduce an empty set of values (axes [{string.Join(", ", axes)}] of {x.ShapeString()}): the operation has no identity");
            Fill(y, op switch { ReduceOp.Prod => 1, ReduceOp.Mean => double.NaN, _ => 0 });
            return;
        }
        switch (ComputeTypeOf(x.DType))
        {
            case ComputeType.Float: new Reducer<float, double>(op, x, y, plan, DType.F32).Run(); break;
            case ComputeType.Double: new Reducer<double, double>(op, x, y, plan, DType.F64).Run(); break;
            default: new Reducer<long, long>(op, x, y, plan, DType.I64).Run(); break;
        }
    }

    /// <summary>
    /// How a reduction walks memory. The kept dims (those that index the output) and the reduced dims are
    /// each sorted by decreasing stride in x and merged where contiguous, so a reduction over any set of axes
    /// of any view becomes "outputs × (outer reduced rows × inner reduced run)". Two strategies follow:
    /// rows (each output reduces its runs; best when the reduced run is the contiguous one) and columns
    /// (a block of neighbouring outputs accumulates whole contiguous input rows at once; best when the
    /// contiguous dim is kept, e.g. summing over axis 0 of a matrix).
    /// </summary>
    private sealed class ReducePlan
    {
        public readonly int[] KeptShape, RedShape;
        public readonly long[] KeptX, KeptY, RedX;
        public readonly long Outputs, Reduced;
        public readonly bool Columns;

        public ReducePlan(ReduceOp op, Tensor x, int[] axes, Tensor y)
        {
            int rank = x.Rank;
            if (y.Rank != rank) throw new ArgumentException($"{op}: output rank {y.Rank} differs from input rank {rank} (the output has the keep-dim shape)");
            var reduced = new bool[rank];
            foreach (var a in axes)
            {
                if (a < 0 || a >= rank || reduced[a]) throw new ArgumentException($"{op}: invalid or repeated axis {a} in [{string.Join(", ", axes)}] for {x.ShapeString()}");
                reduced[a] = true;
            }
            long outputs = 1, count = 1;
            var kept = new List<int>();
            var red = new List<int>();
            for (int d = 0; d < rank; d++)
            {
                int want = reduced[d] ? 1 : x.Shape[d];
                if (y.Shape[d] != want) throw new ArgumentException($"{op}: output {y.ShapeString()} is not the keep-dim shape for axes [{string.Join(", ", axes)}] of {x.ShapeString()}");
                if (reduced[d]) { count *= x.Shape[d]; if (x.Shape[d] != 1) red.Add(d); }
                else { outputs *= x.Shape[d]; if (x.Shape[d] != 1) kept.Add(d); }
            }
            Outputs = outputs;
            Reduced = count;
            var xs = x.Strides.ToArray();
            var ys = y.Strides.ToArray();
            // Stable sort by decreasing stride: the innermost (fastest) dim of each group comes last.
            var keptSorted = kept.OrderByDescending(d => xs[d]).ToArray();
            var redSorted = red.OrderByDescending(d => xs[d]).ToArray();
            StridedLoop.Coalesce(keptSorted.Select(d => x.Shape[d]).ToArray(),
                [keptSorted.Select(d => xs[d]).ToArray(), keptSorted.Select(d => ys[d]).ToArray()], out KeptShape, out var ks);
            KeptX = ks[0]; KeptY = ks[1];
            StridedLoop.Coalesce(redSorted.Select(d => x.Shape[d]).ToArray(), [redSorted.Select(d => xs[d]).ToArray()], out RedShape, out var rs);
            RedX = rs[0];

            int inner = KeptShape[^1], run = RedShape[^1];
            long keptStride = KeptX[^1], runStride = RedX[^1];
            // Columns when the contiguous dim is kept, or when the runs are so short that per-output overhead
            // would dominate (e.g. summing pairs); rows otherwise.
            Columns = inner >= 16 && keptStride != 0 &&
                      ((keptStride == 1 && runStride != 1) || (run <= 8 && outputs >= 64));
        }
    }

    /// <summary>Reduces T values (float, double or long) with accumulator A (double, or long for integers).</summary>
    private sealed unsafe class Reducer<T, TAcc>(ReduceOp op, Tensor x, Tensor y, ReducePlan plan, DType natural)
        where T : unmanaged, INumber<T>
        where TAcc : unmanaged, INumber<TAcc>, IMinMaxValue<TAcc>
    {
        private const int ColumnBlock = StridedLoop.Chunk; // accumulators fill one scratch slot

        private readonly nint _x = x.Storage.Pointer, _y = y.Storage.Pointer;
        private readonly long _xOff = x.Offset, _yOff = y.Offset;
        private readonly DType _xt = x.DType, _yt = y.DType;
        private readonly bool _direct = x.DType == natural;

        public void Run()
        {
            if (plan.Columns) RunColumns(); else RunRows();
        }

        // ---- rows: each output reduces its own runs ----

        private void RunRows()
        {
            var outputs = new RowSet(plan.KeptShape, [plan.KeptX, plan.KeptY], [_xOff, _yOff]);
            long count = outputs.Count, reduced = plan.Reduced;
            int workers = count * reduced >= StridedLoop.ParallelThreshold ? CpuParallel.Workers : 1;
            if (count >= workers)
            {
                RowSet.Parallel(count, reduced, (start, end) =>
                {
                    Span<long> off = stackalloc long[2];
                    for (long o = start; o < end; o++)
                    {
                        outputs.Offsets(o, off);
                        StoreOne(ReduceRange(off[0], 0, reduced), off[1]);
                    }
                });
                return;
            }
            // Fewer outputs than cores (a full reduction): split each output's reduced range instead.
            var partial = new TAcc[workers];
            Span<long> offsets = stackalloc long[2];
            for (long o = 0; o < count; o++)
            {
                outputs.Offsets(o, offsets);
                long xBase = offsets[0];
                CpuParallel.For(workers, w => partial[w] = ReduceRange(xBase, reduced * w / workers, reduced * (w + 1) / workers));
                TAcc acc = partial[0];
                for (int w = 1; w < workers; w++) acc = Combine(acc, partial[w]);
                StoreOne(acc, offsets[1]);
            }
        }

        /// <summary>Reduces the flat reduced indices [a, b) of the output whose input starts at <paramref name="xBase"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private TAcc ReduceRange(long xBase, long a, long b)
        {
            var shape = plan.RedShape;
            var strides = plan.RedX;
            int outer = shape.Length - 1, run = shape[outer];
            long runStride = strides[outer];
            Span<int> index = stackalloc int[Math.Max(outer, 1)];
            long row = a / run;
            int col = (int)(a % run);
            long rowOff = xBase;
            for (int d = outer - 1; d >= 0; d--)
            {
                index[d] = (int)(row % shape[d]);
                row /= shape[d];
                rowOff += index[d] * strides[d];
            }
            TAcc acc = Identity();
            for (long pos = a; pos < b;)
            {
                int n = (int)Math.Min(run - col, b - pos);
                acc = Combine(acc, Segment(rowOff + col * runStride, runStride, n));
                pos += n;
                col = 0;
                for (int d = outer - 1; d >= 0; d--)
                {
                    if (++index[d] < shape[d]) { rowOff += strides[d]; break; }
                    index[d] = 0;
                    rowOff -= (shape[d] - 1) * strides[d];
                }
            }
            return acc;
        }

        /// <summary>Reduces n elements from element offset <paramref name="off"/> with <paramref name="stride"/>.</summary>
        private TAcc Segment(long off, long stride, int n)
        {
            if (_direct && stride == 1) return Chunk((T*)_x + off, n);
            TAcc acc = Identity();
            T* s = RowIO.Scratch<T>(0);
            for (int c = 0; c < n; c += StridedLoop.Chunk)
            {
                int m = Math.Min(StridedLoop.Chunk, n - c);
                RowIO.Load(RowIO.Address(_x, _xt, off + c * stride), _xt, stride, m, s);
                acc = Combine(acc, Chunk(s, m));
            }
            return acc;
        }

        // ---- columns: a block of outputs accumulates contiguous input rows ----

        private void RunColumns()
        {
            int inner = plan.KeptShape[^1];
            var outer = new RowSet(plan.KeptShape[..^1], [plan.KeptX[..^1], plan.KeptY[..^1]], [_xOff, _yOff]);
            int blocks = (inner + ColumnBlock - 1) / ColumnBlock;
            long items = outer.Count * blocks, reduced = plan.Reduced;
            int workers = plan.Outputs * reduced >= StridedLoop.ParallelThreshold ? CpuParallel.Workers : 1;
            if (items >= workers)
            {
                RowSet.Parallel(items, reduced * Math.Min(inner, ColumnBlock), (start, end) =>
                {
                    TAcc* acc = RowIO.Scratch<TAcc>(1);
                    for (long item = start; item < end; item++)
                    {
                        Block(outer, blocks, inner, item, out long xBase, out long yBase, out int width);
                        AccumulateColumns(xBase, width, acc, 0, reduced);
                        StoreColumns(acc, width, yBase);
                    }
                });
                return;
            }
            var buffers = new NativeBuffer[workers];
            try
            {
                for (int w = 0; w < workers; w++) buffers[w] = new NativeBuffer(ColumnBlock * (long)sizeof(TAcc));
                for (long item = 0; item < items; item++)
                {
                    Block(outer, blocks, inner, item, out long xBase, out long yBase, out int width);
                    CpuParallel.For(workers, w => AccumulateColumns(xBase, width, buffers[w].As<TAcc>(), reduced * w / workers, reduced * (w + 1) / workers));
                    TAcc* acc = buffers[0].As<TAcc>();
                    for (int w = 1; w < workers; w++)
                    {
                        TAcc* other = buffers[w].As<TAcc>();
                        for (int j = 0; j < width; j++) acc[j] = Combine(acc[j], other[j]);
                    }
                    StoreColumns(acc, width, yBase);
                }
            }
            finally
            {
                foreach (var b in buffers) b?.Dispose();
            }
        }

        private void Block(RowSet outer, int blocks, int inner, long item, out long xBase, out long yBase, out int width)
        {
            Span<long> off = stackalloc long[2];
            outer.Offsets(item / blocks, off);
            int begin = (int)(item % blocks) * ColumnBlock;
            width = Math.Min(ColumnBlock, inner - begin);
            xBase = off[0] + begin * plan.KeptX[^1];
            yBase = off[1] + begin * plan.KeptY[^1];
        }

        /// <summary>acc[j] = op over reduced indices [a, b) of the <paramref name="width"/> outputs starting at xBase.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void AccumulateColumns(long xBase, int width, TAcc* acc, long a, long b)
        {
            TAcc id = Identity();
            for (int j = 0; j < width; j++) acc[j] = id;
            if (a >= b) return;
            var shape = plan.RedShape;
            var strides = plan.RedX;
            int outer = shape.Length - 1, run = shape[outer];
            long runStride = strides[outer], colStride = plan.KeptX[^1];
            Span<int> index = stackalloc int[Math.Max(outer, 1)];
            long row = a / run;
            int col = (int)(a % run);
            long rowOff = xBase;
            for (int d = outer - 1; d >= 0; d--)
            {
                index[d] = (int)(row % shape[d]);
                row /= shape[d];
                rowOff += index[d] * strides[d];
            }
            T* scratch = RowIO.Scratch<T>(0);
            bool direct = _direct && colStride == 1;
            // Four input rows are combined in registers before touching the accumulators: a quarter of the
            // accumulator traffic (and of the float32 -> float64 widenings). Not for Prod and SumOfSquares,
            // whose float32 partial products could overflow where the float64 ones do not.
            bool four = direct && op is not (ReduceOp.Prod or ReduceOp.SumOfSquares);
            for (long pos = a; pos < b;)
            {
                int n = (int)Math.Min(run - col, b - pos);
                long off = rowOff + col * runStride;
                int k = 0;
                if (four)
                    for (; k + 4 <= n; k += 4, off += 4 * runStride)
                        AccumulateFour((T*)_x + off, runStride, acc, width);
                for (; k < n; k++, off += runStride)
                {
                    T* src = (T*)_x + off;
                    if (!direct)
                    {
                        RowIO.Load(RowIO.Address(_x, _xt, off), _xt, colStride, width, scratch);
                        src = scratch;
                    }
                    Accumulate(src, acc, width);
                }
                pos += n;
                col = 0;
                for (int d = outer - 1; d >= 0; d--)
                {
                    if (++index[d] < shape[d]) { rowOff += strides[d]; break; }
                    index[d] = 0;
                    rowOff -= (shape[d] - 1) * strides[d];
                }
            }
        }

        // ---- results ----

        private void StoreOne(TAcc v, long yOff)
        {
            nint dst = RowIO.Address(_y, _yt, yOff);
            if (op == ReduceOp.Mean)
            {
                double m = double.CreateTruncating(v) / plan.Reduced;
                RowIO.Store(&m, dst, _yt, 1, 1);
            }
            else RowIO.Store(&v, dst, _yt, 1, 1);
        }

        private void StoreColumns(TAcc* acc, int width, long yBase)
        {
            nint dst = RowIO.Address(_y, _yt, yBase);
            long stride = plan.KeptY[^1];
            if (op == ReduceOp.Mean)
            {
                double* m = RowIO.Scratch<double>(3);
                double count = plan.Reduced;
                for (int j = 0; j < width; j++) m[j] = double.CreateTruncating(acc[j]) / count;
                RowIO.Store(m, dst, _yt, stride, width);
            }
            else RowIO.Store(acc, dst, _yt, stride, width);
        }

        // ---- the operation, per accumulator type ----

        private TAcc Identity() => op switch
        {
            ReduceOp.Prod => TAcc.One,
            ReduceOp.Max => typeof(TAcc) == typeof(double) ? TAcc.CreateTruncating(double.NegativeInfinity) : TAcc.MinValue,
            ReduceOp.Min => typeof(TAcc) == typeof(double) ? TAcc.CreateTruncating(double.PositiveInfinity) : TAcc.MaxValue,
            _ => TAcc.Zero,
        };

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private TAcc Combine(TAcc a, TAcc b) => op switch // merges partial results, so SumOfSquares adds
        {
            ReduceOp.Prod => unchecked(a * b),
            ReduceOp.Max => TAcc.Max(a, b), // NaN-propagating for double
            ReduceOp.Min => TAcc.Min(a, b),
            _ => unchecked(a + b),
        };

        /// <summary>Reduces n contiguous T values.</summary>
        private TAcc Chunk(T* p, long n)
        {
            if (typeof(T) == typeof(long))
            {
                long* q = (long*)p;
                long r = op switch
                {
                    ReduceOp.Max => ReduceMath.Extreme(q, n, max: true),
                    ReduceOp.Min => ReduceMath.Extreme(q, n, max: false),
                    ReduceOp.Prod => ReduceMath.Product(q, n),
                    ReduceOp.SumOfSquares => ReduceMath.SumOfSquares(q, n),
                    _ => ReduceMath.Sum(q, n),
                };
                return TAcc.CreateTruncating(r);
            }
            double v = op switch
            {
                ReduceOp.Max => double.CreateTruncating(ReduceMath.Extreme(p, n, max: true)),
                ReduceOp.Min => double.CreateTruncating(ReduceMath.Extreme(p, n, max: false)),
                ReduceOp.Prod => ReduceMath.Product(p, n),
                ReduceOp.SumOfSquares => typeof(T) == typeof(float)
                    ? ReduceMath.SumSquaredDeviations((float*)p, n, 0f)
                    : ReduceMath.SumSquaredDeviations((double*)p, n, 0.0),
                _ => typeof(T) == typeof(float) ? ReduceMath.Sum((float*)p, n) : ReduceMath.Sum((double*)p, n),
            };
            return TAcc.CreateTruncating(v);
        }

        /// <summary>acc[j] = acc[j] op (src[j] op src[s + j] op src[2s + j] op src[3s + j]) for j &lt; n.</summary>
        private void AccumulateFour(T* src, long s, TAcc* acc, int n)
        {
            switch (op)
            {
                case ReduceOp.Max: ColumnAccumulator.RunFour<T, TAcc, MaxOp>(src, s, acc, n); break;
                case ReduceOp.Min: ColumnAccumulator.RunFour<T, TAcc, MinOp>(src, s, acc, n); break;
                default: ColumnAccumulator.RunFour<T, TAcc, AddOp>(src, s, acc, n); break;
            }
        }

        /// <summary>acc[j] = acc[j] op src[j] for j &lt; n.</summary>
        private void Accumulate(T* src, TAcc* acc, int n)
        {
            switch (op)
            {
                case ReduceOp.Prod: ColumnAccumulator.Run<T, TAcc, MulOp>(src, acc, n); break;
                case ReduceOp.Max: ColumnAccumulator.Run<T, TAcc, MaxOp>(src, acc, n); break;
                case ReduceOp.Min: ColumnAccumulator.Run<T, TAcc, MinOp>(src, acc, n); break;
                case ReduceOp.SumOfSquares: ColumnAccumulator.Run<T, TAcc, SquareAddOp>(src, acc, n); break;
                default: ColumnAccumulator.Run<T, TAcc, AddOp>(src, acc, n); break;
            }
        }
    }

    /// <summary>
    /// An associative operation on scalars and on Vector512 and Vector256 lanes, applied as acc = Apply(acc, Lift(x)):
    /// Lift maps an input value (already widened to the accumulator type) before it joins.
    /// </summary>
    private interface IAccumulateOp
    {
        static abstract Vector512<TV> Apply<TV>(Vector512<TV> a, Vector512<TV> b) where TV : unmanaged, INumber<TV>;
        static abstract Vector256<TV> Apply<TV>(Vector256<TV> a, Vector256<TV> b) where TV : unmanaged, INumber<TV>;
        static abstract TS Apply<TS>(TS a, TS b) where TS : INumber<TS>;
        static virtual Vector512<TV> Lift<TV>(Vector512<TV> x) where TV : unmanaged, INumber<TV> => x;
        static virtual Vector256<TV> Lift<TV>(Vector256<TV> x) where TV : unmanaged, INumber<TV> => x;
        static virtual TS Lift<TS>(TS x) where TS : INumber<TS> => x;
    }

    private readonly struct AddOp : IAccumulateOp
    {
        public static Vector512<TV> Apply<TV>(Vector512<TV> a, Vector512<TV> b) where TV : unmanaged, INumber<TV> => a + b;
        public static Vector256<TV> Apply<TV>(Vector256<TV> a, Vector256<TV> b) where TV : unmanaged, INumber<TV> => a + b;
        public static TS Apply<TS>(TS a, TS b) where TS : INumber<TS> => unchecked(a + b);
    }

    private readonly struct SquareAddOp : IAccumulateOp
    {
        public static Vector512<TV> Apply<TV>(Vector512<TV> a, Vector512<TV> b) where TV : unmanaged, INumber<TV> => a + b;
        public static Vector256<TV> Apply<TV>(Vector256<TV> a, Vector256<TV> b) where TV : unmanaged, INumber<TV> => a + b;
        public static TS Apply<TS>(TS a, TS b) where TS : INumber<TS> => unchecked(a + b);
        public static Vector512<TV> Lift<TV>(Vector512<TV> x) where TV : unmanaged, INumber<TV> => x * x;
        public static Vector256<TV> Lift<TV>(Vector256<TV> x) where TV : unmanaged, INumber<TV> => x * x;
        public static TS Lift<TS>(TS x) where TS : INumber<TS> => unchecked(x * x);
    }

    private readonly struct MulOp : IAccumulateOp
    {
        public static Vector512<TV> Apply<TV>(Vector512<TV> a, Vector512<TV> b) where TV : unmanaged, INumber<TV> => a * b;
        public static Vector256<TV> Apply<TV>(Vector256<TV> a, Vector256<TV> b) where TV : unmanaged, INumber<TV> => a * b;
        public static TS Apply<TS>(TS a, TS b) where TS : INumber<TS> => unchecked(a * b);
    }

    private readonly struct MaxOp : IAccumulateOp
    {
        public static Vector512<TV> Apply<TV>(Vector512<TV> a, Vector512<TV> b) where TV : unmanaged, INumber<TV> => Vector512.Max(a, b);
        public static Vector256<TV> Apply<TV>(Vector256<TV> a, Vector256<TV> b) where TV : unmanaged, INumber<TV> => Vector256.Max(a, b);
        public static TS Apply<TS>(TS a, TS b) where TS : INumber<TS> => TS.Max(a, b);
    }

    private readonly struct MinOp : IAccumulateOp
    {
        public static Vector512<TV> Apply<TV>(Vector512<TV> a, Vector512<TV> b) where TV : unmanaged, INumber<TV> => Vector512.Min(a, b);
        public static Vector256<TV> Apply<TV>(Vector256<TV> a, Vector256<TV> b) where TV : unmanaged, INumber<TV> => Vector256.Min(a, b);
        public static TS Apply<TS>(TS a, TS b) where TS : INumber<TS> => TS.Min(a, b);
    }

    /// <summary>acc[j] = op(acc[j], lift(src[j])); float sources are widened into float64 accumulators first.</summary>
    private static unsafe class ColumnAccumulator
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void Run<T, TAcc, TOp>(T* src, TAcc* acc, int n)
            where T : unmanaged, INumber<T> where TAcc : unmanaged, INumber<TAcc> where TOp : IAccumulateOp
        {
            int j = 0;
            if (VectorWidth.Use512)
            {
                if (typeof(T) == typeof(float))
                {
                    float* s = (float*)src;
                    double* a = (double*)acc;
                    for (; j + 16 <= n; j += 16)
                    {
                        var (lo, hi) = Vector512.Widen(Vector512.Load(s + j));
                        TOp.Apply(Vector512.Load(a + j), TOp.Lift(lo)).Store(a + j);
                        TOp.Apply(Vector512.Load(a + j + 8), TOp.Lift(hi)).Store(a + j + 8);
                    }
                }
                else if (typeof(T) == typeof(TAcc))
                {
                    TAcc* s = (TAcc*)src;
                    int w = Vector512<TAcc>.Count;
                    for (; j + w <= n; j += w) TOp.Apply(Vector512.Load(acc + j), TOp.Lift(Vector512.Load(s + j))).Store(acc + j);
                }
            }
            else if (VectorWidth.Use256)
            {
                if (typeof(T) == typeof(float))
                {
                    float* s = (float*)src;
                    double* a = (double*)acc;
                    for (; j + 8 <= n; j += 8)
                    {
                        var (lo, hi) = Vector256.Widen(Vector256.Load(s + j));
                        TOp.Apply(Vector256.Load(a + j), TOp.Lift(lo)).Store(a + j);
                        TOp.Apply(Vector256.Load(a + j + 4), TOp.Lift(hi)).Store(a + j + 4);
                    }
                }
                else if (typeof(T) == typeof(TAcc))
                {
                    TAcc* s = (TAcc*)src;
                    int w = Vector256<TAcc>.Count;
                    for (; j + w <= n; j += w) TOp.Apply(Vector256.Load(acc + j), TOp.Lift(Vector256.Load(s + j))).Store(acc + j);
                }
            }
            for (; j < n; j++) acc[j] = TOp.Apply(acc[j], TOp.Lift(TAcc.CreateTruncating(src[j])));
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void RunFour<T, TAcc, TOp>(T* p, long s, TAcc* acc, int n)
            where T : unmanaged, INumber<T> where TAcc : unmanaged, INumber<TAcc> where TOp : IAccumulateOp
        {
            T* p1 = p + s, p2 = p + 2 * s, p3 = p + 3 * s;
            int j = 0;
            if (VectorWidth.Use512)
            {
                if (typeof(T) == typeof(float))
                {
                    double* a = (double*)acc;
                    for (; j + 16 <= n; j += 16)
                    {
                        var v = TOp.Apply(TOp.Apply(Vector512.Load((float*)p + j), Vector512.Load((float*)p1 + j)),
                                          TOp.Apply(Vector512.Load((float*)p2 + j), Vector512.Load((float*)p3 + j)));
                        var (lo, hi) = Vector512.Widen(v);
                        TOp.Apply(Vector512.Load(a + j), lo).Store(a + j);
                        TOp.Apply(Vector512.Load(a + j + 8), hi).Store(a + j + 8);
                    }
                }
                else if (typeof(T) == typeof(TAcc))
                {
                    int w = Vector512<TAcc>.Count;
                    TAcc* q0 = (TAcc*)p, q1 = (TAcc*)p1, q2 = (TAcc*)p2, q3 = (TAcc*)p3;
                    for (; j + w <= n; j += w)
                    {
                        var v = TOp.Apply(TOp.Apply(Vector512.Load(q0 + j), Vector512.Load(q1 + j)), TOp.Apply(Vector512.Load(q2 + j), Vector512.Load(q3 + j)));
                        TOp.Apply(Vector512.Load(acc + j), v).Store(acc + j);
                    }
                }
            }
            else if (VectorWidth.Use256)
            {
                if (typeof(T) == typeof(float))
                {
                    double* a = (double*)acc;
                    for (; j + 8 <= n; j += 8)
                    {
                        var v = TOp.Apply(TOp.Apply(Vector256.Load((float*)p + j), Vector256.Load((float*)p1 + j)),
                                          TOp.Apply(Vector256.Load((float*)p2 + j), Vector256.Load((float*)p3 + j)));
                        var (lo, hi) = Vector256.Widen(v);
                        TOp.Apply(Vector256.Load(a + j), lo).Store(a + j);
                        TOp.Apply(Vector256.Load(a + j + 4), hi).Store(a + j + 4);
                    }
                }
                else if (typeof(T) == typeof(TAcc))
                {
                    int w = Vector256<TAcc>.Count;
                    TAcc* q0 = (TAcc*)p, q1 = (TAcc*)p1, q2 = (TAcc*)p2, q3 = (TAcc*)p3;
                    for (; j + w <= n; j += w)
                    {
                        var v = TOp.Apply(TOp.Apply(Vector256.Load(q0 + j), Vector256.Load(q1 + j)), TOp.Apply(Vector256.Load(q2 + j), Vector256.Load(q3 + j)));
                        TOp.Apply(Vector256.Load(acc + j), v).Store(acc + j);
                    }
                }
            }
            for (; j < n; j++)
                acc[j] = TOp.Apply(acc[j], TAcc.CreateTruncating(TOp.Apply(TOp.Apply(p[j], p1[j]), TOp.Apply(p2[j], p3[j]))));
        }
    }
}
