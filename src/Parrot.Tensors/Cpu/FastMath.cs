using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Parrot.Tensors.Cpu;

/// <summary>
/// Functions TensorPrimitives lacks: the error function (for exact GELU). The float version is a
/// vectorised rational approximation x·P(x²)/Q(x²) on [-4, 4] (erf is ±1 in float beyond), within a
/// few ulp of the true value; the double version is a power series near zero and a continued fraction
/// for erfc in the tails, good to ~1e-15.
/// </summary>
internal static class FastMath
{
    // Odd numerator and even denominator coefficients of the minimax rational approximation of erf on [-4, 4].
    private const float A1 = -1.60960333262415e-02f, A3 = -2.95459980854025e-03f, A5 = -7.34990630326855e-04f,
        A7 = -5.69250639462346e-05f, A9 = -2.10102402082508e-06f, A11 = 2.77068142495902e-08f, A13 = -2.72614225801306e-10f;
    private const float B0 = -1.42647390514189e-02f, B2 = -7.37332916720468e-03f, B4 = -1.68282697438203e-03f,
        B6 = -2.13374055278905e-04f, B8 = -1.45660718464996e-05f;

    /// <summary>erf(x) in float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Erf(float x)
    {
        x = Math.Clamp(x, -4f, 4f);
        float x2 = x * x;
        float p = MathF.FusedMultiplyAdd(x2, A13, A11);
        p = MathF.FusedMultiplyAdd(x2, p, A9);
        p = MathF.FusedMultiplyAdd(x2, p, A7);
        p = MathF.FusedMultiplyAdd(x2, p, A5);
        p = MathF.FusedMultiplyAdd(x2, p, A3);
        p = MathF.FusedMultiplyAdd(x2, p, A1);
        float q = MathF.FusedMultiplyAdd(x2, B8, B6);
        q = MathF.FusedMultiplyAdd(x2, q, B4);
        q = MathF.FusedMultiplyAdd(x2, q, B2);
        q = MathF.FusedMultiplyAdd(x2, q, B0);
        return x * p / q;
    }

    /// <summary>erf of 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Erf(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(-4f)), Vector512.Create(4f));
        var x2 = x * x;
        var p = Vector512.FusedMultiplyAdd(x2, Vector512.Create(A13), Vector512.Create(A11));
        p = Vector512.FusedMultiplyAdd(x2, p, Vector512.Create(A9));
        p = Vector512.FusedMultiplyAdd(x2, p, Vector512.Create(A7));
        p = Vector512.FusedMultiplyAdd(x2, p, Vector512.Create(A5));
        p = Vector512.FusedMultiplyAdd(x2, p, Vector512.Create(A3));
        p = Vector512.FusedMultiplyAdd(x2, p, Vector512.Create(A1));
        var q = Vector512.FusedMultiplyAdd(x2, Vector512.Create(B8), Vector512.Create(B6));
        q = Vector512.FusedMultiplyAdd(x2, q, Vector512.Create(B4));
        q = Vector512.FusedMultiplyAdd(x2, q, Vector512.Create(B2));
        q = Vector512.FusedMultiplyAdd(x2, q, Vector512.Create(B0));
        return x * p / q;
    }

    /// <summary>erf of 8 lanes (AVX2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Erf(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-4f)), Vector256.Create(4f));
        var x2 = x * x;
        var p = Vector256.FusedMultiplyAdd(x2, Vector256.Create(A13), Vector256.Create(A11));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(A9));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(A7));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(A5));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(A3));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(A1));
        var q = Vector256.FusedMultiplyAdd(x2, Vector256.Create(B8), Vector256.Create(B6));
        q = Vector256.FusedMultiplyAdd(x2, q, Vector256.Create(B4));
        q = Vector256.FusedMultiplyAdd(x2, q, Vector256.Create(B2));
        q = Vector256.FusedMultiplyAdd(x2, q, Vector256.Create(B0));
        return x * p / q;
    }

    /// <summary>erf(x) in float64, |error| ≲ 1e-15.</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        double ax = Math.Abs(x);
        if (ax < 2.5)
        {
            // erf x = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
            double x2 = x * x, term = x, sum = x;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            return 2.0 / Math.Sqrt(Math.PI) * sum;
        }
        if (ax > 6.5) return Math.Sign(x);
        // erfc x = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))) evaluated bottom-up.
        double f = ax;
        for (int k = 60; k >= 1; k--) f = ax + k / 2.0 / f;
        double erfc = Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f;
        return Math.Sign(x) * (1 - erfc);
    }

    /// <summary>erf over a span, float32 or float64.</summary>
    public static unsafe void Erf<T>(T* x, T* y, int n) where T : unmanaged
    {
        int i = 0;
        if (typeof(T) == typeof(float))
        {
            float* xf = (float*)x, yf = (float*)y;
            if (VectorWidth.Use512)
                for (; i + 16 <= n; i += 16) Erf(Vector512.Load(xf + i)).Store(yf + i);
            else if (VectorWidth.Use256)
                for (; i + 8 <= n; i += 8) Erf(Vector256.Load(xf + i)).Store(yf + i);
            for (; i < n; i++) yf[i] = Erf(xf[i]);
        }
        else
        {
            double* xd = (double*)x, yd = (double*)y;
            for (; i < n; i++) yd[i] = Erf(xd[i]);
        }
    }

    /// <summary>Exact GELU 0.5·x·(1 + erf(x/√2)) over a span.</summary>
    public static unsafe void GeluErf<T>(T* x, T* y, int n) where T : unmanaged
    {
        int i = 0;
        if (typeof(T) == typeof(float))
        {
            float* xf = (float*)x, yf = (float*)y;
            const float invSqrt2 = 0.70710678118654752f;
            if (VectorWidth.Use512)
            {
                for (; i + 16 <= n; i += 16)
                {
                    var v = Vector512.Load(xf + i);
                    var e = Erf(v * Vector512.Create(invSqrt2));
                    (Vector512.Create(0.5f) * v * (Vector512<float>.One + e)).Store(yf + i);
                }
            }
            else if (VectorWidth.Use256)
            {
                for (; i + 8 <= n; i += 8)
                {
                    var v = Vector256.Load(xf + i);
                    var e = Erf(v * Vector256.Create(invSqrt2));
                    (Vector256.Create(0.5f) * v * (Vector256<float>.One + e)).Store(yf + i);
                }
            }
            for (; i < n; i++) yf[i] = 0.5f * xf[i] * (1f + Erf(xf[i] * invSqrt2));
        }
        else
        {
            double* xd = (double*)x, yd = (double*)y;
            for (; i < n; i++) yd[i] = 0.5 * xd[i] * (1 + Erf(xd[i] / Math.Sqrt(2.0)));
        }
    }

    /// <summary>y = tanh-form GELU over a span.</summary>
    public static unsafe void GeluTanh<T>(T* x, T* y, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T c = T.CreateTruncating(0.7978845608028654), k = T.CreateTruncating(0.044715), half = T.CreateTruncating(0.5);
        for (int i = 0; i < n; i++) { T v = x[i]; y[i] = c * (v + k * v * v * v); }
        Transcendentals.Tanh(new ReadOnlySpan<T>(y, n), new Span<T>(y, n));
        for (int i = 0; i < n; i++) y[i] = half * x[i] * (T.One + y[i]);
    }
}
