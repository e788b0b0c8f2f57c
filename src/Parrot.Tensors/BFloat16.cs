using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Parrot.Tensors;

/// <summary>
/// bfloat16 conversions. .NET has no bfloat16 type, so a bf16 value is the <see cref="ushort"/> holding
/// the upper half of a float32. Narrowing rounds to nearest, ties to even; NaN stays NaN (quiet) and
/// infinities stay infinite.
/// </summary>
public static class BFloat16
{
    /// <summary>Widens a bf16 bit pattern to float32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Narrows a float32 to bf16, round to nearest even.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromFloat(float value)
    {
        uint u = BitConverter.SingleToUInt32Bits(value);
        if ((u & 0x7FFF_FFFFu) > 0x7F80_0000u) return (ushort)((u >> 16) | 0x0040u); // NaN: keep sign, force quiet bit
        // Adding 0x7FFF plus the lowest kept bit rounds half to even; overflow carries into the exponent,
        // which correctly rounds the largest finite values up to infinity.
        uint rounded = u + 0x7FFFu + ((u >> 16) & 1u);
        return (ushort)(rounded >> 16);
    }

    /// <summary>Widens a span of bf16 values to float32.</summary>
    public static unsafe void ToFloat(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        if (dst.Length < src.Length) throw new ArgumentException("destination too short", nameof(dst));
        fixed (ushort* s = src) fixed (float* d = dst) ToFloat(s, d, src.Length);
    }

    /// <summary>Narrows a span of float32 values to bf16 (round to nearest even).</summary>
    public static unsafe void FromFloat(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        if (dst.Length < src.Length) throw new ArgumentException("destination too short", nameof(dst));
        fixed (float* s = src) fixed (ushort* d = dst) FromFloat(s, d, src.Length);
    }

    /// <summary>Widens <paramref name="n"/> contiguous bf16 values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void ToFloat(ushort* src, float* dst, long n)
    {
        long i = 0;
        if (Cpu.VectorWidth.Use512)
        {
            for (; i + 16 <= n; i += 16)
            {
                Vector256<ushort> h = Vector256.Load(src + i);
                var (lo, hi) = Vector256.Widen(h);
                var w = Vector512.Create(lo, hi).AsUInt32() << 16;
                w.AsSingle().Store(dst + i);
            }
        }
        else if (Cpu.VectorWidth.Use256)
        {
            for (; i + 8 <= n; i += 8)
            {
                Vector128<ushort> h = Vector128.Load(src + i);
                var (lo, hi) = Vector128.Widen(h);
                var w = Vector256.Create(lo, hi).AsUInt32() << 16;
                w.AsSingle().Store(dst + i);
            }
        }
        for (; i < n; i++) dst[i] = ToFloat(src[i]);
    }

    /// <summary>Narrows <paramref name="n"/> contiguous float32 values (round to nearest even, NaN kept).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void FromFloat(float* src, ushort* dst, long n)
    {
        long i = 0;
        if (Cpu.VectorWidth.Use512)
        {
            var absMask = Vector512.Create(0x7FFF_FFFFu);
            var inf = Vector512.Create(0x7F80_0000u);
            var bias = Vector512.Create(0x7FFFu);
            var one = Vector512.Create(1u);
            var quiet = Vector512.Create(0x0040_0000u);
            for (; i + 16 <= n; i += 16)
            {
                var u = Vector512.Load(src + i).AsUInt32();
                var isNan = Vector512.GreaterThan(u & absMask, inf);
                var rounded = u + bias + ((u >> 16) & one);
                var r = Vector512.ConditionalSelect(isNan, u | quiet, rounded) >> 16;
                Vector256<ushort> narrowed = Vector512.Narrow(r, r).GetLower(); // keeps the low 16 bits of each lane
                narrowed.Store(dst + i);
            }
        }
        else if (Cpu.VectorWidth.Use256)
        {
            var absMask = Vector256.Create(0x7FFF_FFFFu);
            var inf = Vector256.Create(0x7F80_0000u);
            var bias = Vector256.Create(0x7FFFu);
            var one = Vector256.Create(1u);
            var quiet = Vector256.Create(0x0040_0000u);
            for (; i + 16 <= n; i += 16)
            {
                var u0 = Vector256.Load(src + i).AsUInt32();
                var u1 = Vector256.Load(src + i + 8).AsUInt32();
                var r0 = Vector256.ConditionalSelect(Vector256.GreaterThan(u0 & absMask, inf), u0 | quiet, u0 + bias + ((u0 >> 16) & one)) >> 16;
                var r1 = Vector256.ConditionalSelect(Vector256.GreaterThan(u1 & absMask, inf), u1 | quiet, u1 + bias + ((u1 >> 16) & one)) >> 16;
                Vector256.Narrow(r0, r1).Store(dst + i); // lanes ≤ 0xFFFF, so narrowing keeps every bit
            }
        }
        for (; i < n; i++) dst[i] = FromFloat(src[i]);
    }
}
