using System.CommandLine;

namespace Parrot.Cli;

/// <summary>`parrot bench ...`: performance measurements (the comparisons with a peer are the bench/*.sh scripts).</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Measure speed on this machine: GEMM GFLOP/s, op GB/s, decoder prefill and decode, ViT forward, training steps, the tiny assets");
        bench.Subcommands.Add(GemmBench.Create());
        bench.Subcommands.Add(TrainBench.Create());
        bench.Subcommands.Add(OpsBench.Create());
        bench.Subcommands.Add(DecoderBench.Create());
        bench.Subcommands.Add(VitBench.Create());
        bench.Subcommands.Add(TinyAssetsBench.Create());
        return bench;
    }
}
