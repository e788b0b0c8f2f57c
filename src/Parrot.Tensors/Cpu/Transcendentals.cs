using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

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
        if (typeof(T) != typeof(double)) { TensorPrimitives.Sigmoid(x, y); return; }
        ReadOnlySpan<double> xs = D(x); Span<double> ys = D(y);
        for (int i = 0; i < xs.Length; i++) ys[i] = 1.0 / (1.0 + Math.Exp(-xs[i]));
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
