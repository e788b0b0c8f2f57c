using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <summary>Elements a SwiGLU kernel handles per step, in stack buffers.</summary>
    private const int SwiGluBlock = 512;

    /// <inheritdoc/>
    public void SwiGlu(Tensor gate, Tensor up, Tensor y)
    {
        CheckSwiGlu("SwiGlu", gate, up, y, y);
        var strides = StridesOf(y, gate, up);
        var offsets = OffsetsOf(y, gate, up);
        if (y.DType == DType.F64) StridedLoop.Run(y.Shape, strides, offsets, new SwiGluKernel<double>(y, gate, up));
        else StridedLoop.Run(y.Shape, strides, offsets, new SwiGluKernel<float>(y, gate, up));
    }

    /// <inheritdoc/>
    public void SwiGluBackward(Tensor dy, Tensor gate, Tensor up, Tensor dgate, Tensor dup)
    {
        CheckSwiGlu("SwiGluBackward", gate, up, dgate, dup);
        if (!dy.Shape.SequenceEqual(gate.Shape) || !dy.DType.IsFloat())
            throw new ArgumentException($"SwiGluBackward: dy {dy.ShapeString()} {dy.DType.Name()} must be a float tensor of gate's shape {gate.ShapeString()}");
        var strides = StridesOf(dgate, dup, dy, gate, up);
        var offsets = OffsetsOf(dgate, dup, dy, gate, up);
        if (gate.DType == DType.F64) StridedLoop.Run(gate.Shape, strides, offsets, new SwiGluBackwardKernel<double>(dgate, dup, dy, gate, up));
        else StridedLoop.Run(gate.Shape, strides, offsets, new SwiGluBackwardKernel<float>(dgate, dup, dy, gate, up));
    }

    private static void CheckSwiGlu(string op, Tensor gate, Tensor up, Tensor a, Tensor b)
    {
        foreach (var t in new[] { up, a, b })
            if (!t.Shape.SequenceEqual(gate.Shape) || t.DType != gate.DType || !gate.DType.IsFloat())
                throw new ArgumentException($"{op}: gate {gate.ShapeString()} {gate.DType.Name()}, up and the outputs must share a shape and a float dtype, got {t.ShapeString()} {t.DType.Name()}");
    }

    /// <summary>silu(g) = g·sigmoid(g) exactly as the Silu unary kernel computes it; rounded to the 16-bit dtype when there is one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void SiluRounded<T>(T* g, T* s, int n, DType dt) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var ss = new Span<T>(s, n);
        Transcendentals.Sigmoid(new ReadOnlySpan<T>(g, n), ss);
        TensorPrimitives.Multiply(new ReadOnlySpan<T>(g, n), ss, ss);
        if (typeof(T) != typeof(float) || dt is not (DType.BF16 or DType.F16)) return;
        ushort* half = stackalloc ushort[n];
        if (dt == DType.BF16)
        {
            BFloat16.FromFloat((float*)s, half, n);
            BFloat16.ToFloat(half, (float*)s, n);
        }
        else
        {
            var hs = new Span<Half>(half, n);
            var fs = new Span<float>(s, n);
            TensorPrimitives.ConvertToHalf(fs, hs);
            TensorPrimitives.ConvertToSingle(hs, fs);
        }
    }

    private readonly unsafe struct SwiGluKernel<T>(Tensor y, Tensor gate, Tensor up) : IRowKernel
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private readonly nint _y = y.Storage.Pointer, _g = gate.Storage.Pointer, _u = up.Storage.Pointer;
        private readonly DType _dt = y.DType;

        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            T* g = stackalloc T[SwiGluBlock];
            T* u = stackalloc T[SwiGluBlock];
            T* s = stackalloc T[SwiGluBlock];
            int size = _dt.SizeOf();
            bool natural = _dt == (typeof(T) == typeof(float) ? DType.F32 : DType.F64);
            for (int i = 0; i < n; i += SwiGluBlock)
            {
                int m = Math.Min(SwiGluBlock, n - i);
                nint ga = _g + (nint)((off[1] + i * st[1]) * size), ua = _u + (nint)((off[2] + i * st[2]) * size), ya = _y + (nint)((off[0] + i * st[0]) * size);
                // Operands already in T and contiguous are read and written in place.
                T* gp = natural && st[1] == 1 ? (T*)ga : g, upp = natural && st[2] == 1 ? (T*)ua : u, yp = natural && st[0] == 1 ? (T*)ya : s;
                if (gp == g) RowIO.Load(ga, _dt, st[1], m, g);
                if (upp == u) RowIO.Load(ua, _dt, st[2], m, u);
                SiluRounded(gp, s, m, _dt);
                TensorPrimitives.Multiply(new ReadOnlySpan<T>(s, m), new ReadOnlySpan<T>(upp, m), new Span<T>(yp, m));
                if (yp == s) RowIO.Store(s, ya, _dt, st[0], m);
            }
        }
    }

    /// <summary>s = sigmoid(g); dup = dy·g·s; dgate = dy·up·s·(1 + g·(1 − s)).</summary>
    private readonly unsafe struct SwiGluBackwardKernel<T>(Tensor dgate, Tensor dup, Tensor dy, Tensor gate, Tensor up) : IRowKernel
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private readonly nint _dg = dgate.Storage.Pointer, _du = dup.Storage.Pointer, _dy = dy.Storage.Pointer, _g = gate.Storage.Pointer, _u = up.Storage.Pointer;
        private readonly DType _dt = gate.DType, _dyt = dy.DType;

        public void Row(ReadOnlySpan<long> off, ReadOnlySpan<long> st, int n)
        {
            T* d = stackalloc T[SwiGluBlock];
            T* g = stackalloc T[SwiGluBlock];
            T* u = stackalloc T[SwiGluBlock];
            T* s = stackalloc T[SwiGluBlock];
            T* t = stackalloc T[SwiGluBlock];
            int size = _dt.SizeOf(), dySize = _dyt.SizeOf();
            DType nat = typeof(T) == typeof(float) ? DType.F32 : DType.F64;
            bool natural = _dt == nat;
            for (int i = 0; i < n; i += SwiGluBlock)
            {
                int m = Math.Min(SwiGluBlock, n - i);
                nint dya = _dy + (nint)((off[2] + i * st[2]) * dySize), ga = _g + (nint)((off[3] + i * st[3]) * size), ua = _u + (nint)((off[4] + i * st[4]) * size);
                nint dga = _dg + (nint)((off[0] + i * st[0]) * size), dua = _du + (nint)((off[1] + i * st[1]) * size);
                T* dp = _dyt == nat && st[2] == 1 ? (T*)dya : d, gp = natural && st[3] == 1 ? (T*)ga : g, upp = natural && st[4] == 1 ? (T*)ua : u;
                T* dgp = natural && st[0] == 1 ? (T*)dga : t, dupp = natural && st[1] == 1 ? (T*)dua : s;
                if (dp == d) RowIO.Load(dya, _dyt, st[2], m, d);
                if (gp == g) RowIO.Load(ga, _dt, st[3], m, g);
                if (upp == u) RowIO.Load(ua, _dt, st[4], m, u);
                Step(dp, gp, upp, dupp, dgp, m);
                if (dgp == t) RowIO.Store(t, dga, _dt, st[0], m);
                if (dupp == s) RowIO.Store(s, dua, _dt, st[1], m);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Step(T* dy, T* g, T* u, T* s, T* t, int m)
        {
            var ds = new ReadOnlySpan<T>(dy, m);
            var gs = new ReadOnlySpan<T>(g, m);
            var ss = new Span<T>(s, m);
            var ts = new Span<T>(t, m);
            Transcendentals.Sigmoid(gs, ss);
            TensorPrimitives.Subtract(T.One, ss, ts);          // 1 − s
            TensorPrimitives.MultiplyAdd(gs, ts, T.One, ts);    // 1 + g(1 − s)
            TensorPrimitives.Multiply(ts, ss, ts);
            TensorPrimitives.Multiply(ts, new ReadOnlySpan<T>(u, m), ts);
            TensorPrimitives.Multiply(ts, ds, ts);              // dgate
            TensorPrimitives.Multiply(ss, gs, ss);              // silu
            TensorPrimitives.Multiply(ss, ds, ss);              // dup
        }
    }
}
