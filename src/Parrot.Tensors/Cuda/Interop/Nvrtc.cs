using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cuda.Interop;

/// <summary>
/// NVRTC, CUDA's run-time compiler (libnvrtc): CUDA C++ source to PTX or CUBIN. Wrap each call in
/// <see cref="Check"/>; a failed compilation is reported with the program's log by the caller.
/// </summary>
internal static unsafe partial class Nvrtc
{
    static Nvrtc() => CudaLibrary.EnsureResolver();

    internal const int Success = 0;
    internal const int ErrorCompilation = 6;

    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcGetNumSupportedArchs(out int count);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcGetSupportedArchs(int* archs);
    [LibraryImport(CudaLibrary.Nvrtc)]
    internal static partial int nvrtcCreateProgram(out nint program, byte* source, byte* name, int headerCount, byte** headers, byte** includeNames);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcDestroyProgram(ref nint program);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcCompileProgram(nint program, int optionCount, byte** options);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcGetPTXSize(nint program, out nuint size);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcGetPTX(nint program, byte* ptx);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcGetCUBINSize(nint program, out nuint size);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcGetCUBIN(nint program, byte* cubin);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcGetProgramLogSize(nint program, out nuint size);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial int nvrtcGetProgramLog(nint program, byte* log);
    [LibraryImport(CudaLibrary.Nvrtc)] internal static partial byte* nvrtcGetErrorString(int result);

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="result"/> is NVRTC_SUCCESS.</summary>
    internal static void Check(int result, string call)
    {
        if (result != Success) throw new CudaException($"{call} failed: {Describe(result)}", result);
    }

    internal static string Describe(int result)
    {
        var s = nvrtcGetErrorString(result);
        return s == null ? $"nvrtcResult {result}" : Marshal.PtrToStringUTF8((nint)s) ?? $"nvrtcResult {result}";
    }
}
