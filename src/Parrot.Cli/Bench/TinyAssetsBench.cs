using System.CommandLine;
using System.Diagnostics;
using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// `parrot bench tiny [--assets DIR] [--batch B] [--seq T] [--reps N]`: what the demo's starting weights cost on
/// this machine — the vision tower's forward per image (features are computed once per image), its
/// forward + backward on a batch, and the LM's forward and forward + backward on B × T tokens (float32). Each
/// figure is the median wall time and the median process CPU time (wall time alone misleads on a shared machine).
/// </summary>
internal static class TinyAssetsBench
{
    public static Command Create()
    {
        var assets = new Option<string?>("--assets") { Description = "Folder with vision/ and lm/ (default: assets/tiny of the repository, found as demo finds it)" };
        var batch = new Option<int>("--batch") { Description = "LM sequences per pass", DefaultValueFactory = _ => 16 };
        var seq = new Option<int>("--seq") { Description = "LM tokens per sequence", DefaultValueFactory = _ => 64 };
        var reps = new Option<int>("--reps") { Description = "Timed repetitions (after one warm-up)", DefaultValueFactory = _ => 7 };
        var cmd = new Command("tiny", "Time the tiny vision tower and LM of assets/tiny (forward, forward + backward)");
        foreach (var o in new Option[] { assets, batch, seq, reps }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("bench tiny", () =>
        {
            int b = p.GetValue(batch), t = p.GetValue(seq), n = Math.Max(1, p.GetValue(reps));
            if (b <= 0 || t < 2) throw new CliException("--batch must be positive and --seq at least 2");
            // The demo's search (the working folder, the executable's folder and the folders above them): the relative
            // default assets/tiny was found only from the repository's root.
            var found = global::Parrot.Cli.Demo.DemoAssets.Locate(p.GetValue(assets));
            using var tower = ClipVisionLoader.Load(found.Vision, DType.F32);
            using var lm = Qwen2Loader.Load(found.Lm, DType.F32);
            var c = tower.Config;
            Console.WriteLine($"vision: {tower.ParameterCount():N0} parameters, {c.ImageSize} px / {c.PatchSize} → {c.NumPositions} tokens × {c.HiddenSize}, {c.NumHiddenLayers} layers");
            Console.WriteLine($"lm: {lm.ParameterCount():N0} parameters, vocab {lm.Config.VocabSize}, width {lm.Config.HiddenSize}, {lm.Config.NumHiddenLayers} layers");
            using var one = Tensor.Normal([1, 3, c.ImageSize, c.ImageSize], 1);
            using var many = Tensor.Normal([32, 3, c.ImageSize, c.ImageSize], 2);
            var ids = new long[b * t];
            var rng = new Random(3);
            for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(lm.Config.VocabSize);
            using var idTensor = Tensor.FromArray(ids, b, t);

            Report("vision forward, 1 image (hidden state -1)", n, 1, "image", () =>
            {
                using var ng = Graph.NoGrad();
                using var s = TensorScope.Begin();
                _ = tower.HiddenState(new Variable(one), -1);
            });
            Report("vision forward + backward, 32 images", n, 32, "image", () =>
            {
                using var s = TensorScope.Begin();
                tower.ZeroGrad();
                tower.Forward(new Variable(many)).LastHiddenState.Mean().Backward();
            });
            Report($"lm forward, {b} × {t} tokens", n, b * t, "token", () =>
            {
                using var ng = Graph.NoGrad();
                using var s = TensorScope.Begin();
                _ = lm.Forward(idTensor);
            });
            Report($"lm forward + backward, {b} × {t} tokens", n, b * t, "token", () =>
            {
                using var s = TensorScope.Begin();
                lm.ZeroGrad();
                Losses.NextTokenCrossEntropy(lm.Forward(idTensor), idTensor).Backward();
            });
            return 0;
        }));
        return cmd;
    }

    private static void Report(string what, int reps, int units, string unit, Action body)
    {
        body();
        var wall = new double[reps];
        var cpu = new double[reps];
        var process = Process.GetCurrentProcess();
        for (int i = 0; i < reps; i++)
        {
            process.Refresh();
            var cpu0 = process.TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            body();
            wall[i] = sw.Elapsed.TotalMilliseconds;
            process.Refresh();
            cpu[i] = (process.TotalProcessorTime - cpu0).TotalMilliseconds;
        }
        Array.Sort(wall);
        Array.Sort(cpu);
        double w = wall[reps / 2], c = cpu[reps / 2];
        Console.WriteLine($"  {what,-42} {w,8:F1} ms wall ({w * 1000 / units,7:F1} µs/{unit}), {c,8:F1} ms CPU ({c * 1000 / units,7:F1} µs/{unit})");
    }
}
