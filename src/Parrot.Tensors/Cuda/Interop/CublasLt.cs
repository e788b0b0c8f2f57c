using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cuda.Interop;

/// <summary>
/// cuBLASLt (libcublasLt): matrix products with descriptors, heuristics and fused epilogues (bias, GELU).
/// Status codes are cuBLAS's (<see cref="Cublas.StatusName"/>); wrap each call in <see cref="Check"/>.
/// </summary>
internal static unsafe partial class CublasLt
{
    static CublasLt() => CudaLibrary.EnsureResolver();

    // cublasLtMatmulDescAttributes_t.
    internal const int DescTransA = 3;
    internal const int DescTransB = 4;
    internal const int DescEpilogue = 7;
    internal const int DescBiasPointer = 8;
    internal const int DescBiasBatchStride = 10;
    internal const int DescBiasDataType = 26;

    // cublasLtMatrixLayoutAttribute_t.
    internal const int LayoutOrder = 1;
    internal const int LayoutBatchCount = 5;
    internal const int LayoutStridedBatchOffset = 6;

    // cublasLtMatmulPreferenceAttributes_t.
    internal const int PrefMaxWorkspaceBytes = 1;

    // cublasLtEpilogue_t.
    internal const uint EpilogueDefault = 1;
    internal const uint EpilogueBias = 4;
    internal const uint EpilogueGelu = 32;
    internal const uint EpilogueGeluBias = 36;

    /// <summary>cublasLtMatmulHeuristicResult_t: the algorithm (8 × uint64), its workspace size, state, waves, reserved.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct HeuristicResult
    {
        internal fixed ulong Algo[8];
        internal nuint WorkspaceSize;
        internal int State;
        internal float WavesCount;
        internal fixed int Reserved[4];
    }

    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtCreate(out nint handle);
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtDestroy(nint handle);
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial nuint cublasLtGetVersion();
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtMatmulDescCreate(out nint desc, int computeType, int scaleType);
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtMatmulDescDestroy(nint desc);
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtMatmulDescSetAttribute(nint desc, int attribute, void* buffer, nuint size);
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtMatrixLayoutCreate(out nint layout, int type, ulong rows, ulong cols, long ld);
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtMatrixLayoutDestroy(nint layout);
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtMatrixLayoutSetAttribute(nint layout, int attribute, void* buffer, nuint size);
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtMatmulPreferenceCreate(out nint preference);
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtMatmulPreferenceDestroy(nint preference);
    [LibraryImport(CudaLibrary.CublasLt)] internal static partial int cublasLtMatmulPreferenceSetAttribute(nint preference, int attribute, void* buffer, nuint size);
    [LibraryImport(CudaLibrary.CublasLt)]
    internal static partial int cublasLtMatmulAlgoGetHeuristic(nint handle, nint opDesc, nint aDesc, nint bDesc, nint cDesc, nint dDesc,
        nint preference, int requestedCount, HeuristicResult* results, out int returnedCount);
    [LibraryImport(CudaLibrary.CublasLt)]
    internal static partial int cublasLtMatmul(nint handle, nint opDesc, void* alpha, ulong a, nint aDesc, ulong b, nint bDesc,
        void* beta, ulong c, nint cDesc, ulong d, nint dDesc, ulong* algo, ulong workspace, nuint workspaceBytes, nint stream);

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="status"/> is CUBLAS_STATUS_SUCCESS.</summary>
    internal static void Check(int status, string call)
    {
        if (status != 0) throw new CudaException($"{call} failed: {Cublas.StatusName(status)}", status);
    }
}
