using System.Numerics;
using System.Numerics.Tensors;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public unsafe void EmbeddingBackward(Tensor ids, Tensor dy, Tensor dweight)
    {
        if (ids.DType is not (DType.I64 or DType.I32))
            throw new ArgumentException($"EmbeddingBackward: ids must be int64 or int32, got {ids.DType.Name()} {ids.ShapeString()}");
        if (dweight.Rank != 2 || !dweight.DType.IsFloat() || !dweight.IsContiguous)
            throw new ArgumentException($"EmbeddingBackward: dweight must be a contiguous float matrix [V, D], got {dweight.ShapeString()} {dweight.DType.Name()}");
        int vocab = dweight.Shape[0], dim = dweight.Shape[1];
        long tokens = ids.Count;
        if (dy.Rank != 2 || dy.Shape[0] != tokens || dy.Shape[1] != dim || !dy.DType.IsFloat())
            throw new ArgumentException($"EmbeddingBackward: dy must be a float matrix [{tokens}, {dim}] for {tokens} ids and dweight {dweight.ShapeString()}, got {dy.ShapeString()} {dy.DType.Name()}");
        if (tokens == 0 || dim == 0) return;
        var plan = EmbeddingPlan.Sort(ids, vocab);
        if (dweight.DType == DType.F64) new EmbeddingRows<double>(plan, dy, dweight, DType.F64).Run();
        else new EmbeddingRows<float>(plan, dy, dweight, DType.F32).Run();
    }

    /// <summary>
    /// Tokens grouped by row (a counting sort, stable, so each group lists its tokens in ascending order) and
    /// the rows that occur: every output row is then owned by one worker, with no atomics and a fixed order.
    /// </summary>
    private sealed class EmbeddingPlan
    {
        public required int[] UsedRows { get; init; }
        public required long[] Start { get; init; }
        public required long[] Order { get; init; }

        public static unsafe EmbeddingPlan Sort(Tensor ids, int vocab)
        {
            long tokens = ids.Count;
            var flat = new long[tokens];
            fixed (long* f = flat)
            {
                using var view = ids.Reshape(-1);
                RowIO.Load(RowIO.Address(view.Storage.Pointer, view.DType, view.Offset), view.DType, view.Strides[0], checked((int)tokens), f);
            }
            var count = new long[vocab + 1];
            for (long t = 0; t < tokens; t++)
            {
                long v = flat[t];
                if ((ulong)v >= (ulong)vocab)
                    throw new ArgumentOutOfRangeException(nameof(ids), $"EmbeddingBackward: id {v} at position {t} is out of range for {vocab} rows");
                count[v + 1]++;
            }
            var used = new List<int>();
            for (int v = 0; v < vocab; v++)
            {
                if (count[v + 1] > 0) used.Add(v);
                count[v + 1] += count[v];
            }
            var start = (long[])count.Clone();
            var order = new long[tokens];
            for (long t = 0; t < tokens; t++) order[count[flat[t]]++] = t;
            return new EmbeddingPlan { UsedRows = used.ToArray(), Start = start, Order = order };
        }
    }

    /// <summary>Per used row: its tokens' gradients summed in ascending order in T, then added to the row once.</summary>
    private sealed unsafe class EmbeddingRows<T>(EmbeddingPlan plan, Tensor dy, Tensor dweight, DType natural)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private readonly nint _dy = dy.Storage.Pointer, _w = dweight.Storage.Pointer;
        private readonly DType _dyt = dy.DType, _wt = dweight.DType;
        private readonly long _dyRow = dy.Strides[0], _dyCol = dy.Strides[1], _dyOff = dy.Offset, _wOff = dweight.Offset;
        private readonly int _d = dweight.Shape[1];

        public void Run()
        {
            var used = plan.UsedRows;
            long perRow = plan.Order.Length / Math.Max(used.Length, 1) * (long)_d;
            RowSet.Parallel(used.Length, perRow, (start, end) =>
            {
                bool directDy = _dyt == natural && _dyCol == 1, directW = _wt == natural;
                using var buffer = new NativeBuffer(3L * _d * sizeof(T));
                T* acc = buffer.As<T>(), row = acc + _d, wb = row + _d;
                var accs = new Span<T>(acc, _d);
                for (long i = start; i < end; i++)
                {
                    int v = used[i];
                    accs.Clear();
                    for (long k = plan.Start[v]; k < plan.Start[v + 1]; k++)
                    {
                        nint ya = RowIO.Address(_dy, _dyt, _dyOff + plan.Order[k] * _dyRow);
                        T* yp = directDy ? (T*)ya : row;
                        if (!directDy) RowIO.Load(ya, _dyt, _dyCol, _d, yp);
                        TensorPrimitives.Add(accs, new ReadOnlySpan<T>(yp, _d), accs);
                    }
                    nint wa = RowIO.Address(_w, _wt, _wOff + (long)v * _d);
                    T* wp = directW ? (T*)wa : wb;
                    if (!directW) RowIO.Load(wa, _wt, 1, _d, wp);
                    TensorPrimitives.Add(new ReadOnlySpan<T>(wp, _d), accs, new Span<T>(wp, _d));
                    if (!directW) RowIO.Store(wp, wa, _wt, 1, _d);
                }
            });
        }
    }
}
