namespace Parrot.Tensors;

/// <summary>
/// A backend whose index checks run on its device without the host waiting for them (the CUDA backend): the
/// Tensor front-ends of Embedding, IndexSelect, Gather, ScatterAdd and CrossEntropy hand it their indices instead of
/// reading them back, so a training step needs no host synchronisation for them. Its kernels must be memory-safe
/// for any index (an index out of range is skipped or gives zero/NaN), since they run before the verdict is known.
/// </summary>
internal interface IDeferredIndexChecks
{
    /// <summary>The checks queued on this device and not yet verified.</summary>
    DeferredIndexChecks IndexChecks { get; }

    /// <summary>
    /// Queues (no host wait) the check of every element of <paramref name="index"/> (I64 or I32, any shape and
    /// strides): for those outside [0, <paramref name="size"/>) that are not <paramref name="ignore"/>, row
    /// <paramref name="slot"/> of <paramref name="slots"/> ([capacity, 2] I64) gets [0] = the smallest C-order position
    /// (it starts at <see cref="DeferredIndexChecks.NoViolation"/>, and min is taken) and [1] = the value there.
    /// </summary>
    void CheckIndices(Tensor index, long size, long? ignore, Tensor slots, int slot);
}

/// <summary>
/// The bookkeeping of deferred index checks for one device. <see cref="Record"/> queues a check on the device and
/// remembers how to word its failure; <see cref="Verify"/> — called by the backend whenever a value is read back to
/// the host (every device→host copy), and at synchronisation points — reads the verdicts (a few bytes, after the
/// read's own wait) and, if any index was bad, throws the first one's error in program order, naming the index, its
/// position and the valid range, before the read returns. So no result computed after a bad index reaches the user
/// without that error; the error just arrives at the next read instead of at the op. The state is then cleared and
/// the device stays usable.
/// </summary>
/// <remarks>
/// At most <see cref="Capacity"/> checks wait unverified: the next <see cref="Record"/> verifies them first (one
/// host wait per <see cref="Capacity"/> unread checks; a training step that reads its loss never reaches it).
/// </remarks>
internal sealed class DeferredIndexChecks(IDeferredIndexChecks backend, Device device)
{
    /// <summary>Checks waiting at most before a <see cref="Record"/> verifies them.</summary>
    internal const int Capacity = 64;

    /// <summary>The position slot's "nothing bad yet" (exact in a double, above any position).</summary>
    internal const long NoViolation = 1L << 62;

    private readonly object _gate = new();
    private readonly List<Func<long, long, string>> _pending = new();
    private Tensor? _slots;
    private bool _verifying;

    /// <summary>The checks queued and not yet verified, in slot order (a copy).</summary>
    internal IReadOnlyList<Func<long, long, string>> PendingChecks()
    {
        lock (_gate) return _pending.ToArray();
    }

    /// <summary>Checks queued and not yet verified.</summary>
    internal int Pending { get { lock (_gate) return _pending.Count; } }

    /// <summary>
    /// Queues the check of <paramref name="index"/> against [0, <paramref name="size"/>) (values equal to
    /// <paramref name="ignore"/> pass); on failure <paramref name="describe"/>(value, C-order position) words the error.
    /// </summary>
    internal void Record(Tensor index, long size, long? ignore, Func<long, long, string> describe)
    {
        if (index.Count == 0) return;
        lock (_gate)
        {
            if (_pending.Count == Capacity) VerifyLocked($"reported when {Capacity} checks had queued up unread, at the next index op");
            EnsureSlotsLocked();
            backend.CheckIndices(index, size, ignore, _slots!, _pending.Count);
            _pending.Add(describe);
        }
    }

    /// <summary>
    /// Makes the verdict slots now (a device allocation and a fill, run eagerly). A CUDA graph capture calls it first:
    /// slots made inside a capture would get their "nothing bad" fill recorded into the graph instead of run, so checks
    /// before the first replay would read uninitialised slots, and every replay would wipe verdicts still unread.
    /// </summary>
    internal void EnsureSlots()
    {
        lock (_gate) EnsureSlotsLocked();
    }

    private void EnsureSlotsLocked()
    {
        if (_slots is not null) return;
        _slots = Tensor.Full([Capacity, 2], NoViolation, DType.I64, device);
        TensorScope.Detach(_slots); // lives as long as the backend
    }

    /// <summary>
    /// The end of a CUDA graph capture: the checks queued since <see cref="Verify"/> were recorded into the graph, not
    /// run, so they leave the pending list and the graph keeps them (their slots are baked into it) to
    /// <see cref="Rearm"/> after each replay.
    /// </summary>
    internal Func<long, long, string>[] TakeCaptured()
    {
        lock (_gate)
        {
            var taken = _pending.ToArray();
            _pending.Clear();
            return taken;
        }
    }

    /// <summary>
    /// After a replay of a captured graph: its checks wrote slots 0.. again, so they are pending once more, read at
    /// the next value read as any other. The replay must start with nothing pending (their slots would collide):
    /// <see cref="Verify"/> first.
    /// </summary>
    internal void Rearm(IReadOnlyList<Func<long, long, string>> captured)
    {
        if (captured.Count == 0) return;
        lock (_gate)
        {
            if (_pending.Count != 0) throw new InvalidOperationException("DeferredIndexChecks.Rearm: checks are pending; verify them before a replay");
            _pending.AddRange(captured);
        }
    }

    /// <summary>Reads the verdicts of the queued checks (a host wait); throws the first failure's error.</summary>
    internal void Verify()
    {
        lock (_gate) VerifyLocked("reported at the first read of a value after the op");
    }

    /// <param name="when">Where the error surfaces, for its message (it is not where the bad index was used).</param>
    private void VerifyLocked(string when)
    {
        // Reading the verdicts is itself a device→host copy, which calls back here: that inner call does nothing.
        if (_verifying || _pending.Count == 0) return;
        _verifying = true;
        try
        {
            int n = _pending.Count;
            var describe = _pending.ToArray();
            _pending.Clear();
            long[] found;
            using (var used = _slots!.Narrow(0, 0, n))
            {
                found = used.ToLongArray();
                used.Fill(NoViolation); // queued; the next checks find fresh slots
            }
            for (int i = 0; i < n; i++)
            {
                if (found[2 * i] == NoViolation) continue;
                throw new ArgumentOutOfRangeException("index",
                    describe[i](found[2 * i + 1], found[2 * i]) + $" (checked on {device}; {when})");
            }
        }
        finally { _verifying = false; }
    }

    /// <summary>The coordinates of C-order position <paramref name="flat"/> in <paramref name="shape"/>, as "[i, j]".</summary>
    internal static string Position(long flat, ReadOnlySpan<int> shape)
    {
        var at = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            if (shape[d] == 0) break;
            at[d] = (int)(flat % shape[d]);
            flat /= shape[d];
        }
        return Tensor.FormatShape(at);
    }
}
