using Parrot.Nn;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Model;

/// <summary>
/// Opening and writing the language side of Parrot model directories (config.json + safetensors): the
/// Qwen2 decoder, mm_projector and moe_model under the released names. The vision tower's tensors
/// (<c>model.vision_tower.vision_tower.vision_model.…</c>) are left to <see cref="ClipVisionLoader"/>; see
/// <see cref="ParrotModelDirectory"/> for a whole model directory, tower included.
/// </summary>
public static class ParrotLoader
{
    private const string TowerPrefix = "model.vision_tower.";

    /// <summary>
    /// Loads the model in <paramref name="directory"/> in <paramref name="dtype"/> (null: the dtype of the
    /// checkpoint's embedding table); any vision tower tensors in the checkpoint are skipped.
    /// Without <paramref name="requireMultimodal"/>, a checkpoint without mm_projector or moe_model tensors (a
    /// plain Qwen2 LM with Parrot's keys added to its config, the start of stage 1) keeps those freshly
    /// initialised from <paramref name="seed"/>. With it (a trained Parrot model), the projector must be there,
    /// and the MoE too when the config's use_moe is true; tensors under <c>model.vision_tower.</c> that are not
    /// the tower's (<c>model.vision_tower.vision_tower.vision_model.…</c>) are unexpected. Every other missing,
    /// unexpected or mis-shaped tensor is an error naming the checkpoint files.
    /// </summary>
    public static ParrotForCausalLM Load(string directory, DType? dtype = null, ulong seed = 0, bool requireMultimodal = false)
    {
        ArgumentNullException.ThrowIfNull(directory);
        // An integer dtype asked for used to be reported as the checkpoint's fault ("'model.embed_tokens.weight' is F32;
        // the weights must be floating-point").
        if (dtype is { } asked && !asked.IsFloat())
            throw new ArgumentException($"ParrotLoader.Load: the dtype to load in must be floating-point (F32, BF16, F16 or F64), got {asked}", nameof(dtype));
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found");
        var config = ParrotConfig.Load(Path.Combine(directory, "config.json"));
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        const string embedKey = "model.embed_tokens.weight";
        if (!checkpoint.TryGetInfo(embedKey, out var embed))
            throw new InvalidDataException($"{directory}: the checkpoint ({string.Join(", ", checkpoint.Files.Select(Path.GetFileName))}) has no '{embedKey}'");
        var target = dtype ?? embed.DType ?? throw new InvalidDataException($"{directory}: '{embedKey}' has the unsupported dtype {embed.FormatDType}");
        if (!target.IsFloat()) throw new InvalidDataException($"{directory}: '{embedKey}' is {embed.FormatDType}; the weights must be floating-point (F32, BF16, F16 or F64)");
        string configPath = Path.Combine(directory, "config.json");
        Qwen2Loader.CheckSizes(config.Text, checkpoint, "", configPath);
        int h = config.Text.HiddenSize;
        ModelLoading.RefuseOversized(checkpoint, configPath, "model.mm_projector.0.weight", $"mm_hidden_size {config.MmHiddenSize} and hidden_size {h}", h, config.MmHiddenSize);
        ModelLoading.RefuseOversized(checkpoint, configPath, "model.moe_model.experts.0.up_proj.weight", $"moe_intermediate_size {config.MoeIntermediateSize} and hidden_size {h}", config.MoeIntermediateSize, h);
        if (checkpoint.Contains("model.moe_model.gate.weight"))
            ModelLoading.RefuseExcessLayers(checkpoint, configPath, "num_experts", config.NumExperts, "model.moe_model.experts.", "experts");
        var model = new ParrotForCausalLM(config, seed, target); // initialised: optional parts may stay fresh
        try
        {
            var optional = model.NamedParameters().Select(p => p.Name)
                .Where(n => requireMultimodal
                    ? !config.UseMoe && n.StartsWith("model.moe_model.", StringComparison.Ordinal)
                    : n.StartsWith("model.mm_projector.", StringComparison.Ordinal) || n.StartsWith("model.moe_model.", StringComparison.Ordinal));
            string tower = requireMultimodal ? ClipVisionLoader.ParrotPrefix + "vision_model." : TowerPrefix;
            ModelLoading.Load(model, checkpoint, "", target,
                ignoreUnexpected: n => n.StartsWith(tower, StringComparison.Ordinal) || n.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal),
                optional: optional);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>
    /// Writes config.json (<paramref name="config"/>, else the model's) and the weights with the released names
    /// to <paramref name="directory"/>, each file atomically; with <paramref name="visionTower"/> its weights go
    /// into the same checkpoint under <c>model.vision_tower.vision_tower.</c>, as in the released checkpoints.
    /// </summary>
    public static void Save(ParrotForCausalLM model, string directory, DType? dtype = null, ParrotConfig? config = null, ClipVisionModel? visionTower = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(directory);
        Directory.CreateDirectory(directory);
        using (var scope = TensorScope.Begin())
        {
            var named = model.NamedParameters().Where(p => !p.Name.StartsWith(TowerPrefix, StringComparison.Ordinal)).ToList();
            if (visionTower is not null)
                named.AddRange(visionTower.NamedParameters().Select(p => (ClipVisionLoader.ParrotPrefix + p.Name, p.Parameter)));
            var tensors = named
                .Select(p => new KeyValuePair<string, Tensor>(p.Name, dtype is { } d && d != p.Parameter.DType ? p.Parameter.Value.To(d) : p.Parameter.Value))
                .ToList();
            SafetensorsCheckpoint.Save(directory, tensors, SafetensorsCheckpoint.DefaultMaxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
        }
        AtomicFile.WriteAllText(Path.Combine(directory, "config.json"), (config ?? model.Config).ToJson());
    }
}
