using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Unary(UnaryOp op, Tensor x, Tensor y)
    {
        var strides = StridesOf(y, x);
        var offsets = OffsetsOf(y, x);
        switch (ComputeTypeOf(y.DType))
        {
            case ComputeType.Float: StridedLoop.Run(y.Shape, strides, offsets, new UnaryKernel<float>(op, y, x, DType.F32)); break;
            case ComputeType.Double: StridedLoop.Run(y.Shape, strides, offsets, new UnaryKernel<double>(op, y, x, DType.F64)); break;
            default: StridedLoop.Run(y.Shape, strides, offsets, new IntUnaryKernel(op, y, x)); break;
        }
    }

    private readonly unsafe struct UnaryKernel<T>(UnaryOp op, Tensor y, Tensor x, DType natural) : IRowKernel
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private readonly nint _y = y.Storage.Pointer, _x = x.Storage.Pointer;
        private readonly DType _yt = y.DType, _xt = x.DType;

        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            nint ya = RowIO.Address(_y, _yt, off[0]), xa = RowIO.Address(_x, _xt, off[1]);
            // Work in place on the tensors' memory when they already hold contiguous T; else through scratch.
            bool directX = _xt == natural && st[1] == 1, directY = _yt == natural && st[0] == 1;
            T* xs = directX ? (T*)xa : RowIO.Scratch<T>(0);
            T* ys = directY ? (T*)ya : RowIO.Scratch<T>(1);
            if (!directX) RowIO.Load(xa, _xt, st[1], n, xs);
            Apply(op, xs, ys, n);
            if (!directY) RowIO.Store(ys, ya, _yt, st[0], n);
        }
    }

    /// <summary>y = op(x) over n contiguous values (y may alias x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Apply<T>(UnaryOp op, T* xp, T* yp, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var x = new ReadOnlySpan<T>(xp, n);
        var y = new Span<T>(yp, n);
        switch (op)
        {
            case UnaryOp.Neg: TensorPrimitives.Negate(x, y); break;
            case UnaryOp.Abs: TensorPrimitives.Abs(x, y); break;
            case UnaryOp.Exp: Transcendentals.Exp(x, y); break;
            case UnaryOp.Log: Transcendentals.Log(x, y); break;
            case UnaryOp.Sqrt: TensorPrimitives.Sqrt(x, y); break;
            case UnaryOp.Rsqrt: TensorPrimitives.Sqrt(x, y); TensorPrimitives.Reciprocal(y, y); break;
            case UnaryOp.Tanh: Transcendentals.Tanh(x, y); break;
            case UnaryOp.Sigmoid: Transcendentals.Sigmoid(x, y); break;
            case UnaryOp.Silu:
                // y may alias x: compute the sigmoid into scratch first.
                {
                    T* s = RowIO.Scratch<T>(2);
                    var sig = new Span<T>(s, n);
                    Transcendentals.Sigmoid(x, sig);
                    TensorPrimitives.Multiply(x, sig, y);
                }
                break;
            case UnaryOp.QuickGelu:
                {
                    T* s = RowIO.Scratch<T>(2);
                    var sig = new Span<T>(s, n);
                    TensorPrimitives.Multiply(x, T.CreateTruncating(1.702), sig);
                    Transcendentals.Sigmoid(sig, sig);
                    TensorPrimitives.Multiply(x, sig, y);
                }
                break;
            case UnaryOp.GeluErf: FastMath.GeluErf(xp, yp, n); break;
            case UnaryOp.GeluTanh:
                if (xp == yp)
                {
                    T* s = RowIO.Scratch<T>(2);
                    Buffer.MemoryCopy(xp, s, n * (long)sizeof(T), n * (long)sizeof(T));
                    FastMath.GeluTanh(s, yp, n);
                }
                else FastMath.GeluTanh(xp, yp, n);
                break;
            case UnaryOp.Relu: TensorPrimitives.Max(x, T.Zero, y); break;
            case UnaryOp.Sin: Transcendentals.Sin(x, y); break;
            case UnaryOp.Cos: Transcendentals.Cos(x, y); break;
            case UnaryOp.Square: TensorPrimitives.Multiply(x, x, y); break;
            case UnaryOp.Reciprocal: TensorPrimitives.Reciprocal(x, y); break;
            case UnaryOp.Erf: FastMath.Erf(xp, yp, n); break;
            default: throw new NotSupportedException($"unary op {op}");
        }
    }

    /// <summary>The unary ops that make sense on integers: neg, abs, square, relu.</summary>
    private readonly unsafe struct IntUnaryKernel(UnaryOp op, Tensor y, Tensor x) : IRowKernel
    {
        private readonly nint _y = y.Storage.Pointer, _x = x.Storage.Pointer;
        private readonly DType _yt = y.DType, _xt = x.DType;

        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            long* b = RowIO.Scratch<long>(0);
            RowIO.Load(RowIO.Address(_x, _xt, off[1]), _xt, st[1], n, b);
            var s = new Span<long>(b, n);
            switch (op)
            {
                case UnaryOp.Neg: TensorPrimitives.Negate(s, s); break;
                case UnaryOp.Abs: for (int i = 0; i < n; i++) s[i] = s[i] < 0 ? unchecked(-s[i]) : s[i]; break;
                case UnaryOp.Square: TensorPrimitives.Multiply(s, s, s); break;
                case UnaryOp.Relu: TensorPrimitives.Max(s, 0L, s); break;
                default: throw new NotSupportedException($"unary op {op} on integers");
            }
            RowIO.Store(b, RowIO.Address(_y, _yt, off[0]), _yt, st[0], n);
        }
    }
}
