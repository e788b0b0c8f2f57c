using Parrot.Nn;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;

namespace Parrot.Parrot.Model;

/// <summary>
/// The "model" part of a Parrot checkpoint: the Qwen2 decoder stack (embed_tokens, layers, norm) plus
/// mm_projector and moe_model under the same prefix, as the released checkpoints name them. The vision
/// tower, when it is part of the checkpoint, sits under vision_tower.vision_tower.
/// </summary>
public sealed class ParrotLanguageModel : Qwen2Model
{
    /// <summary>mm_projector.</summary>
    public MmProjector Projector { get; }
    /// <summary>moe_model.</summary>
    public LanguageMoe Moe { get; }
    /// <summary>The vision tower's holder (vision_tower.vision_tower.…), or null when features come precomputed.</summary>
    public Module? VisionTower { get; }

    /// <summary>Creates the stack; <paramref name="visionTower"/> (its names start with vision_model.) is registered under vision_tower.vision_tower.</summary>
    public ParrotLanguageModel(ParrotConfig c, ulong seed, DType dtype, Module? visionTower) : base(c.Text, seed, dtype)
    {
        Projector = AddModule("mm_projector", new MmProjector(c.MmHiddenSize, c.Text.HiddenSize, Init.SeedFor(seed, "mm_projector"), dtype));
        Moe = AddModule("moe_model", new LanguageMoe(c.Text.HiddenSize, c.NumExperts, c.MoeIntermediateSize, c.MoeWeight, c.UseMoeResidual, Init.SeedFor(seed, "moe_model"), dtype));
        if (visionTower is not null)
        {
            var outer = AddModule("vision_tower", new Holder());
            outer.Add("vision_tower", visionTower);
            VisionTower = visionTower;
        }
    }

    /// <summary>A named slot for a child module (the reference's CLIPVisionTower wrapper).</summary>
    private sealed class Holder : Module
    {
        public void Add(string name, Module m) => AddModule(name, m);
    }
}
