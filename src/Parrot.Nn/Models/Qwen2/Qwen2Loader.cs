using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Nn.Models.Qwen2;

/// <summary>Opening and writing Hugging Face Qwen2 / Qwen1.5 model directories (config.json + safetensors).</summary>
public static class Qwen2Loader
{
    /// <summary>
    /// Loads the model in <paramref name="directory"/> (config.json and model.safetensors or shards with their
    /// index), in <paramref name="dtype"/> (null: the checkpoint's own dtype of the embedding table, so a bf16
    /// checkpoint computes in bf16 unless float32 is asked for). Old checkpoints' rotary inv_freq buffers are ignored.
    /// </summary>
    public static Qwen2ForCausalLM Load(string directory, DType? dtype = null, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(directory);
        // An integer dtype asked for used to be reported as the checkpoint's fault ("'model.embed_tokens.weight' is F32;
        // the weights must be floating-point").
        if (dtype is { } asked && !asked.IsFloat())
            throw new ArgumentException($"Qwen2Loader.Load: the dtype to load in must be floating-point (F32, BF16, F16 or F64), got {asked}", nameof(dtype));
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found");
        var config = Qwen2ConfigJson.Load(Path.Combine(directory, "config.json"));
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        var embedKey = prefix + "model.embed_tokens.weight";
        if (!checkpoint.TryGetInfo(embedKey, out var embed))
            throw new InvalidDataException($"{directory}: the checkpoint has no '{embedKey}'");
        var target = dtype ?? embed.DType ?? throw new InvalidDataException($"{directory}: '{embedKey}' has the unsupported dtype {embed.FormatDType}");
        if (!target.IsFloat()) throw new InvalidDataException($"{directory}: '{embedKey}' is {embed.FormatDType}; the weights must be floating-point (F32, BF16, F16 or F64)");
        CheckSizes(config, checkpoint, prefix, Path.Combine(directory, "config.json"));
        Qwen2ForCausalLM model;
        using (Init.Deferred()) model = new Qwen2ForCausalLM(config, seed: 0, target, initialize: false);
        try
        {
            ModelLoading.Load(model, checkpoint, prefix, target,
                ignoreUnexpected: n => n.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal) || (prefix.Length > 0 && !n.StartsWith(prefix + "model.layers.", StringComparison.Ordinal) && !n.StartsWith(prefix + "model.embed_tokens", StringComparison.Ordinal) && !n.StartsWith(prefix + "model.norm", StringComparison.Ordinal) && n != prefix + "lm_head.weight"));
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>
    /// Refuses, before the model is allocated, a config.json whose largest sizes are far beyond the checkpoint's
    /// (see <see cref="ModelLoading.RefuseOversized"/>); near misses are left to the strict load, which names every tensor.
    /// </summary>
    public static void CheckSizes(Qwen2Config config, SafetensorsCheckpoint checkpoint, string prefix, string configPath)
    {
        ArgumentNullException.ThrowIfNull(config);
        int h = config.HiddenSize;
        ModelLoading.RefuseOversized(checkpoint, configPath, prefix + "model.embed_tokens.weight", $"vocab_size {config.VocabSize} and hidden_size {h}", config.VocabSize, h);
        ModelLoading.RefuseOversized(checkpoint, configPath, prefix + "model.layers.0.mlp.gate_proj.weight", $"intermediate_size {config.IntermediateSize} and hidden_size {h}", config.IntermediateSize, h);
        ModelLoading.RefuseExcessLayers(checkpoint, configPath, "num_hidden_layers", config.NumHiddenLayers, prefix + "model.layers.");
    }

    /// <summary>Writes config.json and the weights to <paramref name="directory"/> (each file atomically).</summary>
    public static void Save(Qwen2ForCausalLM model, string directory, DType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Directory.CreateDirectory(directory);
        ModelLoading.Save(model, directory, dtype: dtype);
        AtomicFile.WriteAllText(Path.Combine(directory, "config.json"), Qwen2ConfigJson.ToJson(model.Config));
    }
}
