using System.Diagnostics;
using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Optim;
using Parrot.Parrot.Data;
using Parrot.Parrot.Model;
using Parrot.Tensors;

namespace Parrot.Parrot.Training;

/// <summary>
/// Parrot's two training stages over LLaVA data with cached vision features.
/// Stage 1 trains mm_projector only with the MoE bypassed; stage 2 re-initialises moe_model and trains
/// everything but the vision tower (or, with UseMoe off, trains stage 2 with the MoE bypassed: the LLaVA-style baseline). A step takes the next global batch of the seeded epoch order, runs it
/// as micro-batches and accumulates gradients: each micro-batch back-propagates the SUM of its token losses
/// and the accumulated gradient is divided by the number of supervised tokens of the whole global batch, so
/// the step's loss and gradient are the mean over every supervised token of the global batch, the same as
/// one big batch gives (not the mean of micro-batch means, which would weight a token of a short
/// micro-batch more). Then clipping, the warm-up/cosine rate and AdamW (MixedPrecisionAdamW in bf16).
/// </summary>
public sealed class ParrotTrainer : IDisposable
{
    private readonly ParrotForCausalLM _model;
    private readonly LlavaDataset _data;
    private readonly LlavaImageFeatures _features;
    private readonly ParrotTrainingOptions _options;
    private readonly List<(string Name, Variable Parameter)> _trainable;
    private readonly Optimizer _optimizer;
    private readonly LrSchedule _schedule;
    private readonly ParrotDataOrder _order;

    /// <summary>Steps completed.</summary>
    public int Step { get; private set; }
    /// <summary>Steps of the whole run.</summary>
    public int TotalSteps { get; }
    /// <summary>Where checkpoints go (null: none are written).</summary>
    public string? OutputDir { get; init; }
    /// <summary>The options.</summary>
    public ParrotTrainingOptions Options => _options;

    /// <summary>
    /// Prepares <paramref name="model"/> for the stage: casts it to bf16 when asked, sets gradient checkpointing
    /// and the MoE switch, re-initialises the MoE for stage 2 (a resumed run then loads the checkpoint's),
    /// freezes what the stage does not train and creates the optimizer over the rest.
    /// </summary>
    public ParrotTrainer(ParrotForCausalLM model, LlavaDataset data, LlavaImageFeatures features, ParrotTrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _model = model; _data = data; _features = features; _options = options;

        if (options.Bf16) model.CastParameters(DType.BF16);
        model.Model.GradientCheckpointing = options.GradientCheckpointing;
        model.Train();
        if (options.Stage == 1 || !options.UseMoe) model.MoeEnabled = false;
        else
        {
            model.MoeEnabled = true;
            ReinitializeMoe(model, options.Seed);
        }
        model.Freeze();
        if (options.Stage == 1) model.Unfreeze("model.mm_projector.");
        else
        {
            model.Unfreeze();
            model.Freeze("model.vision_tower.");
            if (!options.UseMoe) model.Freeze("model.moe_model.");
        }
        _trainable = model.NamedParameters().Where(p => p.Parameter.RequiresGrad).ToList();

        int perEpoch = (data.Examples.Count + options.GlobalBatch - 1) / options.GlobalBatch;
        TotalSteps = options.Steps ?? options.Epochs * perEpoch;
        _schedule = WarmupCosineSchedule.WithWarmupRatio(options.LearningRate, TotalSteps, options.WarmupRatio);
        _optimizer = options.Bf16
            ? new MixedPrecisionAdamW(_trainable.Select(p => p.Parameter), options.LearningRate, weightDecay: options.WeightDecay)
            : new AdamW(_trainable.Select(p => p.Parameter), options.LearningRate, weightDecay: options.WeightDecay);
        _order = new ParrotDataOrder(data.Examples.Count, options.Seed);
    }

