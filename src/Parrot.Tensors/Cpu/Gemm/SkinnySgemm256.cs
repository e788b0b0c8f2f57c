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
/// <item>column-major B (x · Wᵀ): 1 row × 4 columns for m = 1, up to 4 rows × 1 column for m = 2–4, 3 rows ×
/// 4 columns above; every element summed in the same order in all of them (one 8-wide accumulator over k),
/// so a row's bits do not depend on how many rows the product has.</item>
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
        int j = n0;
        // One row, or more than four: four columns per tile (DotQuads). One row's four streams of B read as fast as
        // one here (Zen 3 probe, one thread: 10.1–16.4 GB/s against 9.8–11.4 for one stream with eight accumulators),
        // and its tile sums in the multi-row tiles' order, so a row's bits do not depend on the row count: the CPU
        // continuous batch promises each sequence the bits it gets alone (the selftest's static-slots batch of 8 rows
        // against the eager batch, down to 1 row, checks it). Two to four rows: one column at a time (one sequential
        // stream of B per thread), as in SkinnySgemm.
        bool prefetch = PrefetchesNextQuad(TB.ElementSize, k);
        if (m == 1 || m > 4)
            for (; j + 4 <= n1; j += 4) DotQuads<TB>(a, lda, b.At(0, j), ldbt, c + j, ldc, m, k, prefetch);
        for (; j < n1; j++) DotColumn<TB>(a, lda, b.At(0, j), c + j, ldc, m, k);
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

    /// <summary>
    /// Whether the four-column tiles prefetch the next four columns of B while they read theirs: where B's columns
    /// are short, each tile starts four new streams that the hardware prefetchers take a while to pick up, and
    /// asking for the next tile's lines (into L2) meanwhile keeps memory busy. Paired in one process on Zen 3
    /// (2 threads, B from memory, one row): bf16 1.26–1.66× at k = 896 (the Qwen2-0.5B projections and tied
    /// lm_head), 1.16× at 3584, 1.08–1.21× at 4864, 1.01–1.03× at 5120–8192 and 0.87× at 18944; float32 1.10–1.16×
    /// at 896 but 0.90–0.99× from 1536 on, where the longer streams leave the prefetchers nothing to add. Hence a
    /// limit in bytes per column for bf16 and a lower one for float32, whose tiles take twice the bytes per step.
    /// </summary>
    internal static bool PrefetchesNextQuad(int elementSize, int k) => (long)k * elementSize <= (elementSize == 2 ? 10 << 10 : 4 << 10);

    /// <summary>All m rows of C, four columns: tiles of three rows (the last one or two rows in a smaller tile).</summary>
    private static void DotQuads<TB>(float* a, long lda, nint bt, long ldbt, float* c, long ldc, int m, int k, bool prefetch)
        where TB : struct, IFloatSource
    {
        // Only the first row tile prefetches: the next ones read the same four columns from cache.
        int i = 0;
        for (; i + 3 <= m; i += 3) DotQuad<TB, Three>(a + i * lda, lda, bt, ldbt, c + i * ldc, ldc, k, prefetch && i == 0);
        if (m - i == 2) DotQuad<TB, Two>(a + i * lda, lda, bt, ldbt, c + i * ldc, ldc, k, prefetch && i == 0);
        else if (m - i == 1) DotQuad<TB, One>(a + i * lda, lda, bt, ldbt, c + i * ldc, ldc, k, prefetch && i == 0);
    }

    /// <summary>
    /// R rows of A (1..3) dotted with four columns of B: 12 accumulators, three A vectors and one B vector live
    /// (16 ymm). Seven loads for twelve FMAs instead of the 4 × 2 tile's six for eight: on Zen 3 the 4 × 2 tiles
    /// re-read A from L2 for every pair of columns and ran at 40 GFLOP/s (16 × 896 · 896 × 4864, 2 threads).
    /// Every element in the order of <see cref="DotTile{TB, TR}"/>, so the bits do not change with the tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotQuad<TB, TR>(float* a, long lda, nint bt, long ldbt, float* c, long ldc, int k, bool prefetch)
        where TB : struct, IFloatSource where TR : struct, IConstant
    {
        int rows = TR.Value;
        float* a0 = a, a1 = a0 + lda, a2 = a1 + lda;
        long l1 = ldbt, l2 = 2 * ldbt, l3 = 3 * ldbt;
        Vector256<float> s00 = default, s01 = default, s02 = default, s03 = default;
        Vector256<float> s10 = default, s11 = default, s12 = default, s13 = default;
        Vector256<float> s20 = default, s21 = default, s22 = default, s23 = default;
        // The next tile's four columns, one line of each whenever this tile enters a new line of its own (a 64-byte
        // line holds 16 floats or 32 bf16, two or four steps of 8). Past the end of B the hint is harmless: a
        // prefetch never faults.
        byte* next = (byte*)bt + 4 * ldbt * TB.ElementSize;
        long columnBytes = ldbt * TB.ElementSize;
        int lineMask = 64 / TB.ElementSize - 1;
        int p = 0;
        for (; p + 8 <= k; p += 8)
        {
            if (prefetch && (p & lineMask) == 0)
            {
                byte* line = next + (long)p * TB.ElementSize;
                Sse.Prefetch1(line);
                Sse.Prefetch1(line + columnBytes);
                Sse.Prefetch1(line + 2 * columnBytes);
                Sse.Prefetch1(line + 3 * columnBytes);
            }
            Vector256<float> x0 = Vector256.Load(a0 + p);
            Vector256<float> x1 = rows > 1 ? Vector256.Load(a1 + p) : default;
            Vector256<float> x2 = rows > 2 ? Vector256.Load(a2 + p) : default;
            QuadColumn<TR>(x0, x1, x2, TB.Load256(bt, p), ref s00, ref s10, ref s20);
            QuadColumn<TR>(x0, x1, x2, TB.Load256(bt, l1 + p), ref s01, ref s11, ref s21);
            QuadColumn<TR>(x0, x1, x2, TB.Load256(bt, l2 + p), ref s02, ref s12, ref s22);
            QuadColumn<TR>(x0, x1, x2, TB.Load256(bt, l3 + p), ref s03, ref s13, ref s23);
        }
        nint bt2 = bt + (nint)(l2 * TB.ElementSize);
        FinishRow<TB>(a0, bt, ldbt, c, 2, p, k, s00, s01);
        FinishRow<TB>(a0, bt2, ldbt, c + 2, 2, p, k, s02, s03);
        if (rows > 1)
        {
            FinishRow<TB>(a1, bt, ldbt, c + ldc, 2, p, k, s10, s11);
            FinishRow<TB>(a1, bt2, ldbt, c + ldc + 2, 2, p, k, s12, s13);
        }
        if (rows > 2)
        {
            FinishRow<TB>(a2, bt, ldbt, c + 2 * ldc, 2, p, k, s20, s21);
            FinishRow<TB>(a2, bt2, ldbt, c + 2 * ldc + 2, 2, p, k, s22, s23);
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
        FinishRow<TB>(a0, bt, 0, c, 1, p, k, s0, default);
        if (rows > 1) FinishRow<TB>(a1, bt, 0, c + ldc, 1, p, k, s1, default);
        if (rows > 2) FinishRow<TB>(a2, bt, 0, c + 2 * ldc, 1, p, k, s2, default);
        if (rows > 3) FinishRow<TB>(a3, bt, 0, c + 3 * ldc, 1, p, k, s3, default);
    }

    /// <summary>Reduces a row's partial sums, adds the k tail (p..k) and stores the row's 1 or 2 results.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FinishRow<TB>(float* a, nint bt, long ldbt, float* c, int cols, int p, int k,
        Vector256<float> s0, Vector256<float> s1) where TB : struct, IFloatSource
    {
        for (int j = 0; j < cols; j++)
        {
            float sum = Vector256.Sum(j == 0 ? s0 : s1);
            for (int q = p; q < k; q++) sum += a[q] * TB.Read(bt, j * ldbt + q);
            c[j] = sum;
        }
    }
}
