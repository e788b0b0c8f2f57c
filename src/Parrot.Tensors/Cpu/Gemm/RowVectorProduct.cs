using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// c = x · B for one row x and a row-major B (numpy's vector-times-matrix, a backward pass over one token) on
/// machines without AVX-512: B is read as it lies, whole rows one after another. k is cut into segments of
/// <see cref="SegmentRows"/> rows; each segment (one contiguous stretch of B) gives a partial row, and c is the sum of
/// the partials in segment order. Threads take whole segments, so each streams its own part of memory front to back.
/// The tiles of <see cref="SkinnySgemm256"/> instead read B in strips of 64 columns, 256 bytes from every row at a
/// stride of the row length — a new 4 KiB page per row, which the hardware prefetchers do not follow: on Zen 3 that
/// ran at 0.18–0.55× numpy (bench/RESULTS.md). Every element's sum has the same order whatever the thread count
/// (within a segment row by row, then the segments in order).
/// </summary>
internal static unsafe class RowVectorProduct
{
    /// <summary>
    /// Smallest B (bytes) taken here. A smaller B may well be in cache from a recent call, and from cache the 1 × 64
    /// register tiles, which keep their sums in registers, are faster (paired on Zen 3, 2 threads, the same B every call:
    /// 1.14–1.26× at 512² and 896², about equal at 896 × 2048); read from memory the streaming here wins at every size
    /// (B rotated through 32 copies: 1.36–1.46× at 896² and 2048 × 896, equal at 512²).
    /// </summary>
    public const long MinBytes = 4L << 20;

    /// <summary>
    /// Whether one row times this k × n B goes here: Vector256 kernels (the AVX-512 skinny kernels keep one row), a
    /// row-major f32 or bf16 B, at least <see cref="MinBytes"/> of it.
    /// </summary>
    public static bool Takes(in MatrixView b, int n, int k) =>
        !GemmOptions.UseVector512 && b.ColStride == 1 && b.DType is DType.F32 or DType.BF16
        && (long)k * n * b.DType.SizeOf() >= MinBytes;

    /// <summary>Rows of B per segment: 256 rows of a 4,864-column B are 5 MB of reading, a fair unit to share out.</summary>
    public const int SegmentRows = 256;

    /// <summary>
    /// Columns of the partial row kept hot while a segment's rows stream past (32 KiB of sums): rows of up to this
    /// many columns are read in one piece. Paired on Zen 3, 2 threads, 1 × 896 · 896 × 4864: 8192 columns 1.41×
    /// the old tiles, 2048 1.36×, 1024 1.23× (rows cut into 4–8 KiB pieces).
    /// </summary>
    private const int ChunkColumns = 8192;

    /// <summary>Fewest columns a thread takes when one segment is split by columns: 4 KiB of each row of a float32 B.</summary>
    private const int MinPartColumns = 1024;

    /// <summary>Floats of scratch <see cref="Run"/> needs for k rows and n columns.</summary>
    public static long ScratchFloats(int k, int n) => Segments(k) > 1 ? (long)Segments(k) * n : 0;

    private static int Segments(int k) => (k + SegmentRows - 1) / SegmentRows;

    /// <summary>
    /// c[0..n) = x[0..k) · B (row-major: unit column stride, f32 or bf16), on up to <paramref name="workers"/> threads;
    /// <paramref name="scratch"/> holds <see cref="ScratchFloats"/> floats.
    /// </summary>
    public static void Run(float* x, in MatrixView b, float* c, int n, int k, float* scratch, int workers)
    {
        if (b.DType == DType.BF16) Run<BF16Source>(x, b, c, n, k, scratch, workers);
        else Run<F32Source>(x, b, c, n, k, scratch, workers);
    }

    private static void Run<TB>(float* x, MatrixView b, float* c, int n, int k, float* scratch, int workers)
        where TB : struct, IFloatSource
    {
        int segments = Segments(k);
        if (segments == 1)
        {
            // One segment (a short, wide B): the threads split the columns instead, each reading its part of every
            // row (at least MinPartColumns of it) straight into c; a column's sum is the same whoever computes it.
            int columnParts = Math.Min(workers, n / MinPartColumns);
            if (columnParts <= 1)
            {
                Segment<TB>(x, b.Data, b.RowStride, k, c, n);
                return;
            }
            CpuParallel.For(columnParts, w =>
            {
                int j0 = (int)((long)n * w / columnParts) / 8 * 8;
                int j1 = w == columnParts - 1 ? n : (int)((long)n * (w + 1) / columnParts) / 8 * 8;
                Segment<TB>(x, b.At(0, j0), b.RowStride, k, c + j0, j1 - j0);
            });
            return;
        }
        int parts = Math.Min(workers, segments);
        if (parts <= 1)
        {
            for (int s = 0; s < segments; s++) RunSegment<TB>(x, b, n, k, scratch, s);
        }
        else
        {
            // Segments go out one at a time from a shared counter, so a thread slowed by other work on the machine
            // takes fewer of them instead of holding the other up.
            int next = -1;
            CpuParallel.For(parts, _ =>
            {
                int s;
                while ((s = Interlocked.Increment(ref next)) < segments) RunSegment<TB>(x, b, n, k, scratch, s);
            });
        }
        SumPartials(scratch, segments, n, c);
    }

