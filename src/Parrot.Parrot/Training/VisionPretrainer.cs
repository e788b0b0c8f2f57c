using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Optim;
using Parrot.Parrot.Data.World;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

namespace Parrot.Parrot.Training;

/// <summary>Settings of <see cref="VisionPretrainer"/>.</summary>
public sealed record VisionPretrainingOptions
{
    /// <summary>The tower to train: the tiny CLIP ViT of the demo by default (96 px, 32-px patches → a 3 × 3 grid
    /// that matches the world's slots, width 96, 3 layers, 4 heads, quick_gelu).</summary>
    public ClipVisionConfig Tower { get; init; } = Tiny;

    /// <summary>The default tiny tower.</summary>
    public static ClipVisionConfig Tiny { get; } = new()
    {
        HiddenSize = 96, IntermediateSize = 384, NumHiddenLayers = 3, NumAttentionHeads = 4, ImageSize = 96, PatchSize = 32, HiddenAct = "quick_gelu",
    };

    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 600;
    /// <summary>Images per step.</summary>
    public int Batch { get; init; } = 32;
    /// <summary>Peak learning rate (warm-up, then cosine to 0).</summary>
    public double LearningRate { get; init; } = 2e-3;
    /// <summary>Warm-up as a fraction of the steps.</summary>
    public double WarmupRatio { get; init; } = 0.05;
    /// <summary>Decoupled weight decay.</summary>
    public double WeightDecay { get; init; } = 0.01;
    /// <summary>Global gradient-norm clipping.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Seed of the weights and of the data order.</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>Images held out (the last ones of labels.json) to measure loss and accuracies.</summary>
    public int ValidImages { get; init; } = 200;
    /// <summary>Evaluate on the held-out images every N steps (and at the end); 0: only at the end.</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Write OUT/checkpoint-N (the tower folder) every N steps; 0: only the final tower.</summary>
    public int SaveEvery { get; init; }
    /// <summary>Where the tower and heads compute (the weights are made on the host with the seed, then moved, so
    /// every device starts from the same numbers); images are preprocessed on the host and copied in.</summary>
    public Device Device { get; init; } = Device.Cpu;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad value.</summary>
    public void Validate()
    {
        Tower.Validate();
        if (Steps <= 0) throw new ArgumentException($"pretrain-vision: steps must be positive, got {Steps}");
        if (Batch <= 0) throw new ArgumentException($"pretrain-vision: batch must be positive, got {Batch}");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentException($"pretrain-vision: the learning rate must be positive, got {LearningRate}");
        if (!(WarmupRatio >= 0 && WarmupRatio <= 1)) throw new ArgumentException($"pretrain-vision: the warm-up ratio must be in [0, 1], got {WarmupRatio}");
        if (!(WeightDecay >= 0)) throw new ArgumentException($"pretrain-vision: weight decay must be ≥ 0, got {WeightDecay}");
        if (!(MaxGradNorm > 0)) throw new ArgumentException($"pretrain-vision: max grad norm must be positive, got {MaxGradNorm}");
        if (ValidImages < 0 || EvalEvery < 0 || SaveEvery < 0) throw new ArgumentException("pretrain-vision: valid images, eval-every and save-every must be ≥ 0");
        if (Tower.NumChannels != 3) throw new ArgumentException($"pretrain-vision: the tower must read RGB (num_channels 3), got {Tower.NumChannels}");
    }
}

/// <summary>What one pre-training step (or evaluation) measured.</summary>
/// <param name="Step">1-based step.</param>
/// <param name="Loss">Training loss of the step (mean of the heads' cross-entropies).</param>
/// <param name="LearningRate">Rate used.</param>
/// <param name="GradNorm">Gradient norm before clipping.</param>
/// <param name="ImagesPerSecond">Throughput of the step.</param>
/// <param name="Valid">Held-out loss and accuracies, on evaluation steps; otherwise null.</param>
public sealed record VisionStepRecord(int Step, double Loss, double LearningRate, double GradNorm, double ImagesPerSecond, IReadOnlyDictionary<string, double>? Valid)
{
    /// <summary>One JSON line: step, loss, lr, grad_norm, images_per_s and, on evaluation steps, valid_* keys.</summary>
    public string ToJson()
    {
        var o = new JsonObject { ["step"] = Step, ["loss"] = Loss, ["lr"] = LearningRate, ["grad_norm"] = GradNorm, ["images_per_s"] = Math.Round(ImagesPerSecond, 1) };
        if (Valid is not null) foreach (var (k, v) in Valid) o["valid_" + k] = v;
        return o.ToJsonString();
    }
}

