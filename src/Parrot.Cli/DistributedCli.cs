using System.CommandLine;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using Parrot.Tensors.Distributed;

namespace Parrot.Cli;

/// <summary>
/// What the training commands share under a launcher (<c>mpirun -np N parrot train-lm ...</c>): the <c>--zero</c>
/// option, the device of each rank, joining the process group, and turning a failure on one rank into the end of the
/// whole job (so no rank waits in a collective for a peer that has given up).
/// </summary>
internal static class DistributedCli
{
    public static Option<int> ZeroOption() => new("--zero")
    {
        Description = "Under mpirun: 0 plain data parallel, 1 shard the optimizer state, 2 shard the gradients too (ZeRO)",
        DefaultValueFactory = _ => 0,
    };

    /// <summary>
    /// This rank's device for <c>--device</c> <paramref name="text"/>, checked like <see cref="DeviceOption.Resolve"/>
    /// (before any file is read). Under a launcher with more than one rank a CUDA request means one GPU per rank:
    /// local rank r gets cuda:(B + r), B being the ordinal given (0 for plain <c>cuda</c>); too few GPUs on the machine
    /// for its ranks is an error naming both counts (<see cref="DistributedLaunch.DeviceForRank"/>). The GPU count is
    /// read without opening any GPU, so no rank takes memory on a GPU it will not use.
    /// </summary>
    public static Device ResolveDevice(string? text, string command) => ResolveDevice(text, command, DistributedLaunch.Detect, CudaBackend.DeviceCount);

    /// <summary><see cref="ResolveDevice(string?, string)"/> with the launch and the GPU count given (tests).</summary>
    internal static Device ResolveDevice(string? text, string command, Func<LaunchInfo> detect, Func<int> deviceCount)
    {
        var requested = DeviceOption.Resolve(text, command, open: false);
        if (requested.Kind != DeviceKind.Cuda) return requested;
        LaunchInfo launch;
        try { launch = detect(); }
        catch (DistributedException e) { throw new CliException(e.Message); }
        if (launch.WorldSize > 1)
        {
            int count;
            try { count = deviceCount(); }
            catch (CudaUnavailableException e) { throw new CliException($"--device {text}: {e.Message}"); }
            try { requested = DistributedLaunch.DeviceForRank(requested, launch, count); }
            catch (DistributedException e) { throw new CliException($"--device {text} (rank {launch.Rank} of {launch.WorldSize}): {e.Message}"); }
        }
        return DeviceOption.Resolve(requested.ToString(), command);
    }

    /// <summary>
    /// Checks --zero and joins the launcher's process group for tensors on <paramref name="device"/> (this rank's, from
    /// <see cref="ResolveDevice"/>): MPI on the CPU, NCCL on GPUs, a group of one without a launcher.
    /// </summary>
    public static ProcessGroup Join(int zero, Device device)
    {
        if (zero is not (0 or 1 or 2)) throw new CliException($"--zero must be 0, 1 or 2, got {zero}");
        try { return DistributedLaunch.CreateGroup(device); }
        catch (DistributedException e) { throw new CliException(e.Message); }
    }

    /// <summary>
    /// Worker threads this rank of <paramref name="group"/> may use for its own parallel work (checking images while
    /// loading data): every processor without a launcher, else its share of the machine's processors
    /// (<see cref="LaunchInfo.ProcessorShare"/>), since each rank on the machine does the same work at the same time.
    /// </summary>
    public static int ProcessorShare(ProcessGroup group)
    {
        if (group.WorldSize == 1) return Environment.ProcessorCount;
        try { return DistributedLaunch.Detect().ProcessorShare(Environment.ProcessorCount); }
        catch (DistributedException e) { throw new CliException(e.Message); }
    }

    /// <summary>
    /// Runs <paramref name="body"/>; with more than one rank, an exception is reported with the rank and ends the
    /// whole job (MPI_Abort) instead of leaving the other ranks blocked until their timeout.
    /// </summary>
    public static int Guard(ProcessGroup group, string command, Func<int> body)
    {
        if (group.WorldSize == 1 || group is not MpiProcessGroup mpi) return body();
        try { return body(); }
        catch (Exception e)
        {
            Console.Error.WriteLine($"parrot {command} (rank {group.Rank} of {group.WorldSize}): {e.Message}");
            Console.Error.Flush();
            mpi.Abort(e is CliException ? 2 : 1);
            throw; // not reached: MPI_Abort ends the process
        }
    }
}
