using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// The float32-accumulating matrix product C = A · B for float32, bf16 and float16 operands (any strides)
/// into a float32 C with unit column stride. Chooses the path (skinny or packed, Vector512 or Vector256)
/// and splits C between threads by columns (or rows), each thread writing its own part of C with its own
/// pack buffers, so threads never wait on each other inside the loop nest. Every element of C is summed
/// over k in the same order whatever the thread count, so results do not depend on it.
/// </summary>
internal static unsafe class Sgemm
{
    /// <summary>Below this many multiply-adds (m·n·k) one thread does the whole product: handing work to another costs microseconds.</summary>
    private const long ParallelMinWork = 1L << 20;

    /// <summary>C[m × n] (row stride <paramref name="ldc"/>) = A[m × k] · B[k × n], on up to <paramref name="workers"/> threads.</summary>
    public static void Multiply(in MatrixView a, in MatrixView b, float* c, long ldc, int m, int n, int k, int workers)
    {
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            for (int i = 0; i < m; i++) NativeMemory.Clear(c + i * ldc, (nuint)n * sizeof(float));
            return;
        }
        // The skinny paths are bound by reading the large operand, not by arithmetic, and decide for themselves
        // (SkinnyColumns) when a second thread pays off.
        int packedWorkers = (long)m * n * k < ParallelMinWork ? 1 : workers;
        if (m == 1 && RowVectorProduct.Takes(b, n, k))
            RowVector(a, b, c, n, k, workers);
        else if (m <= SkinnyMaxRows(b) && SkinnySgemm.CanRead(b))
            Skinny(a, b, c, ldc, m, n, k, workers);
        else if (n <= SkinnySgemm.MaxRows && SkinnySgemm.CanRead(a.Transposed))
            SkinnyTransposed(a, b, c, ldc, m, n, k, workers);
        else if (GemmOptions.UseVector512)
            Packed<MicroKernel6x64>(a, b, c, ldc, m, n, k, packedWorkers);
        else
            Packed<MicroKernel6x16>(a, b, c, ldc, m, n, k, packedWorkers);
    }

    /// <summary>
    /// Most rows of A the skinny path takes for this B: <see cref="SkinnySgemm.MaxRows"/>, or with Vector256 kernels
    /// <see cref="SkinnySgemm256.MaxDotRows"/> for a column-major B (x · Wᵀ, every linear layer) and
    /// <see cref="SkinnySgemm256.MaxRowMajorRows"/> for a row-major one.
    /// </summary>
    private static int SkinnyMaxRows(in MatrixView b) =>
        GemmOptions.UseVector512 ? SkinnySgemm.MaxRows
        : b.ColStride != 1 ? SkinnySgemm256.MaxDotRows : SkinnySgemm256.MaxRowMajorRows;

    /// <summary>Columns [n0, n1) of a skinny product, with the kernels of the widest accelerated vectors.</summary>
    private static void RunSkinny(float* a, long lda, in MatrixView b, float* c, long ldc, int m, int k, int n0, int n1)
    {
        if (GemmOptions.UseVector512) SkinnySgemm.Run(a, lda, b, c, ldc, m, k, n0, n1);
        else SkinnySgemm256.Run(a, lda, b, c, ldc, m, k, n0, n1);
    }

    private static void Packed<TKernel>(MatrixView a, MatrixView b, float* c, long ldc, int m, int n, int k, int workers)
        where TKernel : struct, IMicroKernel
    {
        int nr = TKernel.NR, mr = PackedSgemm.MR;
        int columnTiles = (n + nr - 1) / nr;
        if (workers <= 1)
        {
            RunPacked<TKernel>(a, b, c, ldc, m, n, k);
        }
        else if (columnTiles >= workers)
        {
            // One block of columns per thread, each thread packing its own A and B: no shared buffers and no
            // waiting inside the loop nest. (A schedule that packed A once for all threads and handed out
            // narrower column ranges from a counter measured 3–7% slower here: each range re-streams the
            // shared A from L3, where a thread's own A block stays in L2 across all its columns.)
            int parts = workers;
            CpuParallel.For(parts, w =>
            {
                int j0 = (int)((long)columnTiles * w / parts) * nr, j1 = Math.Min(n, (int)((long)columnTiles * (w + 1) / parts) * nr);
                if (j1 > j0) RunPacked<TKernel>(a, b.From(0, j0), c + j0, ldc, m, j1 - j0, k);
            });
        }
        else
        {
            // Too few columns to share out: split the rows evenly, each thread packing its own blocks.
            int units = (m + mr - 1) / mr;
            int parts = Math.Min(workers, units);
            CpuParallel.For(parts, w =>
            {
                int i0 = (int)((long)units * w / parts) * mr, i1 = Math.Min(m, (int)((long)units * (w + 1) / parts) * mr);
                if (i1 > i0) RunPacked<TKernel>(a.From(i0, 0), b, c + i0 * ldc, ldc, i1 - i0, n, k);
            });
        }
    }

    private static void RunPacked<TKernel>(MatrixView a, MatrixView b, float* c, long ldc, int m, int n, int k)
        where TKernel : struct, IMicroKernel
    {
        var ws = GemmWorkspace.Rent();
        try { PackedSgemm.Run<TKernel>(a, b, c, ldc, m, n, k, ws); }
        finally { GemmWorkspace.Return(ws); }
    }

    private static void Skinny(MatrixView a, MatrixView b, float* c, long ldc, int m, int n, int k, int workers)
    {
        var ws = GemmWorkspace.Rent();
        try
        {
            float* af = ws.Scratch((long)m * k);
            ToContiguous(a, m, k, af);
            SkinnyColumns(af, k, b, c, ldc, m, n, k, workers);
        }
        finally { GemmWorkspace.Return(ws); }
    }

    /// <summary>One row times a B that <see cref="RowVectorProduct.Takes"/>.</summary>
    private static void RowVector(MatrixView a, MatrixView b, float* c, int n, int k, int workers)
    {
        var ws = GemmWorkspace.Rent();
        try
        {
            float* x = ws.Scratch(k + RowVectorProduct.ScratchFloats(k, n));
            ToContiguous(a, 1, k, x);
            RowVectorProduct.Run(x, b, c, n, k, x + k, workers);
        }
        finally { GemmWorkspace.Return(ws); }
    }

    /// <summary>
    /// Few columns, many rows (e.g. a matrix times a vector): computes Cᵀ = Bᵀ · Aᵀ with the skinny kernels
    /// into scratch, then transposes it into C.
    /// </summary>
    private static void SkinnyTransposed(MatrixView a, MatrixView b, float* c, long ldc, int m, int n, int k, int workers)
    {
        var ws = GemmWorkspace.Rent();
        try
        {
            float* bt = ws.Scratch((long)n * k + (long)n * m);
            float* ct = bt + (long)n * k;
            ToContiguous(b.Transposed, n, k, bt);
            SkinnyColumns(bt, k, a.Transposed, ct, m, n, m, k, workers);
            for (int i = 0; i < m; i++)
            {
                float* row = c + i * ldc;
                for (int j = 0; j < n; j++) row[j] = ct[(long)j * m + i];
            }
        }
        finally { GemmWorkspace.Return(ws); }
    }

    /// <summary>Below this many bytes of B a skinny product stays on one thread: ~20 µs of reading, about twice what starting a second thread costs.</summary>
    private const long SkinnyParallelMinBytes = 512 << 10;

    /// <summary>Bytes of B per grab from the shared column counter (~20 µs of reading on one core).</summary>
    private const long SkinnyGrabBytes = 512 << 10;

    /// <summary>
    /// Runs the skinny kernels over the columns of C. With several threads the columns go out in grabs from a
    /// shared counter, so a thread slowed by other work on the machine takes fewer grabs instead of holding
    /// everyone up. A grab is about <see cref="SkinnyGrabBytes"/> of B and at most 1/8 of a thread's share, so
    /// the threads finish within a few microseconds of each other (decoding makes ~150 such products per token,
    /// most of them 3–17 MB, where coarser grabs left one core idle at the end of each). Grabs are whole kernel
    /// tiles: 8 columns for a column-major B (dot products, x · Wᵀ), 128 for a row-major one.
    /// </summary>
    private static void SkinnyColumns(float* a, long lda, MatrixView b, float* c, long ldc, int m, int n, int k, int workers)
    {
        int unit = b.ColStride == 1 ? 2 * SkinnySgemm.ColumnUnit : 8;
        long columnBytes = (long)k * b.DType.SizeOf();
        if ((long)n * columnBytes < SkinnyParallelMinBytes) workers = 1;
        long grab = Math.Min(SkinnyGrabBytes / columnBytes, (long)n / (8 * Math.Max(workers, 1)));
        int grabColumns = (int)Math.Max(unit, grab / unit * unit);
        int grabs = (int)(((long)n + grabColumns - 1) / grabColumns);
        int parts = Math.Min(workers, grabs);
        if (parts <= 1)
        {
            RunSkinny(a, lda, b, c, ldc, m, k, 0, n);
            return;
        }
        int next = -1;
        CpuParallel.For(parts, _ =>
        {
            int g;
            while ((g = Interlocked.Increment(ref next)) < grabs)
            {
                int j0 = g * grabColumns, j1 = (int)Math.Min(n, (long)j0 + grabColumns);
                RunSkinny(a, lda, b, c, ldc, m, k, j0, j1);
            }
        });
    }

    /// <summary>Copies a rows × cols matrix of any float dtype and strides into contiguous float32.</summary>
    private static void ToContiguous(in MatrixView x, int rows, int cols, float* dst)
    {
        for (int i = 0; i < rows; i++) RowIO.Load(x.At(i, 0), x.DType, x.ColStride, cols, dst + (long)i * cols);
    }
}