    /// <summary>Replaces moe_model's weights with a fresh initialisation (stage 2 starts its MoE from scratch).</summary>
    public static void ReinitializeMoe(ParrotForCausalLM model, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(model);
        var c = model.Config;
        var moe = model.Model.Moe;
        using var fresh = new LanguageMoe(c.Text.HiddenSize, c.NumExperts, c.MoeIntermediateSize, c.MoeWeight, c.UseMoeResidual,
            Init.SeedFor(seed, "stage2.moe_model"), moe.Gate.Weight.DType);
        moe.LoadStateDict(fresh.StateDict());
    }

    /// <summary>
    /// Trains until <see cref="TotalSteps"/> (or <paramref name="stopAfter"/> more steps), writing a checkpoint
    /// every <see cref="ParrotTrainingOptions.SaveEvery"/> steps and at the end when <see cref="OutputDir"/> is set.
    /// </summary>
    /// <exception cref="ParrotTrainingException">A loss or gradient is NaN or infinite; nothing is updated or saved for that step.</exception>
    public List<ParrotStepMetrics> Train(Action<ParrotStepMetrics>? onStep = null, int? stopAfter = null)
    {
        var records = new List<ParrotStepMetrics>();
        int end = stopAfter is int s ? Math.Min(TotalSteps, Step + s) : TotalSteps;
        while (Step < end)
        {
            var m = TrainStep();
            records.Add(m);
            onStep?.Invoke(m);
            if (OutputDir is not null && ((_options.SaveEvery > 0 && Step % _options.SaveEvery == 0) || Step == TotalSteps))
                SaveCheckpoint(OutputDir);
        }
        return records;
    }

    /// <summary>One optimizer step over the next global batch.</summary>
    public ParrotStepMetrics TrainStep()
    {
        var sw = Stopwatch.StartNew();
        int stepNo = Step + 1;
        var batch = _order.NextBatch(_options.GlobalBatch);
        _optimizer.ZeroGrad();
        double lossSum = 0;
        long supervised = 0, tokens = 0;
        var langSum = new Dictionary<string, double>(StringComparer.Ordinal);
        var langCount = new Dictionary<string, long>(StringComparer.Ordinal);
        int micro = 0;
        for (int start = 0; start < batch.Length; start += _options.MicroBatch, micro++)
        {
            var examples = batch.Skip(start).Take(_options.MicroBatch).Select(i => _data.Examples[i]).ToList();
            using var scope = TensorScope.Begin();
            var (sum, rowSums, rowCounts, real) = MicroBatchLoss(examples);
            double value = sum.Value.Item();
            if (!double.IsFinite(value))
                throw new ParrotTrainingException($"step {stepNo}: the loss is {value} in micro-batch {micro + 1} (samples {string.Join(", ", examples.Select(e => e.Id))}); stopping, the last checkpoint is left as it was");
            // A text-only micro-batch in stage 1 reaches no trainable parameter: its tokens count in the mean but give no gradient.
            if (sum.RequiresGrad) sum.Backward();
            lossSum += value;
            tokens += real;
            for (int b = 0; b < examples.Count; b++)
            {
                supervised += rowCounts[b];
                if (examples[b].Language is string lang && rowCounts[b] > 0)
                {
                    langSum[lang] = langSum.GetValueOrDefault(lang) + rowSums[b];
                    langCount[lang] = langCount.GetValueOrDefault(lang) + rowCounts[b];
                }
            }
        }
        if (supervised == 0) throw new ParrotTrainingException($"step {stepNo}: the batch has no supervised token (every label is ignored)");
        ScaleGradients(1.0 / supervised);
        double norm = GradClip.ClipGradNorm(_trainable.Select(p => p.Parameter), _options.MaxGradNorm);
        if (!double.IsFinite(norm))
            throw new ParrotTrainingException($"step {stepNo}: the gradient norm is {norm}; stopping, the last checkpoint is left as it was");
        _schedule.Apply(_optimizer, Step);
        _optimizer.Step();
        Step = stepNo;
        var langLoss = langSum.ToDictionary(kv => kv.Key, kv => kv.Value / langCount[kv.Key], StringComparer.Ordinal);
        return new ParrotStepMetrics(stepNo, TotalSteps, lossSum / supervised, _optimizer.LearningRate, norm, tokens, supervised, sw.Elapsed.TotalSeconds, langLoss);
    }

