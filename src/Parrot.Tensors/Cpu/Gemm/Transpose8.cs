using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// In-register transpose of an 8 × 8 float32 block (AVX): 32-bit unpacks within 128-bit lanes, then 64-bit
/// selections, then the exchange of 128-bit halves. The Vector256 twin of <see cref="Transpose16"/>, so that
/// packing a transposed operand (Wᵀ of every linear layer) on a machine without AVX-512 does not read it element
/// by element and scatter each float to its own cache line.
/// </summary>
internal static class Transpose8
{
    /// <summary>Transposes the 8 rows at <paramref name="rows"/> in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void InPlace(Vector256<float>* rows)
    {
        // t[2g], t[2g+1]: rows 2g and 2g+1 interleaved element by element, within each 128-bit lane.
        var t0 = Avx.UnpackLow(rows[0], rows[1]); var t1 = Avx.UnpackHigh(rows[0], rows[1]);
        var t2 = Avx.UnpackLow(rows[2], rows[3]); var t3 = Avx.UnpackHigh(rows[2], rows[3]);
        var t4 = Avx.UnpackLow(rows[4], rows[5]); var t5 = Avx.UnpackHigh(rows[4], rows[5]);
        var t6 = Avx.UnpackLow(rows[6], rows[7]); var t7 = Avx.UnpackHigh(rows[6], rows[7]);
        // u: pairs of pairs → each 128-bit lane holds one column of four consecutive rows
        // (0x44 takes elements 0,1 of each source lane, 0xEE elements 2,3).
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        // Rows 0-3 of column c are in the low lane of u[c] (c < 4) or the high lane of u[c-4]; rows 4-7 likewise in u[c+4].
        rows[0] = Avx.Permute2x128(u0, u4, 0x20); rows[1] = Avx.Permute2x128(u1, u5, 0x20);
        rows[2] = Avx.Permute2x128(u2, u6, 0x20); rows[3] = Avx.Permute2x128(u3, u7, 0x20);
        rows[4] = Avx.Permute2x128(u0, u4, 0x31); rows[5] = Avx.Permute2x128(u1, u5, 0x31);
        rows[6] = Avx.Permute2x128(u2, u6, 0x31); rows[7] = Avx.Permute2x128(u3, u7, 0x31);
    }
}
