using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Tensors.Formats;

namespace Parrot.Nn.Models.Clip;

/// <summary>
/// Reading the vision tower's settings from a Hugging Face config.json: a CLIPVisionConfig
/// (<c>model_type</c> clip_vision_model) or a full CLIPConfig (<c>model_type</c> clip), whose
/// <c>vision_config</c> is used, as CLIPVisionConfig.from_pretrained does. Keys left out take transformers
/// 4.39's CLIPVisionConfig defaults; keys of other models (projection_dim, initializer_range, ...) are ignored.
/// </summary>
public static class ClipVisionConfigJson
{
    /// <summary>Reads <paramref name="path"/>; errors name the file and the key.</summary>
    /// <exception cref="InvalidDataException">Unreadable file, malformed JSON, another model type, a value of
    /// the wrong type or sizes that do not fit together.</exception>
    public static ClipVisionConfig Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"{path}: cannot read the model config: {e.Message}", e);
        }
        return Parse(text, path);
    }

    /// <summary>Parses config.json text; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="InvalidDataException">As <see cref="Load"/>.</exception>
    public static ClipVisionConfig Parse(string json, string source = "config.json")
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonNode? root;
        try { root = JsonNode.Parse(json); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not valid JSON: {e.Message}", e); }
        // A string that cannot be read as text (an escaped lone surrogate) made the first key lookup or string read
        // throw InvalidOperationException, naming neither the file nor the key.
        if (JsonText.FindUnreadable(json) is { } bad) throw new InvalidDataException($"{source}: {bad} {JsonText.NotText}");
        if (root is not JsonObject o) throw new InvalidDataException($"{source}: the config must be a JSON object");
        try { return FromObject(o, source); }
        catch (ArgumentException e) { throw new InvalidDataException($"{source}: {e.Message}", e); } // e.g. a key given twice
    }

    private static ClipVisionConfig FromObject(JsonObject o, string source)
    {
        var outer = new ConfigJsonReader(o, source);
        var typeNode = outer.Value("model_type");
        string? type = typeNode?.GetValueKind() == JsonValueKind.String ? typeNode.GetValue<string>() : null;
        string keyPrefix = "";
        switch (type)
        {
            case "clip_vision_model":
                break;
            case "clip":
                keyPrefix = "vision_config.";
                var vision = outer.Value("vision_config");
                if (vision is null) o = new JsonObject(); // transformers builds the default tower then
                else if (vision is JsonObject v) o = v;
                else throw new InvalidDataException($"{source}: 'vision_config' must be an object, got {vision.ToJsonString()}");
                break;
            case "parrot_qwen2" or "llava" or "llava_qwen2":
                throw new InvalidDataException($"{source}: model_type '{type}' is a multimodal LLM whose vision tower is configured elsewhere (mm_vision_tower): give the CLIP tower's own config");
            default:
                throw new InvalidDataException($"{source}: model_type '{type ?? "(missing)"}' is not a CLIP vision tower (expected clip_vision_model or clip)");
        }
        // Every key of the tower is taken as given: a null is an error naming it, not the default.
        var r = new ConfigJsonReader(o, source, keyPrefix, nullIsAbsent: false);
        var d = new ClipVisionConfig();
        var c = new ClipVisionConfig
        {
            HiddenSize = r.Int("hidden_size", d.HiddenSize),
            IntermediateSize = r.Int("intermediate_size", d.IntermediateSize),
            NumHiddenLayers = r.Int("num_hidden_layers", d.NumHiddenLayers),
            NumAttentionHeads = r.Int("num_attention_heads", d.NumAttentionHeads),
            NumChannels = r.Int("num_channels", d.NumChannels),
            ImageSize = r.Int("image_size", d.ImageSize),
            PatchSize = r.Int("patch_size", d.PatchSize),
            HiddenAct = r.String("hidden_act", d.HiddenAct),
            LayerNormEps = r.Double("layer_norm_eps", d.LayerNormEps),
        };
        try { c.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"{source}: {e.Message.Replace("ClipVisionConfig: ", keyPrefix, StringComparison.Ordinal)}", e); }
        return c;
    }
}
