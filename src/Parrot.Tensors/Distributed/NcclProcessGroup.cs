using System.Diagnostics;
using System.Runtime.InteropServices;
using Parrot.Tensors.Cuda;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Distributed;

/// <summary>
/// Collectives on GPU tensors through NCCL, one rank per GPU (the rank's device is cuda:LOCAL_RANK unless the
/// caller names another). The communicator is created from a unique id that rank 0 draws and hands to the others
/// through MPI (mpirun, srun) or the torchrun-style TCP rendezvous. Collectives are queued on the backend's one
/// stream, so they are ordered with the kernels around them; <see cref="PendingCollective.Wait"/> polls the stream
/// and NCCL's asynchronous error against <see cref="ProcessGroup.Timeout"/> and aborts the communicator on failure.
/// </summary>
public sealed class NcclProcessGroup : ProcessGroup
{
    private nint _comm;
    private readonly CudaContext _context;

    private NcclProcessGroup(nint comm, CudaContext context, int rank, int size, int localRank, Device device)
    {
        _comm = comm; _context = context; Rank = rank; WorldSize = size; LocalRank = localRank; Device = device;
    }

    /// <inheritdoc/>
    public override int Rank { get; }
    /// <inheritdoc/>
    public override int WorldSize { get; }
    /// <inheritdoc/>
    public override string Backend => "nccl";
    /// <inheritdoc/>
    public override Device Device { get; }

    /// <summary>The NCCL version as "2.21.5", or null with <paramref name="why"/> when libnccl cannot be loaded.</summary>
    public static string? Version(out string why)
    {
        if (!CudaLibrary.TryLoad(CudaLibrary.Nccl, out _, out why)) return null;
        Nccl.Check(Nccl.ncclGetVersion(out int v), "ncclGetVersion");
        return v >= 10000 ? $"{v / 10000}.{v / 100 % 100}.{v % 100}" : $"{v / 1000}.{v / 100 % 10}.{v % 100}";
    }

