using System.Diagnostics;
using System.Globalization;
using System.Text;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// Where the time of a stretch of work on one GPU goes: every kernel launch and cuBLASLt product between
/// <see cref="CudaBackend.StartProfile"/> and <see cref="CudaBackend.StopProfile"/> is bracketed by a pair of CUDA
/// events (its device time), and the host time spent issuing it, waiting on the stream and copying to and from the
/// host is counted too. Comparing the summed device time with the wall time says whether the work is bound by the
/// GPU or by the host that feeds it. Off (one branch per launch) unless started.
/// </summary>
internal sealed class CudaProfiler
{
    private readonly CudaContext _context;
    private readonly List<Entry> _entries = new();
    private readonly Stack<nint> _pool = new();
    private readonly Stopwatch _wall = new();
    private readonly Lock _gate = new();
    private bool _active;

    private sealed record Entry(string Name, nint Start, nint End, double HostMs);

    internal CudaProfiler(CudaContext context) => _context = context;

    internal bool Active => _active;

    internal void Start()
    {
        lock (_gate)
        {
            if (_active) throw new InvalidOperationException("a CUDA profile is already running on this device");
            _context.Synchronize();
            _entries.Clear();
            _active = true;
            _wall.Restart();
        }
    }

    /// <summary>Starts timing one operation: records its start event (no-op when not profiling).</summary>
    internal Mark Begin(string? name)
    {
        if (!_active || name is null) return default;
        nint start = Event();
        Driver.Check(Driver.cuEventRecord(start, _context.Stream), "cuEventRecord");
        return new Mark(name, start, Stopwatch.GetTimestamp());
    }

    /// <summary>Ends the operation <paramref name="mark"/> began (device time when it had a start event).</summary>
    internal void End(Mark mark)
    {
        if (!_active || mark.Name is null) return;
        nint end = 0;
        if (mark.Start != 0)
        {
            end = Event();
            Driver.Check(Driver.cuEventRecord(end, _context.Stream), "cuEventRecord");
        }
        lock (_gate) _entries.Add(new Entry(mark.Name, mark.Start, end, Stopwatch.GetElapsedTime(mark.HostStart).TotalMilliseconds));
    }

    /// <summary>Starts timing a host-side wait or copy (no device events).</summary>
    internal Mark BeginHost(string name) => _active ? new Mark(name, 0, Stopwatch.GetTimestamp()) : default;

    internal CudaProfileReport Stop()
    {
        lock (_gate)
        {
            if (!_active) throw new InvalidOperationException("no CUDA profile is running on this device");
            _active = false;
            _context.Synchronize();
            double wall = _wall.Elapsed.TotalMilliseconds;
            var rows = new Dictionary<string, CudaProfileRow>();
            double busy = 0;
            nint first = 0, last = 0;
            foreach (var e in _entries)
            {
                float ms = 0;
                if (e.Start != 0)
                {
                    Driver.Check(Driver.cuEventElapsedTime(out ms, e.Start, e.End), "cuEventElapsedTime");
                    if (first == 0) first = e.Start;
                    last = e.End;
                    busy += ms;
                }
                rows.TryGetValue(e.Name, out var r);
                rows[e.Name] = new CudaProfileRow(e.Name, (r?.Calls ?? 0) + 1, (r?.DeviceMs ?? 0) + ms, (r?.HostMs ?? 0) + e.HostMs);
            }
            float span = 0;
            if (first != 0) Driver.Check(Driver.cuEventElapsedTime(out span, first, last), "cuEventElapsedTime");
            foreach (var e in _entries)
            {
                if (e.Start != 0) { _pool.Push(e.Start); _pool.Push(e.End); }
            }
            _entries.Clear();
            return new CudaProfileReport(wall, span, busy, [.. rows.Values.OrderByDescending(r => r.DeviceMs + (r.DeviceMs == 0 ? r.HostMs : 0))]);
        }
    }

    private nint Event()
    {
        lock (_gate)
        {
            if (_pool.Count > 0) return _pool.Pop();
        }
        Driver.Check(Driver.cuEventCreate(out nint e, 0), "cuEventCreate");
        return e;
    }

    internal readonly record struct Mark(string? Name, nint Start, long HostStart);
}

/// <summary>One operation's totals in a <see cref="CudaProfileReport"/> (device time 0 for host-side waits and copies).</summary>
public sealed record CudaProfileRow(string Name, long Calls, double DeviceMs, double HostMs);

/// <summary>
/// A profile of one stretch of GPU work: the host's wall time, the device's span from the first timed operation's
/// start to the last one's end, the summed device time of the operations, and each operation's totals.
/// </summary>
public sealed record CudaProfileReport(double WallMs, double DeviceSpanMs, double DeviceBusyMs, IReadOnlyList<CudaProfileRow> Rows)
{
    /// <summary>A table of the <paramref name="top"/> rows by device time (host-only rows by host time).</summary>
    public string Format(int top = 30)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        long launches = Rows.Where(r => r.DeviceMs > 0).Sum(r => r.Calls);
        sb.AppendLine(string.Create(inv, $"cuda profile: wall {WallMs:F2} ms, device span {DeviceSpanMs:F2} ms, device busy {DeviceBusyMs:F2} ms ({(WallMs > 0 ? DeviceBusyMs / WallMs : 0):P0} of wall), {launches} timed launches"));
        sb.AppendLine(string.Create(inv, $"{"operation",-52} {"calls",7} {"device ms",10} {"%",6} {"host ms",9}"));
        foreach (var r in Rows.Take(top))
            sb.AppendLine(string.Create(inv, $"{Trim(r.Name),-52} {r.Calls,7} {r.DeviceMs,10:F3} {(DeviceBusyMs > 0 ? r.DeviceMs / DeviceBusyMs : 0),6:P1} {r.HostMs,9:F3}"));
        if (Rows.Count > top) sb.AppendLine($"… {Rows.Count - top} more");
        return sb.ToString();
    }

    private static string Trim(string s) => s.Length <= 52 ? s : s[..51] + "…";
}
