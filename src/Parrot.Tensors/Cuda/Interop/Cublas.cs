using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cuda.Interop;

/// <summary>
/// cuBLAS's legacy API (libcublas), the fallback for matrix products cuBLASLt declines. Column-major, as cuBLAS
/// always is. Wrap each call in <see cref="Check"/>.
/// </summary>
internal static unsafe partial class Cublas
{
    static Cublas() => CudaLibrary.EnsureResolver();

    internal const int OpN = 0;
    internal const int OpT = 1;
    internal const int GemmDefault = -1;
    internal const int DefaultMath = 0;

    // cudaDataType_t (library_types.h).
    internal const int R32F = 0;
    internal const int R64F = 1;
    internal const int R16F = 2;
    internal const int R16BF = 14;

    // cublasComputeType_t.
    internal const int Compute32F = 68;
    internal const int Compute64F = 70;

    [LibraryImport(CudaLibrary.Cublas, EntryPoint = "cublasCreate_v2")] internal static partial int cublasCreate(out nint handle);
    [LibraryImport(CudaLibrary.Cublas, EntryPoint = "cublasDestroy_v2")] internal static partial int cublasDestroy(nint handle);
    [LibraryImport(CudaLibrary.Cublas, EntryPoint = "cublasSetStream_v2")] internal static partial int cublasSetStream(nint handle, nint stream);
    [LibraryImport(CudaLibrary.Cublas, EntryPoint = "cublasGetVersion_v2")] internal static partial int cublasGetVersion(nint handle, out int version);
    [LibraryImport(CudaLibrary.Cublas)] internal static partial int cublasSetMathMode(nint handle, int mode);
    [LibraryImport(CudaLibrary.Cublas)]
    internal static partial int cublasGemmStridedBatchedEx(nint handle, int transa, int transb, int m, int n, int k,
        void* alpha, ulong a, int aType, int lda, long strideA, ulong b, int bType, int ldb, long strideB,
        void* beta, ulong c, int cType, int ldc, long strideC, int batchCount, int computeType, int algo);

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="status"/> is CUBLAS_STATUS_SUCCESS.</summary>
    internal static void Check(int status, string call)
    {
        if (status != 0) throw new CudaException($"{call} failed: {StatusName(status)}", status);
    }

    /// <summary>cublasStatus_t names (cublas_api.h); the same codes are used by cuBLASLt.</summary>
    internal static string StatusName(int status) => status switch
    {
        0 => "CUBLAS_STATUS_SUCCESS",
        1 => "CUBLAS_STATUS_NOT_INITIALIZED (the library could not be initialised)",
        3 => "CUBLAS_STATUS_ALLOC_FAILED (resource allocation failed)",
        7 => "CUBLAS_STATUS_INVALID_VALUE (an unsupported value or parameter was passed)",
        8 => "CUBLAS_STATUS_ARCH_MISMATCH (the device does not support the operation)",
        11 => "CUBLAS_STATUS_MAPPING_ERROR (access to GPU memory space failed)",
        13 => "CUBLAS_STATUS_EXECUTION_FAILED (the GPU program failed to execute)",
        14 => "CUBLAS_STATUS_INTERNAL_ERROR",
        15 => "CUBLAS_STATUS_NOT_SUPPORTED (the functionality is not supported)",
        16 => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => $"cublasStatus_t {status}",
    };
}
