using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// The CUDA backend: our kernels of native/*.cu (compiled by NVRTC at first use) and cuBLASLt for matrix
/// products, all queued on one stream per device. Ops not written yet throw <see cref="NotSupportedException"/>
/// naming the op. <see cref="Backends.For"/> creates it for <c>cuda</c> / <c>cuda:N</c> devices; on a machine
/// without a usable GPU that throws <see cref="CudaUnavailableException"/> ("no CUDA device: why").
/// </summary>
public sealed partial class CudaBackend : IBackend, IDeviceTransfer, IDeferredIndexChecks
{
    private readonly CudaContext _context;
    private readonly CudaAllocator _allocator;
    private readonly CudaKernels _kernels;
    private readonly PinnedBuffer _pinned;
    private readonly Lock _transferGate = new();

    private CudaBackend(CudaContext context)
    {
        _context = context;
        _allocator = new CudaAllocator(context);
        _kernels = new CudaKernels(context);
        _pinned = new PinnedBuffer(context);
        Device = new Device(DeviceKind.Cuda, context.Ordinal);
        _indexChecks = new DeferredIndexChecks(this, Device);
    }

    private readonly DeferredIndexChecks _indexChecks;

    DeferredIndexChecks IDeferredIndexChecks.IndexChecks => _indexChecks;

    /// <summary>Opens GPU <paramref name="ordinal"/>; throws <see cref="CudaUnavailableException"/> saying why when it cannot.</summary>
    public static CudaBackend Create(int ordinal)
    {
        try
        {
            return new CudaBackend(CudaContext.Open(ordinal));
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            throw new CudaUnavailableException($"the CUDA driver could not be used: {e.Message}");
        }
    }

    /// <summary>
    /// True when device <paramref name="ordinal"/> can be opened; otherwise <paramref name="reason"/> says why
    /// (no driver library, no GPU, initialisation error). Never throws.
    /// </summary>
    public static bool IsAvailable(out string reason, int ordinal = 0)
    {
        try
        {
            var b = Backends.For(new Device(DeviceKind.Cuda, ordinal));
            reason = b is CudaBackend c ? c.Description : "";
            return true;
        }
        catch (CudaUnavailableException e) { reason = e.Reason; return false; }
        catch (CudaException e) { reason = e.Message; return false; }
    }

    /// <inheritdoc/>
    public Device Device { get; }

    /// <summary>
    /// How many GPUs this machine's driver reports (no context is opened, so no GPU memory is taken); throws
    /// <see cref="CudaUnavailableException"/> saying why when there is no usable driver.
    /// </summary>
    public static int DeviceCount()
    {
        try { return CudaContext.DeviceCount(); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            throw new CudaUnavailableException($"the CUDA driver could not be used: {e.Message}");
        }
    }

    /// <summary>The GPU's context and stream (the NCCL process group queues its collectives on the same stream).</summary>
    internal CudaContext Context => _context;

    /// <summary>The GPU: name, architecture, memory, driver version, and where NVRTC and cuBLASLt were found.</summary>
    public string Description =>
        $"{_context}; nvrtc: {CudaLibrary.LoadedFrom(CudaLibrary.Nvrtc) ?? "not loaded yet"}; cublasLt: {CudaLibrary.LoadedFrom(CudaLibrary.CublasLt) ?? "not loaded yet"}";

    /// <summary>Device bytes held by live tensors (size-class rounded).</summary>
    public long BytesInUse => _allocator.InUse;

    /// <summary>Device bytes kept in the allocator's cache for reuse.</summary>
    public long BytesCached => _allocator.Cached;

    /// <summary>Highest <see cref="BytesInUse"/> since start or <see cref="ResetPeak"/>.</summary>
    public long PeakBytesInUse => _allocator.Peak;

    /// <summary>Forgets the peak.</summary>
    public void ResetPeak() => _allocator.ResetPeak();

    /// <summary>
    /// Starts timing every operation queued on this GPU (CUDA events around each kernel and product) and the host's
    /// waits and copies, until <see cref="StopProfile"/>. Costs two event records per launch while it runs.
    /// </summary>
    public void StartProfile() => _context.Profiler.Start();

    /// <summary>Waits for the queued work and returns what <see cref="StartProfile"/> began to time.</summary>
    public CudaProfileReport StopProfile() => _context.Profiler.Stop();

    /// <summary>Returns every cached block to the driver.</summary>
    public void EmptyCache() => _allocator.EmptyCache();

    /// <summary>Waits until all queued work has finished (a kernel fault surfaces here, and a bad index a deferred check found).</summary>
    public void Synchronize()
    {
        RefuseWhileCapturing("Synchronize");
        _context.Synchronize();
        _indexChecks.Verify();
    }

