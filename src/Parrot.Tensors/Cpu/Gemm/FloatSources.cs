using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// How the float GEMM reads an operand's storage type as float32. The GEMM code is generic over these
/// structs, so the JIT compiles one specialised copy per storage type with the conversion inlined:
/// bf16 operands are widened while packing (or, on the skinny paths, as each vector is loaded) and never
/// copied to float32 in full.
/// </summary>
internal unsafe interface IFloatSource
{
    /// <summary>Bytes per stored element.</summary>
    static abstract int ElementSize { get; }

    /// <summary>Element <paramref name="index"/> of the array at <paramref name="p"/>, as float32.</summary>
    static abstract float Read(nint p, long index);

    /// <summary>Converts <paramref name="n"/> contiguous elements at <paramref name="p"/> into <paramref name="dst"/>.</summary>
    static abstract void Load(nint p, float* dst, int n);

    /// <summary>16 contiguous elements starting at element <paramref name="index"/>, as float32 (AVX-512 only).</summary>
    static abstract Vector512<float> Load512(nint p, long index);

    /// <summary>8 contiguous elements starting at element <paramref name="index"/>, as float32.</summary>
    static abstract Vector256<float> Load256(nint p, long index);
}

/// <summary>float32 storage.</summary>
internal readonly unsafe struct F32Source : IFloatSource
{
    public static int ElementSize => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Read(nint p, long index) => ((float*)p)[index];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load(nint p, float* dst, int n) => Buffer.MemoryCopy((void*)p, dst, n * 4L, n * 4L);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(nint p, long index) => Vector512.Load((float*)p + index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(nint p, long index) => Vector256.Load((float*)p + index);
}

/// <summary>bfloat16 storage: the upper half of a float32, so widening is a zero-extend and a shift.</summary>
internal readonly unsafe struct BF16Source : IFloatSource
{
    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Read(nint p, long index) => BFloat16.ToFloat(((ushort*)p)[index]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load(nint p, float* dst, int n) => BFloat16.ToFloat((ushort*)p, dst, n);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(nint p, long index)
    {
        Vector256<ushort> h = Vector256.Load((ushort*)p + index);
        return (Avx512F.ConvertToVector512UInt32(h) << 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(nint p, long index)
    {
        Vector128<ushort> h = Vector128.Load((ushort*)p + index);
        if (Avx2.IsSupported) return (Avx2.ConvertToVector256Int32(h) << 16).AsSingle(); // one vpmovzxwd and a shift
        var (lo, hi) = Vector128.Widen(h);
        return (Vector256.Create(lo, hi) << 16).AsSingle();
    }
}

/// <summary>IEEE binary16 storage. Only packing reads it (the skinny paths convert it up front).</summary>
internal readonly unsafe struct F16Source : IFloatSource
{
    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Read(nint p, long index) => (float)((Half*)p)[index];

    public static void Load(nint p, float* dst, int n) =>
        TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((void*)p, n), new Span<float>(dst, n));

    public static Vector512<float> Load512(nint p, long index)
    {
        float* t = stackalloc float[16];
        Load(p + (nint)(index * 2), t, 16);
        return Vector512.Load(t);
    }

    public static Vector256<float> Load256(nint p, long index)
    {
        float* t = stackalloc float[8];
        Load(p + (nint)(index * 2), t, 8);
        return Vector256.Load(t);
    }
}
