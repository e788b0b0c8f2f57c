using System.Globalization;

namespace Parrot.Tensors.Distributed;

/// <summary>How this process was started: by which launcher, as which rank of how many.</summary>
/// <param name="Launcher">"mpirun" (OMPI_COMM_WORLD_*), "slurm" (SLURM_PROCID/SLURM_NTASKS), "env" (torchrun-style RANK/WORLD_SIZE) or "none".</param>
/// <param name="Rank">This process's rank.</param>
/// <param name="WorldSize">Number of processes.</param>
/// <param name="LocalRank">Rank on this machine (picks the GPU: see <see cref="DistributedLaunch.DeviceForRank"/>).</param>
/// <param name="LocalSize">Ranks on this machine, where the launcher says (OMPI_COMM_WORLD_LOCAL_SIZE, LOCAL_WORLD_SIZE,
/// SLURM_NTASKS_PER_NODE); null when it does not.</param>
public sealed record LaunchInfo(string Launcher, int Rank, int WorldSize, int LocalRank, int? LocalSize = null)
{
    /// <summary>
    /// Ranks that share this machine's processors: <see cref="LocalSize"/> where the launcher says it, else the whole
    /// world. The world is an upper bound: a multi-machine launch that does not say its local size gives each rank less
    /// than its share, never more, so N ranks on one machine cannot each take every processor.
    /// </summary>
    public int RanksOnThisMachine => LocalSize ?? WorldSize;

    /// <summary>
    /// This rank's share of the machine's <paramref name="processorCount"/> processors for its own worker threads:
    /// processorCount / <see cref="RanksOnThisMachine"/>, at least 1. Without a launcher (a world of one) it is all of them.
    /// </summary>
    public int ProcessorShare(int processorCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(processorCount, 1);
        return Math.Max(1, processorCount / Math.Max(1, RanksOnThisMachine));
    }
}

/// <summary>
/// Reads the launcher's environment and creates the matching <see cref="ProcessGroup"/>:
/// <list type="bullet">
/// <item><c>mpirun -np N</c> (Open MPI: OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK) or <c>srun --mpi=pmix</c>
/// (SLURM_PROCID/NTASKS/LOCALID): MPI for CPU tensors; NCCL for GPU tensors with its unique id broadcast over MPI;</item>
/// <item>torchrun-style <c>RANK</c>, <c>WORLD_SIZE</c>, <c>LOCAL_RANK</c>, <c>MASTER_ADDR</c>, <c>MASTER_PORT</c>:
/// NCCL for GPU tensors, its unique id handed out by rank 0 over one TCP connection per rank (the only bytes we
/// send ourselves); CPU tensors need MPI, so such a launch with more than one rank on the CPU is an error;</item>
/// <item>nothing (or a world of 1): <see cref="SingleProcessGroup"/>.</item>
/// </list>
/// </summary>
public static class DistributedLaunch
{
    /// <summary>The launch as the environment describes it; throws <see cref="DistributedException"/> on inconsistent variables.</summary>
    public static LaunchInfo Detect()
    {
        if (IntFromEnvironment("OMPI_COMM_WORLD_SIZE") is int ompiSize)
            return Checked("mpirun", Required("OMPI_COMM_WORLD_RANK"), ompiSize, IntFromEnvironment("OMPI_COMM_WORLD_LOCAL_RANK") ?? 0,
                IntFromEnvironment("OMPI_COMM_WORLD_LOCAL_SIZE"), "OMPI_COMM_WORLD_");
        if (IntFromEnvironment("WORLD_SIZE") is int envSize)
            return Checked("env", Required("RANK"), envSize, IntFromEnvironment("LOCAL_RANK") ?? 0, IntFromEnvironment("LOCAL_WORLD_SIZE"), "");
        if (IntFromEnvironment("SLURM_NTASKS") is int slurmSize && slurmSize > 1)
            return Checked("slurm", Required("SLURM_PROCID"), slurmSize, IntFromEnvironment("SLURM_LOCALID") ?? 0, IntFromEnvironment("SLURM_NTASKS_PER_NODE"), "SLURM_");
        return new LaunchInfo("none", 0, 1, 0);
    }

