using System.Diagnostics;
using System.Text.Json;
using Parrot.Nn;
using Parrot.Nn.Distributed;
using Parrot.Nn.Models.Qwen2;
using Parrot.Nn.Optim;
using Parrot.Tensors;
using Parrot.Tensors.Distributed;

namespace Parrot.Parrot.Training;

/// <summary>Settings of <see cref="CausalLmTrainer"/> (the <c>parrot train-lm</c> contract).</summary>
public sealed record CausalLmOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 100;
    /// <summary>Sequences per step.</summary>
    public int Batch { get; init; } = 8;
    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Decoupled weight decay (applied to every parameter).</summary>
    public double WeightDecay { get; init; }
    /// <summary>Linear warm-up steps (HF constant_with_warmup: step k (0-based) uses lr·k/W while k &lt; W).</summary>
    public int WarmupSteps { get; init; }
    /// <summary>Global gradient-norm clipping; null = none (the norm is still logged).</summary>
    public double? MaxGradNorm { get; init; }
    /// <summary>Seed of the shuffling.</summary>
    public ulong Seed { get; init; }
    /// <summary>Visit sequences in a seeded random order (each pass a new permutation) instead of file order.</summary>
    public bool Shuffle { get; init; }
    /// <summary>After the warm-up, decay the rate to 0 along a cosine over the remaining steps (HF's cosine schedule) instead of keeping it constant.</summary>
    public bool Cosine { get; init; }
    /// <summary>ZeRO stage under data parallelism: 0 (plain), 1 (optimizer state sharded), 2 (and gradients).</summary>
    public int ZeroStage { get; init; }
}

/// <summary>What one training step did.</summary>
public sealed record StepRecord(int Step, double Loss, double LearningRate, double GradNorm, double Seconds)
{
    /// <summary>Ranks that trained the step (1 without a launcher).</summary>
    public int WorldSize { get; init; } = 1;
    /// <summary>ZeRO stage of the step.</summary>
    public int Zero { get; init; }
}

/// <summary>
/// Trains a causal LM on fixed-length token sequences: step k takes the next B sequences (file order,
/// wrapping around, or a seeded shuffle), loss = mean next-token cross-entropy over the batch, AdamW
/// with PyTorch's semantics, constant LR after an optional linear warm-up, optional clipping.
/// Under data parallelism (<see cref="Group"/> with N ranks) every rank draws the same B sequences and rank r
/// trains on the contiguous rows [r·B/N, (r+1)·B/N); the gradients are averaged over ranks in buckets
/// (<see cref="DataParallel"/>, ZeRO 0/1/2) and the logged loss is the mean of the ranks' losses, so a step equals
/// the single-process step on all B rows up to float32 rounding.
/// </summary>
public sealed class CausalLmTrainer(Qwen2ForCausalLM model, CausalLmOptions options)
{
    /// <summary>The ranks training together (null: this process alone).</summary>
    public ProcessGroup? Group { get; init; }

    /// <summary>What this rank holds in memory (known after the first step).</summary>
    public DataParallelMemory? Memory { get; private set; }

    /// <summary>Runs the training; <paramref name="onStep"/> sees each step's record as it completes.</summary>
    public List<StepRecord> Train(IReadOnlyList<int[]> sequences, Action<StepRecord>? onStep = null)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (options.Steps <= 0 || options.Batch <= 0) throw new ArgumentException("train-lm: steps and batch must be positive");
        if (sequences.Count == 0) throw new ArgumentException("train-lm: no sequences");
        int len = sequences[0].Length;
        if (len < 2) throw new ArgumentException($"train-lm: sequences need at least 2 tokens, the first has {len}");
        for (int i = 0; i < sequences.Count; i++)
            if (sequences[i].Length != len) throw new ArgumentException($"train-lm: sequence {i + 1} has {sequences[i].Length} tokens, the first has {len}: all must be equal");

