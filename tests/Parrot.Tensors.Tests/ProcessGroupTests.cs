using Parrot.Tensors.Distributed;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The launcher detection and the group of one. The MPI collectives themselves run under mpirun with two ranks in
/// Parrot.Cli.Tests (DistributedTrainingTests: `parrot dist-check` against float64 sums, and the training runs).
/// </summary>
[NonParallelizable]
public class ProcessGroupTests
{
    private static readonly string[] Variables =
        ["OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
         "OMPI_COMM_WORLD_LOCAL_SIZE", "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"];

    private static T WithEnvironment<T>(Dictionary<string, string> values, Func<T> body)
    {
        var saved = Variables.ToDictionary(v => v, Environment.GetEnvironmentVariable);
        try
        {
            foreach (var v in Variables) Environment.SetEnvironmentVariable(v, values.GetValueOrDefault(v));
            return body();
        }
        finally
        {
            foreach (var (k, v) in saved) Environment.SetEnvironmentVariable(k, v);
        }
    }

    [Test]
    public void TheLauncherIsReadFromItsVariables()
    {
        Assert.That(WithEnvironment([], DistributedLaunch.Detect), Is.EqualTo(new LaunchInfo("none", 0, 1, 0)));
        Assert.That(WithEnvironment(new() { ["OMPI_COMM_WORLD_RANK"] = "3", ["OMPI_COMM_WORLD_SIZE"] = "4", ["OMPI_COMM_WORLD_LOCAL_RANK"] = "1" }, DistributedLaunch.Detect),
            Is.EqualTo(new LaunchInfo("mpirun", 3, 4, 1)));
        Assert.That(WithEnvironment(new() { ["RANK"] = "5", ["WORLD_SIZE"] = "8", ["LOCAL_RANK"] = "5" }, DistributedLaunch.Detect),
            Is.EqualTo(new LaunchInfo("env", 5, 8, 5)));
        Assert.That(WithEnvironment(new() { ["SLURM_PROCID"] = "2", ["SLURM_NTASKS"] = "16", ["SLURM_LOCALID"] = "2" }, DistributedLaunch.Detect),
            Is.EqualTo(new LaunchInfo("slurm", 2, 16, 2)));
        // mpirun wins over variables a batch system left behind.
        Assert.That(WithEnvironment(new() { ["OMPI_COMM_WORLD_RANK"] = "0", ["OMPI_COMM_WORLD_SIZE"] = "2", ["SLURM_PROCID"] = "0", ["SLURM_NTASKS"] = "8" }, DistributedLaunch.Detect).Launcher,
            Is.EqualTo("mpirun"));
    }

    [Test]
    public void TheRanksOnThisMachineAreReadWhereTheLauncherSaysThem()
    {
        Assert.That(WithEnvironment(new() { ["OMPI_COMM_WORLD_RANK"] = "3", ["OMPI_COMM_WORLD_SIZE"] = "4", ["OMPI_COMM_WORLD_LOCAL_RANK"] = "1", ["OMPI_COMM_WORLD_LOCAL_SIZE"] = "2" }, DistributedLaunch.Detect),
            Is.EqualTo(new LaunchInfo("mpirun", 3, 4, 1, 2)));
        Assert.That(WithEnvironment(new() { ["RANK"] = "5", ["WORLD_SIZE"] = "8", ["LOCAL_RANK"] = "5", ["LOCAL_WORLD_SIZE"] = "8" }, DistributedLaunch.Detect),
            Is.EqualTo(new LaunchInfo("env", 5, 8, 5, 8)));
        Assert.That(WithEnvironment(new() { ["SLURM_PROCID"] = "2", ["SLURM_NTASKS"] = "16", ["SLURM_LOCALID"] = "2", ["SLURM_NTASKS_PER_NODE"] = "4" }, DistributedLaunch.Detect),
            Is.EqualTo(new LaunchInfo("slurm", 2, 16, 2, 4)));
        var e = Assert.Throws<DistributedException>(() => WithEnvironment(new() { ["RANK"] = "0", ["WORLD_SIZE"] = "2", ["LOCAL_WORLD_SIZE"] = "0" }, DistributedLaunch.Detect));
        Assert.That(e!.Message, Does.Contain("0 ranks on this machine"));
    }

