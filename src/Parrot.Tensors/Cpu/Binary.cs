using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y)
    {
        var strides = StridesOf(y, a, b);
        var offsets = OffsetsOf(y, a, b);
        switch (ComputeTypeOf(a.DType))
        {
            case ComputeType.Float: StridedLoop.Run(y.Shape, strides, offsets, new BinaryKernel<float>(op, y, a, b, DType.F32)); break;
            case ComputeType.Double: StridedLoop.Run(y.Shape, strides, offsets, new BinaryKernel<double>(op, y, a, b, DType.F64)); break;
            default: StridedLoop.Run(y.Shape, strides, offsets, new BinaryKernel<long>(op, y, a, b, DType.I64)); break;
        }
    }

    private readonly unsafe struct BinaryKernel<T>(BinaryOp op, Tensor y, Tensor a, Tensor b, DType natural) : IRowKernel
        where T : unmanaged, INumber<T>, IMinMaxValue<T>
    {
        private readonly nint _y = y.Storage.Pointer, _a = a.Storage.Pointer, _b = b.Storage.Pointer;
        private readonly DType _yt = y.DType, _at = a.DType, _bt = b.DType;

        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            nint ya = RowIO.Address(_y, _yt, off[0]), aa = RowIO.Address(_a, _at, off[1]), ba = RowIO.Address(_b, _bt, off[2]);
            bool directA = _at == natural && st[1] == 1, directB = _bt == natural && st[2] == 1, directY = _yt == natural && st[0] == 1;
            T* ap = directA ? (T*)aa : RowIO.Scratch<T>(0);
            T* bp = directB ? (T*)ba : RowIO.Scratch<T>(1);
            T* yp = directY ? (T*)ya : RowIO.Scratch<T>(2);
            if (!directA) RowIO.Load(aa, _at, st[1], n, ap);
            if (!directB) RowIO.Load(ba, _bt, st[2], n, bp);
            Apply(op, ap, bp, yp, n);
            if (!directY) RowIO.Store(yp, ya, _yt, st[0], n);
        }
    }

    /// <summary>y = a op b over n contiguous values; comparisons write 1 or 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Apply<T>(BinaryOp op, T* ap, T* bp, T* yp, int n) where T : unmanaged, INumber<T>, IMinMaxValue<T>
    {
        var a = new ReadOnlySpan<T>(ap, n);
        var b = new ReadOnlySpan<T>(bp, n);
        var y = new Span<T>(yp, n);
        switch (op)
        {
            case BinaryOp.Add: TensorPrimitives.Add(a, b, y); break;
            case BinaryOp.Sub: TensorPrimitives.Subtract(a, b, y); break;
            case BinaryOp.Mul: TensorPrimitives.Multiply(a, b, y); break;
            case BinaryOp.Div: TensorPrimitives.Divide(a, b, y); break;
            case BinaryOp.Pow: Pow(ap, bp, yp, n); break;
            case BinaryOp.Maximum: TensorPrimitives.Max(a, b, y); break;
            case BinaryOp.Minimum: TensorPrimitives.Min(a, b, y); break;
            default: Compare(op, ap, bp, yp, n); break;
        }
    }

    private static unsafe void Pow<T>(T* a, T* b, T* y, int n) where T : unmanaged, INumber<T>
    {
        if (typeof(T) == typeof(float)) TensorPrimitives.Pow(new ReadOnlySpan<float>(a, n), new ReadOnlySpan<float>(b, n), new Span<float>(y, n));
        else if (typeof(T) == typeof(double)) Transcendentals.Pow(new ReadOnlySpan<double>(a, n), new ReadOnlySpan<double>(b, n), new Span<double>(y, n));
        else
        {
            long* al = (long*)a, bl = (long*)b, yl = (long*)y;
            for (int i = 0; i < n; i++) yl[i] = IntPow(al[i], bl[i]);
        }
    }

    /// <summary>Integer power by squaring (wrapping); a negative exponent gives 0 unless the base is ±1.</summary>
    private static long IntPow(long x, long e)
    {
        if (e < 0) return x == 1 ? 1 : x == -1 ? ((e & 1) == 0 ? 1 : -1) : 0;
        long r = 1;
        unchecked
        {
            while (e > 0) { if ((e & 1) != 0) r *= x; x *= x; e >>= 1; }
        }
        return r;
    }

    private static unsafe void Compare<T>(BinaryOp op, T* a, T* b, T* y, int n) where T : unmanaged, INumber<T>
    {
        int i = 0;
        if (VectorWidth.Use512 && Vector512<T>.IsSupported)
        {
            int w = Vector512<T>.Count;
            var one = Vector512<T>.One;
            for (; i + w <= n; i += w)
            {
                var va = Vector512.Load(a + i);
                var vb = Vector512.Load(b + i);
                var m = op switch
                {
                    BinaryOp.Eq => Vector512.Equals(va, vb),
                    BinaryOp.Ne => ~Vector512.Equals(va, vb),
                    BinaryOp.Lt => Vector512.LessThan(va, vb),
                    BinaryOp.Le => Vector512.LessThanOrEqual(va, vb),
                    BinaryOp.Gt => Vector512.GreaterThan(va, vb),
                    _ => Vector512.GreaterThanOrEqual(va, vb),
                };
                (m & one).Store(y + i); // all-ones lanes AND the bits of 1 give exactly 1
            }
        }
        else if (VectorWidth.Use256 && Vector256<T>.IsSupported)
        {
            int w = Vector256<T>.Count;
            var one = Vector256<T>.One;
            for (; i + w <= n; i += w)
            {
                var va = Vector256.Load(a + i);
                var vb = Vector256.Load(b + i);
                var m = op switch
                {
                    BinaryOp.Eq => Vector256.Equals(va, vb),
                    BinaryOp.Ne => ~Vector256.Equals(va, vb),
                    BinaryOp.Lt => Vector256.LessThan(va, vb),
                    BinaryOp.Le => Vector256.LessThanOrEqual(va, vb),
                    BinaryOp.Gt => Vector256.GreaterThan(va, vb),
                    _ => Vector256.GreaterThanOrEqual(va, vb),
                };
                (m & one).Store(y + i);
            }
        }
        for (; i < n; i++)
        {
            bool r = op switch
            {
                BinaryOp.Eq => a[i] == b[i],
                BinaryOp.Ne => a[i] != b[i],
                BinaryOp.Lt => a[i] < b[i],
                BinaryOp.Le => a[i] <= b[i],
                BinaryOp.Gt => a[i] > b[i],
                _ => a[i] >= b[i],
            };
            y[i] = r ? T.One : T.Zero;
        }
    }
}
