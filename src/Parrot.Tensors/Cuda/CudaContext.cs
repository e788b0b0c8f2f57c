using System.Text;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// One GPU: its primary context, the stream all of the backend's work is queued on, and the device facts
/// kernels are sized by. Work is ordered on that single stream, so the host waits only where it reads a value.
/// </summary>
internal sealed unsafe class CudaContext
{
    [ThreadStatic] private static nint _currentOnThread;

    internal int Ordinal { get; }
    internal int Handle { get; }
    internal nint Context { get; }
    internal nint Stream { get; }
    internal string Name { get; }
    internal int Major { get; }
    internal int Minor { get; }
    internal int MultiprocessorCount { get; }
    internal long TotalMemory { get; }
    internal int DriverVersion { get; }

    /// <summary>
    /// Shared memory one block may use with the opt-in (CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, static
    /// plus dynamic): 227 KiB on sm_90, 163 KiB on sm_80, but 99 KiB on sm_86/sm_89/sm_120, where a kernel asking for
    /// more fails to launch (cuFuncSetAttribute refuses the size) instead of falling back.
    /// </summary>
    internal int MaxSharedPerBlockOptin { get; }

    /// <summary>Per-operation device and host times while a profile runs (see <see cref="CudaBackend.StartProfile"/>).</summary>
    internal CudaProfiler Profiler { get; }

    private CudaContext(int ordinal, int handle, nint context, nint stream, string name, int major, int minor, int sms, long total, int driver, int sharedOptin)
    {
        (Ordinal, Handle, Context, Stream, Name, Major, Minor, MultiprocessorCount, TotalMemory, DriverVersion) =
            (ordinal, handle, context, stream, name, major, minor, sms, total, driver);
        MaxSharedPerBlockOptin = sharedOptin;
        Profiler = new CudaProfiler(this);
    }

    /// <summary>
    /// The number of GPUs the driver sees (after cuInit; no context is created). Throws
    /// <see cref="CudaUnavailableException"/> when the driver library is missing or initialisation fails.
    /// </summary>
    internal static int DeviceCount()
    {
        if (!CudaLibrary.TryLoad(CudaLibrary.Cuda, out _, out string why))
            throw new CudaUnavailableException($"the NVIDIA driver library is not installed: {why}");
        int rc = Driver.cuInit(0);
        if (rc != Driver.Success) throw new CudaUnavailableException($"cuInit failed: {Driver.Describe(rc)}");
        rc = Driver.cuDeviceGetCount(out int count);
        if (rc != Driver.Success) throw new CudaUnavailableException($"cuDeviceGetCount failed: {Driver.Describe(rc)}");
        return count;
    }

    /// <summary>
    /// Opens device <paramref name="ordinal"/>. Throws <see cref="CudaUnavailableException"/> with the reason when
    /// the driver library is missing, initialisation fails or there is no such device.
    /// </summary>
    internal static CudaContext Open(int ordinal)
    {
        int count = DeviceCount();
        Driver.Check(Driver.cuDriverGetVersion(out int driver), "cuDriverGetVersion");
        if (count == 0) throw new CudaUnavailableException("the driver is installed but reports no GPU");
        if (ordinal < 0 || ordinal >= count) throw new CudaUnavailableException($"cuda:{ordinal} was asked for but this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})");
        Driver.Check(Driver.cuDeviceGet(out int dev, ordinal), "cuDeviceGet");
        byte* nameBuf = stackalloc byte[256];
        Driver.Check(Driver.cuDeviceGetName(nameBuf, 256, dev), "cuDeviceGetName");
        var name = Encoding.UTF8.GetString(new ReadOnlySpan<byte>(nameBuf, 256)).TrimEnd('\0');
        int Attr(int a) { Driver.Check(Driver.cuDeviceGetAttribute(out int v, a, dev), $"cuDeviceGetAttribute({a})"); return v; }
        int major = Attr(Driver.AttrComputeCapabilityMajor), minor = Attr(Driver.AttrComputeCapabilityMinor);
        int sms = Attr(Driver.AttrMultiprocessorCount), sharedOptin = Attr(Driver.AttrMaxSharedMemoryPerBlockOptin);
        Driver.Check(Driver.cuDeviceTotalMem(out nuint total, dev), "cuDeviceTotalMem");
        Driver.Check(Driver.cuDevicePrimaryCtxRetain(out nint ctx, dev), "cuDevicePrimaryCtxRetain");
        Driver.Check(Driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
        _currentOnThread = ctx;
        Driver.Check(Driver.cuStreamCreate(out nint stream, Driver.StreamNonBlocking), "cuStreamCreate");
        return new CudaContext(ordinal, dev, ctx, stream, name, major, minor, sms, (long)total, driver, sharedOptin);
    }

    /// <summary>Makes this context current on the calling thread (a no-op when it already is).</summary>
    internal void MakeCurrent()
    {
        if (_currentOnThread == Context) return;
        Driver.Check(Driver.cuCtxSetCurrent(Context), "cuCtxSetCurrent");
        _currentOnThread = Context;
    }

    /// <summary>Waits for all work queued on the stream; a kernel fault surfaces here as a <see cref="CudaException"/>.</summary>
    internal void Synchronize()
    {
        MakeCurrent();
        var mark = Profiler.BeginHost("host waits for the stream");
        Driver.Check(Driver.cuStreamSynchronize(Stream), "cuStreamSynchronize");
        Profiler.End(mark);
    }

    /// <summary>(free, total) device memory in bytes as the driver sees it.</summary>
    internal (long Free, long Total) MemoryInfo()
    {
        MakeCurrent();
        Driver.Check(Driver.cuMemGetInfo(out nuint free, out nuint total), "cuMemGetInfo");
        return ((long)free, (long)total);
    }

    /// <summary>"NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB, driver 13.0)".</summary>
    public override string ToString() =>
        $"{Name} (sm_{Major}{Minor}, {MultiprocessorCount} SMs, {CudaOutOfMemoryException.Bytes(TotalMemory)}, driver {DriverVersion / 1000}.{DriverVersion % 1000 / 10})";
}
