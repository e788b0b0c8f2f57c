using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Parrot.Tensors.Cpu;

/// <summary>
/// Vectorised reductions over contiguous runs, shared by the reduction, norm, softmax and loss kernels.
/// Float32 sums are accumulated in float32 only over blocks of 256 values (16 per lane) and the block
/// results are widened and added in float64: nearly the accuracy of a float64 sum (relative error ~1e-7
/// on 16M values) at the speed of a float32 one. Max and Min propagate NaN. Each kernel has a Vector512 path
/// (taken when <see cref="VectorWidth.Use512"/>) and a Vector256 path for AVX2 machines (and for AVX-512 ones
/// with the GEMM's ForceVector256 set); the two may differ in the last bits of a sum, never in a max or index.
/// </summary>
internal static unsafe class ReduceMath
{
    private const int Block = 256;

    /// <summary>Σp[i] in float64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Sum(float* p, long n)
    {
        long i = 0;
        double total = 0;
        if (VectorWidth.Use512 && n >= 16)
        {
            Vector512<double> d0 = default, d1 = default;
            for (; i + Block <= n; i += Block)
            {
                float* q = p + i;
                var a0 = Vector512.Load(q) + Vector512.Load(q + 64);
                var a1 = Vector512.Load(q + 16) + Vector512.Load(q + 80);
                var a2 = Vector512.Load(q + 32) + Vector512.Load(q + 96);
                var a3 = Vector512.Load(q + 48) + Vector512.Load(q + 112);
                a0 += Vector512.Load(q + 128) + Vector512.Load(q + 192);
                a1 += Vector512.Load(q + 144) + Vector512.Load(q + 208);
                a2 += Vector512.Load(q + 160) + Vector512.Load(q + 224);
                a3 += Vector512.Load(q + 176) + Vector512.Load(q + 240);
                var (lo, hi) = Vector512.Widen((a0 + a1) + (a2 + a3));
                d0 += lo; d1 += hi;
            }
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(p + i));
                d0 += lo; d1 += hi;
            }
            total = Vector512.Sum(d0 + d1);
        }
        else if (VectorWidth.Use256 && n >= 8)
        {
            // The same blocks of 256 values, 32 per lane in float32 over four chains, then widened.
            Vector256<double> d0 = default, d1 = default;
            for (; i + Block <= n; i += Block)
            {
                float* q = p + i;
                var a0 = Vector256.Load(q); var a1 = Vector256.Load(q + 8);
                var a2 = Vector256.Load(q + 16); var a3 = Vector256.Load(q + 24);
                for (int k = 32; k < Block; k += 32)
                {
                    a0 += Vector256.Load(q + k); a1 += Vector256.Load(q + k + 8);
                    a2 += Vector256.Load(q + k + 16); a3 += Vector256.Load(q + k + 24);
                }
                var (lo, hi) = Vector256.Widen((a0 + a1) + (a2 + a3));
                d0 += lo; d1 += hi;
            }
            for (; i + 8 <= n; i += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(p + i));
                d0 += lo; d1 += hi;
            }
            total = Vector256.Sum(d0 + d1);
        }
        for (; i < n; i++) total += p[i];
        return total;
    }

    /// <summary>Σp[i] in float64, eight lanes times four accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Sum(double* p, long n)
    {
        long i = 0;
        double total = 0;
        if (VectorWidth.Use512 && n >= 32)
        {
            Vector512<double> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 32 <= n; i += 32)
            {
                a0 += Vector512.Load(p + i); a1 += Vector512.Load(p + i + 8);
                a2 += Vector512.Load(p + i + 16); a3 += Vector512.Load(p + i + 24);
            }
            total = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (VectorWidth.Use256 && n >= 16)
        {
            Vector256<double> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 16 <= n; i += 16)
            {
                a0 += Vector256.Load(p + i); a1 += Vector256.Load(p + i + 4);
                a2 += Vector256.Load(p + i + 8); a3 += Vector256.Load(p + i + 12);
            }
            total = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; i < n; i++) total += p[i];
        return total;
    }

    /// <summary>Σ(p[i] - mean)² in float64 (mean = 0 gives the plain sum of squares).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double SumSquaredDeviations(float* p, long n, float mean)
    {
        long i = 0;
        double total = 0;
        if (VectorWidth.Use512 && n >= 16)
        {
            var m = Vector512.Create(mean);
            Vector512<double> d0 = default, d1 = default;
            for (; i + 64 <= n; i += 64)
            {
                var v0 = Vector512.Load(p + i) - m; var v1 = Vector512.Load(p + i + 16) - m;
                var v2 = Vector512.Load(p + i + 32) - m; var v3 = Vector512.Load(p + i + 48) - m;
                var s = Vector512.FusedMultiplyAdd(v0, v0, v1 * v1) + Vector512.FusedMultiplyAdd(v2, v2, v3 * v3);
                var (lo, hi) = Vector512.Widen(s);
                d0 += lo; d1 += hi;
            }
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.Load(p + i) - m;
                var (lo, hi) = Vector512.Widen(v * v);
                d0 += lo; d1 += hi;
            }
            total = Vector512.Sum(d0 + d1);
        }
        else if (VectorWidth.Use256 && n >= 8)
        {
            var m = Vector256.Create(mean);
            Vector256<double> d0 = default, d1 = default;
            for (; i + 32 <= n; i += 32)
            {
                var v0 = Vector256.Load(p + i) - m; var v1 = Vector256.Load(p + i + 8) - m;
                var v2 = Vector256.Load(p + i + 16) - m; var v3 = Vector256.Load(p + i + 24) - m;
                var s = Vector256.FusedMultiplyAdd(v0, v0, v1 * v1) + Vector256.FusedMultiplyAdd(v2, v2, v3 * v3);
                var (lo, hi) = Vector256.Widen(s);
                d0 += lo; d1 += hi;
            }
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.Load(p + i) - m;
                var (lo, hi) = Vector256.Widen(v * v);
                d0 += lo; d1 += hi;
            }
            total = Vector256.Sum(d0 + d1);
        }
        for (; i < n; i++) { double d = p[i] - mean; total += d * d; }
        return total;
    }

    /// <summary>Σ(p[i] - mean)² in float64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double SumSquaredDeviations(double* p, long n, double mean)
    {
        long i = 0;
        double total = 0;
        if (VectorWidth.Use512 && n >= 16)
        {
            var m = Vector512.Create(mean);
            Vector512<double> a0 = default, a1 = default;
            for (; i + 16 <= n; i += 16)
            {
                var v0 = Vector512.Load(p + i) - m; var v1 = Vector512.Load(p + i + 8) - m;
                a0 = Vector512.FusedMultiplyAdd(v0, v0, a0);
                a1 = Vector512.FusedMultiplyAdd(v1, v1, a1);
            }
            total = Vector512.Sum(a0 + a1);
        }
        else if (VectorWidth.Use256 && n >= 8)
        {
            var m = Vector256.Create(mean);
            Vector256<double> a0 = default, a1 = default;
            for (; i + 8 <= n; i += 8)
            {
                var v0 = Vector256.Load(p + i) - m; var v1 = Vector256.Load(p + i + 4) - m;
                a0 = Vector256.FusedMultiplyAdd(v0, v0, a0);
                a1 = Vector256.FusedMultiplyAdd(v1, v1, a1);
            }
            total = Vector256.Sum(a0 + a1);
        }
        for (; i < n; i++) { double d = p[i] - mean; total += d * d; }
        return total;
    }

    /// <summary>Σ exp(p[i] - shift) in float64, for softmax and cross-entropy (nothing is stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double SumExp(float* p, long n, float shift)
    {
        long i = 0;
        double total = 0;
        if (VectorWidth.Use512 && n >= 16)
        {
            var s = Vector512.Create(shift);
            Vector512<double> d0 = default, d1 = default;
            for (; i + 64 <= n; i += 64)
            {
                var e = (Vector512.Exp(Vector512.Load(p + i) - s) + Vector512.Exp(Vector512.Load(p + i + 16) - s))
                      + (Vector512.Exp(Vector512.Load(p + i + 32) - s) + Vector512.Exp(Vector512.Load(p + i + 48) - s));
                var (lo, hi) = Vector512.Widen(e);
                d0 += lo; d1 += hi;
            }
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Exp(Vector512.Load(p + i) - s));
                d0 += lo; d1 += hi;
            }
            total = Vector512.Sum(d0 + d1);
        }
        else if (VectorWidth.Use256 && n >= 8)
        {
            var s = Vector256.Create(shift);
            Vector256<double> d0 = default, d1 = default;
            for (; i + 32 <= n; i += 32)
            {
                var e = (Vector256.Exp(Vector256.Load(p + i) - s) + Vector256.Exp(Vector256.Load(p + i + 8) - s))
                      + (Vector256.Exp(Vector256.Load(p + i + 16) - s) + Vector256.Exp(Vector256.Load(p + i + 24) - s));
                var (lo, hi) = Vector256.Widen(e);
                d0 += lo; d1 += hi;
            }
            for (; i + 8 <= n; i += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Exp(Vector256.Load(p + i) - s));
                d0 += lo; d1 += hi;
            }
            total = Vector256.Sum(d0 + d1);
        }
        for (; i < n; i++) total += MathF.Exp(p[i] - shift);
        return total;
    }

    /// <summary>
    /// Σ exp(p[i] - shift) in float64, in index order on the C runtime's exp: Vector512.Exp's float64 bits are not
    /// the same at every JIT tier (see <see cref="Transcendentals"/>), and float64 is the reference dtype.
    /// </summary>
    public static double SumExp(double* p, long n, double shift)
    {
        double total = 0;
        for (long i = 0; i < n; i++) total += Math.Exp(p[i] - shift);
        return total;
    }

    /// <summary>y[i] = exp(x[i] - shift), returning Σy[i] in float64 (y may alias x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double ExpShiftedSum(float* x, float* y, long n, float shift)
    {
        long i = 0;
        double total = 0;
        if (VectorWidth.Use512 && n >= 16)
        {
            var s = Vector512.Create(shift);
            Vector512<double> d0 = default, d1 = default;
            for (; i + 64 <= n; i += 64)
            {
                var e0 = Vector512.Exp(Vector512.Load(x + i) - s); var e1 = Vector512.Exp(Vector512.Load(x + i + 16) - s);
                var e2 = Vector512.Exp(Vector512.Load(x + i + 32) - s); var e3 = Vector512.Exp(Vector512.Load(x + i + 48) - s);
                e0.Store(y + i); e1.Store(y + i + 16); e2.Store(y + i + 32); e3.Store(y + i + 48);
                var (lo, hi) = Vector512.Widen((e0 + e1) + (e2 + e3));
                d0 += lo; d1 += hi;
            }
            for (; i + 16 <= n; i += 16)
            {
                var e = Vector512.Exp(Vector512.Load(x + i) - s);
                e.Store(y + i);
                var (lo, hi) = Vector512.Widen(e);
                d0 += lo; d1 += hi;
            }
            total = Vector512.Sum(d0 + d1);
        }
        else if (VectorWidth.Use256 && n >= 8)
        {
            var s = Vector256.Create(shift);
            Vector256<double> d0 = default, d1 = default;
            for (; i + 32 <= n; i += 32)
            {
                var e0 = Vector256.Exp(Vector256.Load(x + i) - s); var e1 = Vector256.Exp(Vector256.Load(x + i + 8) - s);
                var e2 = Vector256.Exp(Vector256.Load(x + i + 16) - s); var e3 = Vector256.Exp(Vector256.Load(x + i + 24) - s);
                e0.Store(y + i); e1.Store(y + i + 8); e2.Store(y + i + 16); e3.Store(y + i + 24);
                var (lo, hi) = Vector256.Widen((e0 + e1) + (e2 + e3));
                d0 += lo; d1 += hi;
            }
            for (; i + 8 <= n; i += 8)
            {
                var e = Vector256.Exp(Vector256.Load(x + i) - s);
                e.Store(y + i);
                var (lo, hi) = Vector256.Widen(e);
                d0 += lo; d1 += hi;
            }
            total = Vector256.Sum(d0 + d1);
        }
        for (; i < n; i++) { float e = MathF.Exp(x[i] - shift); y[i] = e; total += e; }
        return total;
    }

    /// <summary>y[i] = exp(x[i] - shift), returning Σy[i] (y may alias x); scalar for the reason <see cref="SumExp(double*, long, double)"/> gives.</summary>
    public static double ExpShiftedSum(double* x, double* y, long n, double shift)
    {
        double total = 0;
        for (long i = 0; i < n; i++) { double e = Math.Exp(x[i] - shift); y[i] = e; total += e; }
        return total;
    }

    /// <summary>The largest (or, when !<paramref name="max"/>, smallest) of n ≥ 1 values; NaN if any is NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static T Extreme<T>(T* p, long n, bool max) where T : unmanaged, INumber<T>
    {
        bool isFloat = typeof(T) == typeof(float) || typeof(T) == typeof(double);
        long i = 0;
        T best = p[0];
        if (VectorWidth.Use512 && Vector512<T>.IsSupported && n >= 4L * Vector512<T>.Count)
        {
            int w = Vector512<T>.Count;
            var m0 = Vector512.Load(p); var m1 = Vector512.Load(p + w);
            var m2 = Vector512.Load(p + 2 * w); var m3 = Vector512.Load(p + 3 * w);
            // The native min/max instruction drops NaN, so NaN is tracked separately (x != x).
            var nan = Vector512<T>.Zero;
            if (isFloat) nan = ~(Vector512.Equals(m0, m0) & Vector512.Equals(m1, m1) & Vector512.Equals(m2, m2) & Vector512.Equals(m3, m3));
            for (i = 4L * w; i + 4 * w <= n; i += 4 * w)
            {
                var v0 = Vector512.Load(p + i); var v1 = Vector512.Load(p + i + w);
                var v2 = Vector512.Load(p + i + 2 * w); var v3 = Vector512.Load(p + i + 3 * w);
                if (max)
                {
                    m0 = Vector512.MaxNative(m0, v0); m1 = Vector512.MaxNative(m1, v1);
                    m2 = Vector512.MaxNative(m2, v2); m3 = Vector512.MaxNative(m3, v3);
                }
                else
                {
                    m0 = Vector512.MinNative(m0, v0); m1 = Vector512.MinNative(m1, v1);
                    m2 = Vector512.MinNative(m2, v2); m3 = Vector512.MinNative(m3, v3);
                }
                if (isFloat) nan |= ~(Vector512.Equals(v0, v0) & Vector512.Equals(v1, v1) & Vector512.Equals(v2, v2) & Vector512.Equals(v3, v3));
            }
            var m = max ? Vector512.Max(Vector512.Max(m0, m1), Vector512.Max(m2, m3)) : Vector512.Min(Vector512.Min(m0, m1), Vector512.Min(m2, m3));
            if (isFloat && nan != Vector512<T>.Zero) return NaN<T>();
            best = m[0];
            for (int k = 1; k < w; k++) best = Pick(best, m[k], max);
        }
        else if (VectorWidth.Use256 && Vector256<T>.IsSupported && n >= 4L * Vector256<T>.Count)
        {
            int w = Vector256<T>.Count;
            var m0 = Vector256.Load(p); var m1 = Vector256.Load(p + w);
            var m2 = Vector256.Load(p + 2 * w); var m3 = Vector256.Load(p + 3 * w);
            var nan = Vector256<T>.Zero; // as above: vmaxps drops NaN
            if (isFloat) nan = ~(Vector256.Equals(m0, m0) & Vector256.Equals(m1, m1) & Vector256.Equals(m2, m2) & Vector256.Equals(m3, m3));
            for (i = 4L * w; i + 4 * w <= n; i += 4 * w)
            {
                var v0 = Vector256.Load(p + i); var v1 = Vector256.Load(p + i + w);
                var v2 = Vector256.Load(p + i + 2 * w); var v3 = Vector256.Load(p + i + 3 * w);
                if (max)
                {
                    m0 = Vector256.MaxNative(m0, v0); m1 = Vector256.MaxNative(m1, v1);
                    m2 = Vector256.MaxNative(m2, v2); m3 = Vector256.MaxNative(m3, v3);
                }
                else
                {
                    m0 = Vector256.MinNative(m0, v0); m1 = Vector256.MinNative(m1, v1);
                    m2 = Vector256.MinNative(m2, v2); m3 = Vector256.MinNative(m3, v3);
                }
                if (isFloat) nan |= ~(Vector256.Equals(v0, v0) & Vector256.Equals(v1, v1) & Vector256.Equals(v2, v2) & Vector256.Equals(v3, v3));
            }
            var m = max ? Vector256.Max(Vector256.Max(m0, m1), Vector256.Max(m2, m3)) : Vector256.Min(Vector256.Min(m0, m1), Vector256.Min(m2, m3));
            if (isFloat && nan != Vector256<T>.Zero) return NaN<T>();
            best = m[0];
            for (int k = 1; k < w; k++) best = Pick(best, m[k], max);
        }
        for (; i < n; i++)
        {
            T v = p[i];
            if (isFloat && T.IsNaN(v)) return v;
            best = Pick(best, v, max);
        }
        return best;
    }

    /// <summary>
    /// The largest of n ≥ 1 float values that is not NaN, or −∞ when all are NaN (ArgMaxNaNLowest: NaN below every
    /// number; <see cref="IndexOf"/> of the result then finds the winner, or −1 for a row of NaN only).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static T LargestNumber<T>(T* p, long n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        long i = 0;
        T best = T.NegativeInfinity;
        if (VectorWidth.Use512 && Vector512<T>.IsSupported && n >= 4L * Vector512<T>.Count)
        {
            int w = Vector512<T>.Count;
            var low = Vector512.Create(T.NegativeInfinity);
            Vector512<T> m0 = low, m1 = low, m2 = low, m3 = low;
            for (; i + 4 * w <= n; i += 4 * w)
            {
                var v0 = Vector512.Load(p + i); var v1 = Vector512.Load(p + i + w);
                var v2 = Vector512.Load(p + i + 2 * w); var v3 = Vector512.Load(p + i + 3 * w);
                // NaN becomes −∞ (x == x is false only for NaN), so the native max never sees one.
                m0 = Vector512.MaxNative(m0, Vector512.ConditionalSelect(Vector512.Equals(v0, v0), v0, low));
                m1 = Vector512.MaxNative(m1, Vector512.ConditionalSelect(Vector512.Equals(v1, v1), v1, low));
                m2 = Vector512.MaxNative(m2, Vector512.ConditionalSelect(Vector512.Equals(v2, v2), v2, low));
                m3 = Vector512.MaxNative(m3, Vector512.ConditionalSelect(Vector512.Equals(v3, v3), v3, low));
            }
            var m = Vector512.Max(Vector512.Max(m0, m1), Vector512.Max(m2, m3));
            for (int k = 0; k < w; k++) best = m[k] > best ? m[k] : best;
        }
        else if (VectorWidth.Use256 && Vector256<T>.IsSupported && n >= 4L * Vector256<T>.Count)
        {
            int w = Vector256<T>.Count;
            var low = Vector256.Create(T.NegativeInfinity);
            Vector256<T> m0 = low, m1 = low, m2 = low, m3 = low;
            for (; i + 4 * w <= n; i += 4 * w)
            {
                var v0 = Vector256.Load(p + i); var v1 = Vector256.Load(p + i + w);
                var v2 = Vector256.Load(p + i + 2 * w); var v3 = Vector256.Load(p + i + 3 * w);
                m0 = Vector256.MaxNative(m0, Vector256.ConditionalSelect(Vector256.Equals(v0, v0), v0, low));
                m1 = Vector256.MaxNative(m1, Vector256.ConditionalSelect(Vector256.Equals(v1, v1), v1, low));
                m2 = Vector256.MaxNative(m2, Vector256.ConditionalSelect(Vector256.Equals(v2, v2), v2, low));
                m3 = Vector256.MaxNative(m3, Vector256.ConditionalSelect(Vector256.Equals(v3, v3), v3, low));
            }
            var m = Vector256.Max(Vector256.Max(m0, m1), Vector256.Max(m2, m3));
            for (int k = 0; k < w; k++) best = m[k] > best ? m[k] : best;
        }
        for (; i < n; i++)
            if (p[i] > best) best = p[i]; // false for NaN
        return best;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Pick<T>(T a, T b, bool max) where T : INumber<T> => max ? (b > a ? b : a) : (b < a ? b : a);

    private static T NaN<T>() where T : INumber<T> => T.CreateTruncating(double.NaN);

    /// <summary>Index of the first element equal to <paramref name="value"/> (for NaN: the first NaN), or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static long IndexOf<T>(T* p, long n, T value) where T : unmanaged, INumber<T>
    {
        bool nan = T.IsNaN(value);
        long i = 0;
        if (VectorWidth.Use512 && Vector512<T>.IsSupported)
        {
            int w = Vector512<T>.Count;
            var target = Vector512.Create(value);
            for (; i + w <= n; i += w)
            {
                var v = Vector512.Load(p + i);
                var hit = nan ? ~Vector512.Equals(v, v) : Vector512.Equals(v, target);
                ulong bits = hit.ExtractMostSignificantBits();
                if (bits != 0) return i + BitOperations.TrailingZeroCount(bits);
            }
        }
        else if (VectorWidth.Use256 && Vector256<T>.IsSupported)
        {
            int w = Vector256<T>.Count;
            var target = Vector256.Create(value);
            for (; i + w <= n; i += w)
            {
                var v = Vector256.Load(p + i);
                var hit = nan ? ~Vector256.Equals(v, v) : Vector256.Equals(v, target);
                uint bits = hit.ExtractMostSignificantBits();
                if (bits != 0) return i + BitOperations.TrailingZeroCount(bits);
            }
        }
        for (; i < n; i++)
        {
            T v = p[i];
            if (nan ? T.IsNaN(v) : v == value) return i;
        }
        return -1;
    }

    /// <summary>Π p[i], accumulated in float64 (a float32 running product would overflow or underflow early).</summary>
    public static double Product<T>(T* p, long n) where T : unmanaged, INumber<T>
    {
        double r = 1;
        for (long i = 0; i < n; i++) r *= double.CreateTruncating(p[i]);
        return r;
    }

    /// <summary>Σp[i] with wrapping int64 arithmetic.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static long Sum(long* p, long n)
    {
        long i = 0;
        long total = 0;
        if (VectorWidth.Use512 && n >= 8)
        {
            Vector512<long> a = default;
            for (; i + 8 <= n; i += 8) a += Vector512.Load(p + i);
            total = Vector512.Sum(a);
        }
        else if (VectorWidth.Use256 && n >= 4)
        {
            Vector256<long> a = default;
            for (; i + 4 <= n; i += 4) a += Vector256.Load(p + i);
            total = Vector256.Sum(a);
        }
        for (; i < n; i++) total = unchecked(total + p[i]);
        return total;
    }

    /// <summary>Σp[i]² with wrapping int64 arithmetic.</summary>
    public static long SumOfSquares(long* p, long n)
    {
        long total = 0;
        for (long i = 0; i < n; i++) total = unchecked(total + p[i] * p[i]);
        return total;
    }

    /// <summary>Π p[i] with wrapping int64 arithmetic.</summary>
    public static long Product(long* p, long n)
    {
        long r = 1;
        for (long i = 0; i < n; i++) r = unchecked(r * p[i]);
        return r;
    }
}