/// <summary>The classification heads of pre-training (not part of the saved tower).</summary>
internal sealed class VisionHeads : Module
{
    public Linear Cls { get; }
    public LayerNorm PatchNorm { get; }
    public Linear Patch { get; }

    public VisionHeads(int width, ulong seed)
    {
        Cls = AddModule("cls", new Linear(width, VisionTargets.ClsHeads.Sum(), true, Init.SeedFor(seed, "cls")));
        PatchNorm = AddModule("patch_norm", new LayerNorm(width));
        Patch = AddModule("patch", new Linear(width, VisionTargets.PatchHeads.Sum(), true, Init.SeedFor(seed, "patch")));
    }
}

/// <summary>
/// Pre-trains a CLIP vision tower on a synthetic world with labels the generator gives for free
/// (<see cref="VisionTargets"/>): linear heads on the pooled class token predict a summary of the scene (background,
/// count, objects per shape and per colour), a head on every patch token of the last layer predicts the object
/// under that patch. The loss is the mean cross-entropy over the class-token heads plus the mean over the patch
/// heads. AdamW, warm-up + cosine, gradient clipping; images go through the tower's own CLIP preprocessing
/// (<see cref="ClipTowerFolder.PreprocessorJson"/>), so training sees exactly what Parrot will feed it.
/// </summary>
public sealed class VisionPretrainer : IDisposable
{
    private readonly VisionPretrainingOptions _options;
    private readonly ImagePreprocessor _preprocessor;
    private readonly VisionHeads _heads;
    private readonly List<Example> _train = [], _valid = [];

    private sealed record Example(string Path, RgbImage Image, long[] Cls, long[] Patches);