    [Test]
    public void EachRankGetsTheGpuOfItsLocalRank()
    {
        var cuda = new Device(DeviceKind.Cuda, 0);
        // Two machines of four GPUs, four ranks each: global rank 6 is local rank 2 on the second machine.
        Assert.That(DistributedLaunch.DeviceForRank(cuda, new LaunchInfo("mpirun", 6, 8, 2, 4), 4), Is.EqualTo(new Device(DeviceKind.Cuda, 2)));
        for (int r = 0; r < 4; r++)
            Assert.That(DistributedLaunch.DeviceForRank(cuda, new LaunchInfo("env", r, 4, r, 4), 4), Is.EqualTo(new Device(DeviceKind.Cuda, r)));
        // cuda:B moves the base: ranks 0 and 1 on cuda:2 and cuda:3.
        Assert.That(DistributedLaunch.DeviceForRank(new Device(DeviceKind.Cuda, 2), new LaunchInfo("mpirun", 1, 2, 1, 2), 4), Is.EqualTo(new Device(DeviceKind.Cuda, 3)));
        // Without the local size, the local rank alone must find its GPU.
        Assert.That(DistributedLaunch.DeviceForRank(cuda, new LaunchInfo("slurm", 9, 16, 1), 2), Is.EqualTo(new Device(DeviceKind.Cuda, 1)));
        // The CPU, and a world of one, are left as asked.
        Assert.That(DistributedLaunch.DeviceForRank(Device.Cpu, new LaunchInfo("mpirun", 1, 2, 1, 2), 0), Is.EqualTo(Device.Cpu));
        Assert.That(DistributedLaunch.DeviceForRank(new Device(DeviceKind.Cuda, 3), new LaunchInfo("none", 0, 1, 0), 4), Is.EqualTo(new Device(DeviceKind.Cuda, 3)));
    }

