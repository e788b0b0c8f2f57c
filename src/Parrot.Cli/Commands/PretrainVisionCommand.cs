using System.CommandLine;
using System.Diagnostics;
using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Training;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// `parrot pretrain-vision --world DIR --out DIR [--steps N] [--config FILE] [--batch B] [--lr LR] [--seed S]
/// [--valid N] [--eval-every N] [--save-every N] [--bf16-weights] [--log FILE] [--device cpu|cuda|cuda:N]`: trains a fresh CLIP vision tower on
/// a world's images with the labels the generator gives (scene attributes on the class token, the object under
/// each patch on the patch tokens) and writes it as a CLIPVisionModel folder (config.json,
/// preprocessor_config.json, model.safetensors) that a Parrot mm_vision_tower can point at.
/// </summary>
internal static class PretrainVisionCommand
{
    public static Command Create()
    {
        var d = new VisionPretrainingOptions();
        var world = new Option<string>("--world") { Description = "World directory made by `parrot make-world` (labels.json + images)", Required = true };
        var outDir = new Option<string>("--out") { Description = "Output folder: the CLIP tower, train_log.jsonl, loss.png, pretrain_summary.json", Required = true };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps", DefaultValueFactory = _ => d.Steps };
        var config = new Option<string?>("--config") { Description = "A CLIPVisionConfig config.json for the tower (default: 96 px, 32-px patches, width 96, 3 layers, 4 heads)" };
        var batch = new Option<int>("--batch") { Description = "Images per step", DefaultValueFactory = _ => d.Batch };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (warm-up 5%, cosine to 0)", DefaultValueFactory = _ => d.LearningRate };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the weights and the data order", DefaultValueFactory = _ => d.Seed };
        var valid = new Option<int>("--valid") { Description = "Images held out (the last of labels.json) for the validation loss and accuracies", DefaultValueFactory = _ => d.ValidImages };
        var evalEvery = new Option<int>("--eval-every") { Description = "Evaluate every N steps (and at the end)", DefaultValueFactory = _ => d.EvalEvery };
        var saveEvery = new Option<int>("--save-every") { Description = "Also write OUT/checkpoint-N every N steps", DefaultValueFactory = _ => 0 };
        var bf16 = new Option<bool>("--bf16-weights") { Description = "Write the weights as bf16 (training is float32)" };
        var log = new Option<string?>("--log") { Description = "JSON lines per step (default: OUT/train_log.jsonl)" };
        var device = DeviceOption.Create();
        var cmd = new Command("pretrain-vision", "Pre-train a tiny CLIP vision tower on a synthetic world's images and labels");
        foreach (var o in new Option[] { world, outDir, steps, config, batch, lr, seed, valid, evalEvery, saveEvery, bf16, log, device }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("pretrain-vision", () =>
        {
            var dev = DeviceOption.Resolve(p.GetValue(device), "pretrain-vision");
            string worldDir = p.GetValue(world)!, output = p.GetValue(outDir)!;
            if (!Directory.Exists(worldDir)) throw new CliException($"--world {worldDir}: directory not found");
            var tower = p.GetValue(config) is string cfg ? ClipVisionConfigJson.Load(cfg) : VisionPretrainingOptions.Tiny;
            var options = new VisionPretrainingOptions
            {
                Tower = tower, Steps = p.GetValue(steps), Batch = p.GetValue(batch), LearningRate = p.GetValue(lr), Seed = p.GetValue(seed),
                ValidImages = p.GetValue(valid), EvalEvery = p.GetValue(evalEvery), SaveEvery = p.GetValue(saveEvery), Device = dev,
            };
            try { options.Validate(); }
            catch (ArgumentException e) { throw new CliException(e.Message); }
            if (options.ValidImages == 0) throw new CliException("--valid must be at least 1 (the accuracies are measured on held-out images)");

            var clock = Stopwatch.StartNew();
            using var trainer = new VisionPretrainer(worldDir, options) { OutputDir = output };
            Directory.CreateDirectory(output);
            var c = tower;
            Console.WriteLine($"tower: {trainer.TowerParameters:N0} parameters ({c.ImageSize} px, {c.PatchSize}-px patches → {c.NumPatches} patches, width {c.HiddenSize}, {c.NumHiddenLayers} layers, {c.NumAttentionHeads} heads); "
                + $"{trainer.TrainCount} training images, {trainer.ValidCount} held out; loaded in {clock.Elapsed.TotalSeconds:F1} s");
            var logPath = p.GetValue(log) ?? Path.Combine(output, "train_log.jsonl");
            var logDir = Path.GetDirectoryName(Path.GetFullPath(logPath));
            if (logDir is not null) Directory.CreateDirectory(logDir);
            var train = clock.Elapsed.TotalSeconds;
            VisionStepRecord? last = null;
            using (var writer = new StreamWriter(logPath, append: false))
            {
                trainer.Train(r =>
                {
                    writer.WriteLine(r.ToJson());
                    writer.Flush();
                    last = r;
                    if (r.Valid is { } v)
                        Console.WriteLine($"step {r.Step}/{options.Steps}: loss {r.Loss:F4}  valid {v["loss"]:F4}  scene {v["acc_scene"]:P1}  shapes {v["acc_shapes"]:P1}  colors {v["acc_colors"]:P1}  count {v["acc_count"]:P1}  patch {v["acc_patch"]:P1} (shape {v["acc_patch_shape"]:P1} color {v["acc_patch_color"]:P1} size {v["acc_patch_size"]:P1})  lr {r.LearningRate:G3}  {r.ImagesPerSecond:F0} img/s");
                    else if (r.Step % 25 == 0 || r.Step == 1)
                        Console.WriteLine($"step {r.Step}/{options.Steps}: loss {r.Loss:F4}  lr {r.LearningRate:G3}  grad_norm {r.GradNorm:F3}  {r.ImagesPerSecond:F0} img/s");
                });
            }
            double seconds = clock.Elapsed.TotalSeconds;
            ClipTowerFolder.Save(trainer.Tower, output, p.GetValue(bf16) ? DType.BF16 : DType.F32);
            global::Parrot.Tensors.Formats.AtomicFile.WriteAllText(Path.Combine(output, "pretrain_summary.json"),
                VisionPretrainer.Summary(options, last!, seconds, trainer.TowerParameters, trainer.TrainCount, trainer.ValidCount));
            PlotCurves(logPath, Path.Combine(output, "loss.png"));
            Console.WriteLine($"wrote {output} ({seconds:F0} s; {seconds - train:F0} s training)");
            return 0;
        }));
        return cmd;
    }

    /// <summary>The training and validation loss curves from the log; unreadable lines are left out with a warning.</summary>
    internal static void PlotCurves(string logPath, string pngPath)
    {
        var (rows, warnings) = TrainingLog.ReadForPlot(logPath, key => key == "valid_loss");
        TrainingLog.Warn("pretrain-vision", warnings);
        var (x, y) = TrainingLog.Curve(rows, "loss");
        var (vx, vy) = TrainingLog.Curve(rows, "valid_loss");
        LossPlot.Save(pngPath, "pretrain-vision: CLIP tower on world labels", ("train", x, y), ("validation", vx, vy));
    }
}
