using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Parrot.Tensors.Cpu;

/// <summary>
/// Exp, log, tanh, sigmoid, sin, cos and pow over spans, with float64 on the C runtime's scalar functions.
/// Why: TensorPrimitives' vectorised float64 exp and tanh give different bits before and after the JIT recompiles
/// them at a higher tier (measured with System.Numerics.Tensors 10.0.15 on AVX-512: exp over rows holding −∞ lanes
/// changed 77 of 4096 results, 1247 of 4288 in another run, after ~50 calls; tanh in the tanh-form GELU changed 10 of
/// 4288), so the same float64 computation repeated in one process — a float64 reference, a gradient check, a
/// softmax over masked scores — did not always give the same bits. Math.Exp and friends call the C runtime at every
/// tier. float32 keeps the vectorised kernels: a search of 16.8M values at both tiers found no changed bit.
/// </summary>
internal static class Transcendentals
{
    public static void Exp<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) != typeof(double)) { TensorPrimitives.Exp(x, y); return; }
        ReadOnlySpan<double> xs = D(x); Span<double> ys = D(y);
        for (int i = 0; i < xs.Length; i++) ys[i] = Math.Exp(xs[i]);
    }

    public static void Log<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) != typeof(double)) { TensorPrimitives.Log(x, y); return; }
        ReadOnlySpan<double> xs = D(x); Span<double> ys = D(y);
        for (int i = 0; i < xs.Length; i++) ys[i] = Math.Log(xs[i]);
    }

    public static void Tanh<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) != typeof(double)) { TensorPrimitives.Tanh(x, y); return; }
        ReadOnlySpan<double> xs = D(x); Span<double> ys = D(y);
        for (int i = 0; i < xs.Length; i++) ys[i] = Math.Tanh(xs[i]);
    }

    /// <summary>1 / (1 + e^−x), as TensorPrimitives.Sigmoid defines it.</summary>
    public static void Sigmoid<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && Vector256.IsHardwareAccelerated && Fma.IsSupported)
        {
            SigmoidF32(MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(y));
            return;
        }
        if (typeof(T) != typeof(double)) { TensorPrimitives.Sigmoid(x, y); return; }
        ReadOnlySpan<double> xs = D(x); Span<double> ys = D(y);
        for (int i = 0; i < xs.Length; i++) ys[i] = 1.0 / (1.0 + Math.Exp(-xs[i]));
    }

    /// <summary>
    /// float32 sigmoid on AttentionF32's inlined exp (Cephes expf, about one ulp): e = e^−|x| ≤ 1, then 1 / (1 + e) for
    /// x ≥ 0 and e / (1 + e) below, so neither side overflows; NaN stays NaN, ±∞ give 1 and 0, and below −87.3 the
    /// (subnormal) result is 0. TensorPrimitives.Sigmoid (System.Numerics.Tensors 10.0.15) ran 0.41–0.75 Gelem/s on one
    /// Zen 3 thread against 0.85–1.13 for this, and silu, quick_gelu and the SwiGLU kernel all go through here. Within
    /// 1.7e-7 relative of the float64 sigmoid on [−30, 30].
    /// </summary>
    private static unsafe void SigmoidF32(ReadOnlySpan<float> x, Span<float> y)
    {
        int n = x.Length, i = 0;
        fixed (float* xp = x, yp = y)
        {
            // Element i is read before it is written, so y may alias x.
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.Load(xp + i);
                var e = AttentionF32.ExpNonPositive(-Vector256.Abs(v));
                var q = Vector256<float>.One / (Vector256<float>.One + e);
                Vector256.ConditionalSelect(Vector256.LessThan(v, Vector256<float>.Zero), e * q, q).Store(yp + i);
            }
            for (; i < n; i++)
            {
                float v = xp[i], e = MathF.Exp(-MathF.Abs(v)), q = 1f / (1f + e);
                yp[i] = v < 0 ? e * q : q;
            }
        }
    }

    public static void Sin<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) != typeof(double)) { TensorPrimitives.Sin(x, y); return; }
        ReadOnlySpan<double> xs = D(x); Span<double> ys = D(y);
        for (int i = 0; i < xs.Length; i++) ys[i] = Math.Sin(xs[i]);
    }

    public static void Cos<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) != typeof(double)) { TensorPrimitives.Cos(x, y); return; }
        ReadOnlySpan<double> xs = D(x); Span<double> ys = D(y);
        for (int i = 0; i < xs.Length; i++) ys[i] = Math.Cos(xs[i]);
    }

    public static void Pow(ReadOnlySpan<double> a, ReadOnlySpan<double> b, Span<double> y)
    {
        for (int i = 0; i < a.Length; i++) y[i] = Math.Pow(a[i], b[i]);
    }

    // x and y may alias (in-place maps): each loop reads element i before it writes it.
    private static ReadOnlySpan<double> D<T>(ReadOnlySpan<T> x) where T : unmanaged => MemoryMarshal.Cast<T, double>(x);
    private static Span<double> D<T>(Span<T> y) where T : unmanaged => MemoryMarshal.Cast<T, double>(y);
}
