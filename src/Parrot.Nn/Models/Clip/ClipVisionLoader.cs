using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Nn.Models.Clip;

/// <summary>
/// Opening a CLIP vision tower from a Hugging Face model directory (config.json and model.safetensors or shards
/// with their index): a CLIPVisionModel checkpoint (names under <c>vision_model.</c>), a full CLIPModel
/// checkpoint (its text_model.*, logit_scale and projections are not the tower's and are left alone) or a
/// Parrot checkpoint (the tower under <see cref="ParrotPrefix"/>).
/// </summary>
public static class ClipVisionLoader
{
    /// <summary>Where a Parrot (LLaVA-style) checkpoint keeps the tower: its names are this + <c>vision_model.…</c>.</summary>
    public const string ParrotPrefix = "model.vision_tower.vision_tower.";

    private const string Anchor = "vision_model.embeddings.class_embedding";

    /// <summary>
    /// Loads the tower in <paramref name="directory"/>. <paramref name="dtype"/>: the compute dtype (null: the
    /// checkpoint's own, so a bf16 checkpoint computes in bf16 unless float32 is asked for).
    /// <paramref name="prefix"/>: what precedes <c>vision_model.</c> in the checkpoint's names ("" for CLIP
    /// checkpoints, <see cref="ParrotPrefix"/> for Parrot's); null finds it from the names.
    /// <paramref name="config"/>: the tower's settings (null: read from the directory's config.json, which must
    /// then be a CLIP config; a Parrot directory names its tower in mm_vision_tower, so give it here).
    /// Every missing, unexpected or mis-shaped tensor under the prefix is reported in one exception; the
    /// non-persistent <c>position_ids</c> buffer old checkpoints carry is ignored.
    /// </summary>
    /// <exception cref="InvalidDataException">A bad config or checkpoint file, or no tower in the checkpoint.</exception>
    /// <exception cref="StateDictException">The checkpoint's tower does not fit the config.</exception>
    public static ClipVisionModel Load(string directory, DType? dtype = null, string? prefix = null, ClipVisionConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found");
        config ??= ClipVisionConfigJson.Load(Path.Combine(directory, "config.json"));
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        prefix ??= FindPrefix(checkpoint, directory);
        var anchorKey = prefix + Anchor;
        if (!checkpoint.TryGetInfo(anchorKey, out var anchor))
            throw new InvalidDataException($"{directory}: the checkpoint has no '{anchorKey}'");
        var target = dtype ?? anchor.DType ?? throw new InvalidDataException($"{directory}: '{anchorKey}' has the unsupported dtype {anchor.FormatDType}");
        if (!target.IsFloat()) throw new InvalidDataException($"{directory}: '{anchorKey}' is {target.Name()}, not a float type");
        string tower = prefix + "vision_model.", positionIds = tower + "embeddings.position_ids";
        // config.json's sizes far beyond the checkpoint's are refused before allocating (10^6 layers ran until killed).
        string configPath = Path.Combine(directory, "config.json");
        int h = config.HiddenSize;
        ModelLoading.RefuseOversized(checkpoint, configPath, anchorKey, $"hidden_size {h}", h);
        ModelLoading.RefuseOversized(checkpoint, configPath, tower + "embeddings.position_embedding.weight",
            $"image_size {config.ImageSize}, patch_size {config.PatchSize} and hidden_size {h}", config.NumPositions, h);
        ModelLoading.RefuseOversized(checkpoint, configPath, tower + "encoder.layers.0.mlp.fc1.weight", $"intermediate_size {config.IntermediateSize} and hidden_size {h}", config.IntermediateSize, h);
        ModelLoading.RefuseExcessLayers(checkpoint, configPath, "num_hidden_layers", config.NumHiddenLayers, tower + "encoder.layers.");
        ClipVisionModel model;
        using (Init.Deferred()) model = new ClipVisionModel(config, seed: 0, target, initialize: false);
        try
        {
            ModelLoading.Load(model, checkpoint, prefix, target,
                ignoreUnexpected: n => !n.StartsWith(tower, StringComparison.Ordinal) || n == positionIds);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>"" when the names are a CLIP checkpoint's, else the one prefix before <c>vision_model.embeddings.class_embedding</c>.</summary>
    private static string FindPrefix(SafetensorsCheckpoint checkpoint, string directory)
    {
        if (checkpoint.Contains(Anchor)) return "";
        var found = checkpoint.Names.Where(n => n.EndsWith("." + Anchor, StringComparison.Ordinal))
            .Select(n => n[..^Anchor.Length]).OrderBy(n => n, StringComparer.Ordinal).ToList();
        return found.Count switch
        {
            1 => found[0],
            0 => throw new InvalidDataException($"{directory}: no CLIP vision tower in {string.Join(", ", checkpoint.Files)}: no tensor is named '{Anchor}' or '…{Anchor}' (e.g. '{ParrotPrefix}{Anchor}')"),
            _ => throw new InvalidDataException($"{directory}: several CLIP vision towers in the checkpoint (under {string.Join(", ", found.Select(f => $"'{f}'"))}): say which prefix to load"),
        };
    }
}