    /// <summary>
    /// The device rank <paramref name="launch"/> computes on when <paramref name="requested"/> was asked for: one GPU per
    /// rank, so <c>cuda</c> (= cuda:0) gives local rank r cuda:r, and <c>cuda:B</c> gives it cuda:(B + r) (B shifts the
    /// base, e.g. to leave cuda:0 to another job). A CPU request, or a world of one, is returned as it is. Throws
    /// <see cref="DistributedException"/> naming both counts when this machine has fewer CUDA devices
    /// (<paramref name="deviceCount"/>) than its ranks need from the base on. (NCCL refuses two ranks on one GPU, and
    /// ranks sharing GPU 0 would also share its memory, so every rank must have its own.)
    /// </summary>
    public static Device DeviceForRank(Device requested, LaunchInfo launch, int deviceCount)
    {
        ArgumentNullException.ThrowIfNull(launch);
        if (requested.Kind != DeviceKind.Cuda || launch.WorldSize == 1) return requested;
        int b = requested.Index;
        if (launch.LocalSize is int local)
        {
            if (launch.LocalRank >= local)
                throw new DistributedException($"{launch.Launcher}: local rank {launch.LocalRank} is not below the {local} ranks on this machine");
            if (b + local > deviceCount)
                throw new DistributedException($"{local} ranks on this machine need {local} CUDA devices (one each, cuda:{b}..cuda:{b + local - 1}), but it has {deviceCount}" +
                                               (b > 0 ? $" (cuda:0..cuda:{deviceCount - 1}; --device cuda:{b} starts the ranks at {b})" : ""));
        }
        else if (b + launch.LocalRank >= deviceCount)
            throw new DistributedException($"local rank {launch.LocalRank} of this machine needs its own CUDA device, cuda:{b + launch.LocalRank}, but the machine has {deviceCount} " +
                                           $"(at least {launch.LocalRank + 1} ranks here, {deviceCount} CUDA devices)");
        return new Device(DeviceKind.Cuda, b + launch.LocalRank);
    }

    /// <summary>
    /// The process group for tensors on <paramref name="device"/> (CPU: MPI; CUDA: NCCL), or a
    /// <see cref="SingleProcessGroup"/> for a world of one. Throws <see cref="DistributedException"/> with the reason
    /// when the launch cannot be served (no libmpi, torchrun-style CPU launch, MPI disagreeing with the environment).
    /// </summary>
    public static ProcessGroup CreateGroup(Device device)
    {
        var launch = Detect();
        if (launch.WorldSize == 1) return new SingleProcessGroup(device);
        if (device.Kind == DeviceKind.Cuda) return NcclProcessGroup.Create(launch, device);
        if (launch.Launcher == "env")
            throw new DistributedException($"RANK/WORLD_SIZE ask for {launch.WorldSize} ranks on the CPU, and CPU tensors are exchanged through MPI: " +
                                           $"launch with mpirun -np {launch.WorldSize} (torchrun-style variables serve GPU training over NCCL)");
        var world = MpiProcessGroup.World;
        if (world.WorldSize != launch.WorldSize || world.Rank != launch.Rank)
            throw new DistributedException($"MPI says rank {world.Rank} of {world.WorldSize}, the {launch.Launcher} environment rank {launch.Rank} of {launch.WorldSize}: " +
                                           "was this process started by a different MPI than the libmpi loaded here?");
        return world;
    }

    /// <summary>An integer environment variable, or null when it is not set; a malformed value is an error naming it.</summary>
    public static int? IntFromEnvironment(string name)
    {
        var v = Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrWhiteSpace(v)) return null;
        return int.TryParse(v.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int i) ? i
            : throw new DistributedException($"environment variable {name}='{v}' is not a non-negative integer");
    }

    private static int Required(string name) => IntFromEnvironment(name) ?? throw new DistributedException($"environment variable {name} is not set (the launcher sets it with the world size)");

    private static LaunchInfo Checked(string launcher, int rank, int size, int local, int? localSize, string prefix)
    {
        if (size < 1) throw new DistributedException($"{launcher}: world size {size} must be at least 1");
        if (rank >= size) throw new DistributedException($"{launcher}: rank {rank} is not below the world size {size} ({prefix}RANK/{prefix}SIZE)");
        if (localSize is < 1) throw new DistributedException($"{launcher}: {localSize} ranks on this machine must be at least 1");
        return new LaunchInfo(launcher, rank, size, local, localSize);
    }
}