    /// <summary>
    /// Each rank's share of the machine's processors for its own worker threads (image checks while loading data):
    /// every rank on a machine does that work at once, so 4 local ranks on 16 cores get 4 each, not 16 each (64 threads).
    /// </summary>
    [Test]
    public void EachRankGetsItsShareOfTheMachinesProcessors()
    {
        for (int r = 0; r < 4; r++)
            Assert.That(new LaunchInfo("mpirun", r, 4, r, 4).ProcessorShare(16), Is.EqualTo(4));
        // Two machines of four ranks: the share is of this machine's processors, by its own ranks.
        Assert.That(new LaunchInfo("env", 6, 8, 2, 4).ProcessorShare(16), Is.EqualTo(4));
        Assert.That(new LaunchInfo("mpirun", 1, 4, 1, 4).ProcessorShare(18), Is.EqualTo(4), "rounded down: never more than the machine has");
        Assert.That(new LaunchInfo("mpirun", 1, 4, 1, 4).ProcessorShare(3), Is.EqualTo(1), "at least one");
        // Without a launcher, all of them, as before.
        Assert.That(new LaunchInfo("none", 0, 1, 0).ProcessorShare(16), Is.EqualTo(16));
        // A launcher that does not say how many ranks share the machine: the world is the most there can be.
        Assert.That(new LaunchInfo("slurm", 3, 8, 3).RanksOnThisMachine, Is.EqualTo(8));
        Assert.That(new LaunchInfo("slurm", 3, 8, 3).ProcessorShare(16), Is.EqualTo(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LaunchInfo("none", 0, 1, 0).ProcessorShare(0));
    }

    [Test]
    public void FewerGpusThanRanksOnAMachineIsAnErrorNamingBothCounts()
    {
        var cuda = new Device(DeviceKind.Cuda, 0);
        // Rank 0 already fails: the machine's 4 ranks cannot each have one of its 2 GPUs.
        var e = Assert.Throws<DistributedException>(() => DistributedLaunch.DeviceForRank(cuda, new LaunchInfo("mpirun", 0, 4, 0, 4), 2));
        Assert.That(e!.Message, Does.Contain("4 ranks on this machine need 4 CUDA devices").And.Contain("it has 2"));
        e = Assert.Throws<DistributedException>(() => DistributedLaunch.DeviceForRank(new Device(DeviceKind.Cuda, 3), new LaunchInfo("env", 1, 2, 1, 2), 4));
        Assert.That(e!.Message, Does.Contain("2 ranks on this machine need 2 CUDA devices (one each, cuda:3..cuda:4), but it has 4"));
        e = Assert.Throws<DistributedException>(() => DistributedLaunch.DeviceForRank(cuda, new LaunchInfo("slurm", 5, 8, 2), 2));
        Assert.That(e!.Message, Does.Contain("local rank 2").And.Contain("cuda:2").And.Contain("at least 3 ranks here, 2 CUDA devices"));
        e = Assert.Throws<DistributedException>(() => DistributedLaunch.DeviceForRank(cuda, new LaunchInfo("mpirun", 3, 4, 3, 2), 8));
        Assert.That(e!.Message, Does.Contain("local rank 3 is not below the 2 ranks"));
    }

    [Test]
    public void InconsistentLaunchesAreClearErrors()
    {
        var e = Assert.Throws<DistributedException>(() => WithEnvironment(new() { ["RANK"] = "x", ["WORLD_SIZE"] = "2" }, DistributedLaunch.Detect));
        Assert.That(e!.Message, Does.Contain("RANK='x'"));
        e = Assert.Throws<DistributedException>(() => WithEnvironment(new() { ["RANK"] = "2", ["WORLD_SIZE"] = "2" }, DistributedLaunch.Detect));
        Assert.That(e!.Message, Does.Contain("rank 2 is not below the world size 2"));
        e = Assert.Throws<DistributedException>(() => WithEnvironment(new() { ["WORLD_SIZE"] = "2" }, DistributedLaunch.Detect));
        Assert.That(e!.Message, Does.Contain("RANK is not set"));
        // Two ranks on the CPU without mpirun: CPU tensors travel over MPI only.
        e = Assert.Throws<DistributedException>(() => WithEnvironment(new() { ["RANK"] = "0", ["WORLD_SIZE"] = "2" }, () => DistributedLaunch.CreateGroup(Device.Cpu)));
        Assert.That(e!.Message, Does.Contain("mpirun -np 2"));
        Assert.That(WithEnvironment(new() { ["RANK"] = "0", ["WORLD_SIZE"] = "1" }, () => DistributedLaunch.CreateGroup(Device.Cpu)), Is.TypeOf<SingleProcessGroup>());
    }

    [Test]
    public void AGroupOfOneIsTheIdentity()
    {
        using var g = new SingleProcessGroup();
        Assert.That((g.Rank, g.WorldSize, g.Backend, g.IsMain), Is.EqualTo((0, 1, "single", true)));
        using var t = Tensor.FromArray(new float[] { 1, -2, 3.5f }, 3);
        foreach (var op in new[] { CollectiveOp.Sum, CollectiveOp.Average, CollectiveOp.Max })
        {
            g.AllReduce(t, op);
            Assert.That(t.ToFloatArray(), Is.EqualTo(new float[] { 1, -2, 3.5f }));
        }
        using var full = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 2, 2);
        using var part = Tensor.Zeros([4]);
        g.ReduceScatter(full, part);
        Assert.That(part.ToFloatArray(), Is.EqualTo(new float[] { 1, 2, 3, 4 }));
        using var gathered = Tensor.Zeros([2, 2]);
        g.AllGather(part, gathered);
        Assert.That(gathered.ToFloatArray(), Is.EqualTo(new float[] { 1, 2, 3, 4 }));
        g.Broadcast(t);
        g.Barrier();
        Assert.That(g.AllReduce(2.5), Is.EqualTo(2.5));
        Assert.That(PendingCollective.Done.Test(), Is.True);
    }

