using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Models.Clip;
using Parrot.Tensors;
using Parrot.Tensors.Cpu;

namespace Parrot.Cli;

/// <summary>
/// `parrot bench vit`: median time of one CLIP ViT-L/14-336-shaped tower forward (random weights, float32,
/// batch 1), up to hidden_states[-2] as Parrot uses it and through all layers with the pooled output;
/// `--profile` adds where the time goes inside one layer. `bench/vit-vs-torch.sh` runs the PyTorch peer
/// (bench/peers/torch_vit.py) on the same shapes right after.
/// </summary>
internal static class VitBench
{
    public static Command Create()
    {
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 24, Description = "Encoder layers (24 for ViT-L)" };
        var hidden = new Option<int>("--hidden") { DefaultValueFactory = _ => 1024, Description = "Width" };
        var image = new Option<int>("--image") { DefaultValueFactory = _ => 336, Description = "Image side in pixels (a multiple of the 14-px patch)" };
        var reps = new Option<int>("--reps") { DefaultValueFactory = _ => 5, Description = "Timed forwards of each kind (after one warm-up)" };
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => Environment.ProcessorCount, Description = "Threads" };
        var profile = new Option<bool>("--profile") { Description = "Also time each op of one encoder layer" };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var cmd = new Command("vit", "Time a CLIP ViT-L/14-336-shaped vision tower forward (float32, batch 1)");
        foreach (var o in new Option[] { layers, hidden, image, reps, threads, profile, json }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("bench vit", () =>
        {
            CpuParallel.Workers = Math.Max(1, p.GetValue(threads));
            int h = p.GetValue(hidden), n = Math.Max(1, p.GetValue(reps));
            var config = ClipVisionConfig.VitL14_336 with
            {
                NumHiddenLayers = p.GetValue(layers), HiddenSize = h, IntermediateSize = 4 * h, NumAttentionHeads = Math.Max(1, h / 64), ImageSize = p.GetValue(image),
            };
            using var model = new ClipVisionModel(config, seed: 1);
            using var pixels = Tensor.Normal([1, 3, config.ImageSize, config.ImageSize], 2);
            using var ng = Graph.NoGrad();
            double selectMs = Median(n, () => { using var s = TensorScope.Begin(); _ = model.HiddenState(pixels, -2); });
            double fullMs = Median(n, () => { using var s = TensorScope.Begin(); _ = model.Forward(pixels); });
            var ops = p.GetValue(profile) ? VitLayerProfile.Run(model, pixels, n) : null;
            if (p.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(new { ms_select = selectMs, ms_full = fullMs, layers = config.NumHiddenLayers, tokens = config.NumPositions, ops = ops?.Select(o => new object[] { o.Op, o.Ms }) }));
            else
            {
                Console.WriteLine($"CLIP tower {config.NumHiddenLayers} layers × {config.NumPositions} tokens × {h}, float32, batch 1, {CpuParallel.Workers} threads ({model.ParameterCount():N0} parameters)");
                Console.WriteLine($"  up to hidden_states[-2]: {selectMs:F0} ms (median of {n})");
                Console.WriteLine($"  all layers + pooled:     {fullMs:F0} ms (median of {n})");
                if (ops is not null)
                    foreach (var (name, ms) in ops) Console.WriteLine($"  one layer, {name,-22} {ms,8:F2} ms  ({ms * config.NumHiddenLayers,7:F0} ms over all layers)");
            }
            return 0;
        }));
        return cmd;
    }

    internal static double Median(int reps, Action body)
    {
        body(); // warm-up: JIT, page faults of fresh buffers
        var times = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            var sw = Stopwatch.StartNew();
            body();
            times[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return times[reps / 2];
    }
}
