using System.Diagnostics;
using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Distributed;
using Parrot.Nn.Optim;
using Parrot.Parrot.Data;
using Parrot.Parrot.Model;
using Parrot.Tensors;
using Parrot.Tensors.Distributed;

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
/// Under data parallelism (a <see cref="ProcessGroup"/> of N ranks) every rank draws the same global batch and
/// rank r runs the contiguous share [r·B/N, (r+1)·B/N) of it in micro-batches; token-loss sums, supervised-token
/// counts and the summed gradients are reduced over ranks once per step (<see cref="DataParallel"/>, ZeRO 0/1/2),
/// so the step is the single-process step up to float32 rounding. Rank 0 alone writes checkpoints; every rank
/// resumes from them.
/// </summary>
public sealed class ParrotTrainer : IDisposable
{
    private readonly ParrotForCausalLM _model;
    private readonly LlavaDataset _data;
    private readonly LlavaImageFeatures _features;
    private readonly ParrotTrainingOptions _options;
    private readonly List<(string Name, Variable Parameter)> _trainable;
    private readonly Optimizer _optimizer;
    private readonly DataParallel _dp;
    private readonly ProcessGroup _group;
    private readonly string[] _languages;
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
        : this(model, data, features, options, null) { }

    /// <summary>
    /// As the other constructor, training data-parallel over <paramref name="group"/> (null: this process alone) with
    /// <see cref="ParrotTrainingOptions.ZeroStage"/>; every rank must construct it with the same model and data.
    /// </summary>
    public ParrotTrainer(ParrotForCausalLM model, LlavaDataset data, LlavaImageFeatures features, ParrotTrainingOptions options, ProcessGroup? group)
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
        _group = group ?? new SingleProcessGroup();
        if (options.GlobalBatch % _group.WorldSize != 0)
            throw new ArgumentException($"the global batch {options.GlobalBatch} must be a multiple of the {_group.WorldSize} ranks");
        _dp = new DataParallel(_group, _trainable.Select(p => p.Parameter).ToList(), options.ZeroStage, CreateOptimizer);
        _dp.BroadcastParameters();
        _optimizer = _dp.Optimizer;
        _languages = data.Examples.Select(e => e.Language).OfType<string>().Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        _order = new ParrotDataOrder(data.Examples.Count, options.Seed);
    }

    private Optimizer CreateOptimizer(IReadOnlyList<Variable> parameters) => _options.Bf16
        ? new MixedPrecisionAdamW(parameters, _options.LearningRate, weightDecay: _options.WeightDecay)
        : new AdamW(parameters, _options.LearningRate, weightDecay: _options.WeightDecay);

    /// <summary>The ranks training together (a group of one without a launcher).</summary>
    public ProcessGroup Group => _group;

    /// <summary>What this rank holds in memory for the training (parameters, gradients, optimizer state, buffers).</summary>
    public DataParallelMemory Memory() => _dp.Memory();

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
        int ranks = _group.WorldSize;
        if (ranks > 1) batch = batch[(_group.Rank * batch.Length / ranks)..((_group.Rank + 1) * batch.Length / ranks)];
        _dp.ZeroGrad();
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
            // The last micro-batch's backward starts reducing gradient buckets as they are finished.
            if (sum.RequiresGrad)
            {
                if (start + _options.MicroBatch >= batch.Length) _dp.Backward(sum);
                else sum.Backward();
            }
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
        if (ranks > 1)
        {
            // One reduction of the step's statistics: loss sum, counts, then per-language sums and counts.
            var stats = new double[3 + 2 * _languages.Length];
            stats[0] = lossSum; stats[1] = supervised; stats[2] = tokens;
            for (int i = 0; i < _languages.Length; i++)
            {
                stats[3 + 2 * i] = langSum.GetValueOrDefault(_languages[i]);
                stats[4 + 2 * i] = langCount.GetValueOrDefault(_languages[i]);
            }
            using (var t = Tensor.FromArray(stats, stats.Length)) { _group.AllReduce(t); stats = t.ToDoubleArray(); }
            lossSum = stats[0]; supervised = (long)stats[1]; tokens = (long)stats[2];
            langSum.Clear(); langCount.Clear();
            for (int i = 0; i < _languages.Length; i++)
                if (stats[4 + 2 * i] > 0) { langSum[_languages[i]] = stats[3 + 2 * i]; langCount[_languages[i]] = (long)stats[4 + 2 * i]; }
        }
        if (supervised == 0) throw new ParrotTrainingException($"step {stepNo}: the batch has no supervised token (every label is ignored)");
        double norm = _dp.ReduceGradients(1.0 / supervised, _options.MaxGradNorm);
        if (!double.IsFinite(norm))
            throw new ParrotTrainingException($"step {stepNo}: the gradient norm is {norm}; stopping, the last checkpoint is left as it was");
        _schedule.Apply(_optimizer, Step);
        _dp.Step();
        Step = stepNo;
        var langLoss = langSum.ToDictionary(kv => kv.Key, kv => kv.Value / langCount[kv.Key], StringComparer.Ordinal);
        return new ParrotStepMetrics(stepNo, TotalSteps, lossSum / supervised, _optimizer.LearningRate, norm, tokens, supervised, sw.Elapsed.TotalSeconds, langLoss)
        { WorldSize = ranks, Zero = _options.ZeroStage };
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

    /// <summary>
    /// Writes a checkpoint of the current state under <paramref name="outputDir"/>; returns its directory. Under data
    /// parallelism every rank calls it (ZeRO 1/2 gather the optimizer state), rank 0 alone writes, and all wait for it.
    /// </summary>
    public string SaveCheckpoint(string outputDir)
    {
        var optimizer = _dp.GatherOptimizer();
        string dir = Path.Combine(outputDir, "checkpoint-" + Step.ToString(System.Globalization.CultureInfo.InvariantCulture));
        try
        {
            if (_group.IsMain)
                dir = ParrotCheckpoint.Write(outputDir, Step, _model, _options, _trainable, optimizer, new ParrotTrainerPosition(Step, TotalSteps, _order.Epoch, _order.Offset, _data.Examples.Count, _data.Fingerprint));
        }
        finally
        {
            if (!ReferenceEquals(optimizer, _optimizer)) optimizer.Dispose();
        }
        _group.Barrier();
        return dir;
    }

    /// <summary>Restores the weights, optimizer moments (and masters), step, schedule position and data order of a checkpoint.</summary>
    public void Resume(string checkpointDir)
    {
        ParrotTrainerPosition position;
        // The data (count and fingerprint) is checked in Read, before any weight is loaded.
        if (_dp.ZeroStage == 0) position = ParrotCheckpoint.Read(checkpointDir, _model, _options, _trainable, _optimizer, _data);
        else
        {
            // Every rank reads the whole state and keeps its own pieces of it.
            using var full = CreateOptimizer(_trainable.Select(p => p.Parameter).ToList());
            position = ParrotCheckpoint.Read(checkpointDir, _model, _options, _trainable, full, _data);
            _dp.ScatterOptimizer(full);
        }
        if (position.TotalSteps != TotalSteps)
            throw new InvalidDataException($"{checkpointDir}: the checkpoint's run has {position.TotalSteps} steps, this one {TotalSteps}: the learning-rate schedule would differ");
        Step = position.Step;
        _order.Epoch = position.Epoch;
        _order.Offset = position.Offset;
    }

    /// <summary>Frees the optimizer state and the communication buffers.</summary>
    public void Dispose() => _dp.Dispose();
}