    [Test]
    public void CollectivesRejectTensorsThatCannotTakePart()
    {
        using var g = new SingleProcessGroup();
        using var m = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        using var transposed = m.Transpose(0, 1);
        Assert.That(() => g.AllReduce(transposed), Throws.ArgumentException.With.Message.Contains("not contiguous"));
        using var three = Tensor.Zeros([3]);
        Assert.That(() => g.AllGather(three, m), Throws.ArgumentException.With.Message.Contains("world size 1 × 3"));
        using var ints = Tensor.Zeros([6], DType.I32);
        Assert.That(() => g.AllGather(ints, m), Throws.ArgumentException.With.Message.Contains("differ"));
        Assert.That(() => g.Broadcast(three, root: 1), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void TheTorchrunStyleRendezvousHandsRankZerosBytesToEveryRank()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        int port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var saved = (Environment.GetEnvironmentVariable("MASTER_ADDR"), Environment.GetEnvironmentVariable("MASTER_PORT"));
        try
        {
            Environment.SetEnvironmentVariable("MASTER_ADDR", "127.0.0.1");
            Environment.SetEnvironmentVariable("MASTER_PORT", port.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var buffers = Enumerable.Range(0, 3).Select(r => r == 0 ? Enumerable.Range(0, 128).Select(i => (byte)(i * 7 + 1)).ToArray() : new byte[128]).ToArray();
            // The other ranks start first and retry until rank 0 listens, as they do when launched together.
            var ranks = Enumerable.Range(0, 3).Reverse().Select(r => Task.Run(() =>
            {
                if (r == 0) Thread.Sleep(300);
                TcpRendezvous.Share(buffers[r], new LaunchInfo("env", r, 3, r), TimeSpan.FromSeconds(20));
            })).ToArray();
            Assert.That(Task.WaitAll(ranks, TimeSpan.FromSeconds(30)), Is.True);
            Assert.That(buffers[1], Is.EqualTo(buffers[0]));
            Assert.That(buffers[2], Is.EqualTo(buffers[0]));

            // Rank 0 never comes: the others stop at the timeout with a clear error.
            var e = Assert.Throws<CollectiveTimeoutException>(() => TcpRendezvous.Share(new byte[128], new LaunchInfo("env", 1, 2, 1), TimeSpan.FromSeconds(1)));
            Assert.That(e!.Message, Does.Contain($"could not reach rank 0 at 127.0.0.1:{port}"));
        }
        finally
        {
            Environment.SetEnvironmentVariable("MASTER_ADDR", saved.Item1);
            Environment.SetEnvironmentVariable("MASTER_PORT", saved.Item2);
        }
    }

    [Test]
    public void TheTimeoutComesFromTheEnvironment()
    {
        var saved = Environment.GetEnvironmentVariable("PARROT_DIST_TIMEOUT");
        try
        {
            Environment.SetEnvironmentVariable("PARROT_DIST_TIMEOUT", "2.5");
            Assert.That(new SingleProcessGroup().Timeout, Is.EqualTo(TimeSpan.FromSeconds(2.5)));
            Environment.SetEnvironmentVariable("PARROT_DIST_TIMEOUT", "-1");
            Assert.That(() => new SingleProcessGroup(), Throws.TypeOf<DistributedException>().With.Message.Contains("PARROT_DIST_TIMEOUT"));
            Environment.SetEnvironmentVariable("PARROT_DIST_TIMEOUT", null);
            Assert.That(new SingleProcessGroup().Timeout, Is.EqualTo(TimeSpan.FromMinutes(10)));
        }
        finally { Environment.SetEnvironmentVariable("PARROT_DIST_TIMEOUT", saved); }
    }
}
