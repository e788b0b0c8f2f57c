using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cuda.Interop;

/// <summary>
/// cuLaunchKernelEx (driver API, CUDA 11.8 and later): a kernel launch with attributes. We use one attribute,
/// programmatic stream serialisation (Hopper and newer): the kernel may start before the previous kernel in the
/// stream has finished, and waits for it itself (native/prelude.cuh, pdl_wait). Captured into a CUDA graph the launch
/// becomes a programmatic edge (CUDA 12.3 and later drivers).
/// </summary>
internal static unsafe partial class Driver
{
    /// <summary>CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION (cuda.h, CUlaunchAttributeID).</summary>
    internal const int LaunchAttributeProgrammaticStreamSerialization = 6;

    /// <summary>
    /// CUlaunchAttribute: the id, padding to 8 bytes, then the 64-byte CUlaunchAttributeValue union (for our attribute
    /// its first int, programmaticStreamSerializationAllowed). 72 bytes.
    /// </summary>
    [StructLayout(LayoutKind.Explicit, Size = 72)]
    internal struct LaunchAttribute
    {
        [FieldOffset(0)] public int Id;
        [FieldOffset(8)] public int Value;
    }

    /// <summary>CUlaunchConfig: grid and block sizes, dynamic shared bytes, the stream, the attributes. 56 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct LaunchConfig
    {
        public uint GridX, GridY, GridZ, BlockX, BlockY, BlockZ, SharedBytes;
        public nint Stream;
        public LaunchAttribute* Attributes;
        public uint AttributeCount;
    }

    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuLaunchKernelEx(LaunchConfig* config, nint function, void** parameters, void** extra);
}