        var group = Group ?? new SingleProcessGroup();
        int ranks = group.WorldSize;
        if (options.Batch % ranks != 0) throw new ArgumentException($"train-lm: the global batch {options.Batch} must be a multiple of the {ranks} ranks");
        int local = options.Batch / ranks, first = group.Rank * local;
        var order = new Order(sequences.Count, options.Shuffle, options.Seed);
        LrSchedule schedule = options.Cosine
            ? new WarmupCosineSchedule(options.LearningRate, options.Steps, Math.Min(options.WarmupSteps, options.Steps))
            : new ConstantSchedule(options.LearningRate, options.WarmupSteps);
        using var dp = new DataParallel(group, model.TrainableParameters().ToList(), options.ZeroStage,
            ps => new AdamW(ps, options.LearningRate, weightDecay: options.WeightDecay));
        dp.BroadcastParameters();
        var opt = dp.Optimizer;
        var records = new List<StepRecord>();
        var batch = new long[local * len];
        var device = model.Model.EmbedTokens.Weight.Value.Device;
        for (int step = 0; step < options.Steps; step++)
        {
            var sw = Stopwatch.StartNew();
            for (int b = 0; b < options.Batch; b++)
            {
                var seq = sequences[order.Next()];
                if (b < first || b >= first + local) continue;
                for (int t = 0; t < len; t++) batch[(b - first) * len + t] = seq[t];
            }
            double loss, norm;
            using (var scope = TensorScope.Begin())
            {
                var ids = Tensor.FromArray(batch, device, local, len); // the model's device; the loss is read back explicitly
                var l = Losses.NextTokenCrossEntropy(model.Forward(ids), ids);
                loss = l.Value.Item();
                dp.ZeroGrad();
                dp.Backward(l);
                // Each rank's loss is the mean over an equal share of the batch: the batch mean is the mean of the means.
                norm = dp.ReduceGradients(1.0 / ranks, options.MaxGradNorm ?? double.PositiveInfinity);
                if (ranks > 1) loss = group.AllReduce(loss) / ranks;
                schedule.Apply(opt, step);
                dp.Step();
            }
            Memory ??= dp.Memory();
            var rec = new StepRecord(step + 1, loss, opt.LearningRate, norm, sw.Elapsed.TotalSeconds) { WorldSize = ranks, Zero = options.ZeroStage };
            records.Add(rec);
            onStep?.Invoke(rec);
        }
        return records;
    }

    /// <summary>Mean next-token loss over <paramref name="sequences"/> without gradients, in batches.</summary>
    public static double Evaluate(Qwen2ForCausalLM model, IReadOnlyList<int[]> sequences, int batch)
    {
        using var ng = Autograd.Graph.NoGrad();
        double sum = 0; long count = 0;
        for (int start = 0; start < sequences.Count; start += batch)
        {
            using var scope = TensorScope.Begin();
            int n = Math.Min(batch, sequences.Count - start), len = sequences[start].Length;
            var flat = new long[n * len];
            for (int b = 0; b < n; b++) for (int t = 0; t < len; t++) flat[b * len + t] = sequences[start + b][t];
            var ids = Tensor.FromArray(flat, model.Model.EmbedTokens.Weight.Value.Device, n, len);
            var l = Losses.NextTokenCrossEntropy(model.Forward(ids), ids);
            sum += l.Value.Item() * n * (len - 1);
            count += n * (len - 1);
        }
        return sum / count;
    }

    /// <summary>One JSON line for the training log.</summary>
    public static string LogLine(StepRecord r) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["step"] = r.Step, ["loss"] = r.Loss, ["lr"] = r.LearningRate, ["grad_norm"] = r.GradNorm,
        ["world_size"] = r.WorldSize, ["zero"] = r.Zero,
    });

    /// <summary>Visiting order: file order wrapping around, or a fresh seeded permutation per pass.</summary>
    private sealed class Order(int count, bool shuffle, ulong seed)
    {
        private int[] _perm = [];
        private int _pos, _pass;

        public int Next()
        {
            if (_pos == _perm.Length)
            {
                _pos = 0;
                _perm = Enumerable.Range(0, count).ToArray();
                if (shuffle) new Random(unchecked((int)(seed * 1_000_003 + (ulong)_pass++))).Shuffle(_perm);
            }
            return _perm[_pos++];
        }
    }
}
