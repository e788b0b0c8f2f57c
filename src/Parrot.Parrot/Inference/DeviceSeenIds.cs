using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// The ids a sampler has seen (<see cref="TokenSampler.SeenIds"/>: prompt and answer), kept on the logits' device as
/// int64 [s] for the candidates read to gather their logits (<see cref="TopKCandidates.ReadRows"/>, a repetition
/// penalty). The copy grows by the ids seen since the last read — usually the one token just picked, none when it was
/// seen before —, so a long prompt goes up once, not every step. One per sequence; the owner disposes it.
/// </summary>
internal sealed class DeviceSeenIds(TokenSampler sampler) : IDisposable
{
    private Tensor? _buffer; // int64 [capacity] on the device, doubled when full: its first _host.Length entries are uploaded
    private Tensor? _ids;    // the uploaded prefix of _buffer (a view)
    private int[] _host = [];
    private bool _disposed;

    /// <summary>How many ids the sampler has seen: what the next read gathers.</summary>
    public int Count => sampler.SeenIds.Count;

    /// <summary>
    /// The seen ids on the host and on <paramref name="device"/> (the same ids in the same order; the tensor null while
    /// none was seen). Uploads only the ids not there yet (one host→device copy into the buffer's free room; the buffer
    /// doubles when full, so a step copies its new ids, not every id seen).
    /// </summary>
    public (int[] Ids, Tensor? OnDevice) On(Device device)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var seen = sampler.SeenIds;
        if (_buffer is not null && _buffer.Device != device) Drop();
        int have = _host.Length;
        if (seen.Count > have)
        {
            var tail = new long[seen.Count - have];
            for (int i = 0; i < tail.Length; i++) tail[i] = seen[have + i];
            if (_buffer is null || _buffer.Dim(0) < seen.Count)
            {
                // Detached: the caller's TensorScope (a read's temporaries) must not take what outlives the read.
                var grown = TensorScope.Detach(Tensor.Empty([Math.Max(64, 2 * seen.Count)], DType.I64, device));
                if (_ids is not null)
                    using (var kept = grown.Narrow(0, 0, have)) kept.CopyFrom(_ids);
                Drop();
                _buffer = grown;
            }
            using (var up = Tensor.FromArray(tail, Device.Cpu, tail.Length))
            using (var room = _buffer.Narrow(0, have, tail.Length))
                room.CopyFrom(up);
            _ids?.Dispose();
            _ids = TensorScope.Detach(_buffer.Narrow(0, 0, seen.Count));
            _host = seen.ToArray();
        }
        return (_host, _ids);
    }

    private void Drop()
    {
        _ids?.Dispose();
        _buffer?.Dispose();
        (_ids, _buffer) = (null, null);
        _host = [];
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Drop();
    }
}