    /// <summary>
    /// The summed next-token loss of a micro-batch (float32 logits, as the reference computes it), the
    /// per-sample sums and supervised-token counts, and the number of real positions.
    /// </summary>
    private (Variable Sum, double[] RowSums, long[] RowCounts, long Real) MicroBatchLoss(List<LlavaExample> examples)
    {
        var paths = new List<string>();
        var ids = new List<string>();
        var samples = new List<ParrotSample>(examples.Count);
        foreach (var e in examples)
        {
            int imageIndex = -1;
            if (e.ImagePath is not null)
            {
                imageIndex = paths.Count;
                paths.Add(e.ImagePath);
                ids.Add(e.Id);
            }
            samples.Add(new ParrotSample(e.Ids, e.Labels, imageIndex));
        }
        var features = paths.Count > 0 ? _features.Batch(paths, ids) : null;
        var output = _model.Forward(samples, features, _options.MaxLength);
        int b = output.Labels.Dim(0), len = output.Labels.Dim(1);
        var logits = output.Logits.DType == DType.F32 ? output.Logits : output.Logits.To(DType.F32);
        var shifted = logits.Narrow(1, 0, len - 1).Reshape(-1, logits.Shape[^1]);
        var targets = output.Labels.Narrow(1, 1, len - 1).Contiguous().Reshape(-1);
        var perToken = Variable.CrossEntropy(shifted, targets, ParrotSample.IgnoreIndex, LossReduction.None); // [B·(L−1)], 0 where ignored
        var values = perToken.Value.ToDoubleArray();
        var labels = targets.ToLongArray();
        var rowSums = new double[b];
        var rowCounts = new long[b];
        for (int r = 0; r < b; r++)
            for (int t = 0; t < len - 1; t++)
            {
                int k = r * (len - 1) + t;
                if (labels[k] == ParrotSample.IgnoreIndex) continue;
                rowSums[r] += values[k];
                rowCounts[r]++;
            }
        long real = output.AttentionMask.ToLongArray().Sum();
        return (perToken.Sum(), rowSums, rowCounts, real);
    }

    private void ScaleGradients(double factor)
    {
        using var scope = TensorScope.Begin();
        foreach (var (_, p) in _trainable)
            if (p.Grad is Tensor g)
            {
                var scaled = g * factor;
                g.CopyFrom(scaled);
            }
    }

    /// <summary>Writes a checkpoint of the current state under <paramref name="outputDir"/>; returns its directory.</summary>
    public string SaveCheckpoint(string outputDir) =>
        ParrotCheckpoint.Write(outputDir, Step, _model, _options, _trainable, _optimizer, new ParrotTrainerPosition(Step, TotalSteps, _order.Epoch, _order.Offset, _data.Examples.Count));

    /// <summary>Restores the weights, optimizer moments (and masters), step, schedule position and data order of a checkpoint.</summary>
    public void Resume(string checkpointDir)
    {
        var position = ParrotCheckpoint.Read(checkpointDir, _model, _options, _trainable, _optimizer);
        if (position.DataCount != _data.Examples.Count)
            throw new InvalidDataException($"{checkpointDir}: the checkpoint was trained on {position.DataCount} samples, the data now has {_data.Examples.Count}: resuming would visit a different order");
        if (position.TotalSteps != TotalSteps)
            throw new InvalidDataException($"{checkpointDir}: the checkpoint's run has {position.TotalSteps} steps, this one {TotalSteps}: the learning-rate schedule would differ");
        Step = position.Step;
        _order.Epoch = position.Epoch;
        _order.Offset = position.Offset;
    }

    /// <summary>Frees the optimizer state.</summary>
    public void Dispose() => _optimizer.Dispose();
}
