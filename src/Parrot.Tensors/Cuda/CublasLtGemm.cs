using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// Row-major batched matrix products through cuBLASLt (column-major underneath: c = a·b is computed as
/// cᵀ = bᵀ·aᵀ, which reads the row-major buffers in place). bf16/f16/f32 inputs accumulate in float32 (true
/// fp32, no TF32), f64 in float64. Optional epilogues: bias added along N (bias [N]) and GELU (tanh form).
/// When cuBLASLt offers no algorithm, cuBLAS's cublasGemmStridedBatchedEx is used instead.
/// </summary>
internal sealed unsafe class CublasLtGemm
{
    private const long WorkspaceBytes = 32L << 20;
    private readonly CudaContext _context;
    private readonly CudaAllocator _allocator;
    private nint _lt, _legacy;
    private ulong _workspace;

    internal CublasLtGemm(CudaContext context, CudaAllocator allocator) => (_context, _allocator) = (context, allocator);

    /// <summary>One operand as cuBLAS sees it: pointer, transpose flag, column-major rows/cols, leading dim, batch stride.</summary>
    internal readonly record struct Operand(ulong Ptr, int Op, long Rows, long Cols, long Ld, long BatchStride);

    private void EnsureHandles()
    {
        if (_lt != 0) return;
        _context.MakeCurrent();
        try
        {
            CublasLt.Check(CublasLt.cublasLtCreate(out _lt), "cublasLtCreate");
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            throw new NotSupportedException($"MatMul on CUDA needs cuBLASLt: {CudaLibraryReason(CudaLibrary.CublasLt)}", e);
        }
        _workspace = _allocator.Allocate(WorkspaceBytes, out _);
    }

    private static string CudaLibraryReason(string lib) => CudaLibrary.TryLoad(lib, out _, out string why) ? "loaded but unusable" : why;

    /// <summary>
    /// D = A·B for <paramref name="batch"/> matrices, column-major: A is m×k after its op, B k×n, D m×n with
    /// leading dim <paramref name="ldd"/>. <paramref name="bias"/> (length m, D's dtype) and GELU are fused when given.
    /// </summary>
    internal void Run(int dataType, int outType, Operand a, Operand b, ulong d, long m, long n, long k, long ldd, long strideD, int batch,
                      ulong bias = 0, bool gelu = false)
    {
        EnsureHandles();
        _context.MakeCurrent();
        bool f64 = dataType == Cublas.R64F;
        int compute = f64 ? Cublas.Compute64F : Cublas.Compute32F, scaleType = f64 ? Cublas.R64F : Cublas.R32F;
        nint desc = 0, la = 0, lb = 0, ld = 0, pref = 0;
        try
        {
            CublasLt.Check(CublasLt.cublasLtMatmulDescCreate(out desc, compute, scaleType), "cublasLtMatmulDescCreate");
            int ta = a.Op, tb = b.Op;
            CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.DescTransA, &ta, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSA)");
            CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.DescTransB, &tb, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSB)");
            uint epilogue = bias != 0 ? (gelu ? CublasLt.EpilogueGeluBias : CublasLt.EpilogueBias) : (gelu ? CublasLt.EpilogueGelu : CublasLt.EpilogueDefault);
            if (epilogue != CublasLt.EpilogueDefault)
            {
                CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.DescEpilogue, &epilogue, sizeof(uint)), "cublasLtMatmulDescSetAttribute(EPILOGUE)");
                if (bias != 0)
                {
                    CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.DescBiasPointer, &bias, sizeof(ulong)), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
                    int bt = outType;
                    CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.DescBiasDataType, &bt, sizeof(int)), "cublasLtMatmulDescSetAttribute(BIAS_DATA_TYPE)");
                }
            }
            la = Layout(dataType, a, batch);
            lb = Layout(dataType, b, batch);
            ld = Layout(outType, new Operand(d, Cublas.OpN, m, n, ldd, strideD), batch);
            CublasLt.Check(CublasLt.cublasLtMatmulPreferenceCreate(out pref), "cublasLtMatmulPreferenceCreate");
            ulong ws = WorkspaceBytes;
            CublasLt.Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(pref, CublasLt.PrefMaxWorkspaceBytes, &ws, sizeof(ulong)), "cublasLtMatmulPreferenceSetAttribute");
            CublasLt.HeuristicResult heuristic;
            int rc = CublasLt.cublasLtMatmulAlgoGetHeuristic(_lt, desc, la, lb, ld, ld, pref, 1, &heuristic, out int found);
            if (rc != 0 || found == 0)
            {
                if (bias != 0 || gelu) throw new NotSupportedException($"MatMul on CUDA: cuBLASLt has no algorithm for this shape with a fused epilogue ({Cublas.StatusName(rc)})");
                Legacy(dataType, outType, a, b, d, m, n, k, ldd, strideD, batch);
                return;
            }
            double one = 1, zero = 0;
            float onef = 1, zerof = 0;
            void* alpha = f64 ? &one : &onef, beta = f64 ? &zero : &zerof;
            CublasLt.Check(CublasLt.cublasLtMatmul(_lt, desc, alpha, a.Ptr, la, b.Ptr, lb, beta, d, ld, d, ld, heuristic.Algo,
                _workspace, (nuint)WorkspaceBytes, _context.Stream), "cublasLtMatmul");
        }
        finally
        {
            if (pref != 0) CublasLt.cublasLtMatmulPreferenceDestroy(pref);
            if (ld != 0) CublasLt.cublasLtMatrixLayoutDestroy(ld);
            if (lb != 0) CublasLt.cublasLtMatrixLayoutDestroy(lb);
            if (la != 0) CublasLt.cublasLtMatrixLayoutDestroy(la);
            if (desc != 0) CublasLt.cublasLtMatmulDescDestroy(desc);
        }
    }

    private static nint Layout(int type, Operand o, int batch)
    {
        CublasLt.Check(CublasLt.cublasLtMatrixLayoutCreate(out nint l, type, (ulong)o.Rows, (ulong)o.Cols, o.Ld), "cublasLtMatrixLayoutCreate");
        if (batch > 1)
        {
            int count = batch;
            long stride = o.BatchStride;
            CublasLt.Check(CublasLt.cublasLtMatrixLayoutSetAttribute(l, CublasLt.LayoutBatchCount, &count, sizeof(int)), "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
            CublasLt.Check(CublasLt.cublasLtMatrixLayoutSetAttribute(l, CublasLt.LayoutStridedBatchOffset, &stride, sizeof(long)), "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
        }
        return l;
    }

    private void Legacy(int dataType, int outType, Operand a, Operand b, ulong d, long m, long n, long k, long ldd, long strideD, int batch)
    {
        if (_legacy == 0)
        {
            Cublas.Check(Cublas.cublasCreate(out _legacy), "cublasCreate");
            Cublas.Check(Cublas.cublasSetStream(_legacy, _context.Stream), "cublasSetStream");
        }
        bool f64 = dataType == Cublas.R64F;
        double one = 1, zero = 0;
        float onef = 1, zerof = 0;
        Cublas.Check(Cublas.cublasGemmStridedBatchedEx(_legacy, a.Op, b.Op, (int)m, (int)n, (int)k, f64 ? &one : &onef,
            a.Ptr, dataType, (int)a.Ld, a.BatchStride, b.Ptr, dataType, (int)b.Ld, b.BatchStride, f64 ? &zero : &zerof,
            d, outType, (int)ldd, strideD, batch, f64 ? Cublas.Compute64F : Cublas.Compute32F, Cublas.GemmDefault), "cublasGemmStridedBatchedEx");
    }
}
