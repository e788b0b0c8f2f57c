using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// The Vector256 twin of <see cref="SkinnySgemm"/> for machines without AVX-512 (AVX2 + FMA): the same products
/// with few rows (m ≤ <see cref="MaxRowMajorRows"/> for x · W, m ≤ <see cref="MaxDotRows"/> for x · Wᵀ), B read in place and converted as each vector is loaded, with tiles cut for 16 ymm
/// registers instead of 32 zmm:
/// <list type="bullet">
/// <item>row-major B: 4 × 16 (8 accumulators, two B vectors and a broadcast), k blocked for m &gt; 4 as in the
/// AVX-512 kernels, B prefetched a few rows ahead; 1 × 64 (8 accumulators) for m = 1 when B is small
/// (below <see cref="RowVectorProduct.MinBytes"/>, likely in cache) or reached through <see cref="Sgemm"/>'s transposed
/// path; a larger row-major B with one row goes to <see cref="RowVectorProduct"/>;</item>
/// <item>column-major B (x · Wᵀ): up to 3 rows × 4 columns, the four columns a quarter of the call's range apart
/// so that each reads B as one long stream; every element summed in the same order in all of them (one 8-wide
/// accumulator over k), so a row's bits do not depend on how many rows the product has.</item>
/// </list>
/// Without these, such products went through the packed GEMM, whose packing of B costs a full extra pass over
/// it for a handful of rows: decoding the Qwen2-0.5B shape on an AVX2 machine took 970 ms a token against a
/// memory-bandwidth bound of 104 ms. Each call computes the columns [n0, n1) of C; every element is summed
/// in an order that does not depend on how the columns are split between threads.
/// </summary>
internal static unsafe class SkinnySgemm256
{
    /// <summary>
    /// Most rows the column-major (x · Wᵀ) kernels take instead of the packed GEMM. Their 3 × 4 dot tiles read B
    /// in place, where the packed GEMM first transposes all of it into panels, a full pass over the weights that
    /// a few dozen rows do not amortise: paired 2-thread runs on Zen 3 (bench gemm --bt, three rounds) measured
    /// 52–72 against 37–40 GFLOP/s at 32 × 896 · 896 × 4864, 58–62 against 41–61 at 64 rows, 72–89 against 63–78
    /// at 64 × 4864 · 4864 × 896; from 128 rows the packed GEMM wins (65–79 against 58–102 and 89–111 against
    /// 62–80 at 128 rows, 107–125 against 78–100 at 512). Up to this many rows a row's bits also do not depend
    /// on the row count (the CPU continuous batch's contract, now up to 64 sequences on these machines).
    /// </summary>
    public const int MaxDotRows = 64;

    /// <summary>
    /// Most rows the row-major (x · W) tiles take instead of the packed GEMM: paired on Zen 3, 2 threads, 896 × 4864,
    /// the tiles ran at 1.37× the packed GEMM with 24 rows and 1.15× with 32, and at 0.92–0.99× with 64.
    /// </summary>
    public const int MaxRowMajorRows = 32;

