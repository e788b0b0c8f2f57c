using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cuda.Interop;

/// <summary>
/// NCCL (libnccl 2): collectives between GPUs for data-parallel training (all-reduce of gradients,
/// broadcast of weights). Wrap each call in <see cref="Check"/>.
/// </summary>
internal static unsafe partial class Nccl
{
    static Nccl() => CudaLibrary.EnsureResolver();

    // ncclDataType_t.
    internal const int Uint8 = 1;
    internal const int Int32 = 2;
    internal const int Int64 = 4;
    internal const int Float16 = 6;
    internal const int Float32 = 7;
    internal const int Float64 = 8;
    internal const int BFloat16 = 9;

    // ncclRedOp_t.
    internal const int Sum = 0;
    internal const int Max = 2;
    internal const int Avg = 4;

    /// <summary>ncclUniqueId: 128 opaque bytes, passed by value.</summary>
    [InlineArray(128)]
    internal struct UniqueId { private byte _first; }

    [LibraryImport(CudaLibrary.Nccl)] internal static partial int ncclGetVersion(out int version);
    [LibraryImport(CudaLibrary.Nccl)] internal static partial int ncclGetUniqueId(out UniqueId id);
    [LibraryImport(CudaLibrary.Nccl)] internal static partial int ncclCommInitRank(out nint comm, int ranks, UniqueId id, int rank);
    [LibraryImport(CudaLibrary.Nccl)] internal static partial int ncclCommDestroy(nint comm);
    [LibraryImport(CudaLibrary.Nccl)] internal static partial int ncclGroupStart();
    [LibraryImport(CudaLibrary.Nccl)] internal static partial int ncclGroupEnd();
    [LibraryImport(CudaLibrary.Nccl)]
    internal static partial int ncclAllReduce(ulong send, ulong receive, nuint count, int dataType, int op, nint comm, nint stream);
    [LibraryImport(CudaLibrary.Nccl)]
    internal static partial int ncclBroadcast(ulong send, ulong receive, nuint count, int dataType, int root, nint comm, nint stream);
    [LibraryImport(CudaLibrary.Nccl)]
    internal static partial int ncclReduceScatter(ulong send, ulong receive, nuint receiveCount, int dataType, int op, nint comm, nint stream);
    [LibraryImport(CudaLibrary.Nccl)]
    internal static partial int ncclAllGather(ulong send, ulong receive, nuint sendCount, int dataType, nint comm, nint stream);
    [LibraryImport(CudaLibrary.Nccl)] internal static partial int ncclCommGetAsyncError(nint comm, out int asyncError);
    [LibraryImport(CudaLibrary.Nccl)] internal static partial int ncclCommAbort(nint comm);
    [LibraryImport(CudaLibrary.Nccl)] internal static partial byte* ncclGetErrorString(int result);

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="result"/> is ncclSuccess.</summary>
    internal static void Check(int result, string call)
    {
        if (result == 0) return;
        var s = ncclGetErrorString(result);
        throw new CudaException($"{call} failed: {(s == null ? $"ncclResult_t {result}" : Marshal.PtrToStringUTF8((nint)s))}", result);
    }
}
