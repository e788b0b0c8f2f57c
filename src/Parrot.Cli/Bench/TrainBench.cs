using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Parrot.Nn;
using Parrot.Nn.Models.Qwen2;
using Parrot.Nn.Optim;
using Parrot.Tensors;
using Parrot.Tensors.Cpu;

namespace Parrot.Cli;

/// <summary>
/// `parrot bench train`: median time of one training step (forward, backward, AdamW) of the lm-demo model
/// shape, float32, with the memory in use at the 10th and last step; `bench/train-vs-torch.sh` runs the
/// PyTorch peer on the same shapes right after.
/// </summary>
internal static class TrainBench
{
    public static Command Create()
    {
        var hidden = new Option<int>("--hidden") { DefaultValueFactory = _ => 128, Description = "Model width" };
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 4, Description = "Decoder layers" };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 16, Description = "Sequences per step" };
        var seq = new Option<int>("--seq") { DefaultValueFactory = _ => 64, Description = "Tokens per sequence" };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 30, Description = "Timed steps (after 3 warm-up steps)" };
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => Environment.ProcessorCount, Description = "Threads" };
        var checkpointing = new Option<bool>("--checkpointing") { Description = "Recompute layer activations in backward" };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var cmd = new Command("train", "Time per training step (forward + backward + AdamW) of a small Qwen2 decoder");
        foreach (var o in new Option[] { hidden, layers, batch, seq, steps, threads, checkpointing, json }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            CpuParallel.Workers = Math.Max(1, p.GetValue(threads));
            int h = p.GetValue(hidden), b = p.GetValue(batch), t = p.GetValue(seq), n = p.GetValue(steps);
            var cfg = new Qwen2Config
            {
                VocabSize = 257, HiddenSize = h, IntermediateSize = h * 11 / 4 / 8 * 8, NumHiddenLayers = p.GetValue(layers),
                NumAttentionHeads = h / 32, NumKeyValueHeads = Math.Max(1, h / 64), RopeTheta = 10000,
            };
            using var model = new Qwen2ForCausalLM(cfg, 1) { GradientCheckpointing = p.GetValue(checkpointing) };
            using var opt = new AdamW(model.Parameters(), 1e-3);
            var ids = new long[b * t];
            var rng = new Random(2);
            for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(257);
            var times = new List<double>();
            long memAt10 = 0, peak = 0;
            for (int step = 0; step < n + 3; step++)
            {
                var sw = Stopwatch.StartNew();
                using (var scope = TensorScope.Begin())
                {
                    var x = Tensor.FromArray(ids, b, t);
                    var loss = Losses.NextTokenCrossEntropy(model.Forward(x), x);
                    opt.ZeroGrad();
                    loss.Backward();
                    opt.Step();
                    peak = Math.Max(peak, MemoryStats.CpuPeakBytes);
                }
                if (step >= 3) times.Add(sw.Elapsed.TotalMilliseconds);
                if (step == 9) memAt10 = MemoryStats.CpuBytesInUse;
            }
            times.Sort();
            double median = times[times.Count / 2];
            long memEnd = MemoryStats.CpuBytesInUse;
            if (p.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(new { ms_per_step = median, mem_step10 = memAt10, mem_end = memEnd, peak_bytes = MemoryStats.CpuPeakBytes, parameters = model.ParameterCount() }));
            else
                Console.WriteLine($"{model.ParameterCount():N0} parameters, batch {b}×{t}: {median:F1} ms/step (median of {times.Count}); tensor memory in use at step 10 {memAt10 / 1e6:F2} MB, at step {n + 3} {memEnd / 1e6:F2} MB; peak {MemoryStats.CpuPeakBytes / 1e6:F1} MB");
            return 0;
        });
        return cmd;
    }
}
