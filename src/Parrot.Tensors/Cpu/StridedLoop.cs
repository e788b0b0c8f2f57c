using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

/// <summary>A kernel applied to one stretch of a row: n elements starting at the given element offsets.</summary>
internal interface IRowKernel
{
    /// <summary>Processes n elements; offsets[k] is operand k's element offset, strides[k] its inner stride.</summary>
    void Row(ReadOnlySpan<long> offsets, ReadOnlySpan<long> strides, int n);
}

/// <summary>
/// Iterates operands that share a logical shape but have arbitrary strides. Adjacent dimensions that
/// are laid out compatibly in every operand are merged first, so a contiguous tensor becomes a single
/// long row and the kernel sees long stretches it can vectorise. The rows (cut into chunks of at most
/// <see cref="Chunk"/> elements) are shared out between the cores when the work is large enough.
/// </summary>
internal static class StridedLoop
{
    /// <summary>Longest stretch a kernel is handed; its scratch buffers are this long.</summary>
    public const int Chunk = 4096;

    /// <summary>Below this many elements the loop stays on the calling thread.</summary>
    public const long ParallelThreshold = 1 << 16;

    /// <summary>Runs <paramref name="kernel"/> over every element of <paramref name="shape"/>.</summary>
    /// <param name="shape">The common logical shape.</param>
    /// <param name="strides">Per operand, its strides (elements) for that shape.</param>
    /// <param name="offsets">Per operand, its start offset (elements).</param>
    /// <param name="kernel">The row kernel.</param>
    /// <param name="parallel">Whether several cores may be used.</param>
    public static void Run<TKernel>(ReadOnlySpan<int> shape, long[][] strides, long[] offsets, TKernel kernel, bool parallel = true)
        where TKernel : struct, IRowKernel
    {
        int ops = strides.Length;
        long total = 1;
        foreach (var d in shape) total *= d;
        if (total == 0) return;

        Coalesce(shape, strides, out int[] cshape, out long[][] cstrides);
        int rank = cshape.Length;
        int inner = cshape[rank - 1];
        long rows = total / inner;
        int chunksPerRow = (int)(((long)inner + Chunk - 1) / Chunk); // long: inner may be within a chunk of int.MaxValue
        long items = rows * chunksPerRow;

        int workers = parallel && total >= ParallelThreshold ? (int)Math.Min(CpuParallel.Workers, items) : 1;
        if (workers <= 1)
        {
            RunRange(kernel, cshape, cstrides, offsets, ops, inner, chunksPerRow, 0, items);
            return;
        }
        CpuParallel.For(workers, w =>
        {
            long start = items * w / workers, end = items * (w + 1) / workers;
            RunRange(kernel, cshape, cstrides, offsets, ops, inner, chunksPerRow, start, end);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RunRange<TKernel>(TKernel kernel, int[] shape, long[][] strides, long[] baseOffsets, int ops,
        int inner, int chunksPerRow, long start, long end) where TKernel : struct, IRowKernel
    {
        if (start >= end) return;
        int outerRank = shape.Length - 1;
        Span<int> index = stackalloc int[Math.Max(outerRank, 1)];
        Span<long> rowOff = stackalloc long[ops];
        Span<long> off = stackalloc long[ops];
        Span<long> innerStride = stackalloc long[ops];
        for (int k = 0; k < ops; k++) innerStride[k] = strides[k][outerRank];

        long row = start / chunksPerRow;
        int chunk = (int)(start % chunksPerRow);
        // Decompose the first row number into an index over the outer dimensions.
        long r = row;
        for (int d = outerRank - 1; d >= 0; d--) { index[d] = (int)(r % shape[d]); r /= shape[d]; }
        for (int k = 0; k < ops; k++)
        {
            long o = baseOffsets[k];
            for (int d = 0; d < outerRank; d++) o += index[d] * strides[k][d];
            rowOff[k] = o;
        }

        for (long item = start; item < end; item++)
        {
            int begin = chunk * Chunk;
            int n = Math.Min(Chunk, inner - begin);
            for (int k = 0; k < ops; k++) off[k] = rowOff[k] + begin * innerStride[k];
            kernel.Row(off, innerStride, n);

            if (++chunk == chunksPerRow)
            {
                chunk = 0;
                // Odometer step to the next row.
                for (int d = outerRank - 1; d >= 0; d--)
                {
                    if (++index[d] < shape[d])
                    {
                        for (int k = 0; k < ops; k++) rowOff[k] += strides[k][d];
                        break;
                    }
                    index[d] = 0;
                    for (int k = 0; k < ops; k++) rowOff[k] -= (long)(shape[d] - 1) * strides[k][d];
                }
            }
        }
    }

    /// <summary>Drops size-1 dimensions and merges neighbours that are contiguous with each other in every operand.</summary>
    public static void Coalesce(ReadOnlySpan<int> shape, long[][] strides, out int[] cshape, out long[][] cstrides)
    {
        int ops = strides.Length;
        var dims = new List<int>(shape.Length);
        for (int d = 0; d < shape.Length; d++) if (shape[d] != 1) dims.Add(d);
        if (dims.Count == 0)
        {
            cshape = [1];
            cstrides = new long[ops][];
            for (int k = 0; k < ops; k++) cstrides[k] = [0];
            return;
        }
        var outShape = new List<int> { shape[dims[0]] };
        var outStrides = new List<long>[ops];
        for (int k = 0; k < ops; k++) outStrides[k] = new List<long> { strides[k][dims[0]] };
        for (int i = 1; i < dims.Count; i++)
        {
            int d = dims[i];
            int last = outShape.Count - 1;
            bool merge = true;
            for (int k = 0; k < ops && merge; k++)
                merge = outStrides[k][last] == strides[k][d] * shape[d];
            // A merged dimension is an int like the others: past 2^31 - 1 elements the two stay apart (merging
            // [65537, 65536] wrapped to 65536 elements, and a kernel saw a sliver of a 4 GiB tensor).
            if ((long)outShape[^1] * shape[d] > int.MaxValue) merge = false;
            if (merge)
            {
                outShape[last] *= shape[d];
                for (int k = 0; k < ops; k++) outStrides[k][last] = strides[k][d];
            }
            else
            {
                outShape.Add(shape[d]);
                for (int k = 0; k < ops; k++) outStrides[k].Add(strides[k][d]);
            }
        }
        cshape = outShape.ToArray();
        cstrides = new long[ops][];
        for (int k = 0; k < ops; k++) cstrides[k] = outStrides[k].ToArray();
    }
}

/// <summary>Splits work between the cores. Every op uses this, so the thread count is set in one place.</summary>
public static class CpuParallel
{
    private static int _workers = Environment.ProcessorCount;

    /// <summary>Number of threads kernels use (default: the processor count).</summary>
    public static int Workers
    {
        get => _workers;
        set => _workers = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), "at least one worker");
    }

    /// <summary>Runs body(0..count-1) in parallel, the calling thread taking part.</summary>
    public static void For(int count, Action<int> body)
    {
        if (count <= 1) { if (count == 1) body(0); return; }
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = count }, body);
    }
}
