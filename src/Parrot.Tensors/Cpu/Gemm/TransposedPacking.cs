using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// Packing of a B micro-panel whose columns are contiguous (B = Wᵀ for a weight W [out, in] stored row-major:
/// every linear layer, x · Wᵀ). The panel wants rows (NR consecutive columns at one k), memory holds columns, so
/// packing is a transpose. Done an element at a time it cost as much as the multiplication itself at 128 rows
/// of A (measured: x · Wᵀ 1.7× slower than the same product with a row-major B). Here 16 columns × 16 k are
/// loaded as 16 vectors, transposed in registers (four rounds of 16 shuffles) and stored as 16 panel rows.
/// </summary>
internal static unsafe class TransposedPacking
{
    /// <summary>True when the vectorised transpose applies: AVX-512 and panels of whole 16-column groups.</summary>
    public static bool CanPack(int nr) => Avx512F.IsSupported && nr % 16 == 0;

    /// <summary>
    /// Packs k ∈ [0, kc) × the first <paramref name="w"/> (≤ nr) columns starting at <paramref name="src"/>
    /// (column j at src + j·cs elements, unit stride along k) into panel[k·nr + j], zero-filling columns w..nr.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Pack<TSrc>(nint src, long cs, int kc, int w, int nr, float* panel) where TSrc : struct, IFloatSource
    {
        int size = TSrc.ElementSize;
        int j = 0;
        for (; j + 16 <= w; j += 16)
        {
            nint cols = src + (nint)(j * cs * size);
            int k = 0;
            for (; k + 16 <= kc; k += 16) Block16<TSrc>(cols, cs * size, k, panel + (long)k * nr + j, nr);
            for (; k < kc; k++)
                for (int c = 0; c < 16; c++) panel[(long)k * nr + j + c] = TSrc.Read(cols + (nint)(c * cs * size), k);
        }
        for (; j < w; j++)
        {
            nint col = src + (nint)(j * cs * size);
            for (int k = 0; k < kc; k++) panel[(long)k * nr + j] = TSrc.Read(col, k);
        }
        if (w < nr)
            for (int k = 0; k < kc; k++) new Span<float>(panel + (long)k * nr + w, nr - w).Clear();
    }

