using System.CommandLine;
using System.Diagnostics;
using Parrot.Tensors;
using Parrot.Tensors.Distributed;

namespace Parrot.Cli;

/// <summary>
/// `parrot dist-check [--device cpu|cuda|cuda:N] [--backend auto|nccl] [--mib N] [--iters K]`: run under the launcher (mpirun -np N, srun,
/// torchrun-style variables) to check every collective of the process group against float64 sums computed
/// here from every rank's known inputs, then time an all-reduce of N MiB (float32) and report its bus bandwidth
/// (NCCL's definition: size · 2(n−1)/n / time). Exit code 1 when any collective is wrong.
/// </summary>
internal static class DistCheckCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "cpu (MPI), or cuda / cuda:N (NCCL; local rank r takes the GPU cuda:(N + r), N = 0 for cuda)", DefaultValueFactory = _ => "cpu" };
        var mib = new Option<int>("--mib") { Description = "All-reduce size for the bandwidth figure, MiB (0: skip)", DefaultValueFactory = _ => 16 };
        var backend = new Option<string>("--backend") { Description = "auto (the launcher's group: MPI on the CPU, NCCL on GPUs, nothing for one process) or nccl (NCCL even for one rank)", DefaultValueFactory = _ => "auto" };
        var stallRank = new Option<int?>("--stall-rank") { Description = "Make this rank stall (sleep) before the collectives: checks that the others stop with a timeout error (PARROT_DIST_TIMEOUT) instead of hanging" };
        var stallSeconds = new Option<double>("--stall-seconds") { Description = "How long --stall-rank sleeps", DefaultValueFactory = _ => 60 };
        var iters = new Option<int>("--iters") { Description = "Timed all-reduces (median reported)", DefaultValueFactory = _ => 5 };
        var cmd = new Command("dist-check", "Check the process group's collectives against float64 references and measure all-reduce bandwidth (run under mpirun/torchrun)");
        foreach (var o in new Option[] { device, backend, mib, iters, stallRank, stallSeconds }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("dist-check", () =>
        {
            // One GPU per rank, cuda:(base + local rank), as the training commands map them.
            var d = DistributedCli.ResolveDevice(p.GetValue(device), "dist-check");
            int size = p.GetValue(mib), k = p.GetValue(iters);
            if (size < 0 || k <= 0) throw new CliException("--mib must be ≥ 0 and --iters positive");
            string which = p.GetValue(backend)!;
            if (which is not ("auto" or "nccl")) throw new CliException($"--backend must be auto or nccl, got '{which}'");
            if (which == "nccl" && d.Kind != DeviceKind.Cuda) throw new CliException("--backend nccl needs --device cuda");
            using var group = which == "nccl" ? NcclProcessGroup.Create(DistributedLaunch.Detect(), d) : DistributedLaunch.CreateGroup(d);
            if (p.GetValue(stallRank) == group.Rank)
            {
                Console.Error.WriteLine($"rank {group.Rank} (pid {Environment.ProcessId}) stalls for {p.GetValue(stallSeconds):G4} s");
                Console.Error.Flush();
                Thread.Sleep(TimeSpan.FromSeconds(p.GetValue(stallSeconds)));
            }
            return DistributedCli.Guard(group, "dist-check", () => Check(group, size, k));
        }));
        return cmd;
    }

    // Rank r's value at index i: distinct per rank and index, exact in float32.
    private static double Value(int rank, int i) => (rank + 1) * 0.5 + (i % 97) * 0.25 - (rank * 7 + i) % 5;

    private static int Check(ProcessGroup g, int mib, int iters)
    {
        int n = g.WorldSize, r = g.Rank, len = 1000 + 3 * n; // not a multiple of anything convenient
        var failures = new List<string>();
        void Compare(string what, Tensor got, Func<int, double> expected)
        {
            var host = got.Device.Kind == DeviceKind.Cpu ? got.ToDoubleArray() : got.To(Device.Cpu).ToDoubleArray();
            double worst = 0;
            for (int i = 0; i < host.Length; i++) worst = Math.Max(worst, Math.Abs(host[i] - expected(i)));
            if (worst > 1e-4) failures.Add($"{what}: max error {worst:G3}");
            if (g.IsMain) Console.WriteLine($"{what,-22} {(worst > 1e-4 ? "WRONG" : "ok")}  (max |error| {worst:G3} over {host.Length} values)");
        }
        Tensor Input(int count, Func<int, double> f, DType t = DType.F32)
        {
            var a = new double[count];
            for (int i = 0; i < count; i++) a[i] = f(i);
            using var cpu = Tensor.FromArray(a, count);
            return cpu.To(t, g.Device);
        }
        double Sum(int i) { double s = 0; for (int q = 0; q < n; q++) s += Value(q, i); return s; }
        double Max(int i) { double m = double.NegativeInfinity; for (int q = 0; q < n; q++) m = Math.Max(m, Value(q, i)); return m; }

        if (g.IsMain) Console.WriteLine($"{g}: {n} rank(s), device {g.Device}, timeout {g.Timeout.TotalSeconds:G4} s" + (g is MpiProcessGroup m ? $", {m.LibraryVersion}" : ""));
        using (var t = Input(len, i => Value(r, i))) { g.AllReduce(t); Compare("AllReduce sum f32", t, Sum); }
        using (var t = Input(len, i => Value(r, i), DType.F64)) { g.AllReduce(t, CollectiveOp.Average); Compare("AllReduce avg f64", t, i => Sum(i) / n); }
        using (var t = Input(len, i => Value(r, i))) { g.AllReduce(t, CollectiveOp.Max); Compare("AllReduce max f32", t, Max); }
        using (var input = Input(len * n, i => Value(r, i)))
        using (var output = Tensor.Zeros([len], DType.F32, g.Device))
        {
            g.ReduceScatter(input, output);
            Compare("ReduceScatter sum f32", output, i => Sum(r * len + i));
        }
        using (var input = Input(len, i => Value(r, i)))
        using (var output = Tensor.Zeros([len * n], DType.F32, g.Device))
        {
            g.AllGather(input, output);
            Compare("AllGather f32", output, i => Value(i / len, i % len));
        }
        using (var t = Input(len, i => Value(r, i)))
        {
            g.Broadcast(t, n - 1);
            Compare($"Broadcast from {n - 1}", t, i => Value(n - 1, i));
        }
        double scalar = g.AllReduce(r + 1.0);
        if (scalar != n * (n + 1) / 2.0) failures.Add($"scalar AllReduce gave {scalar}, expected {n * (n + 1) / 2.0}");
        g.Barrier();
        if (g.IsMain) Console.WriteLine($"scalar AllReduce        {(scalar == n * (n + 1) / 2.0 ? "ok" : "WRONG")}; Barrier ok");

        if (mib > 0 && (n > 1 || g is NcclProcessGroup))
        {
            int count = mib * (1 << 20) / 4;
            using var big = Tensor.Zeros([count], DType.F32, g.Device);
            g.AllReduce(big); // warm-up (connections, buffers)
            var times = new double[iters];
            for (int k = 0; k < iters; k++)
            {
                g.Barrier();
                var sw = Stopwatch.StartNew();
                g.AllReduce(big);
                times[k] = sw.Elapsed.TotalSeconds;
            }
            Array.Sort(times);
            double median = times[iters / 2], bytes = count * 4.0;
            double algBw = bytes / median / 1e9, busBw = algBw * 2.0 * (n - 1) / n;
            if (g.IsMain) Console.WriteLine($"AllReduce {mib} MiB f32 on {n} rank(s): median {median * 1e3:F2} ms over {iters}" +
                                            (n > 1 ? $", algbw {algBw:F2} GB/s, busbw {busBw:F2} GB/s" : " (one rank: nothing travels, no bandwidth to report)"));
        }
        if (failures.Count > 0)
        {
            Console.Error.WriteLine($"parrot dist-check (rank {r} of {n}): {string.Join("; ", failures)}"); // as DistributedCli.Guard words a rank's error
            return 1;
        }
        return 0;
    }
}