    private static void RunSegment<TB>(float* x, in MatrixView b, int n, int k, float* partials, int s)
        where TB : struct, IFloatSource
    {
        int p0 = s * SegmentRows, rows = Math.Min(SegmentRows, k - p0);
        Segment<TB>(x + p0, b.At(p0, 0), b.RowStride, rows, partials + (long)s * n, n);
    }

    /// <summary>
    /// y[0..n) = Σ over the rows of x[p] · B[p, :], summed row by row: eight rows of B per pass over a chunk of y, so
    /// that y is loaded and stored once per eight rows (paired on Zen 3, 2 threads: 1.19–1.48× four rows a pass; the
    /// eight broadcasts, a sum and a B vector fit the 16 ymm registers).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Segment<TB>(float* x, nint b, long ldb, int rows, float* y, int n) where TB : struct, IFloatSource
    {
        for (int j0 = 0; j0 < n; j0 += ChunkColumns)
        {
            int w = Math.Min(ChunkColumns, n - j0);
            int wv = w / 8 * 8;
            float* yc = y + j0;
            new Span<float>(yc, w).Clear();
            long o = j0;
            int p = 0;
            for (; p + 8 <= rows; p += 8, o += 8 * ldb)
            {
                Vector256<float> x0 = Vector256.Create(x[p]), x1 = Vector256.Create(x[p + 1]);
                Vector256<float> x2 = Vector256.Create(x[p + 2]), x3 = Vector256.Create(x[p + 3]);
                Vector256<float> x4 = Vector256.Create(x[p + 4]), x5 = Vector256.Create(x[p + 5]);
                Vector256<float> x6 = Vector256.Create(x[p + 6]), x7 = Vector256.Create(x[p + 7]);
                long o1 = o + ldb, o2 = o1 + ldb, o3 = o2 + ldb, o4 = o3 + ldb, o5 = o4 + ldb, o6 = o5 + ldb, o7 = o6 + ldb;
                for (int j = 0; j < wv; j += 8)
                {
                    Vector256<float> v = Vector256.Load(yc + j);
                    v = Vector256.FusedMultiplyAdd(x0, TB.Load256(b, o + j), v);
                    v = Vector256.FusedMultiplyAdd(x1, TB.Load256(b, o1 + j), v);
                    v = Vector256.FusedMultiplyAdd(x2, TB.Load256(b, o2 + j), v);
                    v = Vector256.FusedMultiplyAdd(x3, TB.Load256(b, o3 + j), v);
                    v = Vector256.FusedMultiplyAdd(x4, TB.Load256(b, o4 + j), v);
                    v = Vector256.FusedMultiplyAdd(x5, TB.Load256(b, o5 + j), v);
                    v = Vector256.FusedMultiplyAdd(x6, TB.Load256(b, o6 + j), v);
                    v = Vector256.FusedMultiplyAdd(x7, TB.Load256(b, o7 + j), v);
                    v.Store(yc + j);
                }
                for (int j = wv; j < w; j++)
                {
                    float v = yc[j];
                    for (int r = 0; r < 8; r++) v = MathF.FusedMultiplyAdd(x[p + r], TB.Read(b, o + r * ldb + j), v);
                    yc[j] = v;
                }
            }
            for (; p < rows; p++, o += ldb)
            {
                Vector256<float> x0 = Vector256.Create(x[p]);
                for (int j = 0; j < wv; j += 8)
                    Vector256.FusedMultiplyAdd(x0, TB.Load256(b, o + j), Vector256.Load(yc + j)).Store(yc + j);
                for (int j = wv; j < w; j++) yc[j] = MathF.FusedMultiplyAdd(x[p], TB.Read(b, o + j), yc[j]);
            }
        }
    }

    /// <summary>c = the partial rows summed in segment order.</summary>
    private static void SumPartials(float* partials, int segments, int n, float* c)
    {
        int nv = n / 8 * 8;
        for (int j = 0; j < nv; j += 8)
        {
            Vector256<float> v = Vector256.Load(partials + j);
            for (int s = 1; s < segments; s++) v += Vector256.Load(partials + (long)s * n + j);
            v.Store(c + j);
        }
        for (int j = nv; j < n; j++)
        {
            float v = partials[j];
            for (int s = 1; s < segments; s++) v += partials[(long)s * n + j];
            c[j] = v;
        }
    }
}
