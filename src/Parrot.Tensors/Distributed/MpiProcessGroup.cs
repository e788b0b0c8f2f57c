using System.Diagnostics;

namespace Parrot.Tensors.Distributed;

/// <summary>
/// Collectives on CPU tensors through Open MPI (MPI_COMM_WORLD of an <c>mpirun</c> / <c>srun --mpi=pmix</c> job).
/// MPI is initialised once per process (<see cref="World"/>) and finalised at process exit; after a failed
/// collective the exit aborts the whole job instead (MPI_Abort), so no peer is left waiting.
/// Every collective is started non-blocking (MPI_I*) and completed by polling MPI_Test against
/// <see cref="ProcessGroup.Timeout"/>. Reductions take F32, F64, I32 and I64; all-gather and broadcast any dtype.
/// </summary>
public sealed class MpiProcessGroup : ProcessGroup
{
    private static readonly Lock Gate = new();
    private static MpiProcessGroup? _world;
    private readonly nint _comm;

    private MpiProcessGroup(nint comm, int rank, int size, int localRank, string version)
    {
        _comm = comm; Rank = rank; WorldSize = size; LocalRank = localRank; LibraryVersion = version;
    }

    /// <inheritdoc/>
    public override int Rank { get; }
    /// <inheritdoc/>
    public override int WorldSize { get; }
    /// <inheritdoc/>
    public override string Backend => "mpi";
    /// <inheritdoc/>
    public override Device Device => Device.Cpu;
    /// <summary>The MPI library as it names itself ("Open MPI v4.1.4").</summary>
    public string LibraryVersion { get; }

    /// <summary>True when libmpi (Open MPI, libmpi.so.40) can be loaded; otherwise <paramref name="why"/> says what was searched.</summary>
    public static bool IsAvailable(out string why) => Cuda.Interop.CudaLibrary.TryLoad(Cuda.Interop.CudaLibrary.Mpi, out _, out why);

    /// <summary>
    /// MPI_COMM_WORLD of this process, initialising MPI on first use (MPI_THREAD_SERIALIZED). A process started
    /// without mpirun becomes a world of one (an MPI singleton).
    /// </summary>
    public static MpiProcessGroup World
    {
        get
        {
            lock (Gate)
            {
                return _world ??= Initialize();
            }
        }
    }

    private static MpiProcessGroup Initialize()
    {
        if (!IsAvailable(out string why))
            throw new DistributedException($"MPI is needed here but libmpi was not found ({why}); install Open MPI: apt-get install openmpi-bin libopenmpi-dev");
        // Open MPI installs its own SIGSEGV/SIGBUS/SIGFPE handlers unless told not to; .NET needs its own
        // (a null dereference is a SIGSEGV that the runtime turns into NullReferenceException).
        if (Environment.GetEnvironmentVariable("OMPI_MCA_opal_signal") is null) Mpi.SetEnv("OMPI_MCA_opal_signal", "", 0);
        try
        {
            Mpi.Check(Mpi.MPI_Initialized(out int initialized), "MPI_Initialized");
            if (initialized == 0)
            {
                Mpi.Check(Mpi.MPI_Init_thread(0, 0, Mpi.ThreadSerialized, out int provided), "MPI_Init_thread");
                if (provided < Mpi.ThreadSerialized)
                    throw new DistributedException($"MPI_Init_thread: the library provides thread level {provided}, MPI_THREAD_SERIALIZED (2) is needed");
            }
            nint comm = Mpi.Handle("ompi_mpi_comm_world");
            Mpi.Check(Mpi.MPI_Comm_rank(comm, out int rank), "MPI_Comm_rank");
            Mpi.Check(Mpi.MPI_Comm_size(comm, out int size), "MPI_Comm_size");
            int local = DistributedLaunch.IntFromEnvironment("OMPI_COMM_WORLD_LOCAL_RANK") ?? DistributedLaunch.IntFromEnvironment("SLURM_LOCALID") ?? 0;
            var group = new MpiProcessGroup(comm, rank, size, local, Mpi.LibraryVersion());
            AppDomain.CurrentDomain.ProcessExit += (_, _) => group.Shutdown();
            return group;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            throw new DistributedException($"libmpi could not be used: {e.Message}", e);
        }
    }

    private bool _down;

    private void Shutdown()
    {
        lock (Gate)
        {
            if (_down) return;
            _down = true;
            if (IsBroken) Mpi.MPI_Abort(_comm, 1);
            else if (Mpi.MPI_Finalized(out int f) == Mpi.Success && f == 0) Mpi.MPI_Finalize();
        }
    }

    /// <summary>Ends the whole job now (MPI_Abort): every rank exits with <paramref name="exitCode"/>.</summary>
    public void Abort(int exitCode)
    {
        lock (Gate)
        {
            _down = true;
            Mpi.MPI_Abort(_comm, exitCode);
        }
    }

    private static nint TypeOf(DType t, string op) => t switch
    {
        DType.F32 => Mpi.Handle("ompi_mpi_float"),
        DType.F64 => Mpi.Handle("ompi_mpi_double"),
        DType.I32 => Mpi.Handle("ompi_mpi_int"),
        DType.I64 => Mpi.Handle("ompi_mpi_int64_t"),
        _ => throw new NotSupportedException($"{op}: MPI reduces F32, F64, I32 and I64 tensors, not {t.Name()}"),
    };

