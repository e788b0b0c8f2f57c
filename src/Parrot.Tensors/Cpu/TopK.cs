using System.Numerics;
using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void TopK(Tensor x, int k, Tensor values, Tensor indices)
    {
        CheckTopK(x, k, values, indices);
        var rows = RowSet.LastAxis(x, values, indices);
        if (rows.Count == 0 || k == 0) return;
        switch (ComputeTypeOf(x.DType))
        {
            case ComputeType.Float: new TopKRows<float>(x, k, values, indices, rows).Run(); break;
            case ComputeType.Double: new TopKRows<double>(x, k, values, indices, rows).Run(); break;
            default: new TopKRows<long>(x, k, values, indices, rows).Run(); break;
        }
    }

    /// <summary>The operands <see cref="IBackend.TopK"/> takes (the CUDA backend checks the same).</summary>
    internal static void CheckTopK(Tensor x, int k, Tensor values, Tensor indices)
    {
        if (x.Rank == 0 || x.DType == DType.Bool)
            throw new ArgumentException($"TopK: input must have rank ≥ 1 and a numeric dtype, got {x.ShapeString()} {x.DType.Name()}");
        int n = x.Shape[^1];
        if (k < 0 || k > n) throw new ArgumentOutOfRangeException(nameof(k), $"TopK: k = {k} is out of range for the last axis of {x.ShapeString()}");
        var want = x.Shape.ToArray();
        want[^1] = k;
        if (!values.Shape.SequenceEqual(want) || !indices.Shape.SequenceEqual(want) || values.DType != x.DType || indices.DType != DType.I64)
            throw new ArgumentException($"TopK: outputs must be {Tensor.ShapeString(want)} {x.DType.Name()} and int64, got {values.ShapeString()} {values.DType.Name()} and {indices.ShapeString()} {indices.DType.Name()}");
    }

    /// <summary>
    /// Per row, a heap of the k best positions seen so far with the worst at its root: O(n log k), and
    /// most elements are rejected by one comparison with the root. The heap is then sorted best first.
    /// Order: larger value first, NaN above every number, equal values by lower index.
    /// </summary>
    private sealed unsafe class TopKRows<T>(Tensor x, int k, Tensor values, Tensor indices, RowSet rows)
        where T : unmanaged, INumber<T>
    {
        private readonly nint _x = x.Storage.Pointer, _v = values.Storage.Pointer, _i = indices.Storage.Pointer;
        private readonly DType _xt = x.DType, _vt = values.DType;
        private readonly long _xs = x.Strides[^1], _vs = values.Strides[^1], _is = indices.Strides[^1];
        private readonly int _n = x.Shape[^1];

        public void Run() => RowSet.Parallel(rows.Count, 2L * _n, (start, end) =>
        {
            using var rowBuffer = new NativeBuffer(_n * (long)sizeof(T));
            using var heapBuffer = new NativeBuffer(k * 4L);
            using var outValues = new NativeBuffer(k * (long)sizeof(T));
            using var outIndices = new NativeBuffer(k * 8L);
            T* row = rowBuffer.As<T>();
            int* heap = heapBuffer.As<int>();
            T* vals = outValues.As<T>();
            long* idx = outIndices.As<long>();
            Span<long> off = stackalloc long[3];
            for (long r = start; r < end; r++)
            {
                rows.Offsets(r, off);
                RowIO.Load(RowIO.Address(_x, _xt, off[0]), _xt, _xs, _n, row);
                Select(row, _n, heap, k);
                for (int j = 0; j < k; j++) { idx[j] = heap[j]; vals[j] = row[heap[j]]; }
                RowIO.Store(vals, RowIO.Address(_v, _vt, off[1]), _vt, _vs, k);
                RowIO.Store(idx, RowIO.Address(_i, DType.I64, off[2]), DType.I64, _is, k);
            }
        });

        /// <summary>Leaves the indices of the k best elements of row in heap[0..k), best first.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Select(T* row, int n, int* heap, int k)
        {
            for (int i = 0; i < k; i++)
            {
                heap[i] = i;
                SiftUp(row, heap, i);
            }
            for (int i = k; i < n; i++)
            {
                // Later indices lose ties, so only a strictly better element enters.
                if (Better(row, i, heap[0]))
                {
                    heap[0] = i;
                    SiftDown(row, heap, 0, k);
                }
            }
            // Heap sort: moving the worst to the end each time leaves the best at the front.
            for (int size = k - 1; size > 0; size--)
            {
                (heap[0], heap[size]) = (heap[size], heap[0]);
                SiftDown(row, heap, 0, size);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static bool Better(T* row, int i, int j)
        {
            T a = row[i], b = row[j];
            bool an = T.IsNaN(a), bn = T.IsNaN(b);
            if (an || bn) return an && bn ? i < j : an;
            return a != b ? a > b : i < j;
        }

        private static void SiftUp(T* row, int* heap, int i)
        {
            while (i > 0)
            {
                int parent = (i - 1) >> 1;
                if (!Better(row, heap[parent], heap[i])) break;
                (heap[parent], heap[i]) = (heap[i], heap[parent]);
                i = parent;
            }
        }

        private static void SiftDown(T* row, int* heap, int i, int size)
        {
            while (true)
            {
                int worst = i, l = 2 * i + 1, r = l + 1;
                if (l < size && Better(row, heap[worst], heap[l])) worst = l;
                if (r < size && Better(row, heap[worst], heap[r])) worst = r;
                if (worst == i) return;
                (heap[worst], heap[i]) = (heap[i], heap[worst]);
                i = worst;
            }
        }
    }
}
