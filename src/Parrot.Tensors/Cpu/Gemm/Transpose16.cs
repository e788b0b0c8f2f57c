using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// In-register transpose of a 16 × 16 float32 block (AVX-512): four rounds of 16 shuffles (32-bit unpacks,
/// 64-bit unpacks, then two rounds of 128-bit lane shuffles). Packing a transposed operand with it costs a
/// fraction of reading the operand element by element and scattering each float to its own cache line.
/// </summary>
internal static class Transpose16
{
    /// <summary>Transposes the 16 rows at <paramref name="rows"/> in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void InPlace(Vector512<float>* rows)
    {
        // Round 1: within each 128-bit lane, interleave pairs of rows.
        var t = stackalloc Vector512<float>[16];
        for (int i = 0; i < 16; i += 2)
        {
            t[i] = Avx512F.UnpackLow(rows[i], rows[i + 1]);
            t[i + 1] = Avx512F.UnpackHigh(rows[i], rows[i + 1]);
        }
        // Round 2: 64-bit interleave of row pairs → u[4g + c] holds rows 4g..4g+3 of column c of each lane.
        var u = stackalloc Vector512<float>[16];
        for (int g = 0; g < 16; g += 4)
        {
            u[g] = Avx512F.UnpackLow(t[g].AsDouble(), t[g + 2].AsDouble()).AsSingle();
            u[g + 1] = Avx512F.UnpackHigh(t[g].AsDouble(), t[g + 2].AsDouble()).AsSingle();
            u[g + 2] = Avx512F.UnpackLow(t[g + 1].AsDouble(), t[g + 3].AsDouble()).AsSingle();
            u[g + 3] = Avx512F.UnpackHigh(t[g + 1].AsDouble(), t[g + 3].AsDouble()).AsSingle();
        }
        // Rounds 3 and 4: gather the four 128-bit quarters of each output row.
        for (int j = 0; j < 4; j++)
        {
            var p = Avx512F.Shuffle4x128(u[j], u[4 + j], 0x88);   // columns j, j+8 of rows 0-7
            var q = Avx512F.Shuffle4x128(u[j], u[4 + j], 0xDD);   // columns j+4, j+12 of rows 0-7
            var s = Avx512F.Shuffle4x128(u[8 + j], u[12 + j], 0x88);
            var r = Avx512F.Shuffle4x128(u[8 + j], u[12 + j], 0xDD);
            rows[j] = Avx512F.Shuffle4x128(p, s, 0x88);
            rows[j + 8] = Avx512F.Shuffle4x128(p, s, 0xDD);
            rows[j + 4] = Avx512F.Shuffle4x128(q, r, 0x88);
            rows[j + 12] = Avx512F.Shuffle4x128(q, r, 0xDD);
        }
    }
}
