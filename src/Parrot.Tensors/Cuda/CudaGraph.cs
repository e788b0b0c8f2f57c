using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// A stretch of GPU work recorded once (<see cref="CudaBackend.Capture"/>) and replayed with one launch
/// (<see cref="Replay"/>): every kernel, product, device copy and memset the recorded code queued, with the same
/// arguments, shapes and addresses. What makes a replay compute something new is the contents of the device tensors
/// it reads (written between replays, or by the graph itself: a decode step that writes its next input ids and
/// position). The blocks the capture allocated stay reserved for the graph (see <see cref="CudaAllocator"/>); the
/// tensors made before the capture that the recorded work reads or writes must stay alive as long as the graph.
/// Dispose it to return its memory (a replay already queued still runs).
/// </summary>
public sealed class CudaGraph : IDisposable, IReplayable
{
    private readonly CudaBackend _backend;
    private readonly CudaAllocator.CapturePool _pool;
    private nint _graph, _exec;

    internal CudaGraph(CudaBackend backend, nint graph, nint exec, CudaAllocator.CapturePool pool, Func<long, long, string>[] indexChecks, int nodes)
    {
        _backend = backend;
        _graph = graph;
        _exec = exec;
        _pool = pool;
        IndexChecks = indexChecks;
        Nodes = nodes;
    }

    /// <summary>Operations in the graph (kernels, products' kernels, copies, memsets).</summary>
    public int Nodes { get; }

    /// <summary>Blocks of device memory the graph keeps for itself.</summary>
    public int ReservedBlocks => _pool.Blocks;

    /// <summary>The deferred index checks recorded in the graph: pending again after each replay.</summary>
    internal IReadOnlyList<Func<long, long, string>> IndexChecks { get; }

    internal nint Exec => _exec;

    /// <summary>Queues one run of the recorded work on the backend's stream (no host wait).</summary>
    public void Replay()
    {
        ObjectDisposedException.ThrowIf(_exec == 0, this);
        _backend.Replay(this);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_exec == 0) return;
        // A launched graph still running is freed by the driver when it completes; work queued after this on the one
        // stream (which may reuse the pool's blocks) runs after it.
        Driver.Check(Driver.cuGraphExecDestroy(_exec), "cuGraphExecDestroy");
        Driver.Check(Driver.cuGraphDestroy(_graph), "cuGraphDestroy");
        _exec = _graph = 0;
        _backend.ReleaseGraphMemory(_pool);
    }
}
