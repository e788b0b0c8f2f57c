using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// float32 products with few rows (decoding: one token, or a handful): C[m × n] = A[m × k] · B[k × n], m ≤ 16.
/// Each element of B is used at most m times, so the product is bound by reading B, and packing B (a full extra
/// pass over it) would cost more than the arithmetic: it made m = 1 thirty times slower in the probe. B is read
/// in place instead, converted to float32 as each vector is loaded:
/// <list type="bullet">
/// <item>row-major B (unit column stride): tiles of 1 × 128 for m = 1 and 4 × 64 otherwise, each k step one
/// broadcast of A per row and FMAs against consecutive vectors of a B row; for m &gt; 4, k is blocked so the
/// B block stays in L1/L2 while every group of four rows passes over it;</item>
/// <item>column-major B (unit row stride, e.g. <c>x · Wᵀ</c> with W stored row-major): dot products of A rows
/// with B columns, 4 × 4 per kernel (m = 1: one sequential dot product per column).</item>
/// </list>
/// A is small and arrives as contiguous float32 (the caller converts it). Each call computes the columns
/// [n0, n1) of C, so threads split the columns and never share a tile. AVX-512 only (machines without it run
/// <see cref="SkinnySgemm256"/>).
/// </summary>
internal static unsafe class SkinnySgemm
{
    /// <summary>Most rows the skinny path takes; larger products pack.</summary>
    public const int MaxRows = 16;

    /// <summary>k block for row-major B with more than four rows: 256 × 64 floats = 64 KiB of B reused from L1/L2.</summary>
    private const int KBlock = 256;

    /// <summary>Column granularity threads split at (whole 64-wide tiles).</summary>
    public const int ColumnUnit = 64;

    /// <summary>True when B can be read in place: float32 or bf16 with a unit stride along one of its dims.</summary>
    public static bool CanRead(in MatrixView b) =>
        b.DType is DType.F32 or DType.BF16 && (b.ColStride == 1 || b.RowStride == 1);

    /// <summary>Columns [n0, n1) of C = A · B. <paramref name="a"/>: contiguous float32 rows (row stride <paramref name="lda"/>).</summary>
    public static void Run(float* a, long lda, in MatrixView b, float* c, long ldc, int m, int k, int n0, int n1)
    {
        bool rowMajor = b.ColStride == 1;
        if (b.DType == DType.BF16)
        {
            if (rowMajor) RunRowMajor<BF16Source>(a, lda, b, c, ldc, m, k, n0, n1);
            else RunColumnMajor<BF16Source>(a, lda, b, c, ldc, m, k, n0, n1);
        }
        else
        {
            if (rowMajor) RunRowMajor<F32Source>(a, lda, b, c, ldc, m, k, n0, n1);
            else RunColumnMajor<F32Source>(a, lda, b, c, ldc, m, k, n0, n1);
        }
    }

    // ---- row-major B ----

    private static void RunRowMajor<TB>(float* a, long lda, MatrixView b, float* c, long ldc, int m, int k, int n0, int n1)
        where TB : struct, IFloatSource
    {
        int j = n0;
        if (m == 1)
            for (; j + 128 <= n1; j += 128) Row1x128<TB>(a, b.At(0, j), b.RowStride, k, c + j);
        for (; j + 64 <= n1; j += 64) RowPanel<TB, Four>(a, lda, b, c, ldc, m, k, j);
        for (; j + 16 <= n1; j += 16) RowPanel<TB, One>(a, lda, b, c, ldc, m, k, j);
        for (; j < n1; j++) Column<TB>(a, lda, b.At(0, j), b.RowStride, c + j, ldc, m, k);
    }

