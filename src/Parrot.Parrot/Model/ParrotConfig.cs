using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Nn.Models;
using Parrot.Nn.Models.Qwen2;

namespace Parrot.Parrot.Model;

/// <summary>
/// A Parrot checkpoint's config.json: the Qwen2 decoder's keys plus the multimodal ones the released
/// checkpoints carry (model_type parrot_qwen2; PARROT.md "Checkpoint names").
/// </summary>
public sealed record ParrotConfig
{
    /// <summary>The decoder.</summary>
    public required Qwen2Config Text { get; init; }
    /// <summary>mm_hidden_size: width of the vision features (1024 for CLIP ViT-L).</summary>
    public int MmHiddenSize { get; init; } = 1024;
    /// <summary>mm_projector_type (only mlp2x_gelu is defined by Parrot).</summary>
    public string MmProjectorType { get; init; } = "mlp2x_gelu";
    /// <summary>mm_vision_select_layer: which hidden state of the tower (−2 = second-to-last layer).</summary>
    public int MmVisionSelectLayer { get; init; } = -2;
    /// <summary>mm_vision_select_feature: cls_patch keeps the CLS token (Parrot's MoE needs it).</summary>
    public string MmVisionSelectFeature { get; init; } = "cls_patch";
    /// <summary>image_aspect_ratio: "pad" pads images to a square before CLIP preprocessing.</summary>
    public string ImageAspectRatio { get; init; } = "pad";
    /// <summary>num_experts.</summary>
    public int NumExperts { get; init; } = 6;
    /// <summary>moe_intermediate_size: width of each expert.</summary>
    public int MoeIntermediateSize { get; init; } = 4096;
    /// <summary>moe_weight: α of the residual.</summary>
    public double MoeWeight { get; init; } = 0.1;
    /// <summary>use_moe: false in stage 1 (the MoE is bypassed).</summary>
    public bool UseMoe { get; init; } = true;
    /// <summary>use_moe_residual.</summary>
    public bool UseMoeResidual { get; init; } = true;
    /// <summary>mm_vision_tower: where the CLIP vision config (and weights) live; relative to the model directory or absolute.</summary>
    public string? MmVisionTower { get; init; }

    /// <summary>
    /// The folder <see cref="MmVisionTower"/> names for a model in <paramref name="modelDirectory"/>: an absolute path as
    /// given, a relative one from the model directory; null when it is unset or empty.
    /// </summary>
    public string? VisionTowerFolder(string modelDirectory) =>
        MmVisionTower is { Length: > 0 } tower ? Path.Combine(modelDirectory, tower) : null; // Combine keeps an absolute path

    /// <summary>Reads config.json; errors name the file and key.</summary>
    public static ParrotConfig Load(string path)
    {
        string json;
        try { json = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InvalidDataException($"{path}: cannot read the model config: {e.Message}", e); }
        return Parse(json, path);
    }

