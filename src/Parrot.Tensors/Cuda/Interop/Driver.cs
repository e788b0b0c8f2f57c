using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cuda.Interop;

/// <summary>
/// The CUDA driver API (libcuda), the subset the backend uses. Every function returns a CUresult; wrap each
/// call in <see cref="Check"/>, which throws a <see cref="CudaException"/> naming the call and the driver's
/// error name and string. Device pointers are <c>CUdeviceptr</c> (64-bit unsigned); handles are opaque pointers.
/// </summary>
internal static unsafe partial class Driver
{
    static Driver() => CudaLibrary.EnsureResolver();

    internal const int Success = 0;
    internal const int ErrorOutOfMemory = 2;
    internal const int ErrorNoDevice = 100;
    internal const int ErrorNotReady = 600;

    // CUdevice_attribute values used by the backend.
    internal const int AttrMaxThreadsPerBlock = 1;
    internal const int AttrMaxSharedMemoryPerBlock = 8;
    internal const int AttrMultiprocessorCount = 16;
    internal const int AttrL2CacheSize = 38;
    internal const int AttrComputeCapabilityMajor = 75;
    internal const int AttrComputeCapabilityMinor = 76;
    internal const int AttrMaxSharedMemoryPerBlockOptin = 97;

    internal const uint StreamNonBlocking = 1;
    internal const uint MemHostAllocPortable = 1;
    internal const int FuncAttrMaxDynamicSharedSizeBytes = 8;

    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuInit(uint flags);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuDriverGetVersion(out int version);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuDeviceGetCount(out int count);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuDeviceTotalMem_v2")] internal static partial int cuDeviceTotalMem(out nuint bytes, int device);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuDevicePrimaryCtxRetain(out nint context, int device);
    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] internal static partial int cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuCtxSetCurrent(nint context);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuCtxGetCurrent(out nint context);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuCtxSynchronize();
    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuMemGetInfo_v2")] internal static partial int cuMemGetInfo(out nuint free, out nuint total);

    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuStreamCreate(out nint stream, uint flags);
    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuStreamDestroy_v2")] internal static partial int cuStreamDestroy(nint stream);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuStreamSynchronize(nint stream);
    /// <summary>CUDA_SUCCESS when all work on the stream is done, <see cref="ErrorNotReady"/> while some is pending.</summary>
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuStreamQuery(nint stream);

    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuEventCreate(out nint evt, uint flags);
    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuEventDestroy_v2")] internal static partial int cuEventDestroy(nint evt);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuEventRecord(nint evt, nint stream);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuEventSynchronize(nint evt);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuEventElapsedTime(out float milliseconds, nint start, nint end);

    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuMemAlloc_v2")] internal static partial int cuMemAlloc(out ulong ptr, nuint bytes);
    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuMemFree_v2")] internal static partial int cuMemFree(ulong ptr);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuMemHostAlloc(out nint ptr, nuint bytes, uint flags);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuMemFreeHost(nint ptr);
    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuMemcpyHtoDAsync_v2")] internal static partial int cuMemcpyHtoDAsync(ulong dst, nint src, nuint bytes, nint stream);
    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuMemcpyDtoHAsync_v2")] internal static partial int cuMemcpyDtoHAsync(nint dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuMemcpyDtoDAsync_v2")] internal static partial int cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuMemsetD8Async(ulong dst, byte value, nuint count, nint stream);

    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuModuleLoadData(out nint module, byte* image);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuModuleUnload(nint module);
    [LibraryImport(CudaLibrary.Cuda, StringMarshalling = StringMarshalling.Utf8)] internal static partial int cuModuleGetFunction(out nint function, nint module, string name);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuFuncSetAttribute(nint function, int attribute, int value);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuOccupancyMaxActiveBlocksPerMultiprocessor(out int blocks, nint function, int blockSize, nuint dynamicSharedBytes);
    [LibraryImport(CudaLibrary.Cuda)]
    internal static partial int cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
                                               uint sharedBytes, nint stream, void** parameters, void** extra);

    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuGetErrorName(int result, out byte* name);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuGetErrorString(int result, out byte* text);

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="result"/> is CUDA_SUCCESS.</summary>
    internal static void Check(int result, string call)
    {
        if (result != Success) throw new CudaException($"{call} failed: {Describe(result)}", result);
    }

    /// <summary>"CUDA_ERROR_X (text)" for a CUresult.</summary>
    internal static string Describe(int result)
    {
        string? name = null, text = null;
        if (cuGetErrorName(result, out byte* n) == Success && n != null) name = Marshal.PtrToStringUTF8((nint)n);
        if (cuGetErrorString(result, out byte* t) == Success && t != null) text = Marshal.PtrToStringUTF8((nint)t);
        return $"{name ?? "CUresult " + result}{(text is null ? "" : $" ({text})")}";
    }
}
