using System.Diagnostics;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Data;
using Parrot.Parrot.Data.World;
using Parrot.Parrot.Evaluation;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Training;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli.Demo;

/// <summary>One trained stage: its name and step records.</summary>
internal sealed record DemoStage(string Name, IReadOnlyList<ParrotStepMetrics> Steps);

/// <summary>Everything the demo measured, for the report.</summary>
internal sealed record DemoResult(
    DemoSettings Settings, DemoAssets Assets, WorldSummary World, ParrotConfig Config, long LmParameters, long ParrotParameters,
    long BaselineParameters, IReadOnlyList<DemoStage> Stages, BenchmarkScores Parrot, BenchmarkScores Baseline,
    BenchmarkScores ParrotSwapped, BenchmarkScores BaselineSwapped,
    IReadOnlyDictionary<string, double> Seconds, IReadOnlyDictionary<string, double> CpuSeconds);

/// <summary>
/// `parrot demo`: generates the synthetic world, trains stage 1 (projector, MoE bypassed) from the tiny
/// pre-trained vision tower and LM, then stage 2 twice from the same stage-1 weights — Parrot (fresh
/// language-routing MoE) and the LLaVA-style baseline (the same recipe with the MoE bypassed) — evaluates both
/// on the six-language benchmark and writes the report. Progress goes to <paramref name="log"/>.
/// </summary>
internal sealed class DemoRunner(DemoSettings settings, DemoAssets assets, string outDir, TextWriter log)
{
    private readonly Stopwatch _clock = new();
    private readonly Dictionary<string, double> _seconds = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double> _cpuSeconds = new(StringComparer.Ordinal);

    private static double CpuNow() => Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

    private void Say(string message) => log.WriteLine($"[{_clock.Elapsed:mm\\:ss}] {message}");

    private T Timed<T>(string phase, Func<T> body)
    {
        var sw = Stopwatch.StartNew();
        double cpu = CpuNow();
        var result = body();
        _seconds[phase] = sw.Elapsed.TotalSeconds;
        _cpuSeconds[phase] = CpuNow() - cpu;
        return result;
    }

