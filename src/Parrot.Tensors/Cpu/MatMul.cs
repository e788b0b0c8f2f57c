using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <summary>Below this many multiply-adds per matrix, a batch is spread over the threads one matrix each rather than each matrix over all threads.</summary>
    private const long BatchParallelMaxWork = 1L << 22;

    /// <inheritdoc/>
    public unsafe void MatMul(Tensor a, Tensor b, Tensor c)
    {
        CheckMatMulOperands(a, b, c);
        if (c.Count == 0) return;
        if (!c.IsContiguous) throw new ArgumentException($"MatMul: the output {c.ShapeString()} must be contiguous");
        if (c.DType.IsHalfStorage())
        {
            // Accumulate in float32 and round once.
            using var c32 = Tensor.Empty(c.Shape, DType.F32, Device);
            MatMul(a, b, c32);
            Copy(c32, c);
            return;
        }

        int rank = c.Rank;
        int m = c.Shape[rank - 2], n = c.Shape[rank - 1], k = a.Shape[rank - 1];
        int batchRank = rank - 2;
        long batch = 1;
        for (int d = 0; d < batchRank; d++) batch *= c.Shape[d];
        int workers = CpuParallel.Workers;

        var aStrides = a.Strides;
        var bStrides = b.Strides;
        long aRow = aStrides[rank - 2], aCol = aStrides[rank - 1];
        long bRow = bStrides[rank - 2], bCol = bStrides[rank - 1];
        nint aBase = a.Storage.Pointer, bBase = b.Storage.Pointer, cBase = c.DataPointer;
        int aSize = a.ElementSize, bSize = b.ElementSize, cSize = c.ElementSize;

        if (batch > 1 && batch * m <= int.MaxValue && TryFoldBatchIntoRows(a, b, c, out long foldedRowStride))
        {
            // One shared B (a linear layer over a batch of sequences): the batch is just more rows of A.
            Product(new MatrixView(a.DataPointer, a.DType, foldedRowStride, aCol),
                    new MatrixView(b.DataPointer, b.DType, bRow, bCol), cBase, (int)(batch * m), n, k, workers);
            return;
        }

        var batchShape = c.Shape[..batchRank].ToArray();
        var aBatch = aStrides[..batchRank].ToArray();
        var bBatch = bStrides[..batchRank].ToArray();
        long aOffset0 = a.Offset, bOffset0 = b.Offset;
        DType aType = a.DType, bType = b.DType;
        long matrixElems = (long)m * n;

        void RunRange(long first, long end, int threads)
        {
            for (long t = first; t < end; t++)
            {
                long rem = t, ao = aOffset0, bo = bOffset0;
                for (int d = batchRank - 1; d >= 0; d--)
                {
                    long idx = rem % batchShape[d];
                    rem /= batchShape[d];
                    ao += idx * aBatch[d];
                    bo += idx * bBatch[d];
                }
                Product(new MatrixView(aBase + (nint)(ao * aSize), aType, aRow, aCol),
                        new MatrixView(bBase + (nint)(bo * bSize), bType, bRow, bCol),
                        cBase + (nint)(t * matrixElems * cSize), m, n, k, threads);
            }
        }

        long work = (long)m * n * k;
        int parts = (int)Math.Min(workers, batch);
        if (parts > 1 && work < BatchParallelMaxWork)
            CpuParallel.For(parts, w => RunRange(batch * w / parts, batch * (w + 1) / parts, 1));
        else
            RunRange(0, batch, workers);

        void Product(MatrixView av, MatrixView bv, nint cp, int rows, int cols, int depth, int threads)
        {
            switch (c.DType)
            {
                case DType.F32: Sgemm.Multiply(av, bv, (float*)cp, cols, rows, cols, depth, threads); break;
                case DType.F64: SimpleGemm.Multiply(av, bv, (double*)cp, cols, rows, cols, depth, threads); break;
                case DType.I32: SimpleGemm.Multiply(av, bv, (int*)cp, cols, rows, cols, depth, threads); break;
                case DType.I64: SimpleGemm.Multiply(av, bv, (long*)cp, cols, rows, cols, depth, threads); break;
                default: throw new ArgumentException($"MatMul: no CPU kernel for output dtype {c.DType.Name()}");
            }
        }
    }

    /// <summary>Checks what the backend contract promises, so a bad call fails loudly instead of reading out of bounds.</summary>
    private static void CheckMatMulOperands(Tensor a, Tensor b, Tensor c)
    {
        a.EnsureAlive("MatMul");
        b.EnsureAlive("MatMul");
        c.EnsureAlive("MatMul");
        int rank = c.Rank;
        bool ok = rank >= 2 && a.Rank == rank && b.Rank == rank
            && a.Shape[rank - 2] == c.Shape[rank - 2] && b.Shape[rank - 1] == c.Shape[rank - 1]
            && a.Shape[rank - 1] == b.Shape[rank - 2];
        for (int d = 0; ok && d < rank - 2; d++) ok = a.Shape[d] == c.Shape[d] && b.Shape[d] == c.Shape[d];
        if (!ok)
            throw new ArgumentException($"MatMul: backend operands must be a [..., M, K], b [..., K, N], c [..., M, N] with equal batch dims; got {a.ShapeString()}, {b.ShapeString()}, {c.ShapeString()}");
        bool floats = a.DType is DType.F32 or DType.BF16 or DType.F16 && b.DType is DType.F32 or DType.BF16 or DType.F16
            && c.DType is DType.F32 or DType.BF16 or DType.F16;
        bool same = a.DType == b.DType && b.DType == c.DType && c.DType is DType.F64 or DType.I32 or DType.I64;
        if (!floats && !same)
            throw new ArgumentException($"MatMul: unsupported dtypes {a.DType.Name()} · {b.DType.Name()} → {c.DType.Name()}");
    }

    /// <summary>
    /// True when b is the same matrix for every batch entry and a's batch and row dimensions step through memory
    /// as one dimension: then the batched product is a single product with batch·M rows.
    /// </summary>
    private static bool TryFoldBatchIntoRows(Tensor a, Tensor b, Tensor c, out long rowStride)
    {
        rowStride = 0;
        int rank = c.Rank;
        for (int d = 0; d < rank - 2; d++)
            if (b.Shape[d] != 1 && b.Strides[d] != 0) return false;
        var shape = c.Shape[..(rank - 1)];
        StridedLoop.Coalesce(shape, [a.Strides[..(rank - 1)].ToArray()], out var cshape, out var cstrides);
        if (cshape.Length != 1) return false;
        rowStride = cstrides[0][0];
        return true;
    }
}
