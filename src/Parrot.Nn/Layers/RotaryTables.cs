using Parrot.Tensors;

namespace Parrot.Nn.Layers;

/// <summary>
/// The RoPE cos/sin tables of one model, kept on each device and dtype it runs on: built on the host once for
/// positions 0..capacity−1 (<see cref="Tensor.RopeTables(int, int, int, double, Device?)"/>, the same numbers a
/// per-call build gives), copied to the device once, and grown (capacity doubled) only when a position beyond them
/// is asked for. A forward then takes views (or device-side copies) of rows, so a decode step makes no host→device
/// copy for RoPE; the tables were the only per-step copy besides the new token ids.
/// </summary>
/// <remarks>
/// Thread-safe (a server's sessions share a model). Views handed out keep the table's storage alive, so growing
/// (which frees the old table) never invalidates a forward in flight or a graph that saved them.
/// </remarks>
public sealed class RotaryTables : IDisposable
{
    private const int MinCapacity = 64;

    private readonly int _headDim;
    private readonly double _theta;
    private readonly Dictionary<(Device, DType), (Tensor Cos, Tensor Sin)> _tables = new();
    private readonly object _gate = new();
    private bool _disposed;

    /// <summary>Tables for heads of <paramref name="headDim"/> (even) and rope base <paramref name="theta"/>.</summary>
    public RotaryTables(int headDim, double theta)
    {
        _ = Tensor.RopeInverseFrequencies(headDim, theta); // validates both, with RopeTables' messages
        _headDim = headDim;
        _theta = theta;
    }

    /// <summary>How many host→device table builds ran (one per device and dtype, plus one per growth): for tests.</summary>
    public int Builds { get; private set; }

    /// <summary>The positions the table for (<paramref name="device"/>, <paramref name="dtype"/>) holds now (0 if none).</summary>
    public int Capacity(Device device, DType dtype)
    {
        lock (_gate) return _tables.TryGetValue((device, dtype), out var t) ? t.Cos.Dim(0) : 0;
    }

    /// <summary>cos and sin [count, head_dim] for positions start..start+count−1: views of the cached tables.</summary>
    public (Tensor Cos, Tensor Sin) Range(int start, int count, Device device, DType dtype)
    {
        if (start < 0 || count < 0) throw new ArgumentOutOfRangeException(nameof(start), $"RotaryTables: positions {start}..{start}+{count} must not be negative");
        var (cos, sin) = Table(device, dtype, checked(start + count));
        using (cos)
        using (sin)
            return (cos.Narrow(0, start, count), sin.Narrow(0, start, count));
    }

