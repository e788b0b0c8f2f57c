using System.CommandLine;

namespace Parrot.Cli;

/// <summary>`parrot bench ...`: side-by-side performance measurements.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Measure kernel speed (GFLOP/s, GB/s) and compare with a peer");
        bench.Subcommands.Add(GemmBench.Create());
        bench.Subcommands.Add(TrainBench.Create());
        bench.Subcommands.Add(OpsBench.Create());
        bench.Subcommands.Add(DecoderBench.Create());
        bench.Subcommands.Add(VitBench.Create());
        bench.Subcommands.Add(TinyAssetsBench.Create());
        return bench;
    }
}
