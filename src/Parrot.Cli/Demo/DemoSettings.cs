using Parrot.Parrot.Data.World;

namespace Parrot.Cli.Demo;

/// <summary>
/// Sizes and hyperparameters of `parrot demo`. The full demo is sized to finish in about 10 minutes on a
/// 2-core CPU; the quick one is a seconds-long smoke run of the same code path. The recipe follows the paper
/// (one epoch per stage, AdamW without weight decay, cosine with 3% warm-up, clipping at 1.0; stage 1 trains
/// the projector, stage 2 projector + fresh MoE + LLM) with batch sizes and learning rates scaled to a tiny
/// model and a few thousand samples instead of 7B parameters and 1.2M samples.
/// </summary>
internal sealed record DemoSettings
{
    /// <summary>The synthetic world (text scenes are not needed: the LM is already pre-trained).</summary>
    public required WorldOptions World { get; init; }
    /// <summary>Stage-1 global batch.</summary>
    public int Stage1Batch { get; init; } = 32;
    /// <summary>Stage-1 peak learning rate (projector only).</summary>
    public double Stage1Lr { get; init; } = 1e-3;
    /// <summary>Stage-2 global batch.</summary>
    public int Stage2Batch { get; init; } = 32;
    /// <summary>Stage-2 peak learning rate (projector + MoE + LLM).</summary>
    public double Stage2Lr { get; init; } = 1e-3;
    /// <summary>Passes over the stage-1 data.</summary>
    public int Stage1Epochs { get; init; } = 1;
    /// <summary>Passes over the stage-2 data.</summary>
    public int Stage2Epochs { get; init; } = 1;
    /// <summary>Samples per forward pass.</summary>
    public int MicroBatch { get; init; } = 16;
    /// <summary>Longest training sequence, visual tokens included.</summary>
    public int MaxLength { get; init; } = 2048;
    /// <summary>Width of each MoE expert (null: the LM's hidden size, the ratio of Parrot-7B's 4096/4096).</summary>
    public int? MoeIntermediateSize { get; init; }
    /// <summary>
    /// Which hidden state of the vision tower feeds the projector: the last (−1), because the tiny tower's
    /// pre-training heads read its last layer (Parrot's CLIP ViT-L uses −2).
    /// </summary>
    public int VisionSelectLayer { get; init; } = -1;
    /// <summary>Most tokens generated per benchmark answer.</summary>
    public int MaxNewTokens { get; init; } = 8;
    /// <summary>Seed of the world, the fresh weights and the data order.</summary>
    public ulong Seed { get; init; } = 42;
    /// <summary>Whether this is the smoke version.</summary>
    public bool Quick { get; init; }

    /// <summary>The full demo.</summary>
    public static DemoSettings Full(ulong seed) => new()
    {
        Seed = seed,
        World = new WorldOptions { Seed = seed, Stage1Count = 2000, Stage2Count = 4000, BenchmarkCount = 280, TextScenes = 0 },
    };

    /// <summary>The smoke version: a handful of samples, one or two steps per stage, one benchmark item per category.</summary>
    public static DemoSettings Smoke(ulong seed) => new()
    {
        Seed = seed, Quick = true, Stage1Batch = 8, Stage2Batch = 12, MicroBatch = 4, MaxNewTokens = 4,
        World = new WorldOptions { Seed = seed, Stage1Count = 8, Stage2Count = 24, BenchmarkCount = 7, TextScenes = 0 },
    };
}
