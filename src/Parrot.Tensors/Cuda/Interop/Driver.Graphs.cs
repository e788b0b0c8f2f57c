using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cuda.Interop;

/// <summary>
/// Stream capture and CUDA graphs (driver API, CUDA 11.4 and later): the work queued on a stream between
/// cuStreamBeginCapture and cuStreamEndCapture is recorded as a graph instead of run; an instantiated graph is then
/// launched with one call, however many kernels it holds.
/// </summary>
internal static unsafe partial class Driver
{
    // CUstreamCaptureMode: GLOBAL 0, THREAD_LOCAL 1, RELAXED 2. Thread-local: this thread may not make calls that are
    // unsafe during a capture (a synchronisation of the captured stream, a host copy), other threads are not stopped.
    internal const int StreamCaptureModeThreadLocal = 1;
    // Relaxed: the thread may make those calls; the allocator's cuMemAlloc during a capture runs in it (see CudaAllocator).
    internal const int StreamCaptureModeRelaxed = 2;

    // CUstreamCaptureStatus: NONE 0, ACTIVE 1, INVALIDATED 2.
    internal const int StreamCaptureStatusNone = 0;
    internal const int StreamCaptureStatusActive = 1;

    /// <summary>CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: an earlier call broke the capture.</summary>
    internal const int ErrorStreamCaptureInvalidated = 901;

    [LibraryImport(CudaLibrary.Cuda, EntryPoint = "cuStreamBeginCapture_v2")] internal static partial int cuStreamBeginCapture(nint stream, int mode);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuStreamEndCapture(nint stream, out nint graph);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuStreamIsCapturing(nint stream, out int status);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuThreadExchangeStreamCaptureMode(ref int mode);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuGraphInstantiateWithFlags(out nint graphExec, nint graph, ulong flags);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuGraphGetNodes(nint graph, nint* nodes, ref nuint count);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuGraphUpload(nint graphExec, nint stream);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuGraphLaunch(nint graphExec, nint stream);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuGraphExecDestroy(nint graphExec);
    [LibraryImport(CudaLibrary.Cuda)] internal static partial int cuGraphDestroy(nint graph);
}