    /// <summary>Parses config.json text.</summary>
    public static ParrotConfig Parse(string json, string source)
    {
        // Also refuses, naming the file, any string of the text that cannot be read (so the reads below can).
        var text = Qwen2ConfigJson.Parse(json, source);
        var r = new ConfigJsonReader((JsonObject)JsonNode.Parse(json)!, source);
        var c = new ParrotConfig
        {
            Text = text,
            MmHiddenSize = r.Int("mm_hidden_size", 1024),
            MmProjectorType = r.String("mm_projector_type", "mlp2x_gelu"),
            MmVisionSelectLayer = r.Int("mm_vision_select_layer", -2),
            MmVisionSelectFeature = r.String("mm_vision_select_feature", "cls_patch"),
            ImageAspectRatio = r.String("image_aspect_ratio", "pad"),
            NumExperts = r.Int("num_experts", 6),
            MoeIntermediateSize = r.Int("moe_intermediate_size", 4096),
            MoeWeight = r.Double("moe_weight", 0.1),
            UseMoe = r.Bool("use_moe", true),
            UseMoeResidual = r.Bool("use_moe_residual", true),
            MmVisionTower = r.String("mm_vision_tower", null),
        };
        if (c.MmProjectorType != "mlp2x_gelu") throw new InvalidDataException($"{source}: mm_projector_type '{c.MmProjectorType}' is not supported (Parrot uses mlp2x_gelu)");
        if (c.MmVisionSelectFeature is not ("cls_patch" or "patch")) throw new InvalidDataException($"{source}: mm_vision_select_feature '{c.MmVisionSelectFeature}' must be cls_patch or patch");
        if (c.UseMoe && c.MmVisionSelectFeature != "cls_patch") throw new InvalidDataException($"{source}: the MoE needs the CLS token: mm_vision_select_feature must be cls_patch when use_moe is true");
        // A path: a NUL made the tower's load throw Path's bare ArgumentException, naming neither config.json nor the key.
        if (c.MmVisionTower is { } tower && tower.Contains('\0')) throw new InvalidDataException($"{source}: mm_vision_tower holds a NUL character, so it is no folder path");
        if (c.MmHiddenSize <= 0 || c.NumExperts <= 0 || c.MoeIntermediateSize <= 0) throw new InvalidDataException($"{source}: mm_hidden_size, num_experts and moe_intermediate_size must be positive");
        // Keys the released config carries that we do not store: they must describe this architecture.
        int moeHidden = r.Int("moe_hidden_size", text.HiddenSize);
        if (moeHidden != text.HiddenSize) throw new InvalidDataException($"{source}: moe_hidden_size {moeHidden} must equal hidden_size {text.HiddenSize} (the MoE works on the LLM's width)");
        var merge = r.String("mm_patch_merge_type", "flat");
        if (merge != "flat") throw new InvalidDataException($"{source}: mm_patch_merge_type '{merge}' is not supported (Parrot uses flat)");
        if (c.ImageAspectRatio.StartsWith("anyres", StringComparison.Ordinal)) throw new InvalidDataException($"{source}: image_aspect_ratio '{c.ImageAspectRatio}' is not supported (Parrot uses pad)");
        // Anything but "pad" means no padding, so a typo ("padd") would silently change every image's preprocessing.
        if (c.ImageAspectRatio is not ("pad" or "square")) throw new InvalidDataException($"{source}: image_aspect_ratio '{c.ImageAspectRatio}' is not known (pad, or square for no padding)");
        return c;
    }

    /// <summary>config.json text (model_type parrot_qwen2) for this configuration.</summary>
    public string ToJson()
    {
        var extra = new Dictionary<string, JsonNode?>
        {
            ["model_type"] = "parrot_qwen2",
            ["architectures"] = new JsonArray("ParrotQwen2ForCausalLM"),
            ["mm_hidden_size"] = MmHiddenSize,
            ["mm_projector_type"] = MmProjectorType,
            ["mm_vision_select_layer"] = MmVisionSelectLayer,
            ["mm_vision_select_feature"] = MmVisionSelectFeature,
            ["image_aspect_ratio"] = ImageAspectRatio,
            ["num_experts"] = NumExperts,
            ["moe_intermediate_size"] = MoeIntermediateSize,
            ["moe_weight"] = MoeWeight,
            ["use_moe"] = UseMoe,
            ["use_moe_residual"] = UseMoeResidual,
            // Written as the released checkpoints (and the reference code, which builds the MoE only when
            // moe_hidden_size is present) have them.
            ["moe_hidden_size"] = Text.HiddenSize,
            ["moe_top_k"] = NumExperts,
            ["mm_patch_merge_type"] = "flat",
            ["use_mm_proj"] = true,
        };
        if (MmVisionTower is not null) extra["mm_vision_tower"] = MmVisionTower;
        return Qwen2ConfigJson.ToJson(Text, extra);
    }
}
