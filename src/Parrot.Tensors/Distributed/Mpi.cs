using System.Runtime.InteropServices;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Distributed;

/// <summary>
/// Open MPI (libmpi.so.40, Debian's <c>libopenmpi-dev</c>) through P/Invoke: the subset the process groups use.
/// Open MPI's handles are pointers, and its predefined ones (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are the
/// addresses of exported globals (<c>ompi_mpi_comm_world</c>, <c>ompi_mpi_float</c>, <c>ompi_mpi_op_sum</c>),
/// resolved here with <see cref="NativeLibrary.GetExport"/>. Collectives are the non-blocking MPI_I* forms,
/// so a caller can poll with <see cref="MPI_Test"/> against a deadline instead of blocking forever on a dead peer.
/// </summary>
internal static unsafe partial class Mpi
{
    static Mpi() => CudaLibrary.EnsureResolver();

    internal const int Success = 0;
    internal const int ThreadSerialized = 2;
    /// <summary>MPI_IN_PLACE in Open MPI's mpi.h.</summary>
    internal static readonly nint InPlace = 1;

    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Initialized(out int flag);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Finalized(out int flag);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Init_thread(nint argc, nint argv, int required, out int provided);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Finalize();
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Abort(nint comm, int errorCode);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Comm_rank(nint comm, out int rank);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Comm_size(nint comm, out int size);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Get_library_version(byte* version, out int length);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Error_string(int code, byte* text, out int length);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Test(ref nint request, out int flag, nint status);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Iallreduce(nint send, nint receive, int count, nint type, nint op, nint comm, out nint request);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Ireduce_scatter_block(nint send, nint receive, int receiveCount, nint type, nint op, nint comm, out nint request);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Iallgather(nint send, int sendCount, nint sendType, nint receive, int receiveCount, nint receiveType, nint comm, out nint request);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Ibcast(nint buffer, int count, nint type, int root, nint comm, out nint request);
    [LibraryImport(CudaLibrary.Mpi)] internal static partial int MPI_Ibarrier(nint comm, out nint request);

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int SetEnv(string name, string value, int overwrite);

    /// <summary>The address of an exported predefined handle (e.g. <c>ompi_mpi_comm_world</c>).</summary>
    internal static nint Handle(string symbol)
    {
        if (!CudaLibrary.TryLoad(CudaLibrary.Mpi, out nint lib, out string why)) throw new DllNotFoundException($"libmpi: {why}");
        return NativeLibrary.TryGetExport(lib, symbol, out nint address) ? address
            : throw new EntryPointNotFoundException($"libmpi has no '{symbol}': Open MPI (libmpi.so.40) is required, found {CudaLibrary.LoadedFrom(CudaLibrary.Mpi)}");
    }

    /// <summary>Throws <see cref="DistributedException"/> naming <paramref name="call"/> unless <paramref name="result"/> is MPI_SUCCESS.</summary>
    internal static void Check(int result, string call)
    {
        if (result == Success) return;
        byte* text = stackalloc byte[512];
        string message = MPI_Error_string(result, text, out int length) == Success
            ? Marshal.PtrToStringUTF8((nint)text, Math.Clamp(length, 0, 511)) : $"error code {result}";
        throw new DistributedException($"{call} failed: {message}");
    }

    /// <summary>"Open MPI v4.1.4, ..." as the library reports it (first line).</summary>
    internal static string LibraryVersion()
    {
        byte* text = stackalloc byte[8192];
        Check(MPI_Get_library_version(text, out int length), "MPI_Get_library_version");
        var s = Marshal.PtrToStringUTF8((nint)text, Math.Clamp(length, 0, 8191));
        int nl = s.IndexOfAny(['\n', ',']);
        return (nl > 0 ? s[..nl] : s).Trim();
    }
}
