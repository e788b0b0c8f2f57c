using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    private CublasLtGemm? _gemm;

    private CublasLtGemm Gemm => _gemm ??= new CublasLtGemm(_context, _allocator);

    /// <inheritdoc/>
    public void MatMul(Tensor a, Tensor b, Tensor c) => MatMulEpilogue(a, b, c, null, false);

    /// <summary>
    /// c = a·b (+ bias) (then GELU, tanh form) in one cuBLASLt call: the epilogue saves a pass over c. Products of
    /// at most 4 rows by a weight's transposed view run the matrix-vector kernel instead (<see cref="PlanGemv"/>,
    /// <see cref="GemvKernel"/>).
    /// <paramref name="bias"/> is [N], contiguous, of c's dtype. Shapes and dtypes as <see cref="IBackend.MatMul"/>.
    /// </summary>
    public void MatMulEpilogue(Tensor a, Tensor b, Tensor c, Tensor? bias, bool gelu)
    {
        int r = c.Rank;
        int M = c.Shape[r - 2], N = c.Shape[r - 1], K = a.Shape[r - 1];
        if (c.Count == 0) return;
        if (K == 0 && bias is null && !gelu) { Fill(c, 0); return; }
        if (!a.DType.IsFloat() || !b.DType.IsFloat())
        {
            if (bias is not null || gelu) throw new ArgumentException($"MatMul on CUDA: a bias or GELU epilogue takes float operands, not {a.DType.Name()}");
            MatMulInt(a, b, c);
            return;
        }
        if (a.DType != b.DType)
        {
            using var a32 = a.To(DType.F32);
            using var b32 = b.To(DType.F32);
            MatMulEpilogue(a32, b32, c, bias, gelu);
            return;
        }
        DType inT = a.DType;
        bool direct = inT == c.DType || (inT.IsHalfStorage() && c.DType == DType.F32);
        if (!direct)
        {
            using var tmp = Tensor.Empty(c.Shape, inT == DType.F64 ? DType.F64 : DType.F32, Device);
            using var bias32 = bias?.To(tmp.DType);
            MatMulEpilogue(a, b, tmp, bias32, gelu);
            Copy(tmp, c);
            return;
        }
        // Decode: a few rows times a weight's transposed view is bound by reading the weight; native/gemv.cu.
        if (GemvKernel && PlanGemv(a, b, c) is { } gemv)
        {
            LaunchGemv(gemv, a, b, c, bias, gelu);
            return;
        }
        var calls = PlanMatMul(a, b, c);
        if (calls is null)
        {
            using var ac = a.Contiguous();
            using var bc = b.Contiguous();
            MatMulEpilogue(ac, bc, c, bias, gelu);
            return;
        }
        int dt = LibType(inT), ot = LibType(c.DType);
        foreach (var g in calls)
            Gemm.Run(dt, ot, g.A, g.B, g.D, g.M, g.N, g.K, g.Ldd, g.StrideD, g.Batch, bias is null ? 0 : (ulong)bias.DataPointer, gelu);
    }

    /// <summary>One column-major cuBLAS product: D (M×N, leading dim Ldd) = op(A)·op(B) over Batch strided matrices.</summary>
    internal readonly record struct GemmCall(CublasLtGemm.Operand A, CublasLtGemm.Operand B, ulong D, long M, long N, long K, long Ldd, long StrideD, int Batch);

    /// <summary>
    /// The cuBLAS calls computing row-major c = a·b in place (cᵀ = bᵀ·aᵀ): one per combination of the batch dims
    /// that do not merge into a single strided batch. Null when a or b has strides cuBLAS cannot read (neither
    /// rows nor columns contiguous): the caller copies them first. Pure host logic, tested on the CPU.
    /// </summary>
    internal static unsafe List<GemmCall>? PlanMatMul(Tensor a, Tensor b, Tensor c)
    {
        int r = c.Rank;
        int M = c.Shape[r - 2], N = c.Shape[r - 1], K = a.Shape[r - 1];
        if (!TryOperand(b, out var bop) | !TryOperand(a, out var aop)) return null;
        // The batch dims of the three operands merged as far as they go; all but the last merged dim are looped.
        var L = KernelLayout.Create("MatMul", c.Shape[..(r - 2)], c.Strides[..(r - 2)].ToArray(), a.Strides[..(r - 2)].ToArray(), b.Strides[..(r - 2)].ToArray());
        int rank = (int)L.Rank;
        long inner = 1, outer = 1, sc = 0, sa = 0, sb = 0;
        if (rank > 0) { inner = L.Size[rank - 1]; sc = L.Stride[rank - 1]; sa = L.Stride[KernelLayout.MaxRank + rank - 1]; sb = L.Stride[2 * KernelLayout.MaxRank + rank - 1]; }
        for (int d = 0; d < rank - 1; d++) outer *= L.Size[d];
        long es = a.DType.SizeOf(), cs = c.DType.SizeOf();
        var calls = new List<GemmCall>();
        for (long o = 0; o < outer; o++)
        {
            long offC = 0, offA = 0, offB = 0, rest = o;
            for (int d = rank - 2; d >= 0; d--)
            {
                long i = rest % L.Size[d]; rest /= L.Size[d];
                offC += i * L.Stride[d]; offA += i * L.Stride[KernelLayout.MaxRank + d]; offB += i * L.Stride[2 * KernelLayout.MaxRank + d];
            }
            var bo = bop with { Ptr = bop.Ptr + (ulong)(offB * es), BatchStride = sb };
            var ao = aop with { Ptr = aop.Ptr + (ulong)(offA * es), BatchStride = sa };
            calls.Add(new GemmCall(bo, ao, (ulong)c.DataPointer + (ulong)(offC * cs), N, M, K, N, sc, checked((int)inner)));
        }
        return calls;
    }

    /// <summary>
    /// The column-major view cuBLAS needs of row-major matrix x [R, C] (its last two dims): x read in place as
    /// xᵀ (C×R, op N) when rows are contiguous, or as x (R×C, op T) when columns are; false for other strides.
    /// </summary>
    private static bool TryOperand(Tensor x, out CublasLtGemm.Operand op)
    {
        int r = x.Rank;
        long rows = x.Shape[r - 2], cols = x.Shape[r - 1], s0 = x.Strides[r - 2], s1 = x.Strides[r - 1];
        ulong p = (ulong)x.DataPointer;
        if (cols == 1 || s1 == 1)
        {
            long ld = rows == 1 ? cols : s0;
            if (ld >= cols) { op = new(p, Cublas.OpN, cols, rows, Math.Max(ld, 1), 0); return true; }
        }
        if (rows == 1 || s0 == 1)
        {
            long ld = cols == 1 ? rows : s1;
            if (ld >= rows) { op = new(p, Cublas.OpT, rows, cols, Math.Max(ld, 1), 0); return true; }
        }
        op = default;
        return false;
    }

    private static int LibType(DType t) => t switch
    {
        DType.F32 => Cublas.R32F,
        DType.F64 => Cublas.R64F,
        DType.BF16 => Cublas.R16BF,
        DType.F16 => Cublas.R16F,
        _ => throw new NotSupportedException($"MatMul on CUDA: dtype {t.Name()}"),
    };
}
