using System.Globalization;
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
        var key = new PlanKey(dataType, outType, a with { Ptr = 0 }, b with { Ptr = 0 }, m, n, k, ldd, strideD, batch, bias != 0, gelu);
        if (!_plans.TryGetValue(key, out var plan))
        {
            plan = CreatePlan(key);
            if (_plans.Count >= 512) { foreach (var p in _plans.Values) p.Dispose(); _plans.Clear(); }
            _plans[key] = plan;
        }
        var mark = _context.Profiler.Begin(_context.Profiler.Active ? $"gemm {TypeName(dataType)}→{TypeName(outType)} {m}x{n}x{k}{(batch > 1 ? $" x{batch}" : "")}{(plan.Desc == 0 ? " (cuBLAS)" : "")}" : null);
        try
        {
            if (plan.Desc == 0) Legacy(dataType, outType, a, b, d, m, n, k, ldd, strideD, batch);
            else Lt(plan, f64, a, b, d, bias);
        }
        finally { _context.Profiler.End(mark); }
    }

    private static string TypeName(int type) => type switch { Cublas.R32F => "f32", Cublas.R64F => "f64", Cublas.R16BF => "bf16", _ => type.ToString(CultureInfo.InvariantCulture) };

    private void Lt(Plan plan, bool f64, Operand a, Operand b, ulong d, ulong bias)
    {
        if (bias != 0)
            CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc, CublasLt.DescBiasPointer, &bias, sizeof(ulong)), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
        double one = 1, zero = 0;
        float onef = 1, zerof = 0;
        void* alpha = f64 ? &one : &onef, beta = f64 ? &zero : &zerof;
        var algo = plan.Algo;
        CublasLt.Check(CublasLt.cublasLtMatmul(_lt, plan.Desc, alpha, a.Ptr, plan.A, b.Ptr, plan.B, beta, d, plan.D, d, plan.D, algo.Algo,
            _workspace, (nuint)WorkspaceBytes, _context.Stream), "cublasLtMatmul");
    }

    /// <summary>What decides a cuBLASLt plan: types, operand layouts (pointers zeroed), sizes, batch, epilogue.</summary>
    private readonly record struct PlanKey(int DataType, int OutType, Operand A, Operand B, long M, long N, long K, long Ldd, long StrideD, int Batch, bool Bias, bool Gelu);

    /// <summary>Descriptors and the chosen algorithm for one <see cref="PlanKey"/>; Desc = 0 means "use legacy cuBLAS".</summary>
    private sealed class Plan : IDisposable
    {
        internal nint Desc, A, B, D;
        internal CublasLt.HeuristicResult Algo;

        public void Dispose()
        {
            if (D != 0) CublasLt.cublasLtMatrixLayoutDestroy(D);
            if (B != 0) CublasLt.cublasLtMatrixLayoutDestroy(B);
            if (A != 0) CublasLt.cublasLtMatrixLayoutDestroy(A);
            if (Desc != 0) CublasLt.cublasLtMatmulDescDestroy(Desc);
            Desc = A = B = D = 0;
        }
    }

    private readonly Dictionary<PlanKey, Plan> _plans = new();

    private Plan CreatePlan(PlanKey key)
    {
        bool f64 = key.DataType == Cublas.R64F;
        int compute = f64 ? Cublas.Compute64F : Cublas.Compute32F, scaleType = f64 ? Cublas.R64F : Cublas.R32F;
        var plan = new Plan();
        nint pref = 0;
        try
        {
            CublasLt.Check(CublasLt.cublasLtMatmulDescCreate(out plan.Desc, compute, scaleType), "cublasLtMatmulDescCreate");
            int ta = key.A.Op, tb = key.B.Op;
            CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc, CublasLt.DescTransA, &ta, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSA)");
            CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc, CublasLt.DescTransB, &tb, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSB)");
            uint epilogue = key.Bias ? (key.Gelu ? CublasLt.EpilogueGeluBias : CublasLt.EpilogueBias) : (key.Gelu ? CublasLt.EpilogueGelu : CublasLt.EpilogueDefault);
            if (epilogue != CublasLt.EpilogueDefault)
            {
                CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc, CublasLt.DescEpilogue, &epilogue, sizeof(uint)), "cublasLtMatmulDescSetAttribute(EPILOGUE)");
                if (key.Bias)
                {
                    int bt = key.OutType;
                    CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc, CublasLt.DescBiasDataType, &bt, sizeof(int)), "cublasLtMatmulDescSetAttribute(BIAS_DATA_TYPE)");
                    // A placeholder pointer with the alignment real ones have, so the heuristic can choose.
                    ulong aligned = _workspace;
                    CublasLt.Check(CublasLt.cublasLtMatmulDescSetAttribute(plan.Desc, CublasLt.DescBiasPointer, &aligned, sizeof(ulong)), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
                }
            }
            plan.A = Layout(key.DataType, key.A, key.Batch);
            plan.B = Layout(key.DataType, key.B, key.Batch);
            plan.D = Layout(key.OutType, new Operand(0, Cublas.OpN, key.M, key.N, key.Ldd, key.StrideD), key.Batch);
            CublasLt.Check(CublasLt.cublasLtMatmulPreferenceCreate(out pref), "cublasLtMatmulPreferenceCreate");
            ulong ws = WorkspaceBytes;
            CublasLt.Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(pref, CublasLt.PrefMaxWorkspaceBytes, &ws, sizeof(ulong)), "cublasLtMatmulPreferenceSetAttribute");
            CublasLt.HeuristicResult h;
            int rc = CublasLt.cublasLtMatmulAlgoGetHeuristic(_lt, plan.Desc, plan.A, plan.B, plan.D, plan.D, pref, 1, &h, out int found);
            if (rc != 0 || found == 0)
            {
                if (key.Bias || key.Gelu) throw new NotSupportedException($"MatMul on CUDA: cuBLASLt has no algorithm for this shape with a fused epilogue ({Cublas.StatusName(rc)})");
                plan.Dispose(); // Desc = 0: legacy cuBLAS
                return plan;
            }
            plan.Algo = h;
            return plan;
        }
        catch
        {
            plan.Dispose();
            throw;
        }
        finally
        {
            if (pref != 0) CublasLt.cublasLtMatmulPreferenceDestroy(pref);
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
