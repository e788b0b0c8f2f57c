using System.CommandLine;
using Parrot.Tensors;
using Parrot.Tensors.Distributed;

namespace Parrot.Cli;

/// <summary>
/// What the training commands share under a launcher (<c>mpirun -np N parrot train-lm ...</c>): the <c>--zero</c>
/// option, joining the process group, and turning a failure on one rank into the end of the whole job (so no
/// rank waits in a collective for a peer that has given up).
/// </summary>
internal static class DistributedCli
{
    public static Option<int> ZeroOption() => new("--zero")
    {
        Description = "Under mpirun: 0 plain data parallel, 1 shard the optimizer state, 2 shard the gradients too (ZeRO)",
        DefaultValueFactory = _ => 0,
    };

    /// <summary>Checks --zero and joins the launcher's process group (a group of one without a launcher).</summary>
    public static ProcessGroup Join(int zero)
    {
        if (zero is not (0 or 1 or 2)) throw new CliException($"--zero must be 0, 1 or 2, got {zero}");
        try { return DistributedLaunch.CreateGroup(Device.Cpu); }
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
