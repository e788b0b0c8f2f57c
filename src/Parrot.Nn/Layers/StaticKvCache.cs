using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Layers;

/// <summary>
/// A KV cache whose decode step launches the same work every token, so that a CUDA graph can capture one step and
/// replay it: the caches [B, kvHeads, MaxLength, headDim] of every layer are allocated up front, and each batch row's
/// position (its stored length) lives in a device tensor, <see cref="Positions"/>, that the step's kernels read
/// (<see cref="Tensor.RopeAppendAttendAt"/>) and that <see cref="AdvanceOnDevice"/> moves on.
/// No argument of the step depends on a position, and nothing is read back to the host.
/// </summary>
/// <remarks>
/// The host keeps its own count of each row's length (<see cref="HostLength"/>): it knows how many steps it issued, so
/// <see cref="Reserve"/> refuses a step that would run past <see cref="MaxLength"/> before any work is issued (on a GPU
/// the kernels could only write nothing and give NaN). Rows are filled by <see cref="Load"/> (a prefill run through an
/// ordinary <see cref="KvCache"/>) and <see cref="UploadPositions"/>. Inference only; rotary models only
/// (<see cref="AttendRope"/>): its tables are the model's whole tables, indexed on the device.
/// <para>Slots (a continuous batch): <see cref="Release"/> makes a row idle — its device position goes to
/// <see cref="MaxLength"/> (outside the cache: the step's kernels write nothing for it and give NaN, which its owner
/// ignores), and the room check skips it; <see cref="Load"/> fills it again. <see cref="CopyRowsFrom"/> moves every row
/// of a smaller cache into a bigger one (device copies).</para>
/// </remarks>
public sealed class StaticKvCache : IKvCache, IDisposable
{
    private readonly Tensor[] _k, _v;
    private readonly int[] _lengths;
    private readonly bool[] _idle;
    private readonly Tensor _positions, _one;
    private bool _disposed;

    /// <summary>Rows of the batch.</summary>
    public int Batch { get; }

    /// <summary>Positions each row can hold.</summary>
    public int MaxLength { get; }

    /// <summary>Layers.</summary>
    public int Layers => _k.Length;

    /// <summary>Each row's length on the device, contiguous [Batch] int64: where the next token goes. Read by the step's kernels.</summary>
    public Tensor Positions => _positions;