    /// <summary>Loads the world's labelled images and creates a fresh tower (seeded).</summary>
    /// <exception cref="InvalidDataException">Bad labels or an unreadable image (named).</exception>
    public VisionPretrainer(string worldDir, VisionPretrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(worldDir);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        var labels = VisionLabels.Load(worldDir);
        if (labels.Count <= options.ValidImages)
            throw new InvalidDataException($"{worldDir}: {labels.Count} labelled images, but {options.ValidImages} are to be held out; make a larger world or lower --valid");
        _preprocessor = new ImagePreprocessor(PreprocessorConfig.Parse(ClipTowerFolder.PreprocessorJson(options.Tower.ImageSize)));
        int s = options.Tower.ImageSize, p = options.Tower.PatchSize;
        var examples = new Example[labels.Count];
        try
        {
            Parallel.For(0, labels.Count, i =>
            {
                var l = labels[i];
                var file = System.IO.Path.Combine(worldDir, l.Image);
                RgbImage image;
                try { image = ImageLoader.Load(file); }
                catch (Exception e) when (e is ImageLoadException or IOException or UnauthorizedAccessException)
                {
                    throw new InvalidDataException($"{file} (labels.json entry {i}): cannot read the image: {e.Message}", e);
                }
                examples[i] = new Example(file, image, VisionTargets.Cls(l.Scene), VisionTargets.Patches(l.Scene, s, p));
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.OfType<InvalidDataException>().Any())
        {
            // Parallel.For wraps what the loader threw: report the image problem itself.
            throw e.InnerExceptions.OfType<InvalidDataException>().OrderBy(x => x.Message, StringComparer.Ordinal).First();
        }
        _train.AddRange(examples[..^options.ValidImages]);
        _valid.AddRange(examples[^options.ValidImages..]);
        Tower = new ClipVisionModel(options.Tower, Init.SeedFor(options.Seed, "tower"));
        _heads = new VisionHeads(options.Tower.HiddenSize, Init.SeedFor(options.Seed, "heads"));
        try
        {
            Tower.To(options.Device);
            _heads.To(options.Device);
        }
        catch
        {
            // Out of device memory, say: the constructor throws, so nobody else would free the host copies.
            Tower.Dispose();
            _heads.Dispose();
            throw;
        }
    }

    /// <summary>The tower being trained.</summary>
    public ClipVisionModel Tower { get; }

    /// <summary>Training images.</summary>
    public int TrainCount => _train.Count;

    /// <summary>Held-out images.</summary>
    public int ValidCount => _valid.Count;

    /// <summary>Parameters of the tower (the heads are not counted).</summary>
    public long TowerParameters => Tower.ParameterCount();

    /// <summary>Where OUT/checkpoint-N folders go (null: none are written).</summary>
    public string? OutputDir { get; init; }

    /// <summary>Runs the training, reporting each step.</summary>
    /// <exception cref="InvalidOperationException">The loss became NaN or infinite (the step is named).</exception>
    public List<VisionStepRecord> Train(Action<VisionStepRecord>? onStep = null)
    {
        var o = _options;
        var parameters = Tower.TrainableParameters().Concat(_heads.TrainableParameters()).ToList();
        using var opt = new AdamW(parameters, o.LearningRate, weightDecay: o.WeightDecay);
        var schedule = WarmupCosineSchedule.WithWarmupRatio(o.LearningRate, o.Steps, o.WarmupRatio);
        var rng = new Random(unchecked((int)(o.Seed * 2_654_435_761UL)));
        var order = Enumerable.Range(0, _train.Count).ToArray();
        int pos = order.Length;
        var records = new List<VisionStepRecord>();
        var batch = new List<Example>(o.Batch);
        for (int step = 0; step < o.Steps; step++)
        {
            var clock = Stopwatch.StartNew();
            batch.Clear();
            for (int b = 0; b < o.Batch; b++)
            {
                if (pos == order.Length) { rng.Shuffle(order); pos = 0; }
                batch.Add(_train[order[pos++]]);
            }
            double loss, norm;
            using (var scope = TensorScope.Begin())
            {
                Tower.Train(); _heads.Train();
                var (l, _) = Loss(batch, withAccuracy: false);
                loss = l.Value.Item();
                if (!double.IsFinite(loss)) throw new InvalidOperationException($"pretrain-vision: the loss is {loss} at step {step + 1}");
                opt.ZeroGrad();
                l.Backward();
                norm = GradClip.ClipGradNorm(parameters, o.MaxGradNorm);
                schedule.Apply(opt, step);
                opt.Step();
            }
            double ips = o.Batch / clock.Elapsed.TotalSeconds;
            bool last = step + 1 == o.Steps;
            var valid = last || (o.EvalEvery > 0 && (step + 1) % o.EvalEvery == 0) ? Evaluate() : null;
            var rec = new VisionStepRecord(step + 1, loss, opt.LearningRate, norm, ips, valid);
            records.Add(rec);
            onStep?.Invoke(rec);
            if (OutputDir is not null && o.SaveEvery > 0 && (step + 1) % o.SaveEvery == 0 && !last) SaveCheckpoint(OutputDir, step + 1);
        }
        return records;
    }

    /// <summary>Loss and accuracies on the held-out images (no gradients): loss; background, count, shapes (every shape's count right), colors (every colour's count right), scene (all class-token heads right); patch (the three patch heads right, averaged over patches); patch_shape, patch_color, patch_size (each head over the patches that show an object).</summary>
    public Dictionary<string, double> Evaluate()
    {
        using var ng = Graph.NoGrad();
        Tower.Eval(); _heads.Eval();
        var sums = new Dictionary<string, double>(StringComparer.Ordinal);
        double lossSum = 0;
        for (int start = 0; start < _valid.Count; start += _options.Batch)
        {
            using var scope = TensorScope.Begin();
            var part = _valid.GetRange(start, Math.Min(_options.Batch, _valid.Count - start));
            var (l, acc) = Loss(part, withAccuracy: true);
            lossSum += l.Value.Item() * part.Count;
            foreach (var (k, v) in acc!) sums[k] = sums.GetValueOrDefault(k) + v;
        }
        Tower.Train(); _heads.Train();
        var result = new Dictionary<string, double>(StringComparer.Ordinal) { ["loss"] = lossSum / _valid.Count };
        foreach (var (k, v) in sums) result["acc_" + k] = v / _valid.Count;
        return result;
    }

    /// <summary>The batch's loss and, on request, the number of correct answers per metric.</summary>
    private (Variable Loss, Dictionary<string, double>? Correct) Loss(List<Example> batch, bool withAccuracy)
    {
        int b = batch.Count, n = _options.Tower.NumPatches;
        var pixels = new Tensor[b];
        for (int i = 0; i < b; i++) pixels[i] = _preprocessor.Process(batch[i].Image, padToSquare: true);
        var x = new Variable(Tensor.Stack(0, pixels));
        var output = Tower.Forward(x);
        var clsLogits = _heads.Cls.Forward(output.PoolerOutput);                                                        // [B, ΣK]
        var patchLogits = _heads.Patch.Forward(_heads.PatchNorm.Forward(output.LastHiddenState.Narrow(1, 1, n)))       // [B, N, ΣK']
            .Reshape(b * n, VisionTargets.PatchHeads.Sum());
        // Targets on the model's device (one copy each); the tower copies the host-made pixels there itself.
        var clsT = Tensor.FromArray(batch.SelectMany(e => e.Cls).ToArray(), _options.Device, b, VisionTargets.ClsHeads.Length);
        var patchT = Tensor.FromArray(batch.SelectMany(e => e.Patches).ToArray(), _options.Device, b * n, 3);
        var clsPred = new Tensor[VisionTargets.ClsHeads.Length];
        var patchPred = new Tensor[3];
        Variable? clsLoss = null, patchLoss = null;
        int off = 0;
        for (int h = 0; h < VisionTargets.ClsHeads.Length; h++)
        {
            int k = VisionTargets.ClsHeads[h];
            var logits = clsLogits.Narrow(1, off, k);
            var ce = Variable.CrossEntropy(logits, clsT.Select(1, h).Contiguous());
            clsLoss = clsLoss is null ? ce : clsLoss + ce;
            if (withAccuracy) clsPred[h] = logits.Value.ArgMax(1);
            off += k;
        }
        off = 0;
        for (int h = 0; h < 3; h++)
        {
            int k = VisionTargets.PatchHeads[h];
            var logits = patchLogits.Narrow(1, off, k);
            var ce = Variable.CrossEntropy(logits, patchT.Select(1, h).Contiguous());
            patchLoss = patchLoss is null ? ce : patchLoss + ce;
            if (withAccuracy) patchPred[h] = logits.Value.ArgMax(1);
            off += k;
        }
        var loss = clsLoss! * (1.0 / VisionTargets.ClsHeads.Length) + patchLoss! * (1.0 / 3);
        if (!withAccuracy) return (loss, null);

        var cp = clsPred.Select(t => t.To(DType.I64).ToArray<long>()).ToArray();
        var pp = patchPred.Select(t => t.To(DType.I64).ToArray<long>()).ToArray();
        int shapes = WorldPalette.Shapes.Length, colors = WorldPalette.ObjectColors.Length;
        var c = new Dictionary<string, double> { ["background"] = 0, ["count"] = 0, ["shapes"] = 0, ["colors"] = 0, ["scene"] = 0, ["patch"] = 0, ["patch_shape"] = 0, ["patch_color"] = 0, ["patch_size"] = 0 };
        for (int i = 0; i < b; i++)
        {
            var t = batch[i].Cls;
            bool Right(int from, int count) => Enumerable.Range(from, count).All(h => cp[h][i] == t[h]);
            if (Right(0, 1)) c["background"]++;
            if (Right(1, 1)) c["count"]++;
            if (Right(2, shapes)) c["shapes"]++;
            if (Right(2 + shapes, colors)) c["colors"]++;
            if (Right(0, t.Length)) c["scene"]++;
            double right = 0, occupied = 0, shape = 0, color = 0, size = 0;
            for (int q = 0; q < n; q++)
            {
                var pt = batch[i].Patches;
                if (Enumerable.Range(0, 3).All(h => pp[h][i * n + q] == pt[q * 3 + h])) right++;
                if (pt[q * 3] == 0) continue;
                occupied++;
                if (pp[0][i * n + q] == pt[q * 3]) shape++;
                if (pp[1][i * n + q] == pt[q * 3 + 1]) color++;
                if (pp[2][i * n + q] == pt[q * 3 + 2]) size++;
            }
            c["patch"] += right / n;
            c["patch_shape"] += shape / occupied;
            c["patch_color"] += color / occupied;
            c["patch_size"] += size / occupied;
        }
        return (loss, c);
    }

    /// <summary>Writes the tower to OUT/checkpoint-N through a temporary folder renamed into place.</summary>
    public string SaveCheckpoint(string outputDir, int step)
    {
        ArgumentNullException.ThrowIfNull(outputDir);
        Directory.CreateDirectory(outputDir);
        var final = System.IO.Path.Combine(outputDir, "checkpoint-" + step.ToString(CultureInfo.InvariantCulture));
        var tmp = System.IO.Path.Combine(outputDir, $".checkpoint-{step}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        ClipTowerFolder.Save(Tower, tmp);
        if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
        Directory.Move(tmp, final);
        return final;
    }

    /// <summary>A JSON summary of a finished run (for OUT/pretrain_summary.json).</summary>
    public static string Summary(VisionPretrainingOptions o, VisionStepRecord last, double seconds, long parameters, int trainImages, int validImages) =>
        new JsonObject
        {
            ["steps"] = o.Steps, ["batch"] = o.Batch, ["lr"] = o.LearningRate, ["seed"] = o.Seed,
            ["train_images"] = trainImages, ["valid_images"] = validImages, ["tower_parameters"] = parameters,
            ["seconds"] = Math.Round(seconds, 1), ["final_train_loss"] = last.Loss,
            ["valid"] = new JsonObject((last.Valid ?? new Dictionary<string, double>()).Select(kv => new KeyValuePair<string, JsonNode?>(kv.Key, kv.Value))),
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";

    /// <summary>Frees the tower and the heads.</summary>
    public void Dispose()
    {
        Tower.Dispose();
        _heads.Dispose();
    }
}
