using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cuda.Interop;

/// <summary>
/// cuDNN (libcudnn 9 or 8): the handle, version and the backend (graph) API through which its fused
/// scaled-dot-product attention is built. Wrap each call in <see cref="Check"/>.
/// </summary>
internal static unsafe partial class Cudnn
{
    static Cudnn() => CudaLibrary.EnsureResolver();

    [LibraryImport(CudaLibrary.Cudnn)] internal static partial nuint cudnnGetVersion();
    [LibraryImport(CudaLibrary.Cudnn)] internal static partial int cudnnCreate(out nint handle);
    [LibraryImport(CudaLibrary.Cudnn)] internal static partial int cudnnDestroy(nint handle);
    [LibraryImport(CudaLibrary.Cudnn)] internal static partial int cudnnSetStream(nint handle, nint stream);
    [LibraryImport(CudaLibrary.Cudnn)] internal static partial byte* cudnnGetErrorString(int status);
    [LibraryImport(CudaLibrary.Cudnn)] internal static partial int cudnnBackendCreateDescriptor(int descriptorType, out nint descriptor);
    [LibraryImport(CudaLibrary.Cudnn)] internal static partial int cudnnBackendDestroyDescriptor(nint descriptor);
    [LibraryImport(CudaLibrary.Cudnn)] internal static partial int cudnnBackendFinalize(nint descriptor);
    [LibraryImport(CudaLibrary.Cudnn)]
    internal static partial int cudnnBackendSetAttribute(nint descriptor, int attributeName, int attributeType, long elementCount, void* elements);
    [LibraryImport(CudaLibrary.Cudnn)]
    internal static partial int cudnnBackendGetAttribute(nint descriptor, int attributeName, int attributeType, long requestedCount, out long elementCount, void* elements);
    [LibraryImport(CudaLibrary.Cudnn)] internal static partial int cudnnBackendExecute(nint handle, nint executionPlan, nint variantPack);
    [LibraryImport(CudaLibrary.Cudnn)] internal static partial void cudnnGetLastErrorString(byte* message, nuint maxSize);

    /// <summary>cuDNN's own account of the last failure on this thread (cuDNN 9; empty when it has none or on cuDNN 8).</summary>
    internal static string LastError()
    {
        try
        {
            byte* buf = stackalloc byte[1024];
            buf[0] = 0;
            cudnnGetLastErrorString(buf, 1024);
            return Marshal.PtrToStringUTF8((nint)buf) ?? "";
        }
        catch (EntryPointNotFoundException) { return ""; }
    }

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="status"/> is CUDNN_STATUS_SUCCESS.</summary>
    internal static void Check(int status, string call)
    {
        if (status == 0) return;
        var s = cudnnGetErrorString(status);
        var last = LastError();
        throw new CudaException($"{call} failed: {(s == null ? $"cudnnStatus_t {status}" : Marshal.PtrToStringUTF8((nint)s))} ({status})" +
                                (last.Length > 0 ? $"; {last}" : ""), status);
    }
}
