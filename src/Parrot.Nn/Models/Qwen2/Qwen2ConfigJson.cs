using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Tensors.Formats;

namespace Parrot.Nn.Models.Qwen2;

/// <summary>Reading and writing the Hugging Face config.json of Qwen2 / Qwen1.5 (and Parrot's parrot_qwen2) models.</summary>
public static class Qwen2ConfigJson
{
    private static readonly string[] KnownModelTypes = ["qwen2", "parrot_qwen2"];

    /// <summary>Reads a config.json file; errors name the file and the key.</summary>
    public static Qwen2Config Load(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InvalidDataException($"{path}: cannot read the model config: {e.Message}", e); }
        return Parse(text, path);
    }

    /// <summary>Parses config.json text; <paramref name="source"/> names it in errors.</summary>
    public static Qwen2Config Parse(string json, string source)
    {
        // A string that cannot be read as text (an escaped lone surrogate) made the first key lookup or string read throw
        // InvalidOperationException, naming neither the file nor the key; as a key it did so already in the parse below,
        // whose check for repeated keys reads them. (Text that is not JSON gives null here: the parse reports it.)
        if (JsonText.FindUnreadable(json) is { } bad) throw new InvalidDataException($"{source}: {bad} {JsonText.NotText}");
        JsonNode? root;
        // A repeated key would otherwise surface later as the dictionary's bare "same key" exception.
        try { root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not valid JSON: {e.Message}", e); }
        if (root is not JsonObject o) throw new InvalidDataException($"{source}: the config must be a JSON object");
        string? type = o["model_type"]?.GetValueKind() == JsonValueKind.String ? o["model_type"]!.GetValue<string>() : null;
        if (type is null || !KnownModelTypes.Contains(type))
            throw new InvalidDataException($"{source}: model_type '{type ?? "(missing)"}' is not a Qwen2 decoder (expected one of {string.Join(", ", KnownModelTypes)})");
        var r = new ConfigJsonReader(o, source);
        int heads = r.Int("num_attention_heads", null);
        var c = new Qwen2Config
        {
            VocabSize = r.Int("vocab_size", null),
            HiddenSize = r.Int("hidden_size", null),
            IntermediateSize = r.Int("intermediate_size", null),
            NumHiddenLayers = r.Int("num_hidden_layers", null),
            NumAttentionHeads = heads,
            NumKeyValueHeads = r.Int("num_key_value_heads", heads),
            RopeTheta = r.Double("rope_theta", 10000.0),
            RmsNormEps = r.Double("rms_norm_eps", 1e-6),
            MaxPositionEmbeddings = r.Int("max_position_embeddings", 32768),
            TieWordEmbeddings = r.Bool("tie_word_embeddings", false),
            InitializerRange = r.Double("initializer_range", 0.02),
            EosTokenIds = Ids(r.Value("eos_token_id"), "eos_token_id", source),
        };
        // Keys that would change the computation but that this decoder does not implement: refusing them
        // beats loading a model that silently computes something else.
        var act = r.Value("hidden_act");
        if (act is not null && !(act.GetValueKind() == JsonValueKind.String && act.GetValue<string>() == "silu"))
            throw new InvalidDataException($"{source}: hidden_act {act.ToJsonString()} is not supported (Qwen2 uses \"silu\")");
        if (r.Value("rope_scaling") is { } scaling)
            throw new InvalidDataException($"{source}: rope_scaling {scaling.ToJsonString()} is not supported (only plain RoPE; remove the key or set it to null)");
        if (r.Value("use_sliding_window") is { } sliding && sliding.GetValueKind() != JsonValueKind.False)
            throw new InvalidDataException($"{source}: use_sliding_window {sliding.ToJsonString()} is not supported (only full attention)");
        try { c.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"{source}: {e.Message}", e); }
        return c;
    }

    /// <summary>config.json text for <paramref name="c"/> (model_type qwen2 plus any extra keys given).</summary>
    public static string ToJson(Qwen2Config c, IReadOnlyDictionary<string, JsonNode?>? extra = null)
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("Qwen2ForCausalLM"),
            ["model_type"] = "qwen2",
            ["vocab_size"] = c.VocabSize,
            ["hidden_size"] = c.HiddenSize,
            ["intermediate_size"] = c.IntermediateSize,
            ["num_hidden_layers"] = c.NumHiddenLayers,
            ["num_attention_heads"] = c.NumAttentionHeads,
            ["num_key_value_heads"] = c.NumKeyValueHeads,
            ["rope_theta"] = c.RopeTheta,
            ["rms_norm_eps"] = c.RmsNormEps,
            ["max_position_embeddings"] = c.MaxPositionEmbeddings,
            ["tie_word_embeddings"] = c.TieWordEmbeddings,
            ["initializer_range"] = c.InitializerRange,
            ["hidden_act"] = "silu",
        };
        if (c.EosTokenIds.Count == 1) o["eos_token_id"] = c.EosTokenIds[0];
        else if (c.EosTokenIds.Count > 1) o["eos_token_id"] = new JsonArray(c.EosTokenIds.Select(i => (JsonNode?)i).ToArray());
        if (extra is not null) foreach (var (k, v) in extra) o[k] = v?.DeepClone();
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static IReadOnlyList<int> Ids(JsonNode? v, string key, string source)
    {
        if (v is null) return [];
        if (v is JsonArray a) return a.Select((x, i) => x is not null && x.GetValueKind() == JsonValueKind.Number && x.AsValue().TryGetValue(out int id) ? id : throw new InvalidDataException($"{source}: '{key}'[{i}] must be an integer, got {x?.ToJsonString() ?? "null"}")).ToArray();
        if (v.GetValueKind() == JsonValueKind.Number && v.AsValue().TryGetValue(out int one)) return [one];
        throw new InvalidDataException($"{source}: '{key}' must be an integer or a list of integers, got {v.ToJsonString()}");
    }
}
