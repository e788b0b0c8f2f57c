using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The CUDA integer product's launch (CudaBackend.PlanMatMulInt: the batch layout over c, a, b and the block count),
/// checked on the CPU: native/matmul_int.cu's indexing (block → batch entry, tile row, tile column; the layout's offsets;
/// the matrices' strides as the host passes them) run over the tensors' host memory with wrapping sums must give the CPU
/// backend's MatMul bit for bit, for broadcast, permuted and sliced operands. The kernel's own arithmetic and tiling are
/// checked by tools/cuda-emu/matmul_int_test.cpp.
/// </summary>
public class CudaMatMulIntPlanTests
{
    private const int Tile = CudaBackend.MatMulIntTile;

    private static unsafe void Check(Tensor a, Tensor b)
    {
        var shape = Tensor.BroadcastShapes(a.Shape[..^2], b.Shape[..^2], "test").Concat(new[] { a.Dim(-2), b.Dim(-1) }).ToArray();
        var batch = shape[..^2];
        using var ae = a.Expand([.. batch, a.Dim(-2), a.Dim(-1)]);
        using var be = b.Expand([.. batch, b.Dim(-2), b.Dim(-1)]);
        using var expected = Tensor.MatMul(a, b);
        using var c = Tensor.Full(shape, -7, a.DType);
        var (L, blocks) = CudaBackend.PlanMatMulInt(ae, be, c);
        int r = c.Rank, M = shape[r - 2], N = shape[r - 1], K = a.Dim(-1);
        long tiles = ((M + Tile - 1) / Tile) * (long)((N + Tile - 1) / Tile), batchCount = 1;
        foreach (var d in batch) batchCount *= d;
        Assert.That(blocks, Is.EqualTo(batchCount * tiles), "one block per batch entry and tile");
        bool i32 = a.DType == DType.I32;
        long Get(Tensor t, long off) => i32 ? ((int*)t.Storage.Pointer)[off] : ((long*)t.Storage.Pointer)[off];
        for (uint blk = 0; blk < blocks; blk++)
        {
            // matmul_int's block decode and offsets(L, z, 3, o).
            long rest = blk;
            int tn = (int)(rest % ((N + Tile - 1) / Tile)); rest /= (N + Tile - 1) / Tile;
            int tm = (int)(rest % ((M + Tile - 1) / Tile)); long z = rest / ((M + Tile - 1) / Tile);
            long oc = c.Offset, oa = ae.Offset, ob = be.Offset;
            for (int d = (int)L.Rank - 1; d >= 0; d--)
            {
                long i = z % L.Size[d]; z /= L.Size[d];
                oc += i * L.Stride[d]; oa += i * L.Stride[KernelLayout.MaxRank + d]; ob += i * L.Stride[2 * KernelLayout.MaxRank + d];
            }
            for (int row = tm * Tile; row < Math.Min(M, (tm + 1) * Tile); row++)
                for (int col = tn * Tile; col < Math.Min(N, (tn + 1) * Tile); col++)
                {
                    ulong s = 0;
                    for (int k = 0; k < K; k++)
                        s = unchecked(s + (ulong)Get(ae, oa + row * ae.Strides[r - 2] + k * ae.Strides[r - 1]) * (ulong)Get(be, ob + k * be.Strides[r - 2] + col * be.Strides[r - 1]));
                    long at = oc + row * c.Strides[r - 2] + col * c.Strides[r - 1];
                    if (i32) ((int*)c.Storage.Pointer)[at] = unchecked((int)s);
                    else ((long*)c.Storage.Pointer)[at] = unchecked((long)s);
                }
        }
        Assert.That(c.ToLongArray(), Is.EqualTo(expected.ToLongArray()), "the CPU's product, bit for bit");
    }

    /// <summary>Values over the dtype's whole range, so that nearly every sum wraps.</summary>
    private static Tensor R(DType dt, int seed, params int[] shape)
    {
        var rng = new Random(seed);
        long n = 1;
        foreach (var d in shape) n *= d;
        if (dt == DType.I32)
        {
            var v = new int[n];
            for (long i = 0; i < n; i++) v[i] = rng.Next(int.MinValue, int.MaxValue);
            return Tensor.FromArray(v, shape);
        }
        var w = new long[n];
        for (long i = 0; i < n; i++) w[i] = rng.NextInt64(long.MinValue, long.MaxValue);
        return Tensor.FromArray(w, shape);
    }

    [TestCase(DType.I32)]
    [TestCase(DType.I64)]
    public void PlainAndTransposedMatrices(DType dt)
    {
        Check(R(dt, 1, 37, 50), R(dt, 2, 50, 21));
        using var at = R(dt, 3, 50, 37);
        using var a = at.Transpose(0, 1);
        Check(a, R(dt, 4, 50, 21));
    }

    [TestCase(DType.I32)]
    [TestCase(DType.I64)]
    public void BatchesBroadcastAndPermuted(DType dt)
    {
        Check(R(dt, 5, 2, 3, 9, 17), R(dt, 6, 17, 18)); // b broadcast over both batch dims
        Check(R(dt, 7, 2, 1, 5, 20), R(dt, 8, 3, 20, 7)); // each operand broadcast along one dim
        using var a0 = R(dt, 9, 3, 2, 4, 5);
        using var a = a0.Permute(1, 0, 2, 3); // batch dims that do not merge
        Check(a, R(dt, 10, 2, 3, 5, 6));
    }

    [TestCase(DType.I32)]
    [TestCase(DType.I64)]
    public void SlicedRows(DType dt)
    {
        using var big = R(dt, 11, 19, 23);
        using var a = big.Narrow(1, 2, 6);   // [19, 6], row stride 23
        using var s = big.Slice(0, 0, 12, 2); // [6, 23], rows 2 apart
        Check(a, s);
    }
}
