namespace Parrot.Parrot.Training;

/// <summary>
/// Settings of one Parrot training stage. The defaults are the paper's <c>parrot-7b</c> recipe for stage 1
/// (<see cref="Parrot7b"/> gives either stage): one epoch, AdamW without weight decay, cosine schedule with
/// 3% warm-up, gradient norm clipped to 1.0, sequences of at most 2048 tokens. bf16 with float32 master
/// weights and activation checkpointing are the paper's choice on GPUs; both are off by default here
/// because the CPU computes in float32 anyway.
/// </summary>
public sealed record ParrotTrainingOptions
{
    /// <summary>1: modality alignment (projector only, MoE bypassed); 2: multilingual instruction tuning (projector + fresh MoE + whole LLM).</summary>
    public int Stage { get; init; } = 1;
    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Samples per optimizer step.</summary>
    public int GlobalBatch { get; init; } = 256;
    /// <summary>Samples per forward/backward pass; gradients are accumulated over GlobalBatch / MicroBatch passes.</summary>
    public int MicroBatch { get; init; } = 8;
    /// <summary>Passes over the data (ignored when <see cref="Steps"/> is set).</summary>
    public int Epochs { get; init; } = 1;
    /// <summary>Optimizer steps; null = as many as <see cref="Epochs"/> take (the last batch of an epoch may be smaller).</summary>
    public int? Steps { get; init; }
    /// <summary>Decoupled weight decay.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Fraction of the steps spent warming the learning rate up linearly (rounded up).</summary>
    public double WarmupRatio { get; init; } = 0.03;
    /// <summary>Global gradient-norm clipping.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Train in bf16 with float32 master weights (MixedPrecisionAdamW).</summary>
    public bool Bf16 { get; init; }
    /// <summary>Recompute each decoder layer's activations in the backward pass instead of keeping them.</summary>
    public bool GradientCheckpointing { get; init; }
    /// <summary>Longest sequence, visual tokens included.</summary>
    public int MaxLength { get; init; } = 2048;
    /// <summary>Seed of the data order (and of the fresh MoE of stage 2).</summary>
    public ulong Seed { get; init; } = 42;
    /// <summary>Write a checkpoint every this many steps (0: only at the end).</summary>
    public int SaveEvery { get; init; }
    /// <summary>Stage 2 with the language-routing MoE (Parrot); false trains stage 2 with the MoE bypassed and frozen (the LLaVA-style baseline).</summary>
    public bool UseMoe { get; init; } = true;
    /// <summary>ZeRO stage under data parallelism: 0 (plain), 1 (optimizer state sharded), 2 (and gradients).</summary>
    public int ZeroStage { get; init; }

    /// <summary>The paper's recipe for <paramref name="stage"/>: stage 1 lr 1e-3, global batch 256; stage 2 lr 2e-5, global batch 128.</summary>
    public static ParrotTrainingOptions Parrot7b(int stage) => stage switch
    {
        1 => new ParrotTrainingOptions { Stage = 1, LearningRate = 1e-3, GlobalBatch = 256, MicroBatch = 8 },
        2 => new ParrotTrainingOptions { Stage = 2, LearningRate = 2e-5, GlobalBatch = 128, MicroBatch = 4 },
        _ => throw new ArgumentOutOfRangeException(nameof(stage), stage, "Parrot has training stages 1 and 2"),
    };

    /// <summary>Recipes by name (only <c>parrot-7b</c>).</summary>
    public static ParrotTrainingOptions Recipe(string name, int stage) => name switch
    {
        "parrot-7b" => Parrot7b(stage),
        _ => throw new ArgumentException($"unknown training recipe '{name}' (known: parrot-7b)", nameof(name)),
    };

    /// <summary>Throws when a setting is out of range.</summary>
    public void Validate()
    {
        if (Stage is not (1 or 2)) throw new ArgumentException($"stage must be 1 or 2, got {Stage}");
        if (!(LearningRate >= 0) || double.IsInfinity(LearningRate)) throw new ArgumentException($"learning rate must be a finite number ≥ 0, got {LearningRate}");
        if (GlobalBatch <= 0 || MicroBatch <= 0) throw new ArgumentException($"global batch {GlobalBatch} and micro-batch {MicroBatch} must be positive");
        if (GlobalBatch % MicroBatch != 0) throw new ArgumentException($"the global batch {GlobalBatch} must be a multiple of the micro-batch {MicroBatch}");
        if (Epochs <= 0) throw new ArgumentException($"epochs must be positive, got {Epochs}");
        if (Steps is <= 0) throw new ArgumentException($"steps must be positive, got {Steps}");
        if (!(WeightDecay >= 0)) throw new ArgumentException($"weight decay must be ≥ 0, got {WeightDecay}");
        if (!(WarmupRatio is >= 0 and <= 1)) throw new ArgumentException($"warm-up ratio must be in [0, 1], got {WarmupRatio}");
        if (!(MaxGradNorm > 0)) throw new ArgumentException($"max grad norm must be positive, got {MaxGradNorm}");
        if (MaxLength < 2) throw new ArgumentException($"max length must be at least 2, got {MaxLength}");
        if (ZeroStage is < 0 or > 2) throw new ArgumentException($"ZeRO stage must be 0, 1 or 2, got {ZeroStage}");
        if (SaveEvery < 0) throw new ArgumentException($"save-every must be ≥ 0, got {SaveEvery}");
    }
}
