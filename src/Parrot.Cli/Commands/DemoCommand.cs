using System.CommandLine;
using Parrot.Cli.Demo;
using Parrot.Parrot.Data.World;

namespace Parrot.Cli;

/// <summary>
/// `parrot demo [--out DIR] [--seed N] [--quick] [--assets DIR]`: the main job — world, stage 1, stage 2 of
/// Parrot and of the LLaVA-style baseline, the six-language benchmark, and a report folder.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var outDir = new Option<string>("--out") { Description = "Report folder (world/, models/, report.md, results.json, PNGs)", DefaultValueFactory = _ => "demo-out" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the world, the fresh weights and the data order", DefaultValueFactory = _ => 42UL };
        var quick = new Option<bool>("--quick") { Description = "A seconds-long smoke run of the same steps on a handful of samples" };
        var assets = new Option<string?>("--assets") { Description = "Folder with the starting weights vision/ and lm/ (default: assets/tiny of the repository)" };
        var cmd = new Command("demo", "Train Parrot and a no-MoE baseline on the synthetic world and compare them on the six-language benchmark");
        foreach (var o in new Option[] { outDir, seed, quick, assets }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("demo", () =>
        {
            var found = DemoAssets.Locate(p.GetValue(assets));
            var settings = p.GetValue(quick) ? DemoSettings.Smoke(p.GetValue(seed)) : DemoSettings.Full(p.GetValue(seed));
            string output = p.GetValue(outDir)!;
            CheckOutputFolder(output);
            Console.WriteLine($"parrot demo{(settings.Quick ? " --quick" : "")}: starting weights from {found.Root}, report to {Path.GetFullPath(output)}");
            var result = new DemoRunner(settings, found, output, Console.Out).Run();
            DemoReport.Write(output, result);
            DemoReport.PrintSummary(Console.Out, result);
            Console.WriteLine($"wrote {Path.Combine(output, "report.md")} (total {result.Seconds["total"]:F0} s)");
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// Refuses, before anything is written, an --out that is a file or a non-empty folder holding no earlier demo: neither
    /// its results (results.json) nor its world (world/world.json, or the marker of a world being written, which a demo
    /// killed early leaves: the world is the first thing it writes). make-world's rule for its folder; the demo wrote
    /// report.md, results.json, the PNGs and models/ into any folder, over what was there, and a file as --out failed
    /// with .NET's "The file '…' already exists.". An earlier demo's folder is written over, as before.
    /// </summary>
    internal static void CheckOutputFolder(string dir)
    {
        if (File.Exists(dir)) throw new IOException($"--out {dir} is a file, not a folder");
        if (!Directory.Exists(dir) || !Directory.EnumerateFileSystemEntries(dir).Any()) return;
        string world = Path.Combine(dir, "world");
        if (File.Exists(Path.Combine(dir, DemoReport.Json)) || File.Exists(Path.Combine(world, WorldGenerator.ManifestName))
            || File.Exists(Path.Combine(world, WorldGenerator.PartialMarker)))
            return;
        throw new IOException($"--out {dir}: the folder is not empty and holds no {DemoReport.Json} or world/{WorldGenerator.ManifestName} of an earlier demo; "
            + "refusing to write into it (choose an empty or new folder)");
    }
}
