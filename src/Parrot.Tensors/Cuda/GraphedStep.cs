namespace Parrot.Tensors.Cuda;

/// <summary>
/// A step that is issued the same way every time (a decode step that reads its inputs from device tensors) run the
/// cheapest way the device allows: on a CUDA device the first <see cref="Run"/> issues it eagerly (kernels compile,
/// memory is allocated), the second captures it into a <see cref="CudaGraph"/> and replays that, and every later one
/// replays it — one launch per step instead of hundreds. Elsewhere, or with graphs off, every run is eager. The
/// numbers are the same either way (the graph holds the same kernels with the same arguments).
/// </summary>
public sealed class GraphedStep : IDisposable
{
    private readonly Action _issue;
    private readonly bool _fallBack;
    private Func<Action, IReplayable>? _capture;
    private IReplayable? _graph;
    private int _runs;

    /// <summary>
    /// <paramref name="issue"/>: the step's device work (no host reads or writes, the same shapes every time; see
    /// <see cref="CudaBackend.Capture"/>). <paramref name="useGraph"/>: false runs it eagerly always (for comparison).
    /// <paramref name="fallBackToEager"/>: when the capture fails, note why (<see cref="FallbackReason"/>) and run the
    /// step eagerly from then on (the capture ran nothing, so that run is the step's); otherwise the failure is thrown.
    /// </summary>
    public GraphedStep(Device device, Action issue, bool useGraph = true, bool fallBackToEager = false)
        : this(issue, useGraph && device.Kind == DeviceKind.Cuda && Backends.For(device) is CudaBackend cuda ? cuda.Capture : null, fallBackToEager)
    {
    }

    /// <summary>The same over any capture (tests drive the run sequence with a fake one).</summary>
    internal GraphedStep(Action issue, Func<Action, IReplayable>? capture, bool fallBackToEager)
    {
        ArgumentNullException.ThrowIfNull(issue);
        _issue = issue;
        _capture = capture;
        _fallBack = fallBackToEager;
    }

    /// <summary>Whether the step now replays a captured graph.</summary>
    public bool Captured => _graph is not null;

    /// <summary>Why the capture failed when the step fell back to eager runs (null otherwise).</summary>
    public string? FallbackReason { get; private set; }

    /// <summary>Whether the next <see cref="Run"/> is the capture (the one a failure of the graph machinery can come from).</summary>
    public bool CapturesNext => _graph is null && _capture is not null && _runs == 1;

    /// <summary>Operations in the captured graph (0 before the capture or without one).</summary>
    public int GraphNodes => _graph?.Nodes ?? 0;

    /// <summary>Issues one step (no host wait).</summary>
    public void Run()
    {
        if (_graph is not null) { _graph.Replay(); return; }
        if (_capture is null || _runs++ == 0) { _issue(); return; }
        try { _graph = _capture(_issue); }
        catch (Exception e) when (_fallBack)
        {
            FallbackReason = e.Message;
            _capture = null;
            _issue();
            return;
        }
        _graph.Replay();
    }

    /// <summary>Frees the graph and the memory it reserved (the tensors the step uses are the caller's).</summary>
    public void Dispose()
    {
        _graph?.Dispose();
        _graph = null;
    }
}

/// <summary>Recorded work that replays with one call (<see cref="CudaGraph"/>).</summary>
internal interface IReplayable : IDisposable
{
    /// <summary>Operations recorded.</summary>
    int Nodes { get; }

    /// <summary>Queues one run.</summary>
    void Replay();
}