    /// <summary>Runs the whole demo and returns its results (the report is written by <see cref="DemoReport"/>).</summary>
    public DemoResult Run()
    {
        _clock.Start();
        double cpuStart = CpuNow();
        Directory.CreateDirectory(outDir);
        string worldDir = Path.Combine(outDir, "world"), modelsDir = Path.Combine(outDir, "models");

        var tokenizer = BpeTokenizer.Load(Path.Combine(assets.Lm, "tokenizer.json"));
        var chat = new ChatMl(tokenizer);
        var lmConfig = Qwen2ConfigJson.Load(Path.Combine(assets.Lm, "config.json"));
        if (tokenizer.IdCount > lmConfig.VocabSize)
            throw new CliException($"{assets.Lm}: tokenizer.json has {tokenizer.IdCount} ids but the LM's vocab_size is {lmConfig.VocabSize}");
        using var tower = ClipVisionLoader.Load(assets.Vision, DType.F32);
        var config = new ParrotConfig
        {
            Text = lmConfig, MmHiddenSize = tower.Config.HiddenSize, NumExperts = 6, MmVisionSelectLayer = settings.VisionSelectLayer,
            MoeIntermediateSize = settings.MoeIntermediateSize ?? lmConfig.HiddenSize, UseMoe = false,
            MmVisionTower = Path.Combine("..", TowerFolder),
        };
        // The world is drawn at the tower's input size, as the tower was pre-trained on it.
        var worldOptions = settings.World with { ImageSize = Math.Clamp(tower.Config.ImageSize, 32, 1024) };
        Say($"generating the synthetic world in {worldDir} (seed {settings.Seed}, {worldOptions.ImageSize} px)");
        var world = Timed("world", () => WorldGenerator.Generate(worldDir, worldOptions));
        // After the world: DemoCommand knows an earlier demo's folder by the world, the first thing a demo writes.
        CopyTower(assets.Vision, Path.Combine(modelsDir, TowerFolder));
        Say($"world: {world.Stage1} English captions, {world.Stage2PerLanguage.Values.Sum()} instructions ({string.Join(" ", world.Stage2PerLanguage.Select(kv => $"{kv.Key} {kv.Value}"))}), {world.BenchmarkItems} benchmark items × 6 languages ({world.Seconds:F1} s)");

        var towerFeatures = ParrotVision.Features(tower, config.MmVisionSelectLayer);
        var preprocessor = ImagePreprocessor.FromDirectory(assets.Vision);
        using var features = new LlavaImageFeatures(towerFeatures, preprocessor, padToSquare: config.ImageAspectRatio == "pad");
        var dataOptions = new LlavaOptions { MaxLength = settings.MaxLength, ImageTokens = tower.Config.NumPositions, Context = config.Text.MaxPositionEmbeddings };
        Say($"vision tower: CLIP {tower.Config.NumHiddenLayers} layers, width {tower.Config.HiddenSize}, {tower.Config.ImageSize} px / patch {tower.Config.PatchSize} → {tower.Config.NumPositions} visual tokens; "
            + $"LM: Qwen2 {lmConfig.NumHiddenLayers} layers, width {lmConfig.HiddenSize}, vocabulary {lmConfig.VocabSize}");

        var stages = new List<DemoStage>();
        long lmParams, parrotParams = 0, baselineParams = 0;
        string stage1Dir = Path.Combine(modelsDir, "stage1");
        using (var model = StartingModel(config))
        {
            lmParams = model.NamedParameters().Where(p => !p.Name.StartsWith("model.mm_projector.", StringComparison.Ordinal) && !p.Name.StartsWith("model.moe_model.", StringComparison.Ordinal)).Sum(p => p.Parameter.Value.Count);
            var data = LlavaDataset.Load(Path.Combine(worldDir, "stage1.json"), worldDir, chat, dataOptions);
            stages.Add(Timed("stage1", () => Train("stage 1", model, data, features, Options(1, useMoe: false))));
            Save(model, stage1Dir, config with { UseMoe = false });
        }

        var stage2Data = LlavaDataset.Load(Path.Combine(worldDir, "stage2.json"), worldDir, chat, dataOptions);
        var evaluation = new DemoEvaluation(Path.Combine(worldDir, "benchmark"), assets.Vision, Path.Combine(outDir, DemoReport.EvalFolder), settings.MaxNewTokens);
        BenchmarkScores? parrot = null, baseline = null, parrotSwapped = null, baselineSwapped = null;
        foreach (bool useMoe in new[] { true, false })
        {
            string name = useMoe ? "parrot" : "baseline", label = useMoe ? "Parrot (MoE)" : "baseline (no MoE)";
            using var model = ParrotLoader.Load(stage1Dir, DType.F32);
            var stage = Timed($"stage2_{name}", () => Train($"stage 2, {label}", model, stage2Data, features, Options(2, useMoe)));
            stages.Add(stage with { Name = $"stage 2 {label}" });
            Save(model, Path.Combine(modelsDir, name), config with { UseMoe = useMoe });
            long trained = model.NamedParameters().Where(p => useMoe || !p.Name.StartsWith("model.moe_model.", StringComparison.Ordinal)).Sum(p => p.Parameter.Value.Count);
            if (useMoe) parrotParams = trained; else baselineParams = trained;
            Say($"evaluating {label} on the benchmark");
            var scores = Timed($"eval_{name}", () => evaluation.Evaluate(Path.Combine(modelsDir, name), name, (lang, acc) => Say($"  {label} {lang}: {acc:P1}")));
            var ablation = Timed($"eval_{name}_swapped_images", () => evaluation.Evaluate(Path.Combine(modelsDir, name), name, swapImages: true));
            Say($"  {label} with every question shown another question's image: {Langs(ablation)}; answers changed: {Changed(scores, ablation):P1}");
            if (useMoe) { parrot = scores; parrotSwapped = ablation; }
            else { baseline = scores; baselineSwapped = ablation; }
        }
        _seconds["total"] = _clock.Elapsed.TotalSeconds;
        _cpuSeconds["total"] = CpuNow() - cpuStart;
        return new DemoResult(settings, assets, world, config, lmParams, parrotParams, baselineParams, stages, parrot!, baseline!, parrotSwapped!, baselineSwapped!, _seconds, _cpuSeconds);
    }

