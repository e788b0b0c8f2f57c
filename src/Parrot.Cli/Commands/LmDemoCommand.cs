using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Data;
using Parrot.Parrot.Training;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli;

/// <summary>
/// `parrot lm-demo`: trains a small Qwen2-architecture language model from scratch on the built-in
/// multilingual corpus (six languages, byte tokens) on the CPU, evaluates a held-out validation loss,
/// and writes the training log (JSONL), the curve (CSV) and a PNG plot.
/// </summary>
internal static class LmDemoCommand
{
    public static Command Create()
    {
        var outDir = new Option<string>("--out") { Description = "Folder for train.jsonl, loss.csv and loss.png", DefaultValueFactory = _ => "lm-demo" };
        var steps = new Option<int>("--steps") { Description = "Training steps", DefaultValueFactory = _ => 300 };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", DefaultValueFactory = _ => 16 };
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence", DefaultValueFactory = _ => 64 };
        var hidden = new Option<int>("--hidden") { Description = "Model width", DefaultValueFactory = _ => 128 };
        var layers = new Option<int>("--layers") { Description = "Decoder layers", DefaultValueFactory = _ => 4 };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => 3e-3 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the weights and the corpus", DefaultValueFactory = _ => 1UL };
        var cmd = new Command("lm-demo", "Train a small multilingual byte-level LM from scratch on the CPU and report its validation loss");
        foreach (var o in new Option[] { outDir, steps, batch, seq, hidden, layers, lr, seed }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("lm-demo", () => Run(p.GetValue(outDir)!, p.GetValue(steps), p.GetValue(batch), p.GetValue(seq), p.GetValue(hidden), p.GetValue(layers), p.GetValue(lr), p.GetValue(seed))));
        return cmd;
    }

    private static int Run(string outDir, int steps, int batch, int seq, int hidden, int layers, double lr, ulong seed)
    {
        if (steps <= 0 || batch <= 0 || seq < 2 || hidden < 16 || hidden % 32 != 0 || layers <= 0)
            throw new CliException("--steps, --batch and --layers must be positive, --seq ≥ 2, --hidden a positive multiple of 32");
        if (!(lr >= 0) || double.IsInfinity(lr)) throw new CliException($"--lr must be a non-negative number, got {lr}");
        // Before training, not after it: an --out that cannot be written would otherwise waste the whole run.
        try { Directory.CreateDirectory(outDir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new CliException($"--out {outDir}: cannot create the directory: {e.Message}"); }
        var cfg = new Qwen2Config
        {
            VocabSize = MultilingualCorpus.VocabSize, HiddenSize = hidden, IntermediateSize = hidden * 11 / 4 / 8 * 8,
            NumHiddenLayers = layers, NumAttentionHeads = hidden / 32, NumKeyValueHeads = Math.Max(1, hidden / 64),
            RopeTheta = 10000, MaxPositionEmbeddings = seq, InitializerRange = 0.02,
        };
        using var model = new Qwen2ForCausalLM(cfg, seed);
        var train = MultilingualCorpus.Windows(seed, steps * batch, seq);
        var valid = MultilingualCorpus.Windows(seed, 64, seq, firstSentence: 10_000_000); // sentences never seen in training
        Console.WriteLine($"model: {model.ParameterCount():N0} parameters ({layers} layers, width {hidden}, {cfg.NumAttentionHeads} heads, {cfg.NumKeyValueHeads} kv heads); corpus: {train.Count} training windows of {seq} byte tokens in 6 languages");
        double initial = CausalLmTrainer.Evaluate(model, valid, 32);
        Console.WriteLine($"validation loss before training: {initial:F3} nats/token (uniform guess: {Math.Log(cfg.VocabSize):F3})");

        var trainer = new CausalLmTrainer(model, new CausalLmOptions { Steps = steps, Batch = batch, LearningRate = lr, WarmupSteps = Math.Max(1, steps / 30), MaxGradNorm = 1.0, Seed = seed });
        var log = new StringBuilder();
        var validSteps = new List<double>(); var validLoss = new List<double>();
        long memEarly = 0;
        int earlyStep = Math.Min(10, steps); // a run shorter than 10 steps reports its last step, not a 0 never measured
        var sw = Stopwatch.StartNew();
        var records = trainer.Train(train, r =>
        {
            log.AppendLine(CausalLmTrainer.LogLine(r));
            if (r.Step == earlyStep) memEarly = MemoryStats.CpuBytesInUse;
            if (r.Step % Math.Max(1, steps / 10) == 0 || r.Step == steps)
            {
                double v = CausalLmTrainer.Evaluate(model, valid, 32);
                validSteps.Add(r.Step); validLoss.Add(v);
                Console.WriteLine($"step {r.Step,5}  loss {r.Loss:F3}  valid {v:F3}  lr {r.LearningRate:E2}  |g| {r.GradNorm:F2}  {r.Seconds * 1000:F0} ms/step");
            }
        });
        double seconds = sw.Elapsed.TotalSeconds;
        long memEnd = MemoryStats.CpuBytesInUse;
        AtomicFile.WriteAllText(Path.Combine(outDir, "train.jsonl"), log.ToString());
        var csv = new StringBuilder("step,train_loss,valid_loss\n");
        int vi = 0;
        foreach (var r in records)
        {
            string v = vi < validSteps.Count && validSteps[vi] == r.Step ? validLoss[vi++].ToString("R", CultureInfo.InvariantCulture) : "";
            csv.Append(CultureInfo.InvariantCulture, $"{r.Step},{r.Loss.ToString("R", CultureInfo.InvariantCulture)},{v}\n");
        }
        AtomicFile.WriteAllText(Path.Combine(outDir, "loss.csv"), csv.ToString());
        LossPlot.Save(Path.Combine(outDir, "loss.png"), "lm-demo: multilingual byte-level Qwen2",
            ("train", records.Select(r => (double)r.Step).ToArray(), records.Select(r => r.Loss).ToArray()),
            ("validation", validSteps.ToArray(), validLoss.ToArray()));
        double tokPerSec = (double)steps * batch * seq / seconds;
        Console.WriteLine($"final validation loss {validLoss[^1]:F3} nats/token after {steps} steps in {seconds:F0} s ({tokPerSec:F0} tokens/s); tensor memory in use at step {earlyStep}: {memEarly / 1e6:F1} MB, at the end: {memEnd / 1e6:F1} MB");
        Console.WriteLine($"wrote {Path.Combine(outDir, "train.jsonl")}, loss.csv, loss.png");
        return 0;
    }
}
