using System.Globalization;

namespace Parrot.Tensors.Distributed;

/// <summary>
/// The ranks of a data-parallel job and the collectives between them, on tensors. Backends: <see cref="SingleProcessGroup"/>
/// (world size 1: every collective is the identity), <see cref="MpiProcessGroup"/> (CPU tensors, Open MPI) and
/// <see cref="NcclProcessGroup"/> (GPU tensors, NCCL, bootstrapped through MPI or the launcher's rendezvous).
/// <see cref="DistributedLaunch.CreateGroup"/> picks one from the launcher's environment.
/// Every rank must call the same collectives in the same order with tensors of the same shape and dtype.
/// Tensors are contiguous and on the backend's device; results are written in place (AllReduce, Broadcast) or
/// into the output tensor. Each collective waits at most <see cref="Timeout"/>, then throws
/// <see cref="CollectiveTimeoutException"/> instead of hanging on a dead peer.
/// </summary>
public abstract class ProcessGroup : IDisposable
{
    /// <summary>This process's rank, 0..WorldSize−1.</summary>
    public abstract int Rank { get; }
    /// <summary>Number of ranks.</summary>
    public abstract int WorldSize { get; }
    /// <summary>Rank among the processes of this machine (picks the GPU).</summary>
    public int LocalRank { get; protected init; }
    /// <summary>"single", "mpi" or "nccl".</summary>
    public abstract string Backend { get; }
    /// <summary>True on rank 0, the rank that logs and writes files.</summary>
    public bool IsMain => Rank == 0;

    /// <summary>
    /// How long one collective may take before it is declared failed; from <c>PARROT_DIST_TIMEOUT</c> (seconds)
    /// when set, else 10 minutes (NCCL's and PyTorch's usual order of magnitude).
    /// </summary>
    public TimeSpan Timeout { get; set; } = DefaultTimeout();

    /// <summary>True once a collective timed out or failed: the job cannot continue.</summary>
    public bool IsBroken { get; protected internal set; }

    /// <summary>Starts an in-place reduction of <paramref name="tensor"/> over all ranks.</summary>
    public abstract PendingCollective StartAllReduce(Tensor tensor, CollectiveOp op = CollectiveOp.Sum);

    /// <summary>
    /// Starts a reduce-scatter: <paramref name="input"/> (WorldSize·n elements, the same on every rank in layout) is
    /// reduced over ranks and rank r receives elements [r·n, (r+1)·n) in <paramref name="output"/> (n elements).
    /// </summary>
    public abstract PendingCollective StartReduceScatter(Tensor input, Tensor output, CollectiveOp op = CollectiveOp.Sum);

    /// <summary>Starts an all-gather: rank r's <paramref name="input"/> (n elements) lands at [r·n, (r+1)·n) of every rank's <paramref name="output"/>.</summary>
    public abstract PendingCollective StartAllGather(Tensor input, Tensor output);

    /// <summary>Starts a broadcast of <paramref name="tensor"/> from rank <paramref name="root"/> into every other rank's tensor.</summary>
    public abstract PendingCollective StartBroadcast(Tensor tensor, int root = 0);

    /// <summary>Waits until every rank has reached the barrier (or the timeout passes).</summary>
    public abstract void Barrier();

    /// <summary>In-place reduction of <paramref name="tensor"/> over all ranks.</summary>
    public void AllReduce(Tensor tensor, CollectiveOp op = CollectiveOp.Sum) => StartAllReduce(tensor, op).Wait();

    /// <summary>Reduce-scatter (see <see cref="StartReduceScatter"/>).</summary>
    public void ReduceScatter(Tensor input, Tensor output, CollectiveOp op = CollectiveOp.Sum) => StartReduceScatter(input, output, op).Wait();

    /// <summary>All-gather (see <see cref="StartAllGather"/>).</summary>
    public void AllGather(Tensor input, Tensor output) => StartAllGather(input, output).Wait();

    /// <summary>Broadcast from <paramref name="root"/>.</summary>
    public void Broadcast(Tensor tensor, int root = 0) => StartBroadcast(tensor, root).Wait();

    /// <summary>Reduces one float64 number over ranks (losses, token counts, squared norms).</summary>
    public double AllReduce(double value, CollectiveOp op = CollectiveOp.Sum)
    {
        if (WorldSize == 1) return value;
        using var t = Tensor.FromArray([value], 1);
        using var onDevice = OnDevice(t);
        AllReduce(onDevice, op);
        return onDevice.Device == t.Device ? onDevice.ToDoubleArray()[0] : onDevice.To(Device.Cpu).ToDoubleArray()[0];
    }

    /// <summary>The device this group's collectives run on (CPU for MPI, the rank's GPU for NCCL).</summary>
    public abstract Device Device { get; }

    private Tensor OnDevice(Tensor t) => t.Device == Device ? t.Alias() : t.To(Device);

    /// <summary>"rank 1/2 (mpi)".</summary>
    public override string ToString() => $"rank {Rank}/{WorldSize} ({Backend})";

    /// <summary>Releases the backend's resources (MPI is finalised at process exit; a broken group aborts the job).</summary>
    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>Throws unless <paramref name="t"/> can take part in a collective of this group.</summary>
    protected void CheckTensor(Tensor t, string op, string role = "tensor")
    {
        ArgumentNullException.ThrowIfNull(t);
        t.EnsureAlive(op);
        if (IsBroken) throw new DistributedException($"{op} on {this}: the group is broken by an earlier failed collective");
        if (t.Device != Device) throw new ArgumentException($"{op}: the {role} is on {t.Device}, the {Backend} group works on {Device}");
        if (!t.IsContiguous) throw new ArgumentException($"{op}: the {role} {t.ShapeString()} is not contiguous");
    }

    /// <summary>Throws unless <paramref name="output"/> holds WorldSize times the elements of <paramref name="part"/>, in the same dtype.</summary>
    protected void CheckParts(Tensor part, Tensor output, string op)
    {
        if (part.DType != output.DType) throw new ArgumentException($"{op}: {part.DType.Name()} and {output.DType.Name()} differ");
        if (output.Count != part.Count * WorldSize)
            throw new ArgumentException($"{op}: the full tensor has {output.Count} elements, not world size {WorldSize} × {part.Count}");
    }

    internal static TimeSpan DefaultTimeout()
    {
        var v = Environment.GetEnvironmentVariable("PARROT_DIST_TIMEOUT");
        if (string.IsNullOrWhiteSpace(v)) return TimeSpan.FromMinutes(10);
        if (!double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double s) || !(s > 0) || double.IsInfinity(s))
            throw new DistributedException($"PARROT_DIST_TIMEOUT must be a positive number of seconds, got '{v}'");
        return TimeSpan.FromSeconds(s);
    }
}