    /// <summary>All m rows of C, columns [j, j + 16·V).</summary>
    private static void RowPanel<TB, TV>(float* a, long lda, MatrixView b, float* c, long ldc, int m, int k, int j)
        where TB : struct, IFloatSource where TV : struct, IConstant
    {
        int kb = m > 4 ? KBlock : k;
        for (int p = 0; p < k; p += kb)
        {
            int kc = Math.Min(kb, k - p);
            bool accumulate = p > 0;
            nint bp = b.At(p, j);
            for (int i = 0; i < m; i += 4)
            {
                float* ap = a + i * lda + p;
                float* cp = c + i * ldc + j;
                switch (Math.Min(4, m - i))
                {
                    case 4: RowTile<TB, Four, TV>(ap, lda, bp, b.RowStride, kc, cp, ldc, accumulate); break;
                    case 3: RowTile<TB, Three, TV>(ap, lda, bp, b.RowStride, kc, cp, ldc, accumulate); break;
                    case 2: RowTile<TB, Two, TV>(ap, lda, bp, b.RowStride, kc, cp, ldc, accumulate); break;
                    default: RowTile<TB, One, TV>(ap, lda, bp, b.RowStride, kc, cp, ldc, accumulate); break;
                }
            }
        }
    }

    /// <summary>One row of C, 128 columns: 8 accumulators, one broadcast and 8 FMAs per k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Row1x128<TB>(float* a, nint b, long ldb, int k, float* c) where TB : struct, IFloatSource
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        long o = 0;
        for (int p = 0; p < k; p++, o += ldb)
        {
            var x = Vector512.Create(a[p]);
            s0 = Vector512.FusedMultiplyAdd(x, TB.Load512(b, o), s0);
            s1 = Vector512.FusedMultiplyAdd(x, TB.Load512(b, o + 16), s1);
            s2 = Vector512.FusedMultiplyAdd(x, TB.Load512(b, o + 32), s2);
            s3 = Vector512.FusedMultiplyAdd(x, TB.Load512(b, o + 48), s3);
            s4 = Vector512.FusedMultiplyAdd(x, TB.Load512(b, o + 64), s4);
            s5 = Vector512.FusedMultiplyAdd(x, TB.Load512(b, o + 80), s5);
            s6 = Vector512.FusedMultiplyAdd(x, TB.Load512(b, o + 96), s6);
            s7 = Vector512.FusedMultiplyAdd(x, TB.Load512(b, o + 112), s7);
        }
        s0.Store(c); s1.Store(c + 16); s2.Store(c + 32); s3.Store(c + 48);
        s4.Store(c + 64); s5.Store(c + 80); s6.Store(c + 96); s7.Store(c + 112);
    }

    /// <summary>R rows (1..4) × 16·V columns (V = 1 or 4) of C over kc steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowTile<TB, TR, TV>(float* a, long lda, nint b, long ldb, int kc, float* c, long ldc, bool accumulate)
        where TB : struct, IFloatSource where TR : struct, IConstant where TV : struct, IConstant
    {
        int rows = TR.Value, vectors = TV.Value;
        float* a0 = a, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        long o = 0;
        for (int p = 0; p < kc; p++, o += ldb)
        {
            Vector512<float> b0 = TB.Load512(b, o), b1 = default, b2 = default, b3 = default;
            if (vectors > 1) { b1 = TB.Load512(b, o + 16); b2 = TB.Load512(b, o + 32); b3 = TB.Load512(b, o + 48); }
            var x = Vector512.Create(a0[p]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00);
            if (vectors > 1) { c01 = Vector512.FusedMultiplyAdd(x, b1, c01); c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03); }
            if (rows > 1)
            {
                x = Vector512.Create(a1[p]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10);
                if (vectors > 1) { c11 = Vector512.FusedMultiplyAdd(x, b1, c11); c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13); }
            }
            if (rows > 2)
            {
                x = Vector512.Create(a2[p]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20);
                if (vectors > 1) { c21 = Vector512.FusedMultiplyAdd(x, b1, c21); c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23); }
            }
            if (rows > 3)
            {
                x = Vector512.Create(a3[p]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30);
                if (vectors > 1) { c31 = Vector512.FusedMultiplyAdd(x, b1, c31); c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33); }
            }
        }
        StoreRow(c, vectors, c00, c01, c02, c03, accumulate);
        if (rows > 1) StoreRow(c + ldc, vectors, c10, c11, c12, c13, accumulate);
        if (rows > 2) StoreRow(c + 2 * ldc, vectors, c20, c21, c22, c23, accumulate);
        if (rows > 3) StoreRow(c + 3 * ldc, vectors, c30, c31, c32, c33, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* c, int vectors, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, Vector512<float> v3, bool accumulate)
    {
        if (accumulate) v0 += Vector512.Load(c);
        v0.Store(c);
        if (vectors > 1)
        {
            if (accumulate) { v1 += Vector512.Load(c + 16); v2 += Vector512.Load(c + 32); v3 += Vector512.Load(c + 48); }
            v1.Store(c + 16); v2.Store(c + 32); v3.Store(c + 48);
        }
    }

    /// <summary>One column of C, for the last columns that do not fill a vector (both widths' kernels).</summary>
    internal static void Column<TB>(float* a, long lda, nint b, long ldb, float* c, long ldc, int m, int k) where TB : struct, IFloatSource
    {
        for (int i = 0; i < m; i++)
        {
            float* ai = a + i * lda;
            float s = 0;
            for (int p = 0; p < k; p++) s += ai[p] * TB.Read(b, p * ldb);
            c[i * ldc] = s;
        }
    }

    // ---- column-major B ----

    private static void RunColumnMajor<TB>(float* a, long lda, MatrixView b, float* c, long ldc, int m, int k, int n0, int n1)
        where TB : struct, IFloatSource
    {
        long ldbt = b.ColStride; // B's columns are contiguous rows of Bᵀ
        int j = n0;
        // Up to four rows, one column at a time: one sequential stream of B per thread (1.43–1.57× the four-column
        // tiles for m = 2–4 in a probe over lm_head + 48 MLP weights on Zen 5); more rows, four columns per tile, so
        // that each load of A serves four products (one column at a time: 1.06–1.12× for m = 5–6, 0.69× for 8).
        // One row goes one column at a time too, with one 16-wide accumulator: the multi-row tiles' order, so a
        // row's bits do not depend on how many rows the product has (the CPU continuous batch promises each sequence
        // the bits it gets alone). The one-row kernel before (DotRow1, eight accumulators over one column) summed in
        // another order; one FMA chain still takes 64 bytes of B per 4-cycle FMA latency, more than a core streams
        // from memory (not measured on an AVX-512 machine yet).
        if (m > 4)
            for (; j + 4 <= n1; j += 4) DotColumns<TB, Four>(a, lda, b.At(0, j), ldbt, c + j, ldc, m, k);
        for (; j < n1; j++) DotColumns<TB, One>(a, lda, b.At(0, j), ldbt, c + j, ldc, m, k);
    }

    private static void DotColumns<TB, TC>(float* a, long lda, nint bt, long ldbt, float* c, long ldc, int m, int k)
        where TB : struct, IFloatSource where TC : struct, IConstant
    {
        for (int i = 0; i < m; i += 4)
        {
            float* ap = a + i * lda;
            float* cp = c + i * ldc;
            switch (Math.Min(4, m - i))
            {
                case 4: DotTile<TB, Four, TC>(ap, lda, bt, ldbt, cp, ldc, k); break;
                case 3: DotTile<TB, Three, TC>(ap, lda, bt, ldbt, cp, ldc, k); break;
                case 2: DotTile<TB, Two, TC>(ap, lda, bt, ldbt, cp, ldc, k); break;
                default: DotTile<TB, One, TC>(ap, lda, bt, ldbt, cp, ldc, k); break;
            }
        }
    }

    /// <summary>R rows of A (1..4) dotted with NC columns of B (1 or 4): 16-wide partial sums, reduced at the end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotTile<TB, TR, TC>(float* a, long lda, nint bt, long ldbt, float* c, long ldc, int k)
        where TB : struct, IFloatSource where TR : struct, IConstant where TC : struct, IConstant
    {
        int rows = TR.Value, cols = TC.Value;
        float* a0 = a, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default;
        Vector512<float> s10 = default, s11 = default, s12 = default, s13 = default;
        Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default;
        Vector512<float> s30 = default, s31 = default, s32 = default, s33 = default;
        int p = 0;
        for (; p + 16 <= k; p += 16)
        {
            Vector512<float> b0 = TB.Load512(bt, p), b1 = default, b2 = default, b3 = default;
            if (cols > 1) { b1 = TB.Load512(bt, ldbt + p); b2 = TB.Load512(bt, 2 * ldbt + p); b3 = TB.Load512(bt, 3 * ldbt + p); }
            var x = Vector512.Load(a0 + p);
            s00 = Vector512.FusedMultiplyAdd(x, b0, s00);
            if (cols > 1) { s01 = Vector512.FusedMultiplyAdd(x, b1, s01); s02 = Vector512.FusedMultiplyAdd(x, b2, s02); s03 = Vector512.FusedMultiplyAdd(x, b3, s03); }
            if (rows > 1)
            {
                x = Vector512.Load(a1 + p);
                s10 = Vector512.FusedMultiplyAdd(x, b0, s10);
                if (cols > 1) { s11 = Vector512.FusedMultiplyAdd(x, b1, s11); s12 = Vector512.FusedMultiplyAdd(x, b2, s12); s13 = Vector512.FusedMultiplyAdd(x, b3, s13); }
            }
            if (rows > 2)
            {
                x = Vector512.Load(a2 + p);
                s20 = Vector512.FusedMultiplyAdd(x, b0, s20);
                if (cols > 1) { s21 = Vector512.FusedMultiplyAdd(x, b1, s21); s22 = Vector512.FusedMultiplyAdd(x, b2, s22); s23 = Vector512.FusedMultiplyAdd(x, b3, s23); }
            }
            if (rows > 3)
            {
                x = Vector512.Load(a3 + p);
                s30 = Vector512.FusedMultiplyAdd(x, b0, s30);
                if (cols > 1) { s31 = Vector512.FusedMultiplyAdd(x, b1, s31); s32 = Vector512.FusedMultiplyAdd(x, b2, s32); s33 = Vector512.FusedMultiplyAdd(x, b3, s33); }
            }
        }
        FinishRow<TB>(a0, bt, ldbt, c, cols, p, k, s00, s01, s02, s03);
        if (rows > 1) FinishRow<TB>(a1, bt, ldbt, c + ldc, cols, p, k, s10, s11, s12, s13);
        if (rows > 2) FinishRow<TB>(a2, bt, ldbt, c + 2 * ldc, cols, p, k, s20, s21, s22, s23);
        if (rows > 3) FinishRow<TB>(a3, bt, ldbt, c + 3 * ldc, cols, p, k, s30, s31, s32, s33);
    }

    /// <summary>Reduces a row's partial sums, adds the k tail (p..k) and stores the row's 1 or 4 results.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FinishRow<TB>(float* a, nint bt, long ldbt, float* c, int cols, int p, int k,
        Vector512<float> s0, Vector512<float> s1, Vector512<float> s2, Vector512<float> s3) where TB : struct, IFloatSource
    {
        for (int j = 0; j < cols; j++)
        {
            var s = j switch { 0 => s0, 1 => s1, 2 => s2, _ => s3 };
            float sum = Vector512.Sum(s);
            for (int q = p; q < k; q++) sum += a[q] * TB.Read(bt, j * ldbt + q);
            c[j] = sum;
        }
    }
}