    /// <summary>
    /// 16 columns (byte stride <paramref name="colBytes"/>) × 16 k values starting at <paramref name="k"/>, written
    /// transposed to 16 rows of <paramref name="dst"/> (row stride <paramref name="ld"/> floats).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block16<TSrc>(nint cols, long colBytes, int k, float* dst, int ld) where TSrc : struct, IFloatSource
    {
        // r[i] = column i, elements k..k+15.
        var r0 = TSrc.Load512(cols, k); var r1 = TSrc.Load512(cols + (nint)colBytes, k);
        var r2 = TSrc.Load512(cols + (nint)(2 * colBytes), k); var r3 = TSrc.Load512(cols + (nint)(3 * colBytes), k);
        var r4 = TSrc.Load512(cols + (nint)(4 * colBytes), k); var r5 = TSrc.Load512(cols + (nint)(5 * colBytes), k);
        var r6 = TSrc.Load512(cols + (nint)(6 * colBytes), k); var r7 = TSrc.Load512(cols + (nint)(7 * colBytes), k);
        var r8 = TSrc.Load512(cols + (nint)(8 * colBytes), k); var r9 = TSrc.Load512(cols + (nint)(9 * colBytes), k);
        var r10 = TSrc.Load512(cols + (nint)(10 * colBytes), k); var r11 = TSrc.Load512(cols + (nint)(11 * colBytes), k);
        var r12 = TSrc.Load512(cols + (nint)(12 * colBytes), k); var r13 = TSrc.Load512(cols + (nint)(13 * colBytes), k);
        var r14 = TSrc.Load512(cols + (nint)(14 * colBytes), k); var r15 = TSrc.Load512(cols + (nint)(15 * colBytes), k);

        // Round 1, within each 128-bit lane: interleave pairs of columns.
        var t0 = Avx512F.UnpackLow(r0, r1); var t1 = Avx512F.UnpackHigh(r0, r1);
        var t2 = Avx512F.UnpackLow(r2, r3); var t3 = Avx512F.UnpackHigh(r2, r3);
        var t4 = Avx512F.UnpackLow(r4, r5); var t5 = Avx512F.UnpackHigh(r4, r5);
        var t6 = Avx512F.UnpackLow(r6, r7); var t7 = Avx512F.UnpackHigh(r6, r7);
        var t8 = Avx512F.UnpackLow(r8, r9); var t9 = Avx512F.UnpackHigh(r8, r9);
        var t10 = Avx512F.UnpackLow(r10, r11); var t11 = Avx512F.UnpackHigh(r10, r11);
        var t12 = Avx512F.UnpackLow(r12, r13); var t13 = Avx512F.UnpackHigh(r12, r13);
        var t14 = Avx512F.UnpackLow(r14, r15); var t15 = Avx512F.UnpackHigh(r14, r15);

        // Round 2, within each lane: u[4g + e] holds columns 4g..4g+3 of element 4·lane + e.
        var u0 = Avx512F.Shuffle(t0, t2, 0x44); var u1 = Avx512F.Shuffle(t0, t2, 0xEE);
        var u2 = Avx512F.Shuffle(t1, t3, 0x44); var u3 = Avx512F.Shuffle(t1, t3, 0xEE);
        var u4 = Avx512F.Shuffle(t4, t6, 0x44); var u5 = Avx512F.Shuffle(t4, t6, 0xEE);
        var u6 = Avx512F.Shuffle(t5, t7, 0x44); var u7 = Avx512F.Shuffle(t5, t7, 0xEE);
        var u8 = Avx512F.Shuffle(t8, t10, 0x44); var u9 = Avx512F.Shuffle(t8, t10, 0xEE);
        var u10 = Avx512F.Shuffle(t9, t11, 0x44); var u11 = Avx512F.Shuffle(t9, t11, 0xEE);
        var u12 = Avx512F.Shuffle(t12, t14, 0x44); var u13 = Avx512F.Shuffle(t12, t14, 0xEE);
        var u14 = Avx512F.Shuffle(t13, t15, 0x44); var u15 = Avx512F.Shuffle(t13, t15, 0xEE);

        // Rounds 3 and 4 move whole lanes: output row 4L + e gathers lane L of u[e], u[4+e], u[8+e], u[12+e].
        Rows(u0, u4, u8, u12, dst, ld);
        Rows(u1, u5, u9, u13, dst + ld, ld);
        Rows(u2, u6, u10, u14, dst + 2 * ld, ld);
        Rows(u3, u7, u11, u15, dst + 3 * ld, ld);
    }

    /// <summary>Writes rows e, 4 + e, 8 + e, 12 + e (dst points at row e) from the four vectors holding element e of each lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Rows(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d, float* dst, int ld)
    {
        var lo = Avx512F.Shuffle4x128(a, b, 0x88); // lanes a0 a2 b0 b2
        var hi = Avx512F.Shuffle4x128(a, b, 0xDD); // lanes a1 a3 b1 b3
        var lo2 = Avx512F.Shuffle4x128(c, d, 0x88);
        var hi2 = Avx512F.Shuffle4x128(c, d, 0xDD);
        Avx512F.Shuffle4x128(lo, lo2, 0x88).Store(dst);           // lane 0 of a, b, c, d
        Avx512F.Shuffle4x128(hi, hi2, 0x88).Store(dst + 4 * ld);  // lane 1
        Avx512F.Shuffle4x128(lo, lo2, 0xDD).Store(dst + 8 * ld);  // lane 2
        Avx512F.Shuffle4x128(hi, hi2, 0xDD).Store(dst + 12 * ld); // lane 3
    }
}
