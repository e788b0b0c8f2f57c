using System.CommandLine;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Data;
using Parrot.Parrot.Training;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// `parrot train-lm --model DIR --tokens FILE.jsonl --steps N --batch B --lr LR [--weight-decay WD]
/// [--warmup-steps W] [--max-grad-norm G] [--seed S] [--shuffle] --log FILE.jsonl [--out DIR]`:
/// fine-tunes a Qwen2 checkpoint directory as a causal LM (the contract of the [autograd] issue).
/// </summary>
internal static class TrainLmCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Qwen2/Qwen1.5 model directory (config.json + safetensors)", Required = true };
        var tokens = new Option<string>("--tokens") { Description = "JSON lines {\"ids\": [...]}, all of one length", Required = true };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps", Required = true };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", Required = true };
        var lr = new Option<double>("--lr") { Description = "Learning rate (constant after the warm-up)", Required = true };
        var wd = new Option<double>("--weight-decay") { Description = "Decoupled weight decay on every parameter", DefaultValueFactory = _ => 0 };
        var warmup = new Option<int>("--warmup-steps") { Description = "Linear warm-up steps", DefaultValueFactory = _ => 0 };
        var clip = new Option<double?>("--max-grad-norm") { Description = "Clip the global gradient norm (default: no clipping)" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the shuffle", DefaultValueFactory = _ => 0UL };
        var shuffle = new Option<bool>("--shuffle") { Description = "Visit sequences in a seeded random order instead of file order" };
        var log = new Option<string>("--log") { Description = "JSON lines written per step: step, loss, lr, grad_norm", Required = true };
        var outDir = new Option<string?>("--out") { Description = "Write the trained checkpoint here, in the format it was read" };
        var cmd = new Command("train-lm", "Fine-tune a Qwen2 checkpoint as a causal language model on token sequences (float32, AdamW)");
        foreach (var o in new Option[] { model, tokens, steps, batch, lr, wd, warmup, clip, seed, shuffle, log, outDir }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("train-lm", () =>
        {
            int n = p.GetValue(steps), b = p.GetValue(batch);
            double rate = p.GetValue(lr);
            if (n <= 0) throw new CliException($"--steps must be positive, got {n}");
            if (b <= 0) throw new CliException($"--batch must be positive, got {b}");
            if (!(rate >= 0) || double.IsInfinity(rate)) throw new CliException($"--lr must be a non-negative number, got {rate}");
            if (p.GetValue(warmup) < 0) throw new CliException("--warmup-steps must be ≥ 0");
            if (p.GetValue(clip) is double g && !(g > 0)) throw new CliException("--max-grad-norm must be positive");
            string dir = p.GetValue(model)!;
            var sourceDType = PeekDType(dir);
            using var m = Qwen2Loader.Load(dir, DType.F32);
            var seqs = TokenSequences.Read(p.GetValue(tokens)!, m.Config.VocabSize);
            var logPath = p.GetValue(log)!;
            var logDir = Path.GetDirectoryName(Path.GetFullPath(logPath));
            if (logDir is not null) Directory.CreateDirectory(logDir);
            using var writer = new StreamWriter(logPath, append: false);
            var trainer = new CausalLmTrainer(m, new CausalLmOptions
            {
                Steps = n, Batch = b, LearningRate = rate, WeightDecay = p.GetValue(wd), WarmupSteps = p.GetValue(warmup),
                MaxGradNorm = p.GetValue(clip), Seed = p.GetValue(seed), Shuffle = p.GetValue(shuffle),
            });
            trainer.Train(seqs, r =>
            {
                writer.WriteLine(CausalLmTrainer.LogLine(r));
                writer.Flush();
                Console.WriteLine($"step {r.Step}: loss {r.Loss:F4}  lr {r.LearningRate:G4}  grad_norm {r.GradNorm:F4}  ({r.Seconds * 1000:F0} ms)");
            });
            if (p.GetValue(outDir) is string o)
            {
                Qwen2Loader.Save(m, o, sourceDType);
                CopyTokenizerFiles(dir, o);
                Console.WriteLine($"wrote {o}");
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>The dtype the checkpoint stores its embedding table in (the trained model is written back in it).</summary>
    private static DType PeekDType(string dir)
    {
        using var ck = global::Parrot.Tensors.Formats.SafetensorsCheckpoint.Open(dir);
        return ck.TryGetInfo("model.embed_tokens.weight", out var info) && info.DType is DType d ? d : DType.F32;
    }

    private static void CopyTokenizerFiles(string from, string to)
    {
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json", "vocab.json", "merges.txt" })
        {
            var src = Path.Combine(from, name);
            if (File.Exists(src) && Path.GetFullPath(from) != Path.GetFullPath(to)) File.Copy(src, Path.Combine(to, name), overwrite: true);
        }
    }
}