    /// <summary>Creates the group of <paramref name="launch"/> on <paramref name="device"/> (a CUDA device).</summary>
    public static NcclProcessGroup Create(LaunchInfo launch, Device device)
    {
        ArgumentNullException.ThrowIfNull(launch);
        if (device.Kind != DeviceKind.Cuda) throw new ArgumentException($"NCCL works on GPU tensors, not {device}");
        if (Version(out string why) is null) throw new DistributedException($"GPU training on {launch.WorldSize} ranks needs NCCL: {why}");
        var backend = Backends.For(device) as CudaBackend ?? throw new DistributedException($"{device} has no CUDA backend");
        var context = backend.Context;
        var id = new Nccl.UniqueId();
        var bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref id, 1));
        if (launch.Rank == 0) Nccl.Check(Nccl.ncclGetUniqueId(out id), "ncclGetUniqueId");
        var timeout = DefaultTimeout();
        if (launch.WorldSize == 1) { } // nothing to share
        else if (launch.Launcher is "mpirun" or "slurm") MpiProcessGroup.World.BroadcastBytes(bytes, 0);
        else TcpRendezvous.Share(bytes, launch, timeout);
        context.MakeCurrent();
        Nccl.Check(Nccl.ncclCommInitRank(out nint comm, launch.WorldSize, id, launch.Rank), $"ncclCommInitRank(rank {launch.Rank} of {launch.WorldSize})");
        return new NcclProcessGroup(comm, context, launch.Rank, launch.WorldSize, launch.LocalRank, device) { Timeout = timeout };
    }

    private static int TypeOf(DType t) => t switch
    {
        DType.F32 => Nccl.Float32,
        DType.F64 => Nccl.Float64,
        DType.BF16 => Nccl.BFloat16,
        DType.F16 => Nccl.Float16,
        DType.I32 => Nccl.Int32,
        DType.I64 => Nccl.Int64,
        DType.U8 or DType.Bool => Nccl.Uint8,
        _ => throw new NotSupportedException($"NCCL has no type for {t.Name()}"),
    };

    private static int OpOf(CollectiveOp op) => op switch
    {
        CollectiveOp.Sum => Nccl.Sum,
        CollectiveOp.Average => Nccl.Avg,
        CollectiveOp.Max => Nccl.Max,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown reduction"),
    };

    private PendingCollective Enqueue(string what, Func<int> call, string name, params Tensor[] keep)
    {
        _context.MakeCurrent();
        Nccl.Check(call(), name);
        return new Pending(this, what, keep);
    }

    /// <inheritdoc/>
    public override PendingCollective StartAllReduce(Tensor tensor, CollectiveOp op = CollectiveOp.Sum)
    {
        CheckTensor(tensor, "AllReduce");
        ulong p = (ulong)tensor.DataPointer;
        return Enqueue($"AllReduce of {tensor.Count} {tensor.DType.Name()}",
            () => Nccl.ncclAllReduce(p, p, (nuint)tensor.Count, TypeOf(tensor.DType), OpOf(op), _comm, _context.Stream), "ncclAllReduce", tensor);
    }

    /// <inheritdoc/>
    public override PendingCollective StartReduceScatter(Tensor input, Tensor output, CollectiveOp op = CollectiveOp.Sum)
    {
        CheckTensor(input, "ReduceScatter", "input");
        CheckTensor(output, "ReduceScatter", "output");
        CheckParts(output, input, "ReduceScatter");
        return Enqueue($"ReduceScatter of {input.Count} {input.DType.Name()}",
            () => Nccl.ncclReduceScatter((ulong)input.DataPointer, (ulong)output.DataPointer, (nuint)output.Count, TypeOf(input.DType), OpOf(op), _comm, _context.Stream),
            "ncclReduceScatter", input, output);
    }

    /// <inheritdoc/>
    public override PendingCollective StartAllGather(Tensor input, Tensor output)
    {
        CheckTensor(input, "AllGather", "input");
        CheckTensor(output, "AllGather", "output");
        CheckParts(input, output, "AllGather");
        return Enqueue($"AllGather of {output.Count} {output.DType.Name()}",
            () => Nccl.ncclAllGather((ulong)input.DataPointer, (ulong)output.DataPointer, (nuint)input.Count, TypeOf(input.DType), _comm, _context.Stream),
            "ncclAllGather", input, output);
    }

    /// <inheritdoc/>
    public override PendingCollective StartBroadcast(Tensor tensor, int root = 0)
    {
        CheckTensor(tensor, "Broadcast");
        if (root < 0 || root >= WorldSize) throw new ArgumentOutOfRangeException(nameof(root), root, $"Broadcast: root must be a rank 0..{WorldSize - 1}");
        ulong p = (ulong)tensor.DataPointer;
        return Enqueue($"Broadcast of {tensor.Count} {tensor.DType.Name()} from rank {root}",
            () => Nccl.ncclBroadcast(p, p, (nuint)tensor.Count, TypeOf(tensor.DType), root, _comm, _context.Stream), "ncclBroadcast", tensor);
    }

    /// <inheritdoc/>
    public override void Barrier()
    {
        // NCCL has no barrier: an all-reduce of one number, waited for, is one.
        using var one = Tensor.Zeros([1], DType.F32, Device);
        AllReduce(one);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        if (_comm != 0)
        {
            _context.MakeCurrent();
            if (IsBroken) Nccl.ncclCommAbort(_comm); else Nccl.ncclCommDestroy(_comm);
            _comm = 0;
        }
        base.Dispose();
    }

    private sealed class Pending(NcclProcessGroup group, string what, Tensor[] keep) : PendingCollective
    {
        private bool _done;

        public override bool Test()
        {
            if (_done) return true;
            group._context.MakeCurrent();
            int rc = Driver.cuStreamQuery(group._context.Stream);
            if (rc == Driver.ErrorNotReady)
            {
                Nccl.Check(Nccl.ncclCommGetAsyncError(group._comm, out int asyncError), "ncclCommGetAsyncError");
                if (asyncError != 0)
                {
                    group.IsBroken = true;
                    Nccl.Check(asyncError, what);
                }
                return false;
            }
            Driver.Check(rc, "cuStreamQuery");
            _done = true;
            GC.KeepAlive(keep);
            return true;
        }

        public override void Wait() => PollUntilDone(group, what, "the communicator is aborted", polls => { if (polls < 1000) Thread.SpinWait(20); else Thread.Sleep(1); });
    }
}