    private static string Langs(BenchmarkScores s) => string.Join(" ", s.Accuracy.Select(kv => $"{kv.Key} {kv.Value:P1}"));

    /// <summary>The fraction of questions whose extracted answer differs between two evaluations of the same items.</summary>
    internal static double Changed(BenchmarkScores a, BenchmarkScores b)
    {
        int changed = 0, total = 0;
        foreach (var (lang, answers) in a.Responses)
            for (int i = 0; i < answers.Count; i++, total++)
                if (answers[i].Extracted != b.Responses[lang][i].Extracted) changed++;
        return total == 0 ? 0 : changed / (double)total;
    }

    /// <summary>Stage options: the paper's recipe with the demo's batch sizes and learning rates.</summary>
    private ParrotTrainingOptions Options(int stage, bool useMoe) => ParrotTrainingOptions.Parrot7b(stage) with
    {
        GlobalBatch = stage == 1 ? settings.Stage1Batch : settings.Stage2Batch,
        MicroBatch = Math.Min(settings.MicroBatch, stage == 1 ? settings.Stage1Batch : settings.Stage2Batch),
        LearningRate = stage == 1 ? settings.Stage1Lr : settings.Stage2Lr,
        Epochs = stage == 1 ? settings.Stage1Epochs : settings.Stage2Epochs,
        MaxLength = settings.MaxLength,
        Seed = settings.Seed,
        UseMoe = useMoe,
    };

    /// <summary>The Parrot model at the start of stage 1: the pre-trained LM, a fresh projector and MoE.</summary>
    private ParrotForCausalLM StartingModel(ParrotConfig config)
    {
        var model = new ParrotForCausalLM(config, settings.Seed, DType.F32);
        try
        {
            using var checkpoint = SafetensorsCheckpoint.Open(assets.Lm);
            var fresh = model.NamedParameters().Select(p => p.Name)
                .Where(n => n.StartsWith("model.mm_projector.", StringComparison.Ordinal) || n.StartsWith("model.moe_model.", StringComparison.Ordinal));
            global::Parrot.Nn.ModelLoading.Load(model, checkpoint, "", DType.F32,
                ignoreUnexpected: n => n.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal), optional: fresh);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    private DemoStage Train(string name, ParrotForCausalLM model, LlavaDataset data, LlavaImageFeatures features, ParrotTrainingOptions options)
    {
        using var trainer = new ParrotTrainer(model, data, features, options);
        Say($"{name}: {data.Examples.Count} samples, {trainer.TotalSteps} steps of {options.GlobalBatch}, lr {options.LearningRate:G3}");
        int every = Math.Max(1, trainer.TotalSteps / 8);
        var steps = trainer.Train(m =>
        {
            if (m.Step % every == 0 || m.Step == m.TotalSteps || m.Step == 1)
                Say($"  {name} step {m.Step}/{m.TotalSteps}: loss {m.Loss:F3}  grad_norm {m.GradNorm:F2}  {m.TokensPerSecond:F0} tok/s");
        });
        return new DemoStage(name, steps);
    }

    private void Save(ParrotForCausalLM model, string dir, ParrotConfig config)
    {
        ParrotLoader.Save(model, dir, config: config);
        AtomicFile.Copy(Path.Combine(assets.Lm, "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
    }

    /// <summary>
    /// The folder under models/ that holds a copy of the CLIP tower the models were trained with; their configs name it
    /// relatively (mm_vision_tower "../vision"), so the demo's output is whole and still works when moved. They used to
    /// name the checkout's assets/tiny/vision by absolute path, and broke when the checkout moved.
    /// </summary>
    internal const string TowerFolder = "vision";

    /// <summary>The tower's config, preprocessing config and weights (1.5 MB for the tiny tower; its training logs stay behind).</summary>
    private static void CopyTower(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var name in new[] { "config.json", "preprocessor_config.json", "model.safetensors" })
            if (File.Exists(Path.Combine(from, name))) AtomicFile.Copy(Path.Combine(from, name), Path.Combine(to, name));
    }
}