    private static nint OpOf(CollectiveOp op) => op switch
    {
        CollectiveOp.Sum or CollectiveOp.Average => Mpi.Handle("ompi_mpi_op_sum"),
        CollectiveOp.Max => Mpi.Handle("ompi_mpi_op_max"),
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown reduction"),
    };

    private static int CountOf(long count, string op) => count <= int.MaxValue ? (int)count
        : throw new NotSupportedException($"{op}: {count} elements exceed MPI's int count; split the tensor");

    /// <inheritdoc/>
    public override PendingCollective StartAllReduce(Tensor tensor, CollectiveOp op = CollectiveOp.Sum)
    {
        CheckTensor(tensor, "AllReduce");
        Mpi.Check(Mpi.MPI_Iallreduce(Mpi.InPlace, tensor.DataPointer, CountOf(tensor.Count, "AllReduce"), TypeOf(tensor.DType, "AllReduce"), OpOf(op), _comm, out nint request), "MPI_Iallreduce");
        return new Pending(this, request, $"AllReduce of {tensor.Count} {tensor.DType.Name()}", op == CollectiveOp.Average ? tensor : null, tensor);
    }

    /// <inheritdoc/>
    public override PendingCollective StartReduceScatter(Tensor input, Tensor output, CollectiveOp op = CollectiveOp.Sum)
    {
        CheckTensor(input, "ReduceScatter", "input");
        CheckTensor(output, "ReduceScatter", "output");
        CheckParts(output, input, "ReduceScatter");
        Mpi.Check(Mpi.MPI_Ireduce_scatter_block(input.DataPointer, output.DataPointer, CountOf(output.Count, "ReduceScatter"), TypeOf(input.DType, "ReduceScatter"), OpOf(op), _comm, out nint request), "MPI_Ireduce_scatter_block");
        return new Pending(this, request, $"ReduceScatter of {input.Count} {input.DType.Name()}", op == CollectiveOp.Average ? output : null, input, output);
    }

    /// <inheritdoc/>
    public override PendingCollective StartAllGather(Tensor input, Tensor output)
    {
        CheckTensor(input, "AllGather", "input");
        CheckTensor(output, "AllGather", "output");
        CheckParts(input, output, "AllGather");
        long bytes = input.Count * input.ElementSize;
        nint byteType = Mpi.Handle("ompi_mpi_byte");
        int count = CountOf(bytes, "AllGather");
        // The input already sitting at this rank's place in the output is MPI_IN_PLACE.
        nint send = input.DataPointer == output.DataPointer + (nint)(Rank * bytes) ? Mpi.InPlace : input.DataPointer;
        Mpi.Check(Mpi.MPI_Iallgather(send, count, byteType, output.DataPointer, count, byteType, _comm, out nint request), "MPI_Iallgather");
        return new Pending(this, request, $"AllGather of {output.Count} {output.DType.Name()}", null, input, output);
    }

    /// <inheritdoc/>
    public override PendingCollective StartBroadcast(Tensor tensor, int root = 0)
    {
        CheckTensor(tensor, "Broadcast");
        if (root < 0 || root >= WorldSize) throw new ArgumentOutOfRangeException(nameof(root), root, $"Broadcast: root must be a rank 0..{WorldSize - 1}");
        Mpi.Check(Mpi.MPI_Ibcast(tensor.DataPointer, CountOf(tensor.Count * tensor.ElementSize, "Broadcast"), Mpi.Handle("ompi_mpi_byte"), root, _comm, out nint request), "MPI_Ibcast");
        return new Pending(this, request, $"Broadcast of {tensor.Count} {tensor.DType.Name()} from rank {root}", null, tensor);
    }

    /// <summary>Broadcasts raw bytes from <paramref name="root"/> (NCCL's unique id).</summary>
    internal unsafe void BroadcastBytes(Span<byte> bytes, int root)
    {
        fixed (byte* p = bytes)
        {
            Mpi.Check(Mpi.MPI_Ibcast((nint)p, bytes.Length, Mpi.Handle("ompi_mpi_byte"), root, _comm, out nint request), "MPI_Ibcast");
            new Pending(this, request, $"Broadcast of {bytes.Length} bytes", null).Wait();
        }
    }

    /// <inheritdoc/>
    public override void Barrier()
    {
        if (IsBroken) throw new DistributedException($"Barrier on {this}: the group is broken by an earlier failed collective");
        Mpi.Check(Mpi.MPI_Ibarrier(_comm, out nint request), "MPI_Ibarrier");
        new Pending(this, request, "Barrier", null).Wait();
    }

    /// <summary>A started MPI request; holds its tensors alive until it completes.</summary>
    private sealed class Pending(MpiProcessGroup group, nint request, string what, Tensor? average, params Tensor[] keep) : PendingCollective
    {
        private nint _request = request;
        private bool _done;
        private readonly Tensor[] _keep = keep;

        public override bool Test()
        {
            if (_done) return true;
            Mpi.Check(Mpi.MPI_Test(ref _request, out int flag, 0), "MPI_Test");
            if (flag == 0) return false;
            _done = true;
            GC.KeepAlive(_keep);
            if (average is not null)
            {
                using var scaled = average * (1.0 / group.WorldSize);
                average.CopyFrom(scaled);
            }
            return true;
        }

        public override void Wait() => PollUntilDone(group, what, "the job is aborted, the last checkpoint is intact", polls =>
        {
            // Spin briefly (collectives of small buckets finish in microseconds), then sleep so a waiting rank
            // does not take the core a computing rank on the same machine needs.
            if (polls < 200) Thread.Yield(); else Thread.Sleep(1);
        });
    }
}