    /// <summary>
    /// cos and sin [..positions.shape, head_dim] for integer <paramref name="positions"/> (int64 or int32, any shape,
    /// on any device). Host positions whose rows (last dimension) run consecutively — one sequence, or a batch
    /// whose rows each continue from their own start — become views of the table joined on the device, with no copy
    /// from the host; other host positions are copied to the device as indices (never the tables) and gathered there.
    /// Device positions are gathered there too; with <paramref name="limit"/> (every position is below it, as the
    /// caller knows, e.g. past + new tokens) they are not read back and the table is sized to the limit: the gather's
    /// own index check (deferred on a GPU) reports a position past the table (one at or above the limit but inside
    /// the table still gets its right rows). Without it, they are read back to size the table (a host wait).
    /// </summary>
    public (Tensor Cos, Tensor Sin) At(Tensor positions, Device device, DType dtype, int? limit = null)
    {
        ArgumentNullException.ThrowIfNull(positions);
        positions.EnsureAlive("RotaryTables");
        if (positions.DType is not (DType.I64 or DType.I32))
            throw new ArgumentException($"RopeTables: positions must be int64 or int32, got {positions.DType.Name()}");
        int[] shape = [.. positions.Shape.ToArray(), _headDim];
        if (limit is int bound && positions.Device == device)
        {
            if (bound < 0) throw new ArgumentOutOfRangeException(nameof(limit), $"RotaryTables: the position limit {bound} must not be negative");
            using var scope = TensorScope.Begin();
            var (tc, ts) = Table(device, dtype, bound);
            var index = positions.Reshape(checked((int)positions.Count));
            return (scope.Keep(tc.IndexSelect(0, index).Reshape(shape)), scope.Keep(ts.IndexSelect(0, index).Reshape(shape)));
        }
        // The largest position decides the table size, so the positions are read (free for host positions).
        var pos = positions.ToLongArray();
        if (pos.Length == 0) return (Tensor.Empty(shape, dtype, device), Tensor.Empty(shape, dtype, device));
        long min = pos.Min(), max = pos.Max();
        if (min < 0 || max >= int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(positions), $"RotaryTables: positions must lie in [0, {int.MaxValue - 1}], got {min}..{max}");
        using var tables = TensorScope.Begin(); // the aliases Table hands out
        var (cos, sin) = Table(device, dtype, (int)max + 1);
        int row = positions.Rank == 0 ? 1 : positions.Dim(positions.Rank - 1);
        if (positions.Device == Device.Cpu && Consecutive(pos, row))
        {
            int rows = pos.Length / row;
            if (rows == 1)
                return (tables.Keep(cos.Narrow(0, (int)pos[0], row).Reshape(shape)), tables.Keep(sin.Narrow(0, (int)pos[0], row).Reshape(shape)));
            using var scope = TensorScope.Begin();
            var cs = new Tensor[rows];
            var ss = new Tensor[rows];
            for (int r = 0; r < rows; r++)
            {
                cs[r] = cos.Narrow(0, (int)pos[r * row], row);
                ss[r] = sin.Narrow(0, (int)pos[r * row], row);
            }
            return (tables.Keep(scope.Keep(Tensor.Concat(0, cs).Reshape(shape))), tables.Keep(scope.Keep(Tensor.Concat(0, ss).Reshape(shape))));
        }
        using (var scope = TensorScope.Begin())
        {
            var index = (positions.Device == device ? positions : positions.To(device)).Reshape(pos.Length);
            return (tables.Keep(scope.Keep(cos.IndexSelect(0, index).Reshape(shape))), tables.Keep(scope.Keep(sin.IndexSelect(0, index).Reshape(shape))));
        }
    }

    private static bool Consecutive(long[] pos, int row)
    {
        for (int i = 0; i < pos.Length; i++)
            if (i % row != 0 && pos[i] != pos[i - 1] + 1) return false;
        return true;
    }

    /// <summary>
    /// New references (<see cref="Tensor.Alias"/>, the caller disposes them) to the cached table with at least
    /// <paramref name="needed"/> positions, built or grown if needed. Taken under the lock: another thread's growth
    /// disposes the cached tensors, so a caller holding them instead could find them disposed before its view.
    /// </summary>
    private (Tensor Cos, Tensor Sin) Table(Device device, DType dtype, int needed)
    {
        if (!dtype.IsFloat()) throw new ArgumentException($"RotaryTables: tables must be a float dtype, got {dtype.Name()}");
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_tables.TryGetValue((device, dtype), out var t) && t.Cos.Dim(0) >= needed) return (t.Cos.Alias(), t.Sin.Alias());
            int capacity = Math.Max(MinCapacity, t.Cos?.Dim(0) ?? 0);
            while (capacity < needed) capacity = capacity > int.MaxValue / 2 ? needed : capacity * 2;
            (Tensor Cos, Tensor Sin) built;
            using (var scope = TensorScope.Begin())
            {
                var (c, s) = Tensor.RopeTables(0, capacity, _headDim, _theta); // float32 on the host
                built = (scope.Keep(c.To(dtype, device)), scope.Keep(s.To(dtype, device)));
            }
            // Long-lived: out of every scope, freed by growth or Dispose (views handed out keep their storage).
            TensorScope.Detach(built.Cos);
            TensorScope.Detach(built.Sin);
            t.Cos?.Dispose();
            t.Sin?.Dispose();
            _tables[(device, dtype)] = built;
            Builds++;
            return (built.Cos.Alias(), built.Sin.Alias());
        }
    }

    /// <summary>Frees every table (views already handed out stay valid).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var (c, s) in _tables.Values) { c.Dispose(); s.Dispose(); }
            _tables.Clear();
        }
    }
}