    /// <summary>k block for row-major B with more than four rows: 256 × 16 floats = 16 KiB of B reused from L1.</summary>
    private const int KBlock = 256;

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
            for (; j + 64 <= n1; j += 64) Row1x64<TB>(a, b.At(0, j), b.RowStride, k, c + j);
        for (; j + 16 <= n1; j += 16) RowPanel<TB, Two>(a, lda, b, c, ldc, m, k, j);
        for (; j + 8 <= n1; j += 8) RowPanel<TB, One>(a, lda, b, c, ldc, m, k, j);
        for (; j < n1; j++) SkinnySgemm.Column<TB>(a, lda, b.At(0, j), b.RowStride, c + j, ldc, m, k);
    }

    /// <summary>How many rows ahead the row-major tiles prefetch B.</summary>
    private const int PrefetchRows = 16;

    /// <summary>All m rows of C, columns [j, j + 8·V).</summary>
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
                // The first tile of a k block brings the block's rows of B in; the next ones find them in L1.
                bool fetch = i == 0;
                switch (Math.Min(4, m - i))
                {
                    case 4: RowTile<TB, Four, TV>(ap, lda, bp, b.RowStride, kc, cp, ldc, accumulate, fetch); break;
                    case 3: RowTile<TB, Three, TV>(ap, lda, bp, b.RowStride, kc, cp, ldc, accumulate, fetch); break;
                    case 2: RowTile<TB, Two, TV>(ap, lda, bp, b.RowStride, kc, cp, ldc, accumulate, fetch); break;
                    default: RowTile<TB, One, TV>(ap, lda, bp, b.RowStride, kc, cp, ldc, accumulate, fetch); break;
                }
            }
        }
    }

    /// <summary>One row of C, 64 columns: 8 accumulators, one broadcast and 8 FMAs per k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Row1x64<TB>(float* a, nint b, long ldb, int k, float* c) where TB : struct, IFloatSource
    {
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        long o = 0;
        for (int p = 0; p < k; p++, o += ldb)
        {
            var x = Vector256.Create(a[p]);
            s0 = Vector256.FusedMultiplyAdd(x, TB.Load256(b, o), s0);
            s1 = Vector256.FusedMultiplyAdd(x, TB.Load256(b, o + 8), s1);
            s2 = Vector256.FusedMultiplyAdd(x, TB.Load256(b, o + 16), s2);
            s3 = Vector256.FusedMultiplyAdd(x, TB.Load256(b, o + 24), s3);
            s4 = Vector256.FusedMultiplyAdd(x, TB.Load256(b, o + 32), s4);
            s5 = Vector256.FusedMultiplyAdd(x, TB.Load256(b, o + 40), s5);
            s6 = Vector256.FusedMultiplyAdd(x, TB.Load256(b, o + 48), s6);
            s7 = Vector256.FusedMultiplyAdd(x, TB.Load256(b, o + 56), s7);
        }
        s0.Store(c); s1.Store(c + 8); s2.Store(c + 16); s3.Store(c + 24);
        s4.Store(c + 32); s5.Store(c + 40); s6.Store(c + 48); s7.Store(c + 56);
    }

    /// <summary>R rows (1..4) × 8·V columns (V = 1 or 2) of C over kc steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowTile<TB, TR, TV>(float* a, long lda, nint b, long ldb, int kc, float* c, long ldc, bool accumulate, bool fetch)
        where TB : struct, IFloatSource where TR : struct, IConstant where TV : struct, IConstant
    {
        int rows = TR.Value, vectors = TV.Value;
        float* a0 = a, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        long o = 0;
        // The tile's slice of B (at most 64 bytes of a row) lies on a new page in every row, where the hardware
        // prefetchers stop; asking for the line PrefetchRows rows ahead keeps that many misses in flight (paired on
        // Zen 3, 2 threads, 16 rows × k · k × 4864: 1.40–1.46× without; 8 rows ahead 1.11–1.17×). Prefetching
        // past the end of B is harmless: a prefetch never faults.
        byte* ahead = (byte*)b + PrefetchRows * ldb * TB.ElementSize;
        long rowBytes = ldb * TB.ElementSize;
        for (int p = 0; p < kc; p++, o += ldb)
        {
            if (fetch)
            {
                Sse.Prefetch0(ahead);
                ahead += rowBytes;
            }
            Vector256<float> b0 = TB.Load256(b, o), b1 = vectors > 1 ? TB.Load256(b, o + 8) : default;
            var x = Vector256.Create(a0[p]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00);
            if (vectors > 1) c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            if (rows > 1)
            {
                x = Vector256.Create(a1[p]);
                c10 = Vector256.FusedMultiplyAdd(x, b0, c10);
                if (vectors > 1) c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            }
            if (rows > 2)
            {
                x = Vector256.Create(a2[p]);
                c20 = Vector256.FusedMultiplyAdd(x, b0, c20);
                if (vectors > 1) c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            }
            if (rows > 3)
            {
                x = Vector256.Create(a3[p]);
                c30 = Vector256.FusedMultiplyAdd(x, b0, c30);
                if (vectors > 1) c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            }
        }
        StoreRow(c, vectors, c00, c01, accumulate);
        if (rows > 1) StoreRow(c + ldc, vectors, c10, c11, accumulate);
        if (rows > 2) StoreRow(c + 2 * ldc, vectors, c20, c21, accumulate);
        if (rows > 3) StoreRow(c + 3 * ldc, vectors, c30, c31, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* c, int vectors, Vector256<float> v0, Vector256<float> v1, bool accumulate)
    {
        if (accumulate) v0 += Vector256.Load(c);
        v0.Store(c);
        if (vectors > 1)
        {
            if (accumulate) v1 += Vector256.Load(c + 8);
            v1.Store(c + 8);
        }
    }

    // ---- column-major B ----

    private static void RunColumnMajor<TB>(float* a, long lda, MatrixView b, float* c, long ldc, int m, int k, int n0, int n1)
        where TB : struct, IFloatSource
    {
        long ldbt = b.ColStride; // B's columns are contiguous rows of Bᵀ
        // Four columns per tile, a quarter of the range apart: tile i takes columns n0 + i, n0 + q + i, n0 + 2q + i
        // and n0 + 3q + i, so each of its four streams of B runs on through q consecutive columns, one long
        // sequential read, instead of four new 2–7 KiB streams every tile (adjacent columns) that the hardware
        // prefetchers take a while to pick up. Paired in one process on Zen 3 (2 threads, B from memory, bench
        // gemm --bt --ab) against adjacent columns with the next tile prefetched: bf16 1.53× at 1 × 896 · 896 × 4864,
        // 1.38× at 896 × 896, 1.37× the Qwen2-0.5B lm_head, 1.05–1.07× at 4864 × 896 and the Qwen2-7B shapes,
        // 1.18× with 8 rows; float32 1.21–1.26× at k = 896, 1.05–1.08× at 4864 and 3584 × 18944, 1.23× with 8 rows;
        // 64 rows (compute-bound) 0.96–1.03. Two to four rows took one column at a time before and gain most:
        // 1.17–1.50× bf16, 1.16–1.25× float32. Every tile sums each element as DotTile does (one 8-wide accumulator
        // over k), so a row's bits depend neither on the row count nor on which columns share a tile: the CPU
        // continuous batch promises each sequence the bits it gets alone (the selftest's static-slots batch of 8
        // rows against the eager batch, down to 1 row, checks it).
        int quarter = (n1 - n0) / 4;
        long stride = quarter * ldbt;
        for (int i = 0; i < quarter; i++) DotQuads<TB>(a, lda, b.At(0, n0 + i), stride, c + n0 + i, quarter, ldc, m, k);
        for (int j = n0 + 4 * quarter; j < n1; j++) DotColumn<TB>(a, lda, b.At(0, j), c + j, ldc, m, k);
    }

    /// <summary>All m rows of C, one column: tiles of up to four rows.</summary>
    private static void DotColumn<TB>(float* a, long lda, nint bt, float* c, long ldc, int m, int k)
        where TB : struct, IFloatSource
    {
        for (int i = 0; i < m; i += 4)
        {
            float* ap = a + i * lda;
            float* cp = c + i * ldc;
            switch (Math.Min(4, m - i))
            {
                case 4: DotTile<TB, Four>(ap, lda, bt, cp, ldc, k); break;
                case 3: DotTile<TB, Three>(ap, lda, bt, cp, ldc, k); break;
                case 2: DotTile<TB, Two>(ap, lda, bt, cp, ldc, k); break;
                default: DotTile<TB, One>(ap, lda, bt, cp, ldc, k); break;
            }
        }
    }

    /// <summary>All m rows of C, four columns of B <paramref name="ldbt"/> elements apart (results <paramref name="cStep"/> apart in C): tiles of three rows (the last one or two rows in a smaller tile).</summary>
    private static void DotQuads<TB>(float* a, long lda, nint bt, long ldbt, float* c, long cStep, long ldc, int m, int k)
        where TB : struct, IFloatSource
    {
        // The first row tile brings the four columns in; the next ones read them from cache.
        int i = 0;
        for (; i + 3 <= m; i += 3) DotQuad<TB, Three>(a + i * lda, lda, bt, ldbt, c + i * ldc, cStep, ldc, k);
        if (m - i == 2) DotQuad<TB, Two>(a + i * lda, lda, bt, ldbt, c + i * ldc, cStep, ldc, k);
        else if (m - i == 1) DotQuad<TB, One>(a + i * lda, lda, bt, ldbt, c + i * ldc, cStep, ldc, k);
    }

    /// <summary>
    /// R rows of A (1..3) dotted with four columns of B (<paramref name="ldbt"/> elements apart; results
    /// <paramref name="cStep"/> apart in each row of C): 12 accumulators, three A vectors and one B vector live
    /// (16 ymm). Seven loads for twelve FMAs instead of the 4 × 2 tile's six for eight: on Zen 3 the 4 × 2 tiles
    /// re-read A from L2 for every pair of columns and ran at 40 GFLOP/s (16 × 896 · 896 × 4864, 2 threads).
    /// Every element in the order of <see cref="DotTile{TB, TR}"/>, so the bits do not change with the tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotQuad<TB, TR>(float* a, long lda, nint bt, long ldbt, float* c, long cStep, long ldc, int k)
        where TB : struct, IFloatSource where TR : struct, IConstant
    {
        int rows = TR.Value;
        float* a0 = a, a1 = a0 + lda, a2 = a1 + lda;
        long l1 = ldbt, l2 = 2 * ldbt, l3 = 3 * ldbt;
        Vector256<float> s00 = default, s01 = default, s02 = default, s03 = default;
        Vector256<float> s10 = default, s11 = default, s12 = default, s13 = default;
        Vector256<float> s20 = default, s21 = default, s22 = default, s23 = default;
        int p = 0;
        for (; p + 8 <= k; p += 8)
        {
            Vector256<float> x0 = Vector256.Load(a0 + p);
            Vector256<float> x1 = rows > 1 ? Vector256.Load(a1 + p) : default;
            Vector256<float> x2 = rows > 2 ? Vector256.Load(a2 + p) : default;
            QuadColumn<TR>(x0, x1, x2, TB.Load256(bt, p), ref s00, ref s10, ref s20);
            QuadColumn<TR>(x0, x1, x2, TB.Load256(bt, l1 + p), ref s01, ref s11, ref s21);
            QuadColumn<TR>(x0, x1, x2, TB.Load256(bt, l2 + p), ref s02, ref s12, ref s22);
            QuadColumn<TR>(x0, x1, x2, TB.Load256(bt, l3 + p), ref s03, ref s13, ref s23);
        }
        nint bt2 = bt + (nint)(l2 * TB.ElementSize);
        long c2 = 2 * cStep;
        FinishRow<TB>(a0, bt, ldbt, c, cStep, 2, p, k, s00, s01);
        FinishRow<TB>(a0, bt2, ldbt, c + c2, cStep, 2, p, k, s02, s03);
        if (rows > 1)
        {
            FinishRow<TB>(a1, bt, ldbt, c + ldc, cStep, 2, p, k, s10, s11);
            FinishRow<TB>(a1, bt2, ldbt, c + ldc + c2, cStep, 2, p, k, s12, s13);
        }
        if (rows > 2)
        {
            FinishRow<TB>(a2, bt, ldbt, c + 2 * ldc, cStep, 2, p, k, s20, s21);
            FinishRow<TB>(a2, bt2, ldbt, c + 2 * ldc + c2, cStep, 2, p, k, s22, s23);
        }
    }

    /// <summary>One B vector into one column of a <see cref="DotQuad{TB, TR}"/> tile: an FMA per live row (inlined; the accumulators stay in registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void QuadColumn<TR>(Vector256<float> x0, Vector256<float> x1, Vector256<float> x2, Vector256<float> w,
        ref Vector256<float> s0, ref Vector256<float> s1, ref Vector256<float> s2) where TR : struct, IConstant
    {
        s0 = Vector256.FusedMultiplyAdd(x0, w, s0);
        if (TR.Value > 1) s1 = Vector256.FusedMultiplyAdd(x1, w, s1);
        if (TR.Value > 2) s2 = Vector256.FusedMultiplyAdd(x2, w, s2);
    }

    /// <summary>R rows of A (1..4) dotted with one column of B: 8-wide partial sums over k, reduced at the end, then the k tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotTile<TB, TR>(float* a, long lda, nint bt, float* c, long ldc, int k)
        where TB : struct, IFloatSource where TR : struct, IConstant
    {
        int rows = TR.Value;
        float* a0 = a, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        int p = 0;
        for (; p + 8 <= k; p += 8)
        {
            Vector256<float> w = TB.Load256(bt, p);
            s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a0 + p), w, s0);
            if (rows > 1) s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a1 + p), w, s1);
            if (rows > 2) s2 = Vector256.FusedMultiplyAdd(Vector256.Load(a2 + p), w, s2);
            if (rows > 3) s3 = Vector256.FusedMultiplyAdd(Vector256.Load(a3 + p), w, s3);
        }
        FinishRow<TB>(a0, bt, 0, c, 1, 1, p, k, s0, default);
        if (rows > 1) FinishRow<TB>(a1, bt, 0, c + ldc, 1, 1, p, k, s1, default);
        if (rows > 2) FinishRow<TB>(a2, bt, 0, c + 2 * ldc, 1, 1, p, k, s2, default);
        if (rows > 3) FinishRow<TB>(a3, bt, 0, c + 3 * ldc, 1, 1, p, k, s3, default);
    }

    /// <summary>Reduces a row's partial sums, adds the k tail (p..k) and stores the row's 1 or 2 results (<paramref name="cStep"/> apart).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FinishRow<TB>(float* a, nint bt, long ldbt, float* c, long cStep, int cols, int p, int k,
        Vector256<float> s0, Vector256<float> s1) where TB : struct, IFloatSource
    {
        for (int j = 0; j < cols; j++)
        {
            float sum = Vector256.Sum(j == 0 ? s0 : s1);
            for (int q = p; q < k; q++) sum += a[q] * TB.Read(bt, j * ldbt + q);
            c[j * cStep] = sum;
        }
    }
}
