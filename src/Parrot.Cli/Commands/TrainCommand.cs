using System.CommandLine;
using System.Diagnostics;
using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Data;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Training;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// `parrot train --stage 1|2 --model DIR --data FILE.json --images DIR --out DIR [--steps N] [--batch B]
/// [--micro-batch M] [--lr LR] [--save-every N] [--resume] [--skip-bad] [--bf16] [--checkpointing]
/// [--log FILE.jsonl]`: one Parrot training stage on LLaVA data, the paper's parrot-7b recipe unless
/// overridden. The vision tower (--vision, else the config's mm_vision_tower) only computes features,
/// cached per image; checkpoints go to OUT/checkpoint-N and the trained model to OUT itself, so OUT may not be the
/// --model folder (refused before any work).
/// </summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var stage = new Option<int>("--stage") { Description = "1: align the projector (MoE bypassed); 2: instruction-tune projector + fresh MoE + LLM", Required = true };
        var model = new Option<string>("--model") { Description = "Parrot model directory (config.json, safetensors, tokenizer.json); the stage-1 output for stage 2", Required = true };
        var data = new Option<string>("--data") { Description = "LLaVA JSON (array) or JSON lines with id, image, conversations", Required = true };
        var images = new Option<string>("--images") { Description = "Folder the samples' image paths are relative to", Required = true };
        var outDir = new Option<string>("--out") { Description = "Output folder: checkpoint-N/ subfolders and the final model (not the --model folder)", Required = true };
        var vision = new Option<string?>("--vision") { Description = "CLIP vision tower directory (default: the config's mm_vision_tower, relative to --model)" };
        var recipe = new Option<string>("--recipe") { Description = "Hyperparameter recipe (the paper's; the flags below override it)", DefaultValueFactory = _ => "parrot-7b" };
        recipe.AcceptOnlyFromAmong("parrot-7b");
        var steps = new Option<int?>("--steps") { Description = "Optimizer steps (default: one epoch)" };
        var batch = new Option<int?>("--batch") { Description = "Global batch (default: 256 in stage 1, 128 in stage 2)" };
        var micro = new Option<int?>("--micro-batch") { Description = "Samples per forward pass; gradients accumulate to the global batch (default: 8 in stage 1, 4 in stage 2, at most --batch)" };
        var lr = new Option<double?>("--lr") { Description = "Peak learning rate (default: 1e-3 in stage 1, 2e-5 in stage 2)" };
        var maxLength = new Option<int?>("--max-length") { Description = "Longest sequence with its visual tokens (default 2048; a sample past the model's context, max_position_embeddings, is refused too)" };
        var seed = new Option<ulong?>("--seed") { Description = "Seed of the data order and of stage 2's fresh MoE (default 42)" };
        var saveEvery = new Option<int>("--save-every") { Description = "Checkpoint every N steps (0: only at the end)", DefaultValueFactory = _ => 0 };
        var resume = new Option<bool>("--resume") { Description = "Continue from the latest checkpoint in --out (refused when its stage, seed, --lr, --batch, step count or data differ: trainer_state.json records the data's sample count and fingerprint)" };
        var skipBad = new Option<bool>("--skip-bad") { Description = "Report and skip bad samples instead of stopping" };
        var bf16 = new Option<bool>("--bf16") { Description = "bf16 weights and activations with float32 master weights" };
        var checkpointing = new Option<bool>("--checkpointing") { Description = "Activation checkpointing (recompute decoder layers in backward)" };
        var featureCache = new Option<string?>("--feature-cache") { Description = "Folder of cached vision features (default: OUT/features)" };
        var log = new Option<string?>("--log") { Description = "JSON lines per step (default: OUT/train_log.jsonl)" };
        var zero = DistributedCli.ZeroOption();
        var cmd = new Command("train", "Train one Parrot stage on LLaVA-format data");
        var device = DeviceOption.Create();
        foreach (var o in new Option[] { device, stage, model, data, images, outDir, vision, recipe, steps, batch, micro, lr, maxLength, seed, saveEvery, resume, skipBad, bf16, checkpointing, featureCache, log, zero })
            cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("train", () =>
        {
            var dev = DistributedCli.ResolveDevice(p.GetValue(device), "train");
            int st = p.GetValue(stage);
            if (st is not (1 or 2)) throw new CliException($"--stage must be 1 or 2, got {st}");
            // Before any work: OUT gets the trained model's config and weights, which would replace the model being read.
            OutputFolders.RefuseModelFolder(p.GetValue(model)!, p.GetValue(outDir)!, "trained model");
            var options = ParrotTrainingOptions.Recipe(p.GetValue(recipe)!, st);
            int global = p.GetValue(batch) ?? options.GlobalBatch;
            options = options with
            {
                GlobalBatch = global,
                MicroBatch = p.GetValue(micro) ?? Math.Min(options.MicroBatch, global),
                LearningRate = p.GetValue(lr) ?? options.LearningRate,
                Steps = p.GetValue(steps),
                MaxLength = p.GetValue(maxLength) ?? options.MaxLength,
                Seed = p.GetValue(seed) ?? options.Seed,
                SaveEvery = p.GetValue(saveEvery),
                Bf16 = p.GetValue(bf16),
                GradientCheckpointing = p.GetValue(checkpointing),
                ZeroStage = p.GetValue(zero),
            };
            try { options.Validate(); }
            catch (ArgumentException e) { throw new CliException(e.Message); }

            // Under mpirun every rank runs this command on its share of each global batch; rank 0 alone prints and writes.
            using var group = DistributedCli.Join(p.GetValue(zero), dev);
            if (options.GlobalBatch % group.WorldSize != 0) throw new CliException($"--batch {options.GlobalBatch} is the global batch and must be a multiple of the {group.WorldSize} ranks");
            return DistributedCli.Guard(group, "train", () => TrainOn(group));
            int TrainOn(global::Parrot.Tensors.Distributed.ProcessGroup group)
            {
            bool main = group.IsMain;
            var console = main ? Console.Out : TextWriter.Null;
            string modelDir = p.GetValue(model)!, output = p.GetValue(outDir)!;
            // Nothing to resume from is found before the model, the tower and every sample are read (it was found after).
            if (p.GetValue(resume) && ParrotCheckpoint.Latest(output) is null) throw new CliException($"--resume: no checkpoint-N folder in {output}");
            var tokenizerPath = Path.Combine(modelDir, "tokenizer.json");
            if (!File.Exists(tokenizerPath)) throw new CliException($"{modelDir}: no tokenizer.json next to the model");
            var chat = new ChatMl(BpeTokenizer.Load(tokenizerPath));
            using var m = ParrotLoader.Load(modelDir, DType.F32);
            m.To(dev);

            // --vision is the user's path (from the current directory); mm_vision_tower is the model's (from its directory).
            string visionDir;
            if (p.GetValue(vision) is { } given)
            {
                if (!Directory.Exists(given)) throw new CliException(ParrotInputs.NotAFolder(given));
                visionDir = Path.GetFullPath(given);
            }
            else
            {
                visionDir = Path.GetFullPath(m.Config.VisionTowerFolder(modelDir)
                    ?? throw new CliException($"{Path.Combine(modelDir, "config.json")} names no mm_vision_tower: give the CLIP tower with --vision DIR"));
                if (!Directory.Exists(visionDir))
                    throw new DirectoryNotFoundException($"{Path.Combine(modelDir, "config.json")}: mm_vision_tower '{m.Config.MmVisionTower}': the folder {visionDir} does not exist; put the CLIP vision tower there or give another with --vision DIR");
            }
            using var tower = ClipVisionLoader.Load(visionDir, DType.F32);
            tower.To(dev);
            int imageTokens = m.Config.MmVisionSelectFeature == "patch" ? tower.Config.NumPatches : tower.Config.NumPositions;
            var preprocessor = ImagePreprocessor.FromDirectory(visionDir);
            using var features = new LlavaImageFeatures(ParrotVision.Features(tower, m.Config.MmVisionSelectLayer), preprocessor,
                padToSquare: m.Config.ImageAspectRatio == "pad", cacheDir: p.GetValue(featureCache) ?? Path.Combine(output, "features"),
                cacheTag: LlavaImageFeatures.TowerCacheTag(visionDir, m.Config.MmVisionSelectLayer));

            var dataset = LlavaDataset.Load(p.GetValue(data)!, p.GetValue(images)!, chat,
                new LlavaOptions { MaxLength = options.MaxLength, ImageTokens = imageTokens, SkipBad = p.GetValue(skipBad), Context = m.Config.Text.MaxPositionEmbeddings,
                    // A resumed or repeated run need not check the images whose features it will read from the cache.
                    HasCachedFeatures = features.IsCached,
                    // Every rank on this machine loads the data at once: each checks images on its share of the processors.
                    ImageCheckThreads = DistributedCli.ProcessorShare(group) });
            if (main) foreach (var problem in dataset.Skipped) Console.Error.WriteLine($"parrot train: skipped: {problem}");
            if (dataset.ImagesCached > 0) console.WriteLine($"images: {dataset.ImagesChecked} checked, {dataset.ImagesCached} not checked as their features are cached");
            console.WriteLine($"{dataset.Examples.Count} samples ({dataset.Skipped.Count} skipped), stage {st}, global batch {options.GlobalBatch} in micro-batches of {options.MicroBatch}, lr {options.LearningRate:G4}");

            Directory.CreateDirectory(output);
            using var trainer = new ParrotTrainer(m, dataset, features, options, group) { OutputDir = output };
            if (group.WorldSize > 1) console.WriteLine($"data parallel: {group.WorldSize} ranks ({group.Backend}), {options.GlobalBatch / group.WorldSize} samples per rank per step, ZeRO-{options.ZeroStage}");
            bool resuming = p.GetValue(resume);
            if (resuming)
            {
                var latest = ParrotCheckpoint.Latest(output) ?? throw new CliException($"--resume: no checkpoint-N folder in {output}");
                trainer.Resume(latest);
                console.WriteLine($"resumed from {latest} at step {trainer.Step}/{trainer.TotalSteps}");
            }
            var logPath = p.GetValue(log) ?? Path.Combine(output, "train_log.jsonl");
            var logDir = Path.GetDirectoryName(Path.GetFullPath(logPath));
            if (logDir is not null && main) Directory.CreateDirectory(logDir);
            // A run killed after its last checkpoint logged steps that the resumed run repeats: keep only what the checkpoint
            // covers. One killed while writing a line left it half-written: that line goes too (TrainingLog.CutBack).
            if (main && resuming && File.Exists(logPath) && TrainingLog.CutBack(logPath, trainer.Step) is { } dropped)
                console.WriteLine(dropped);
            using var writer = main ? new StreamWriter(logPath, append: resuming) : StreamWriter.Null;
            var clock = Stopwatch.StartNew();
            int firstStep = trainer.Step;
            try
            {
                trainer.Train(r =>
                {
                    writer.WriteLine(r.ToJson());
                    writer.Flush();
                    double eta = clock.Elapsed.TotalSeconds / (r.Step - firstStep) * (r.TotalSteps - r.Step);
                    var langs = string.Join(" ", r.LanguageLoss.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value:F3}"));
                    if (r.Step == firstStep + 1 && group.WorldSize > 1) console.WriteLine($"memory per rank (ZeRO-{options.ZeroStage}): {trainer.Memory()}");
                    console.WriteLine($"step {r.Step}/{r.TotalSteps}: loss {r.Loss:F4}  lr {r.LearningRate:G4}  grad_norm {r.GradNorm:F3}  {r.TokensPerSecond:F0} tok/s  ETA {TimeSpan.FromSeconds(Math.Round(eta)):g}" + (langs.Length > 0 ? $"  [{langs}]" : ""));
                });
            }
            catch (ParrotTrainingException e) when (group.WorldSize == 1)
            {
                Console.Error.WriteLine($"parrot train: {e.Message}");
                return 3;
            }
            if (!main) return 0;
            ParrotLoader.Save(m, output, config: m.Config with { UseMoe = st == 2, MmVisionTower = Path.GetFullPath(visionDir) });
            foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
            {
                var src = Path.Combine(modelDir, name);
                if (File.Exists(src)) File.Copy(src, Path.Combine(output, name), overwrite: true);
            }
            writer.Close();
            PlotCurves(logPath, Path.Combine(output, "loss.png"), st);
            Console.WriteLine($"wrote {output} (stage {st}, {trainer.Step} steps)");
            return 0;
            }
        }));
        return cmd;
    }

    /// <summary>The loss curve, overall and per language, from the log; unreadable lines are left out with a warning.</summary>
    internal static void PlotCurves(string logPath, string pngPath, int stage)
    {
        static bool IsLanguageLoss(string key) => key.StartsWith("loss_", StringComparison.Ordinal);
        var (rows, warnings) = TrainingLog.ReadForPlot(logPath, IsLanguageLoss);
        TrainingLog.Warn("train", warnings);
        var series = new List<(string, double[], double[])>();
        var (x, y) = TrainingLog.Curve(rows, "loss");
        series.Add(("all", x, y));
        foreach (var key in rows.SelectMany(r => r.Numbers.Keys).Where(IsLanguageLoss).Distinct().Order(StringComparer.Ordinal))
        {
            (x, y) = TrainingLog.Curve(rows, key);
            series.Add((key[5..], x, y));
        }
        LossPlot.Save(pngPath, $"Parrot stage {stage}", series.ToArray());
    }
}
