using Parrot.Nn;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Model;

/// <summary>
/// Opening and writing Parrot model directories (config.json + safetensors) without the vision tower: the
/// tower is frozen and reaches the model as precomputed features, so its tensors in a released checkpoint
/// are skipped on load and never written.
/// </summary>
public static class ParrotLoader
{
    private const string TowerPrefix = "model.vision_tower.";

    /// <summary>
    /// Loads the model in <paramref name="directory"/> in <paramref name="dtype"/> (null: the dtype of the
    /// checkpoint's embedding table). A checkpoint without mm_projector or moe_model tensors (a plain Qwen2
    /// LM with Parrot's keys added to its config, the start of stage 1) keeps those freshly initialised from
    /// <paramref name="seed"/>; every other missing, unexpected or mis-shaped tensor is an error.
    /// </summary>
    public static ParrotForCausalLM Load(string directory, DType? dtype = null, ulong seed = 0)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found");
        var config = ParrotConfig.Load(Path.Combine(directory, "config.json"));
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        const string embedKey = "model.embed_tokens.weight";
        if (!checkpoint.TryGetInfo(embedKey, out var embed))
            throw new InvalidDataException($"{directory}: the checkpoint has no '{embedKey}'");
        var target = dtype ?? embed.DType ?? throw new InvalidDataException($"{directory}: '{embedKey}' has the unsupported dtype {embed.FormatDType}");
        var model = new ParrotForCausalLM(config, seed, target);
        try
        {
            var optional = model.NamedParameters().Select(p => p.Name)
                .Where(n => n.StartsWith("model.mm_projector.", StringComparison.Ordinal) || n.StartsWith("model.moe_model.", StringComparison.Ordinal));
            ModelLoading.Load(model, checkpoint, "", target,
                ignoreUnexpected: n => n.StartsWith(TowerPrefix, StringComparison.Ordinal) || n.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal),
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
    /// Writes config.json (<paramref name="config"/>, else the model's) and the weights without any vision
    /// tower to <paramref name="directory"/>, each file atomically.
    /// </summary>
    public static void Save(ParrotForCausalLM model, string directory, DType? dtype = null, ParrotConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(directory);
        Directory.CreateDirectory(directory);
        using (var scope = TensorScope.Begin())
        {
            var tensors = model.NamedParameters()
                .Where(p => !p.Name.StartsWith(TowerPrefix, StringComparison.Ordinal))
                .Select(p => new KeyValuePair<string, Tensor>(p.Name, dtype is { } d && d != p.Parameter.DType ? p.Parameter.Value.To(d) : p.Parameter.Value))
                .ToList();
            SafetensorsCheckpoint.Save(directory, tensors, SafetensorsCheckpoint.DefaultMaxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
        }
        config ??= model.Config;
        var path = Path.Combine(directory, "config.json");
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, config.ToJson());
        File.Move(tmp, path, overwrite: true);
    }
}
