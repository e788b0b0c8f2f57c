using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    private bool _capturing;

    /// <summary>Whether a <see cref="Capture"/> is recording on this device now.</summary>
    public bool IsCapturing => _capturing;

    /// <summary>
    /// Programmatic dependent launch for the decode step's kernels (gemv, fused SwiGLU gemv, RMS norms, RoPE + KV append,
    /// decode attention; Hopper and newer, CUDA 12.3+ driver, kernels built for sm_90+): inside a
    /// <see cref="ConstantWeightScope"/> such a kernel starts while the one before it finishes and waits for it on the
    /// GPU, and a product's first weight reads overlap the previous kernel, in eager streams and CUDA graphs alike. On by
    /// default where supported (timed: <see cref="CudaKernels.ProgrammaticLaunches"/>); PARROT_PDL=0 turns it off when the
    /// backend is created; setting it true where it is not supported keeps it off.
    /// </summary>
    public bool ProgrammaticLaunches
    {
        get => _kernels.ProgrammaticLaunches;
        set => _kernels.ProgrammaticLaunches = value && _kernels.ProgrammaticPossible;
    }

    /// <summary>
    /// Marks the work this thread queues until disposed as a decode step: every matrix-vector product's transposed
    /// operand is a weight nothing inside writes, so with <see cref="ProgrammaticLaunches"/> on its kernels may launch
    /// programmatically (a gemv reads its weights before waiting for the kernel before it). Qwen2's cached forward and
    /// the static decode step open it; elsewhere launches stay plain. Nested scopes count; one per thread.
    /// </summary>
    public static IDisposable ConstantWeightScope() => CudaKernels.ConstantWeightScope();

    /// <summary>
    /// Records the GPU work <paramref name="step"/> queues on this device into a <see cref="CudaGraph"/>, without running
    /// it: replaying the graph then issues all of it with one launch, which takes the host's cost per kernel (a
    /// host-bound decode step issues hundreds) out of the loop. The step must be replayable: only device tensors, no
    /// value read to the host or copied from it (<see cref="Transfer"/> and <see cref="Synchronize"/> throw while
    /// recording), the same shapes every time; what changes between replays lives in device tensors. Run it once
    /// eagerly before capturing (kernels compile and the cuBLASLt workspace is made at first use, which a capture
    /// cannot record; cuDNN attention plans too: while recording none is built, and a call without one runs on our
    /// kernels, see <see cref="CudnnAttention"/>). A failure inside the step ends the capture, frees what it reserved
    /// and rethrows, naming the capture. Waits for the queued work first (and reads pending index checks). While it records, no other thread may
    /// use this device (its work would be recorded, its memory taken into the capture's pool). A graph keeps the
    /// addresses it was captured with: tensors it reads (weights, caches, inputs) must stay alive and in place while it
    /// lives — moving, casting or reloading a model's weights needs a new capture.
    /// </summary>
    public CudaGraph Capture(Action step)
    {
        ArgumentNullException.ThrowIfNull(step);
        if (_capturing) throw new InvalidOperationException("CUDA graph capture: a capture is already recording on this device");
        if (_context.Profiler.Active) throw new InvalidOperationException("CUDA graph capture: stop the CUDA profile first (its events cannot be recorded into a graph)");
        Synchronize(); // the graph's index checks start at slot 0 (nothing pending) and eager errors surface here
        _indexChecks.EnsureSlots(); // made and filled eagerly, not recorded (see EnsureSlots)
        DecodeTickets(); // likewise: the decode kernel's zeroed tickets
        ArgTickets(); // and the split argmax's
        var pool = _allocator.BeginCapture();
        _context.MakeCurrent();
        int begin = Driver.cuStreamBeginCapture(_context.Stream, Driver.StreamCaptureModeThreadLocal);
        if (begin != Driver.Success)
        {
            _allocator.Release(pool);
            Driver.Check(begin, "cuStreamBeginCapture");
        }
        _capturing = true;
        Exception? failure = null;
        try { step(); }
        catch (Exception e) { failure = e; }
        int end = Driver.cuStreamEndCapture(_context.Stream, out nint graph);
        _capturing = false;
        _allocator.EndCapture(pool);
        var checks = _indexChecks.TakeCaptured();
        if (failure is not null || end != Driver.Success)
        {
            if (graph != 0) Driver.cuGraphDestroy(graph);
            _allocator.Release(pool);
            if (failure is not null)
                throw new InvalidOperationException($"CUDA graph capture failed inside the step: {failure.Message}" +
                    (end != Driver.Success ? $" (and cuStreamEndCapture: {Driver.Describe(end)})" : ""), failure);
            throw new CudaException($"cuStreamEndCapture failed: {Driver.Describe(end)} (the step queued work that cannot be captured: run it once before capturing so kernels are compiled and memory allocated)", end);
        }
        try
        {
            nuint count = 0;
            unsafe { Driver.Check(Driver.cuGraphGetNodes(graph, null, ref count), "cuGraphGetNodes"); }
            Driver.Check(Driver.cuGraphInstantiateWithFlags(out nint exec, graph, 0), "cuGraphInstantiateWithFlags");
            Driver.Check(Driver.cuGraphUpload(exec, _context.Stream), "cuGraphUpload");
            return new CudaGraph(this, graph, exec, pool, checks, (int)count);
        }
        catch
        {
            Driver.cuGraphDestroy(graph);
            _allocator.Release(pool);
            throw;
        }
    }

    internal void Replay(CudaGraph graph)
    {
        if (_capturing) throw new InvalidOperationException("CudaGraph.Replay: not while a capture is recording");
        // The graph's index checks write the slots they were captured with (0..n-1). If exactly they are pending (the
        // previous replay's, unread), the new verdicts merge into the same slots (the smallest bad position wins);
        // other pending checks would share those slots, so they are read first (a host wait, rare in a decode loop).
        var mine = graph.IndexChecks;
        if (mine.Count == 0)
        {
            // No checks in the graph: it touches no slot, so pending eager checks keep theirs (no read first).
            Launch(graph);
            return;
        }
        var pending = _indexChecks.PendingChecks();
        bool samePending = pending.Count == mine.Count && pending.Zip(mine).All(p => ReferenceEquals(p.First, p.Second));
        if (pending.Count != 0 && !samePending) _indexChecks.Verify();
        Launch(graph);
        if (!samePending) _indexChecks.Rearm(mine);
    }

    private void Launch(CudaGraph graph)
    {
        _context.MakeCurrent();
        var mark = _context.Profiler.Begin("CUDA graph replay");
        Driver.Check(Driver.cuGraphLaunch(graph.Exec, _context.Stream), "cuGraphLaunch");
        _context.Profiler.End(mark);
    }

    internal void ReleaseGraphMemory(CudaAllocator.CapturePool pool) => _allocator.Release(pool);

    /// <summary>Throws when a capture records: <paramref name="what"/> cannot be part of a replayable graph.</summary>
    private void RefuseWhileCapturing(string what)
    {
        if (_capturing)
            throw new InvalidOperationException($"{what} during a CUDA graph capture: a graph replays device work only (no copy between host and device, no wait for the stream); make the step read and write device tensors");
    }
}
