using Parrot.Autograd;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;

namespace Parrot.Nn.Layers;

/// <summary>
/// Inverted dropout: in training, zeroes each element with probability p and scales the rest by 1/(1−p);
/// identity in evaluation. Call k (from 0) in training draws its mask with the seed SeedFor(seed, "dropout") + k, so
/// runs are reproducible. The call count lives in device memory next to the input and the draw reads and advances it
/// there (<see cref="Tensor.UniformAt"/>), so a training step with dropout can be recorded in a CUDA graph: replay j of
/// a graph captured after k calls drops what eager call k + j would. The graph holds the counter of its device: dispose
/// the graph before this module. A call on another device continues the count there (copied, with a wait for the
/// device), and the counter a graph recorded stays in place; replays do not advance the count another device continues.
/// </summary>
public sealed class Dropout(double p, ulong seed = 0) : Module
{
    // The calls so far: int64 [1] on the device of the latest input, made there (zeroed) at the first call. One count
    // that follows the input, so the calls form one sequence whatever device runs them.
    private Tensor? _calls;

    // Every counter made so far, one per device, kept until Dispose: a CUDA graph that recorded a call holds its
    // counter's address and reads and advances it on each replay, so a counter is never freed (a replay after a call on
    // another device would add one to whatever tensor reused the memory) nor replaced while this module lives — the
    // count moves by a copy into the target device's counter, in place.
    private readonly Dictionary<Device, Tensor> _counters = new();

    /// <summary>Drop probability.</summary>
    public double P { get; } = p is >= 0 and < 1 ? p : throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1)");

    /// <summary>
    /// Masks drawn so far (training calls with p &gt; 0; replays of a captured call count too). Reads the device
    /// counter: a wait for the device, not for use inside a step.
    /// </summary>
    public long Calls => _calls is null ? 0 : _calls.ToArray<long>()[0];

    /// <summary>Applies dropout.</summary>
    public Variable Forward(Variable x)
    {
        if (!Training || P == 0) return x;
        var calls = CallsOn(x.Value);
        using var u = Tensor.UniformAt(x.Shape, Init.SeedFor(seed, "dropout"), calls, 0, 1, DType.F32);
        using var threshold = Tensor.Scalar(P, DType.F32, x.Value.Device);
        using var keep = u.Ge(threshold);
        using var mask = keep.To(x.DType);
        return x * new Variable(mask * (1 / (1 - P)));
    }

    /// <summary>
    /// The call counter on <paramref name="x"/>'s device: made there at the first call on that device (with the count
    /// so far), and when the input comes back to it, the count so far copied into it in place.
    /// </summary>
    private Tensor CallsOn(Tensor x)
    {
        var device = x.Device;
        if (_calls is not null && _calls.Device == device) return _calls;
        // Made or moved inside a capture, the counter's zeroing or copy would be recorded (each replay would reset it)
        // and its memory would come from the graph's pool: the eager run a capture needs first makes it.
        if (x.Backend is CudaBackend { IsCapturing: true })
            throw new InvalidOperationException($"Dropout(p = {P}): its call counter is not on {device} yet; run the step once eagerly on {device} before capturing it");
        if (_counters.TryGetValue(device, out var counter))
        {
            if (_calls is not null) counter.CopyFrom(_calls); // the count so far, into the address graphs recorded
        }
        else
        {
            counter = TensorScope.Detach(_calls is null ? Tensor.Zeros([1], DType.I64, device) : _calls.To(device));
            _counters.Add(device, counter);
        }
        _calls = counter;
        return counter;
    }

    /// <summary>Frees the call counters: after any CUDA graph that recorded a call of this module is disposed.</summary>
    public override void Dispose()
    {
        foreach (var counter in _counters.Values) counter.Dispose();
        _counters.Clear();
        _calls = null;
        base.Dispose();
    }
}
