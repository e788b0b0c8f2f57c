using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The CUDA backend's mapping of row-major, strided, batched matrix products onto column-major cuBLAS calls,
/// checked on the CPU: the planned calls are executed by a naive column-major GEMM that follows cuBLAS's
/// documented semantics (op, leading dims, strided batches) on the tensors' host memory, and the result is
/// compared with the CPU backend's MatMul.
/// </summary>
public class CudaMatMulPlanTests
{
    private static unsafe void Emulate(CudaBackend.GemmCall g)
    {
        // The layouts handed to cuBLASLt describe the stored matrices: rows × cols with ld ≥ rows.
        Assert.That((g.A.Rows, g.A.Cols), Is.EqualTo(g.A.Op == 0 ? (g.M, g.K) : (g.K, g.M)), "A's stored shape");
        Assert.That((g.B.Rows, g.B.Cols), Is.EqualTo(g.B.Op == 0 ? (g.K, g.N) : (g.N, g.K)), "B's stored shape");
        Assert.That(g.A.Ld, Is.GreaterThanOrEqualTo(g.A.Rows));
        Assert.That(g.B.Ld, Is.GreaterThanOrEqualTo(g.B.Rows));
        Assert.That(g.Ldd, Is.GreaterThanOrEqualTo(g.M));
        double* A = (double*)g.A.Ptr, B = (double*)g.B.Ptr, D = (double*)g.D;
        for (int i = 0; i < g.Batch; i++)
            for (long col = 0; col < g.N; col++)
                for (long row = 0; row < g.M; row++)
                {
                    double s = 0;
                    for (long p = 0; p < g.K; p++)
                    {
                        // op(A) is M×K, op(B) is K×N; a stored matrix X with op T is read transposed.
                        double x = g.A.Op == 0 ? A[i * g.A.BatchStride + row + p * g.A.Ld] : A[i * g.A.BatchStride + p + row * g.A.Ld];
                        double y = g.B.Op == 0 ? B[i * g.B.BatchStride + p + col * g.B.Ld] : B[i * g.B.BatchStride + col + p * g.B.Ld];
                        s += x * y;
                    }
                    D[i * g.StrideD + row + col * g.Ldd] = s;
                }
    }

    private static void Check(Tensor a, Tensor b, int expectedCalls)
    {
        var shape = Tensor.BroadcastShapes(a.Shape[..^2], b.Shape[..^2], "test").Concat(new[] { a.Dim(-2), b.Dim(-1) }).ToArray();
        var batch = shape[..^2];
        using var ae = a.Expand([.. batch, a.Dim(-2), a.Dim(-1)]);
        using var be = b.Expand([.. batch, b.Dim(-2), b.Dim(-1)]);
        using var expected = Tensor.MatMul(a, b);
        using var c = Tensor.Full(shape, double.NaN, DType.F64);
        var calls = CudaBackend.PlanMatMul(ae, be, c);
        Assert.That(calls, Is.Not.Null);
        Assert.That(calls!, Has.Count.EqualTo(expectedCalls));
        foreach (var g in calls!) Emulate(g);
        var want = expected.ToDoubleArray();
        var got = c.ToDoubleArray();
        for (int i = 0; i < want.Length; i++) Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-12 * (1 + Math.Abs(want[i]))), $"element {i}");
    }

    private static Tensor R(ulong seed, params int[] shape) => Tensor.Normal(shape, seed, 0, 1, DType.F64);

    [Test]
    public void PlainMatrices() => Check(R(1, 5, 7), R(2, 7, 3), 1);

    [Test]
    public void TransposedViewsAreReadInPlace()
    {
        using var at = R(3, 7, 5);
        using var bt = R(4, 3, 7);
        using var a = at.Transpose(0, 1);
        using var b = bt.Transpose(0, 1);
        Check(a, b, 1);
        Check(a, R(5, 7, 3), 1);
    }

    [Test]
    public void BatchesBecomeOneStridedCallEvenWhenBroadcast()
    {
        Check(R(6, 2, 3, 4, 5), R(7, 2, 3, 5, 6), 1);
        Check(R(8, 2, 3, 4, 5), R(9, 5, 6), 1); // b broadcast: batch stride 0
    }

    [Test]
    public void BatchDimsThatDoNotMergeAreLooped()
    {
        using var a0 = R(10, 3, 2, 4, 5);
        using var a = a0.Permute(1, 0, 2, 3); // batch [2, 3] with strides that do not merge
        Check(a, R(11, 2, 3, 5, 6), 2);
    }

    [Test]
    public void RowSlicesKeepTheirLeadingDimension()
    {
        using var big = R(12, 9, 11);
        using var a = big.Narrow(1, 2, 6); // [9, 6] with row stride 11
        Check(a, R(13, 6, 4), 1);
    }

    [Test]
    public void StridesCublasCannotReadAskForACopy()
    {
        using var big = R(14, 8, 10);
        using var a = big.Slice(1, 0, 10, 2); // columns 2 apart, rows 10 apart: neither is contiguous
        using var b = R(15, 5, 3);
        using var c = Tensor.Empty([8, 3], DType.F64);
        Assert.That(CudaBackend.PlanMatMul(a, b, c), Is.Null);
    }
}
