using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cpu;

/// <summary>
/// The rows of a row-wise op (softmax, norms, cross-entropy, top-k, arg-reductions): every index of the
/// outer dimensions, with each operand's element offset of that row's start. Unlike <see cref="StridedLoop"/>
/// it never cuts a row into chunks, because these kernels need a whole row at once.
/// </summary>
internal sealed class RowSet
{
    private readonly int[] _shape;
    private readonly long[][] _strides;
    private readonly long[] _base;

    /// <summary>Number of rows.</summary>
    public long Count { get; }

    /// <summary>Rows over <paramref name="outerShape"/>; operand k has outer strides <paramref name="outerStrides"/>[k] and start offset <paramref name="offsets"/>[k].</summary>
    public RowSet(ReadOnlySpan<int> outerShape, long[][] outerStrides, long[] offsets)
    {
        long n = 1;
        foreach (var d in outerShape) n *= d;
        Count = n;
        StridedLoop.Coalesce(outerShape, outerStrides, out _shape, out _strides);
        _base = offsets;
    }

    /// <summary>Rows along the last axis of tensors that share every dimension but the last.</summary>
    public static RowSet LastAxis(params Tensor[] operands)
    {
        var outer = operands[0].Shape[..^1];
        var strides = new long[operands.Length][];
        var offsets = new long[operands.Length];
        for (int k = 0; k < operands.Length; k++)
        {
            strides[k] = operands[k].Strides[..^1].ToArray();
            offsets[k] = operands[k].Offset;
        }
        return new RowSet(outer, strides, offsets);
    }

    /// <summary>Writes each operand's element offset of row <paramref name="row"/> into <paramref name="offsets"/>.</summary>
    public void Offsets(long row, Span<long> offsets)
    {
        for (int k = 0; k < _base.Length; k++) offsets[k] = _base[k];
        for (int d = _shape.Length - 1; d >= 0 && row > 0; d--)
        {
            long i = row % _shape[d];
            row /= _shape[d];
            for (int k = 0; k < _base.Length; k++) offsets[k] += i * _strides[k][d];
        }
    }

    /// <summary>
    /// Runs body(start, end) over contiguous ranges of <paramref name="rows"/> items, one range per core when
    /// the total work (<paramref name="rows"/> × <paramref name="workPerRow"/> elements) is worth it.
    /// </summary>
    public static void Parallel(long rows, long workPerRow, Action<long, long> body)
    {
        if (rows <= 0) return;
        long work = rows * Math.Max(workPerRow, 1);
        int workers = work >= StridedLoop.ParallelThreshold ? (int)Math.Min(CpuParallel.Workers, rows) : 1;
        if (workers <= 1) { body(0, rows); return; }
        CpuParallel.For(workers, w => body(rows * w / workers, rows * (w + 1) / workers));
    }
}

/// <summary>A 64-byte aligned native buffer for one worker's row scratch, freed deterministically.</summary>
internal sealed unsafe class NativeBuffer : IDisposable
{
    /// <summary>Start of the buffer.</summary>
    public nint Pointer { get; private set; }

    /// <summary>Allocates <paramref name="bytes"/> bytes (at least one).</summary>
    public NativeBuffer(long bytes) => Pointer = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);

    /// <summary>The buffer as a T*.</summary>
    public T* As<T>() where T : unmanaged => (T*)Pointer;

    /// <inheritdoc/>
    public void Dispose()
    {
        if (Pointer != 0) { NativeMemory.AlignedFree((void*)Pointer); Pointer = 0; }
    }
}
