using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// cuDNN's fused attention for one GPU: the cuDNN handle (on the backend's stream), and the execution plans built so
/// far, one per <see cref="CudnnSdpaProblem.Key"/>. A problem whose plan cuDNN refuses is remembered with the reason,
/// so it is tried once; when the library is missing or older than 9.0 that is found once and said by
/// <see cref="Unavailable"/>.
/// </summary>
internal sealed class CudnnSdpa : IDisposable
{
    private readonly CudaContext? _context;
    private readonly Dictionary<string, CudnnGraphPlan> _plans = [];
    private readonly Dictionary<string, string> _refused = [];
    private readonly Lock _gate = new();
    private nint _handle;
    private string? _unavailable;
    private bool _probed;

    /// <param name="context">
    /// The GPU whose stream the handle runs on; null only for the tests without a GPU (tools/cudnn-fake: the handle on
    /// the default stream, no context to make current).
    /// </param>
    internal CudnnSdpa(CudaContext? context) => _context = context;

    /// <summary>Why cuDNN cannot be used at all on this machine (library missing, too old, handle failed), or null.</summary>
    internal string? Unavailable
    {
        get
        {
            lock (_gate)
            {
                Probe();
                return _unavailable;
            }
        }
    }

    /// <summary>The loaded library's version (cudnnGetVersion), or 0 when it is not usable.</summary>
    internal long Version { get; private set; }

    private void Probe()
    {
        if (_probed) return;
        _probed = true;
        _unavailable = LibraryProblem(out long version);
        Version = version;
        if (_unavailable is not null) return;
        try
        {
            _context?.MakeCurrent();
            Cudnn.Check(Cudnn.cudnnCreate(out _handle), "cudnnCreate");
            Cudnn.Check(Cudnn.cudnnSetStream(_handle, _context?.Stream ?? 0), "cudnnSetStream");
        }
        catch (Exception e) when (e is CudaException or DllNotFoundException or EntryPointNotFoundException)
        {
            _unavailable = $"cuDNN {Version} could not be initialised: {e.Message}";
            _handle = 0;
        }
    }

    /// <summary>
    /// Why the cuDNN library cannot serve these graphs (not installed, or older than 9.0), or null; needs no GPU.
    /// <paramref name="version"/> gets cudnnGetVersion() when the library loads.
    /// </summary>
    internal static string? LibraryProblem(out long version)
    {
        version = 0;
        if (!CudaLibrary.TryLoad(CudaLibrary.Cudnn, out _, out string why)) return $"cuDNN is not installed: {why}";
        try { version = (long)Cudnn.cudnnGetVersion(); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return $"cuDNN did not load: {e.Message}"; }
        return version < Cudnn.MinimumSdpaVersion ? $"cuDNN {version} is older than 9.0 (its graph API lacks these SDPA engines)" : null;
    }

    /// <summary>
    /// The plan for <paramref name="problem"/>, built on first use; null with <paramref name="why"/> when cuDNN is
    /// unavailable or refused this problem (then or before), when the plan is not built yet and
    /// <paramref name="build"/> is false, or when it is a deterministic backward whose workspace exceeds
    /// <paramref name="deterministicWorkspaceLimit"/> (the plan is kept: a higher limit later takes it without a rebuild).
    /// A deterministic backward that cuDNN refuses is refused as such: the atomic graph is never tried in its place.
    /// </summary>
    /// <param name="problem">The call: sizes, dtype, mask, strides, the backward's dQ algorithm.</param>
    /// <param name="why">Why there is no plan; empty when there is one.</param>
    /// <param name="build">
    /// Whether a missing plan (and the cuDNN handle) may be made now: false while a CUDA graph capture records. Making
    /// them may allocate device memory, load modules and synchronise (cudnnCreate, plan finalisation compiling kernels),
    /// which a capture would either refuse — invalidating the capture — or not record; executing a finished plan only
    /// queues kernels on the stream, with the workspace from the capture's memory pool.
    /// </param>
    /// <param name="deterministicWorkspaceLimit">The most workspace bytes a deterministic backward may ask for (see <see cref="WorkspaceRefusal"/>).</param>
    internal CudnnGraphPlan? Plan(CudnnSdpaProblem problem, bool build, out string why, long deterministicWorkspaceLimit = long.MaxValue)
    {
        lock (_gate)
        {
            const string capturing = "no cuDNN plan for this problem yet, and none is built while a CUDA graph capture records (run the step once eagerly first)";
            if (!_probed && !build) { why = capturing; return null; }
            Probe();
            if (_unavailable is not null) { why = _unavailable; return null; }
            if (KeyTailRefusal(problem.Backward, problem.S, Version) is string tail) { why = tail; return null; }
            string key = problem.Key;
            if (_plans.TryGetValue(key, out var plan)) return Affordable(plan, problem, deterministicWorkspaceLimit, out why);
            if (_refused.TryGetValue(key, out var reason)) { why = reason; return null; }
            if (!build) { why = capturing; return null; }
            _context?.MakeCurrent();
            // Both frontend styles, the one matching this cuDNN's age first (see CudnnSdpaStyle); the first that plans wins.
            bool recent = Version >= 91000;
            var refusals = new List<string>();
            foreach (var style in StyleOrder(Version))
            {
                var spec = problem.Backward ? CudnnSdpaGraphs.Backward(problem, style, recent) : CudnnSdpaGraphs.Forward(problem, style, recent);
                try
                {
                    plan = new CudnnGraphPlan(spec, _handle) { Style = style };
                }
                catch (CudaException e)
                {
                    refusals.Add($"{style}: {e.Message}");
                    continue;
                }
                if (_plans.Count >= 256) { foreach (var p in _plans.Values) p.Dispose(); _plans.Clear(); }
                _plans[key] = plan;
                return Affordable(plan, problem, deterministicWorkspaceLimit, out why);
            }
            why = $"cuDNN {Version} refused the {problem.What} graph ({string.Join(" | ", refusals)})";
            _refused[key] = why;
            return null;
        }
    }

