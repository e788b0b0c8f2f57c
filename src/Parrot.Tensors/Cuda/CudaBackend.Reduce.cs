namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <inheritdoc/>
    public void Reduce(ReduceOp op, Tensor x, int[] axes, Tensor y)
    {
        if (axes.Length == 0) { Copy(x, y); return; }
        var reduced = new HashSet<int>(axes);
        var keptShape = new List<int>(); var keptY = new List<long>(); var keptX = new List<long>();
        var innerShape = new List<int>(); var innerX = new List<long>();
        for (int d = 0; d < x.Rank; d++)
        {
            if (reduced.Contains(d)) { innerShape.Add(x.Shape[d]); innerX.Add(x.Strides[d]); }
            else { keptShape.Add(x.Shape[d]); keptY.Add(y.Strides[d]); keptX.Add(x.Strides[d]); }
        }
        long rows = 1, count = 1;
        foreach (var s in keptShape) rows *= s;
        foreach (var s in innerShape) count *= s;
        if (count == 0 && op is ReduceOp.Max or ReduceOp.Min)
            throw new ArgumentException($"Reduce: {op} over an empty set of elements (reduced axes [{string.Join(", ", axes)}] of {x.ShapeString()})");
        if (rows == 0) return;
        var outer = KernelLayout.Create("Reduce", keptShape.ToArray(), keptY.ToArray(), keptX.ToArray());
        var inner = KernelLayout.Create("Reduce", innerShape.ToArray(), innerX.ToArray());
        long chunks = ReduceChunks(rows, count);
        if (chunks > 1)
        {
            // Few outputs of very many elements (a whole tensor's sum): a block per output would run on one SM. One
            // launch: the last chunk of each output to finish combines the output (a ticket per output, left at zero).
            long len = (count + chunks - 1) / chunks;
            chunks = (count + len - 1) / len; // every chunk holds an element
            var tickets = ArgTickets();
            using var pd = Tensor.Empty([(int)(rows * chunks)], DType.F64, Device);
            using var pi = Tensor.Empty([(int)(rows * chunks)], DType.I64, Device);
            using var p = new KernelArgs().Add(outer).Add(inner).Add(count).Add((int)op).Add(len).Ptr(pd).Ptr(pi).Ptr(tickets)
                .Ptr(y).Add(Code(y.DType)).Ptr(x).Add(Code(x.DType));
            _kernels.Launch("reduce.cu", "reduce_split", (uint)chunks, 256, p, gridY: (uint)rows);
            return;
        }
        using var a = new KernelArgs().Add(outer).Add(rows).Add(inner).Add(count).Add((int)op).Ptr(y).Add(Code(y.DType)).Ptr(x).Add(Code(x.DType));
        if (UsesColumnReduce(rows, count))
            _kernels.Launch("reduce.cu", "reduce_columns", (uint)Math.Clamp((rows + 31) / 32, 1, 1 << 20), 256, a);
        else
            _kernels.Launch("reduce.cu", "reduce", CudaKernels.RowGrid(rows), 256, a);
    }

    /// <summary>
    /// How many chunks <see cref="Reduce"/> splits each output's elements into: 1 (a block per output) unless the outputs
    /// are at most <see cref="ReduceSplitRows"/> and have at least 65,536 elements each; then chunks of at least 32,768
    /// elements, at most 1024 blocks in all. From the shape alone, so a sum's bits do not depend on the GPU's SM count.
    /// </summary>
    internal static long ReduceChunks(long rows, long count)
    {
        if (rows > ReduceSplitRows || count < 65536) return 1;
        return Math.Clamp((count + 32767) / 32768, 1, 1024 / rows);
    }

    /// <summary>The most outputs <see cref="Reduce"/> splits (within <see cref="ArgTicketCount"/>: a ticket per output).</summary>
    internal const int ReduceSplitRows = 64;

    /// <summary>
    /// Whether <see cref="Reduce"/> gives each output a column of 8 threads (reduce_columns) rather than a block:
    /// for many outputs of few elements each (a sum over a leading axis, a broadcast's gradient), where a block per
    /// output would leave most of its 256 threads idle and read x uncoalesced.
    /// </summary>
    internal static bool UsesColumnReduce(long rows, long count) => rows >= 1024 && count <= 8 * 256 && count * 8 <= rows;

    /// <inheritdoc/>
    public void ArgReduce(ArgReduceOp op, Tensor x, int axis, Tensor y)
    {
        var (L, rows) = RowsLayout("ArgReduce", x, y, axis);
        if (rows == 0) return;
        long n = x.Shape[axis];
        int code = (int)op; // reduce.cu's A_MAX, A_MIN, A_MAX_NAN_LOWEST, A_MAX_NUMBER
        long chunks = ArgReduceChunks(rows, n, _context.MultiprocessorCount);
        if (chunks > 1)
        {
            // Few long rows (the argmax over a vocabulary in decode): one block per row would run on one SM. One launch:
            // the last chunk of each row to finish merges the row (a ticket per row, left at zero).
            var tickets = ArgTickets();
            using var pv = Tensor.Empty([(int)(rows * chunks)], DType.F64, Device);
            using var pi = Tensor.Empty([(int)(rows * chunks)], DType.I64, Device);
            long len = (n + chunks - 1) / chunks;
            using var p = new KernelArgs().Add(L).Add(n).Add(x.Strides[axis]).Add(code).Add(len).Ptr(pv).Ptr(pi).Ptr(tickets).Ptr(y).Ptr(x).Add(Code(x.DType));
            _kernels.Launch("reduce.cu", "arg_reduce_split", (uint)chunks, 256, p, gridY: (uint)rows);
            return;
        }
        using var a = new KernelArgs().Add(L).Add(rows).Add((long)x.Shape[axis]).Add(x.Strides[axis])
            .Add(code).Ptr(y).Ptr(x).Add(Code(x.DType));
        _kernels.Launch("reduce.cu", "arg_reduce", CudaKernels.RowGrid(rows), 256, a);
    }

    /// <summary>
    /// How many chunks <see cref="ArgReduce"/> splits each row into: 1 (a block per row) unless the rows are fewer than
    /// the SMs (and than the <see cref="ArgTicketCount"/> tickets) and long; then chunks of at least 4096 elements, about
    /// two blocks per SM in all.
    /// </summary>
    internal static long ArgReduceChunks(long rows, long n, int multiprocessors)
    {
        if (rows >= multiprocessors || n < 16384 || rows > ArgTicketCount) return 1;
        return Math.Max(1, Math.Min(n / 4096, 2L * multiprocessors / rows));
    }

    /// <summary>Tickets for a split (arg) reduction: one per row, and rows split only when fewer than the SMs (arg) or than <see cref="ReduceSplitRows"/>.</summary>
    internal const int ArgTicketCount = 1024;

    private Tensor? _argTickets;

    /// <summary>
    /// The split (arg) reductions' zeroed 32-bit tickets, one per row (<see cref="ArgTicketCount"/>). arg_reduce_split and reduce_split
    /// leave them zero, so they are made and zeroed once, eagerly: <see cref="Capture"/> calls this first (a buffer made
    /// inside a capture would have its zero fill recorded, not run); inside a capture without them it throws.
    /// </summary>
    internal Tensor ArgTickets()
    {
        if (_argTickets is not null) return _argTickets;
        if (_capturing) throw new InvalidOperationException("ArgReduce: its tickets were not made before the CUDA graph capture");
        var t = Tensor.Full([ArgTicketCount], 0, DType.I32, Device);
        TensorScope.Detach(t); // lives as long as the backend
        return _argTickets = t;
    }

    /// <summary>
    /// The layout of the rows of <paramref name="x"/> along <paramref name="axis"/> (every other dim), with
    /// operands (y, x); y has x's rank (size 1 or the same size on the axis).
    /// </summary>
    private static (KernelLayout Layout, long Rows) RowsLayout(string op, Tensor x, Tensor y, int axis)
    {
        var shape = new List<int>(); var ys = new List<long>(); var xs = new List<long>();
        long rows = 1;
        for (int d = 0; d < x.Rank; d++)
        {
            if (d == axis) continue;
            shape.Add(x.Shape[d]); ys.Add(y.Strides[d]); xs.Add(x.Strides[d]);
            rows *= x.Shape[d];
        }
        return (KernelLayout.Create(op, shape.ToArray(), ys.ToArray(), xs.ToArray()), rows);
    }
}
