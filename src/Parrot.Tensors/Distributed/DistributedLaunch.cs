using System.Globalization;

namespace Parrot.Tensors.Distributed;

/// <summary>How this process was started: by which launcher, as which rank of how many.</summary>
/// <param name="Launcher">"mpirun" (OMPI_COMM_WORLD_*), "slurm" (SLURM_PROCID/SLURM_NTASKS), "env" (torchrun-style RANK/WORLD_SIZE) or "none".</param>
/// <param name="Rank">This process's rank.</param>
/// <param name="WorldSize">Number of processes.</param>
/// <param name="LocalRank">Rank on this machine (picks the GPU).</param>
public sealed record LaunchInfo(string Launcher, int Rank, int WorldSize, int LocalRank);

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
            return Checked("mpirun", Required("OMPI_COMM_WORLD_RANK"), ompiSize, IntFromEnvironment("OMPI_COMM_WORLD_LOCAL_RANK") ?? 0, "OMPI_COMM_WORLD_");
        if (IntFromEnvironment("WORLD_SIZE") is int envSize)
            return Checked("env", Required("RANK"), envSize, IntFromEnvironment("LOCAL_RANK") ?? 0, "");
        if (IntFromEnvironment("SLURM_NTASKS") is int slurmSize && slurmSize > 1)
            return Checked("slurm", Required("SLURM_PROCID"), slurmSize, IntFromEnvironment("SLURM_LOCALID") ?? 0, "SLURM_");
        return new LaunchInfo("none", 0, 1, 0);
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

    private static LaunchInfo Checked(string launcher, int rank, int size, int local, string prefix)
    {
        if (size < 1) throw new DistributedException($"{launcher}: world size {size} must be at least 1");
        if (rank >= size) throw new DistributedException($"{launcher}: rank {rank} is not below the world size {size} ({prefix}RANK/{prefix}SIZE)");
        return new LaunchInfo(launcher, rank, size, local);
    }
}