    /// <summary><paramref name="plan"/>, or null with the reason when it is a deterministic backward over the workspace limit.</summary>
    private static CudnnGraphPlan? Affordable(CudnnGraphPlan plan, CudnnSdpaProblem problem, long limit, out string why)
    {
        why = problem.Backward && problem.Deterministic ? WorkspaceRefusal(plan.WorkspaceBytes, limit) ?? "" : "";
        return why.Length == 0 ? plan : null;
    }

    /// <summary>
    /// Why a deterministic backward's workspace of <paramref name="bytes"/> is too large for <paramref name="limit"/>, or
    /// null. The dP-workspace engine keeps dS for every query and key (b·h·s_q·s_kv 16-bit values: 512 MiB at B4 H16
    /// T2048, 16 GiB at B1 H32 T16384), allocated for each call; past the limit our attention kernels (deterministic too,
    /// with no such workspace) run the call instead.
    /// </summary>
    internal static string? WorkspaceRefusal(long bytes, long limit) => bytes <= limit ? null
        : $"cuDNN's deterministic backward needs a {Mib(bytes)} workspace, above the limit of {Mib(limit)} (PARROT_CUDNN_DETERMINISTIC_WORKSPACE_MB)";

    private static string Mib(long bytes) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024):0.#} MiB");

    /// <summary>
    /// Why cuDNN's deterministic backward cannot be asked for on a GPU of compute capability <paramref name="major"/>.x,
    /// or null. On sm_10x cudnn-frontend refuses <c>set_deterministic_algorithm(true)</c> below cuDNN 9.18 and from 9.18
    /// on runs it only on an engine it pins by id and knobs (its <c>override_heuristics_query</c>), not on whatever
    /// heuristics pick for the graph without dQ_accum — the only form these graphs ask in, so nothing says the engine
    /// picked there is deterministic. Elsewhere (sm_8x, sm_90, sm_12x) the frontend leaves the choice to heuristics too.
    /// </summary>
    internal static string? DeterministicRefusal(int major) => major != 10 ? null
        : "cuDNN's deterministic SDPA backward on sm_10x runs only on an engine cudnn-frontend pins by id and knobs (cuDNN ≥ 9.18), " +
          "which is not built here; our attention kernels (deterministic) run it (PARROT_CUDNN_DETERMINISTIC=0: cuDNN's atomic backward)";

    /// <summary>
    /// Why a backward over <paramref name="keys"/> keys is not sent to cuDNN <paramref name="version"/>, or null:
    /// up to 9.15.0, a backward whose key count is not a multiple of 128 (without a padding mask) needs the padding mask
    /// cudnn-frontend adds as a workaround (sequence lengths equal to the full sizes; its issue #160: NaN gradients
    /// otherwise); these graphs do not carry it, so our kernels run those calls.
    /// </summary>
    internal static string? KeyTailRefusal(bool backward, int keys, long version) =>
        backward && keys % 128 != 0 && version <= 91500
            ? $"cuDNN {version} ≤ 9.15.0: a backward over {keys} keys (not a multiple of 128) needs cudnn-frontend's padding-mask workaround, not built here; our attention kernels run it"
            : null;

    /// <summary>The graph styles to try for cuDNN <paramref name="version"/>: the current frontend's first from 9.10 on.</summary>
    internal static CudnnSdpaStyle[] StyleOrder(long version) => version >= 91000
        ? [CudnnSdpaStyle.FrontendCurrent, CudnnSdpaStyle.Frontend15]
        : [CudnnSdpaStyle.Frontend15, CudnnSdpaStyle.FrontendCurrent];

    /// <summary>Runs <paramref name="plan"/> on the backend's stream (see <see cref="CudnnGraphPlan.Execute"/>).</summary>
    internal void Execute(CudnnGraphPlan plan, IReadOnlyDictionary<long, nint> pointers, double scale, nint workspace)
    {
        lock (_gate)
        {
            _context?.MakeCurrent();
            plan.Execute(_handle, pointers, (float)scale, workspace);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var p in _plans.Values) p.Dispose();
            _plans.Clear();
            if (_handle != 0) Cudnn.cudnnDestroy(_handle);
            _handle = 0;
        }
    }
}