    /// <summary>
    /// Allocates (zeroed) caches for <paramref name="layers"/> layers of <paramref name="kvHeads"/> heads of
    /// <paramref name="headDim"/>, <paramref name="batch"/> rows of <paramref name="maxLength"/> positions, in
    /// <paramref name="dtype"/> on <paramref name="device"/>; every row is empty.
    /// </summary>
    public StaticKvCache(int layers, int batch, int kvHeads, int headDim, int maxLength, DType dtype, Device device)
    {
        if (layers <= 0 || batch <= 0 || kvHeads <= 0 || headDim <= 0 || maxLength <= 0)
            throw new ArgumentOutOfRangeException(nameof(layers), $"StaticKvCache: layers {layers}, batch {batch}, kv heads {kvHeads}, head dim {headDim} and max length {maxLength} must be positive");
        if (!dtype.IsFloat()) throw new ArgumentException($"StaticKvCache: the cache must be a float dtype, got {dtype.Name()}");
        Batch = batch;
        MaxLength = maxLength;
        _k = new Tensor[layers];
        _v = new Tensor[layers];
        _lengths = new int[batch];
        _idle = new bool[batch];
        try
        {
            for (int i = 0; i < layers; i++)
            {
                _k[i] = TensorScope.Detach(Tensor.Zeros([batch, kvHeads, maxLength, headDim], dtype, device));
                _v[i] = TensorScope.Detach(Tensor.Zeros([batch, kvHeads, maxLength, headDim], dtype, device));
            }
            _positions = TensorScope.Detach(Tensor.Zeros([batch], DType.I64, device));
            _one = TensorScope.Detach(Tensor.Full([1], 1, DType.I64, device));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The keys [B, kvHeads, MaxLength, headDim] of <paramref name="layer"/> (the whole cache, not a copy).</summary>
    public Tensor Keys(int layer) => _k[CheckLayer(layer)];

    /// <summary>The values of <paramref name="layer"/> (the whole cache).</summary>
    public Tensor Values(int layer) => _v[CheckLayer(layer)];

    private int CheckLayer(int layer) =>
        (uint)layer < (uint)_k.Length ? layer : throw new ArgumentOutOfRangeException(nameof(layer), $"StaticKvCache: layer {layer} of {_k.Length}");

    /// <summary>Row <paramref name="row"/>'s length as the host counts it (no device read); 0 for an idle row.</summary>
    public int HostLength(int row) => _idle[row] ? 0 : _lengths[row];

    /// <summary>Whether row <paramref name="row"/> is idle (<see cref="Release"/>d and not loaded since).</summary>
    public bool IsIdle(int row) => _idle[row];

    /// <summary>
    /// Makes row <paramref name="row"/> idle: the room check skips it and <see cref="UploadPositions"/> puts its device
    /// position at <see cref="MaxLength"/>, outside the cache, where a step writes nothing for it (its outputs are NaN;
    /// the position moves on with the others, staying outside). Its keys and values stay until a <see cref="Load"/>.
    /// </summary>
    public void Release(int row)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)row >= (uint)Batch) throw new ArgumentOutOfRangeException(nameof(row), $"StaticKvCache: row {row} of a batch of {Batch}");
        _idle[row] = true;
        _lengths[row] = 0;
    }

    /// <summary>
    /// Copies every row of <paramref name="source"/> (keys, values up to its length, host lengths, idle marks) into
    /// rows 0 .. source.Batch − 1 here, device to device (one copy per layer and tensor); the rows past them become idle.
    /// For growing a continuous batch's cache: this one must have at least as many rows and positions. Call
    /// <see cref="UploadPositions"/> after.
    /// </summary>
    public void CopyRowsFrom(StaticKvCache source)
    {
        ArgumentNullException.ThrowIfNull(source);
        ObjectDisposedException.ThrowIf(_disposed, this);
        ObjectDisposedException.ThrowIf(source._disposed, source);
        if (source.Batch > Batch || source.MaxLength > MaxLength || source.Layers != Layers)
            throw new ArgumentException($"StaticKvCache: a cache of {source.Layers} layers × {source.Batch} rows × {source.MaxLength} positions does not fit one of {Layers} × {Batch} × {MaxLength}");
        var k0 = source._k[0];
        if (k0.Dim(1) != _k[0].Dim(1) || k0.Dim(3) != _k[0].Dim(3) || k0.DType != _k[0].DType)
            throw new ArgumentException($"StaticKvCache: heads and dtype differ: {k0.ShapeString()} {k0.DType.Name()} vs {_k[0].ShapeString()} {_k[0].DType.Name()}");
        int used = 0;
        for (int r = 0; r < source.Batch; r++) if (!source._idle[r]) used = Math.Max(used, source._lengths[r]);
        if (used > 0)
            for (int layer = 0; layer < Layers; layer++)
                foreach (var (dst, src) in new[] { (_k[layer], source._k[layer]), (_v[layer], source._v[layer]) })
                {
                    using var rows = dst.Narrow(0, 0, source.Batch);
                    using var to = rows.Narrow(2, 0, used);
                    using var from = src.Narrow(2, 0, used);
                    to.CopyFrom(from);
                }
        for (int r = 0; r < Batch; r++)
        {
            bool inSource = r < source.Batch;
            _idle[r] = !inSource || source._idle[r];
            _lengths[r] = inSource ? source._lengths[r] : 0;
        }
    }

    /// <summary>The rows' common length (host count); throws when they differ (see <see cref="IKvCache.Length"/>).</summary>
    public int Length(int layer)
    {
        if (_lengths.Any(l => l != _lengths[0]))
            throw new InvalidOperationException("StaticKvCache: the rows hold different lengths, so there is no common one (each row's position is in Positions)");
        return _lengths[0];
    }

    /// <summary>
    /// Copies a row's keys and values [1, kvHeads, length, headDim] of <paramref name="layer"/> (e.g. what a prefill
    /// stored in a <see cref="KvCache"/>) into rows 0..length−1 of batch row <paramref name="row"/>, and sets that row's
    /// host length. <see cref="UploadPositions"/> then tells the device.
    /// </summary>
    public void Load(int layer, int row, Tensor k, Tensor v)
    {
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)row >= (uint)Batch) throw new ArgumentOutOfRangeException(nameof(row), $"StaticKvCache: row {row} of a batch of {Batch}");
        var kc = _k[CheckLayer(layer)];
        if (k.Rank != 4 || k.Dim(0) != 1 || k.Dim(1) != kc.Dim(1) || k.Dim(3) != kc.Dim(3) || !k.Shape.SequenceEqual(v.Shape))
            throw new ArgumentException($"StaticKvCache: k {k.ShapeString()} and v {v.ShapeString()} must both be [1, {kc.Dim(1)}, length, {kc.Dim(3)}]");
        int length = k.Dim(2);
        if (length > MaxLength) throw new InvalidOperationException($"StaticKvCache: {length} positions exceed the maximum length {MaxLength}");
        using (var row0 = kc.Narrow(0, row, 1)) using (var dst = row0.Narrow(2, 0, length)) dst.CopyFrom(k);
        using (var row0 = _v[layer].Narrow(0, row, 1)) using (var dst = row0.Narrow(2, 0, length)) dst.CopyFrom(v);
        _lengths[row] = length;
        _idle[row] = false;
    }

    /// <summary>
    /// Writes the host lengths into <see cref="Positions"/> (one host→device copy; after loading rows, not in a step);
    /// an idle row's is <see cref="MaxLength"/>.
    /// </summary>
    public void UploadPositions()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var host = Tensor.FromArray(_lengths.Select((l, r) => (long)(_idle[r] ? MaxLength : l)).ToArray(), _lengths.Length);
        _positions.CopyFrom(host);
    }

    /// <summary>
    /// The host half of a step of <paramref name="t"/> tokens: checks that every row has room (else throws, naming the
    /// row, before anything is issued) and counts them. Pair it with the device half (the forward, then
    /// <see cref="AdvanceOnDevice"/>), which a graph replays without the host.
    /// </summary>
    public void Reserve(int t)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (t <= 0) throw new ArgumentOutOfRangeException(nameof(t), $"StaticKvCache: a step of {t} tokens");
        for (int r = 0; r < Batch; r++)
            if (!_idle[r] && _lengths[r] + t > MaxLength)
                throw new InvalidOperationException($"StaticKvCache: row {r} holds {_lengths[r]} positions and cannot take {t} more (its maximum length is {MaxLength}); no step was issued");
        for (int r = 0; r < Batch; r++) if (!_idle[r]) _lengths[r] += t;
    }

    /// <summary>Positions += <paramref name="t"/> on the device (one in-place add; no host read or write).</summary>
    public void AdvanceOnDevice(int t = 1)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (t != 1) throw new ArgumentOutOfRangeException(nameof(t), "StaticKvCache: the device advances one token a step");
        using var one = _one.Expand(Batch);
        _positions.Backend.Binary(BinaryOp.Add, _positions, one, _positions);
    }

    /// <summary>Not supported: this cache serves rotary models through <see cref="AttendRope"/>.</summary>
    public Variable Attend(int layer, Variable q, Tensor k, Tensor v, bool causal, Tensor? mask) =>
        throw new NotSupportedException("StaticKvCache: attention without rotary tables is not supported (use AttendRope, as Qwen2's attention does under NoGrad)");

    /// <inheritdoc/>
    /// <remarks>
    /// <paramref name="cos"/>/<paramref name="sin"/> must be the model's whole tables [rows ≥ MaxLength, headDim]
    /// (<see cref="RotaryTables.Range"/> from 0), not rows at a position: the rows are picked on the device. k and v go
    /// to rows Positions[b].. of the layer's cache, and q attends over each row's keys up to its new positions, causally
    /// (<see cref="Tensor.RopeAppendAttendAt"/>: <see cref="Tensor.RopeAppendAt"/> then <see cref="Tensor.AttentionAt"/>,
    /// one kernel on a GPU for a token a row). Positions move only in
    /// <see cref="AdvanceOnDevice"/>, after the last layer.
    /// </remarks>
    public Variable AttendRope(int layer, Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, bool causal, Tensor? mask)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckLayer(layer);
        if (!causal) throw new ArgumentException("StaticKvCache: decoding attention is causal");
        if (mask is not null) throw new ArgumentException("StaticKvCache: rows are never padded, so attention takes no mask");
        if (Graph.IsGradDisabled is false) throw new InvalidOperationException("StaticKvCache: the cache is for inference; open Graph.NoGrad()");
        return new Variable(Tensor.RopeAppendAttendAt(q, k, v, cos, sin, _positions, _k[layer], _v[layer]));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _k) t?.Dispose();
        foreach (var t in _v) t?.Dispose();
        _positions?.Dispose();
        _one?.Dispose();
    }
}