    /// <inheritdoc/>
    public Storage Allocate(long bytes, bool zero)
    {
        var s = CudaStorage.Allocate(_allocator, bytes, Device);
        if (zero && bytes > 0)
        {
            _context.MakeCurrent();
            var mark = _context.Profiler.Begin("memset (zeroed allocation)");
            Driver.Check(Driver.cuMemsetD8Async((ulong)s.Pointer, 0, (nuint)bytes, _context.Stream), "cuMemsetD8Async");
            _context.Profiler.End(mark);
        }
        return s;
    }

    /// <inheritdoc/>
    public void Transfer(Tensor src, Tensor dst)
    {
        long bytes = src.Count * src.ElementSize;
        if (bytes == 0) return;
        if (_capturing && (src.Device.Kind == DeviceKind.Cpu || dst.Device.Kind == DeviceKind.Cpu)) RefuseWhileCapturing($"Transfer {src.Device} → {dst.Device}");
        // A tensor of another GPU in this process: that GPU's stream must have finished writing it, and its deferred
        // index verdicts must be read, before this stream copies it (outside our lock: that backend takes its own).
        if (src.Device.Kind == DeviceKind.Cuda && src.Device != dst.Device && Backends.For(src.Device) is CudaBackend owner)
            owner.Synchronize();
        lock (_transferGate)
        {
            bool fromHost = src.Device.Kind == DeviceKind.Cpu, toHost = dst.Device.Kind == DeviceKind.Cpu;
            if (fromHost && !toHost) _pinned.ToDevice(src.DataPointer, (ulong)dst.DataPointer, bytes);
            else if (!fromHost && toHost) _pinned.ToHost((ulong)src.DataPointer, dst.DataPointer, bytes);
            else if (!fromHost && !toHost)
            {
                _context.MakeCurrent();
                Driver.Check(Driver.cuMemcpyDtoDAsync((ulong)dst.DataPointer, (ulong)src.DataPointer, (nuint)bytes, _context.Stream), "cuMemcpyDtoDAsync");
            }
            else throw new NotSupportedException("Transfer: both tensors are on the host");
        }
        // A value reaches the host: first the verdicts of the index checks queued since the last read (a few bytes;
        // the copy above already waited for the stream), so nothing computed from a bad index is returned silently.
        if (dst.Device.Kind == DeviceKind.Cpu) _indexChecks.Verify();
    }

    /// <inheritdoc/>
    public void Copy(Tensor src, Tensor dst)
    {
        long n = dst.Count;
        if (n == 0) return;
        if (src.IsContiguous && dst.IsContiguous && SameShape(src, dst))
        {
            if (src.DType == dst.DType)
            {
                _context.MakeCurrent();
                var mark = _context.Profiler.Begin("copy device to device");
                Driver.Check(Driver.cuMemcpyDtoDAsync((ulong)dst.DataPointer, (ulong)src.DataPointer, (nuint)(n * src.ElementSize), _context.Stream), "cuMemcpyDtoDAsync");
                _context.Profiler.End(mark);
                return;
            }
            if (src.DType == DType.F32 && dst.DType == DType.BF16) { ContiguousCast("cast_f32_bf16", n, dst, src); return; }
            if (src.DType == DType.BF16 && dst.DType == DType.F32) { ContiguousCast("cast_bf16_f32", n, dst, src); return; }
        }
        var L = KernelLayout.Create("Copy", dst.Shape, dst.Strides.ToArray(), src.Strides.ToArray());
        using var a = new KernelArgs().Add(L).Add(n).Ptr(dst).Add(Code(dst.DType)).Ptr(src).Add(Code(src.DType));
        _kernels.Launch("elementwise.cu", "copy_cast", _kernels.GridFor(n), 256, a);
    }

    private void ContiguousCast(string kernel, long n, Tensor dst, Tensor src)
    {
        using var a = new KernelArgs().Add(n).Ptr(dst).Ptr(src);
        _kernels.Launch("elementwise.cu", kernel, _kernels.GridFor(n), 256, a);
    }

    /// <inheritdoc/>
    public void Fill(Tensor dst, double value)
    {
        long n = dst.Count;
        if (n == 0) return;
        var L = KernelLayout.Create("Fill", dst.Shape, dst.Strides.ToArray());
        long iv = double.IsNaN(value) ? 0 : (long)Math.Clamp(value, long.MinValue, long.MaxValue);
        using var a = new KernelArgs().Add(L).Add(n).Ptr(dst).Add(Code(dst.DType)).Add(value).Add(iv);
        _kernels.Launch("elementwise.cu", "fill", _kernels.GridFor(n), 256, a);
    }

    /// <summary>The dtype code kernels use (the order of <see cref="DType"/>).</summary>
    internal static int Code(DType t) => (int)t;

    private static bool SameShape(Tensor a, Tensor b) => a.Shape.SequenceEqual(b.Shape);

    private static NotSupportedException Missing(string op, string what) =>
        new($"{op} on CUDA: {what} is not implemented in the CUDA backend yet (see issue #7's list of remaining ops)");
}
