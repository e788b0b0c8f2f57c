using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void ScatterAdd(Tensor dst, int axis, Tensor index, Tensor src)
    {
        if (index.Count == 0) return;
        if (index.DType is not (DType.I64 or DType.I32))
            throw new ArgumentException($"ScatterAdd: index must be int64 or int32, got {index.DType.Name()}");
        if (src.DType != dst.DType)
            throw new ArgumentException($"ScatterAdd: src is {src.DType.Name()} but dst is {dst.DType.Name()}");
        var plan = new ScatterPlan(dst, axis, index, src);
        switch (dst.DType)
        {
            case DType.F32: Run<float, FloatAdd>(plan, index.DType); break;
            case DType.F64: Run<double, DoubleAdd>(plan, index.DType); break;
            case DType.BF16: Run<ushort, BFloat16Add>(plan, index.DType); break;
            case DType.F16: Run<Half, HalfAdd>(plan, index.DType); break;
            case DType.I32: Run<int, Int32Add>(plan, index.DType); break;
            case DType.I64: Run<long, Int64Add>(plan, index.DType); break;
            case DType.U8: Run<byte, ByteAdd>(plan, index.DType); break;
            default: throw new ArgumentException($"ScatterAdd: not defined for {dst.DType.Name()} tensors");
        }

        static void Run<T, TAdd>(ScatterPlan plan, DType indexType) where T : unmanaged where TAdd : IAccumulate<T>
        {
            if (indexType == DType.I64) plan.Execute<T, long, TAdd>();
            else plan.Execute<T, int, TAdd>();
        }
    }

    /// <summary>
    /// The iteration of a scatter-add, arranged so that the result never depends on the thread count.
    /// Every position of the index is a pair (fiber, j): the fiber is its coordinates on the dimensions
    /// other than the axis, j its coordinate on the axis. All contributions to one destination element
    /// come from a single fiber, so workers own disjoint sets of fibers (the partition is by
    /// destination) and walk j in ascending order: each destination sums its contributions in one fixed
    /// order. Fibers are laid out as rows (the other dimensions but the last) of a run (the last other
    /// dimension), and the run is the innermost loop so memory is touched row by row.
    /// </summary>
    private sealed unsafe class ScatterPlan
    {
        private readonly int[] _rowShape;              // sizes of the other dimensions but the last
        private readonly long[] _rowStrideI, _rowStrideS, _rowStrideD;
        private readonly int _run;                     // size of the last other dimension (1 if none)
        private readonly long _runI, _runS, _runD;     // its strides in index, src, dst
        private readonly int _k;                       // index size along the axis
        private readonly long _axisI, _axisS, _axisD;  // axis strides in index, src, dst
        private readonly int _axisSize;                // dst size along the axis (range of index values)
        private readonly long _offI, _offS, _offD;
        private readonly nint _pi, _ps, _pd;

        public ScatterPlan(Tensor dst, int axis, Tensor index, Tensor src)
        {
            var others = Enumerable.Range(0, index.Rank).Where(d => d != axis).ToArray();
            int rows = Math.Max(others.Length - 1, 0);
            _rowShape = new int[rows];
            _rowStrideI = new long[rows]; _rowStrideS = new long[rows]; _rowStrideD = new long[rows];
            for (int r = 0; r < rows; r++)
            {
                int d = others[r];
                _rowShape[r] = index.Shape[d];
                _rowStrideI[r] = index.Strides[d]; _rowStrideS[r] = src.Strides[d]; _rowStrideD[r] = dst.Strides[d];
            }
            if (others.Length > 0)
            {
                int last = others[^1];
                _run = index.Shape[last];
                _runI = index.Strides[last]; _runS = src.Strides[last]; _runD = dst.Strides[last];
            }
            else _run = 1;
            _k = index.Shape[axis];
            _axisI = index.Strides[axis]; _axisS = src.Strides[axis]; _axisD = dst.Strides[axis];
            _axisSize = dst.Shape[axis];
            _offI = index.Offset; _offS = src.Offset; _offD = dst.Offset;
            _pi = index.Storage.Pointer; _ps = src.Storage.Pointer; _pd = dst.Storage.Pointer;
        }

        public void Execute<T, TI, TAdd>() where T : unmanaged where TI : unmanaged where TAdd : IAccumulate<T>
        {
            long rowCount = 1;
            foreach (var s in _rowShape) rowCount *= s;
            long fibers = rowCount * _run;
            long work = fibers * _k;
            int workers = work >= StridedLoop.ParallelThreshold ? (int)Math.Min(CpuParallel.Workers, fibers) : 1;
            if (workers <= 1) { Range<T, TI, TAdd>(0, fibers); return; }
            CpuParallel.For(workers, w => Range<T, TI, TAdd>(fibers * w / workers, fibers * (w + 1) / workers));
        }

        /// <summary>Processes the fibers [begin, end) in flat order (row-major over rows, then run).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Range<T, TI, TAdd>(long begin, long end) where T : unmanaged where TI : unmanaged where TAdd : IAccumulate<T>
        {
            T* dst = (T*)_pd;
            T* src = (T*)_ps;
            TI* idx = (TI*)_pi;
            long fiber = begin;
            while (fiber < end)
            {
                long row = fiber / _run;
                int l0 = (int)(fiber % _run);
                int l1 = (int)Math.Min(_run, l0 + (end - fiber));
                long oi = _offI, os = _offS, od = _offD;
                long rest = row;
                for (int r = _rowShape.Length - 1; r >= 0; r--)
                {
                    long c = rest % _rowShape[r];
                    rest /= _rowShape[r];
                    oi += c * _rowStrideI[r]; os += c * _rowStrideS[r]; od += c * _rowStrideD[r];
                }
                bool rowAdd = _runI == 0 && _runS == 1 && _runD == 1;
                for (int j = 0; j < _k; j++)
                {
                    TI* ij = idx + oi + j * _axisI;
                    T* sj = src + os + j * _axisS;
                    T* dj = dst + od;
                    if (rowAdd)
                    {
                        // One index for the whole run (embedding backward): a contiguous row addition.
                        long t = Checked(ReadIndex(ij), _axisSize);
                        TAdd.AddRow(dj + t * _axisD + l0, sj + l0, l1 - l0);
                        continue;
                    }
                    for (int l = l0; l < l1; l++)
                    {
                        long t = Checked(ReadIndex(ij + l * _runI), _axisSize);
                        T* d = dj + l * _runD + t * _axisD;
                        *d = TAdd.Add(*d, sj[l * _runS]);
                    }
                }
                fiber += l1 - l0;
            }
        }
    }

    /// <summary>a + b in the arithmetic of the storage type T, one element or a contiguous row at a time.</summary>
    private unsafe interface IAccumulate<T> where T : unmanaged
    {
        static abstract T Add(T a, T b);

        /// <summary>d[i] = Add(d[i], s[i]) for i &lt; n, with the same roundings as element by element.</summary>
        static abstract void AddRow(T* d, T* s, int n);
    }

    private static unsafe void AddEach<T, TAdd>(T* d, T* s, int n) where T : unmanaged where TAdd : IAccumulate<T>
    {
        for (int i = 0; i < n; i++) d[i] = TAdd.Add(d[i], s[i]);
    }

    private readonly unsafe struct FloatAdd : IAccumulate<float>
    {
        public static float Add(float a, float b) => a + b;
        public static void AddRow(float* d, float* s, int n) =>
            TensorPrimitives.Add(new ReadOnlySpan<float>(d, n), new ReadOnlySpan<float>(s, n), new Span<float>(d, n));
    }

    private readonly unsafe struct DoubleAdd : IAccumulate<double>
    {
        public static double Add(double a, double b) => a + b;
        public static void AddRow(double* d, double* s, int n) =>
            TensorPrimitives.Add(new ReadOnlySpan<double>(d, n), new ReadOnlySpan<double>(s, n), new Span<double>(d, n));
    }
    private readonly unsafe struct Int32Add : IAccumulate<int>
    {
        public static int Add(int a, int b) => unchecked(a + b);
        public static void AddRow(int* d, int* s, int n) => AddEach<int, Int32Add>(d, s, n);
    }

    private readonly unsafe struct Int64Add : IAccumulate<long>
    {
        public static long Add(long a, long b) => unchecked(a + b);
        public static void AddRow(long* d, long* s, int n) => AddEach<long, Int64Add>(d, s, n);
    }

    private readonly unsafe struct ByteAdd : IAccumulate<byte>
    {
        public static byte Add(byte a, byte b) => unchecked((byte)(a + b));
        public static void AddRow(byte* d, byte* s, int n) => AddEach<byte, ByteAdd>(d, s, n);
    }

    /// <summary>bf16 + bf16 computed in float32 and rounded to nearest even, as PyTorch's CPU kernel does per addition.</summary>
    private readonly unsafe struct BFloat16Add : IAccumulate<ushort>
    {
        public static ushort Add(ushort a, ushort b) => BFloat16.FromFloat(BFloat16.ToFloat(a) + BFloat16.ToFloat(b));
        public static void AddRow(ushort* d, ushort* s, int n) => AddEach<ushort, BFloat16Add>(d, s, n);
    }

    private readonly unsafe struct HalfAdd : IAccumulate<Half>
    {
        public static Half Add(Half a, Half b) => (Half)((float)a + (float)b);
        public static void AddRow(Half* d, Half* s, int n) => AddEach<Half, HalfAdd>(d, s, n);
    }
}
