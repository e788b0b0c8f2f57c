using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cpu;

/// <summary>
/// Moves a strided stretch of elements of any dtype into a contiguous buffer of a compute type
/// (float for F32/BF16/F16, double for F64, long for integers) and back. Kernels are then written once
/// per compute type; conversions happen here, rounding to nearest even when narrowing to BF16/F16.
/// </summary>
internal static unsafe class RowIO
{
    [ThreadStatic] private static nint _scratch;
    private const int ScratchSlots = 4;

    /// <summary>The calling thread's scratch buffer <paramref name="slot"/> (0..3), each <see cref="StridedLoop.Chunk"/> 8-byte elements.</summary>
    public static T* Scratch<T>(int slot) where T : unmanaged
    {
        if (_scratch == 0)
            _scratch = (nint)NativeMemory.AlignedAlloc((nuint)(ScratchSlots * StridedLoop.Chunk * 8), 64); // per thread, lives as long as the thread
        return (T*)(_scratch + slot * StridedLoop.Chunk * 8);
    }

    /// <summary>Address of element <paramref name="offset"/> of a tensor's storage.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static nint Address(nint storage, DType dt, long offset) => storage + (nint)(offset * dt.SizeOf());

    /// <summary>dst[i] = (T)src[i·stride], i &lt; n, where src holds elements of <paramref name="dt"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Load<T>(nint src, DType dt, long stride, int n, T* dst) where T : unmanaged, INumber<T>
    {
        if (stride == 0)
        {
            T v = ReadOne<T>(src, dt);
            new Span<T>(dst, n).Fill(v);
            return;
        }
        if (stride == 1)
        {
            if (typeof(T) == typeof(float))
            {
                switch (dt)
                {
                    case DType.F32: Buffer.MemoryCopy((void*)src, dst, n * 4L, n * 4L); return;
                    case DType.BF16: BFloat16.ToFloat((ushort*)src, (float*)dst, n); return;
                    case DType.F16: TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((void*)src, n), new Span<float>(dst, n)); return;
                }
            }
            else if (typeof(T) == typeof(double) && dt == DType.F64) { Buffer.MemoryCopy((void*)src, dst, n * 8L, n * 8L); return; }
            else if (typeof(T) == typeof(long) && dt == DType.I64) { Buffer.MemoryCopy((void*)src, dst, n * 8L, n * 8L); return; }
        }
        switch (dt)
        {
            case DType.F32: { var p = (float*)src; for (int i = 0; i < n; i++) dst[i] = T.CreateTruncating(p[i * stride]); break; }
            case DType.F64: { var p = (double*)src; for (int i = 0; i < n; i++) dst[i] = T.CreateTruncating(p[i * stride]); break; }
            case DType.BF16: { var p = (ushort*)src; for (int i = 0; i < n; i++) dst[i] = T.CreateTruncating(BFloat16.ToFloat(p[i * stride])); break; }
            case DType.F16: { var p = (Half*)src; for (int i = 0; i < n; i++) dst[i] = T.CreateTruncating((float)p[i * stride]); break; }
            case DType.I32: { var p = (int*)src; for (int i = 0; i < n; i++) dst[i] = T.CreateTruncating(p[i * stride]); break; }
            case DType.I64: { var p = (long*)src; for (int i = 0; i < n; i++) dst[i] = T.CreateTruncating(p[i * stride]); break; }
            case DType.U8:
            case DType.Bool: { var p = (byte*)src; for (int i = 0; i < n; i++) dst[i] = T.CreateTruncating(p[i * stride]); break; }
            default: throw new NotSupportedException($"load from {dt}");
        }
    }

    /// <summary>The single element at <paramref name="src"/>, converted to T.</summary>
    public static T ReadOne<T>(nint src, DType dt) where T : unmanaged, INumber<T> => dt switch
    {
        DType.F32 => T.CreateTruncating(*(float*)src),
        DType.F64 => T.CreateTruncating(*(double*)src),
        DType.BF16 => T.CreateTruncating(BFloat16.ToFloat(*(ushort*)src)),
        DType.F16 => T.CreateTruncating((float)*(Half*)src),
        DType.I32 => T.CreateTruncating(*(int*)src),
        DType.I64 => T.CreateTruncating(*(long*)src),
        DType.U8 or DType.Bool => T.CreateTruncating(*(byte*)src),
        _ => throw new NotSupportedException($"load from {dt}"),
    };

    /// <summary>dst[i·stride] = (dt)src[i], i &lt; n. Narrowing floats round to nearest even; Bool stores value != 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Store<T>(T* src, nint dst, DType dt, long stride, int n) where T : unmanaged, INumber<T>
    {
        if (stride == 1)
        {
            if (typeof(T) == typeof(float))
            {
                switch (dt)
                {
                    case DType.F32: Buffer.MemoryCopy(src, (void*)dst, n * 4L, n * 4L); return;
                    case DType.BF16: BFloat16.FromFloat((float*)src, (ushort*)dst, n); return;
                    case DType.F16: TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(src, n), new Span<Half>((void*)dst, n)); return;
                }
            }
            else if (typeof(T) == typeof(double) && dt == DType.F64) { Buffer.MemoryCopy(src, (void*)dst, n * 8L, n * 8L); return; }
            else if (typeof(T) == typeof(long) && dt == DType.I64) { Buffer.MemoryCopy(src, (void*)dst, n * 8L, n * 8L); return; }
        }
        switch (dt)
        {
            case DType.F32: { var p = (float*)dst; for (int i = 0; i < n; i++) p[i * stride] = float.CreateTruncating(src[i]); break; }
            case DType.F64: { var p = (double*)dst; for (int i = 0; i < n; i++) p[i * stride] = double.CreateTruncating(src[i]); break; }
            case DType.BF16: { var p = (ushort*)dst; for (int i = 0; i < n; i++) p[i * stride] = BFloat16.FromFloat(ToFloat(src[i])); break; }
            case DType.F16: { var p = (Half*)dst; for (int i = 0; i < n; i++) p[i * stride] = ToHalf(src[i]); break; }
            case DType.I32: { var p = (int*)dst; for (int i = 0; i < n; i++) p[i * stride] = int.CreateTruncating(src[i]); break; }
            case DType.I64: { var p = (long*)dst; for (int i = 0; i < n; i++) p[i * stride] = long.CreateTruncating(src[i]); break; }
            case DType.U8: { var p = (byte*)dst; for (int i = 0; i < n; i++) p[i * stride] = byte.CreateTruncating(src[i]); break; }
            case DType.Bool: { var p = (byte*)dst; for (int i = 0; i < n; i++) p[i * stride] = src[i] != T.Zero ? (byte)1 : (byte)0; break; }
            default: throw new NotSupportedException($"store to {dt}");
        }
    }

    // F64 narrows to F16 in one rounding step (Half converts from double directly); to BF16 it goes
    // through float, as PyTorch's c10::BFloat16 does.
    private static float ToFloat<T>(T v) where T : INumber<T> => float.CreateTruncating(v);

    private static Half ToHalf<T>(T v) where T : INumber<T> =>
        typeof(T) == typeof(double) ? (Half)Unsafe.As<T, double>(ref v) : (Half)float.CreateTruncating(v);
}
