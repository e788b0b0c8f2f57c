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
    private Tensor? _ids;
    private int[] _host = [];
    private bool _disposed;

    /// <summary>How many ids the sampler has seen: what the next read gathers.</summary>
    public int Count => sampler.SeenIds.Count;

    /// <summary>
    /// The seen ids on the host and on <paramref name="device"/> (the same ids in the same order; the tensor null while
    /// none was seen). Uploads only the ids not there yet (one host→device copy, appended on the device).
    /// </summary>
    public (int[] Ids, Tensor? OnDevice) On(Device device)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var seen = sampler.SeenIds;
        if (_ids is not null && _ids.Device != device) Drop();
        int have = _host.Length;
        if (seen.Count > have)
        {
            var tail = new long[seen.Count - have];
            for (int i = 0; i < tail.Length; i++) tail[i] = seen[have + i];
            using (var scope = TensorScope.Begin())
            {
                var up = Tensor.FromArray(tail, device, tail.Length);
                var grown = TensorScope.Detach(_ids is null ? up : Tensor.Concat(0, _ids, up));
                _ids?.Dispose();
                _ids = grown;
            }
            _host = seen.ToArray();
        }
        return (_host, _ids);
    }

    private void Drop()
    {
        _ids?.Dispose();
        _ids = null;
        _host = [];
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Drop();
    }
}
