using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Parrot.Nn.Models;

/// <summary>
/// Typed reads of the keys of a Hugging Face config.json object, shared by the config readers (Qwen2's, the CLIP
/// tower's, and Parrot's in Parrot.Parrot, hence public) so that they refuse the same values with the same words:
/// every error is an <see cref="InvalidDataException"/> starting with the file and naming the key.
/// </summary>
/// <param name="o">The object whose keys are read.</param>
/// <param name="source">The file, the first word of every message.</param>
/// <param name="keyPrefix">Put before the key in messages, for an object nested in the file (<c>vision_config.</c>).</param>
/// <param name="nullIsAbsent">
/// Whether a JSON null stands for a key left out (transformers' reading of most keys); false makes it an error naming
/// the key, for a reader that takes every value as given.
/// </param>
public sealed class ConfigJsonReader(JsonObject o, string source, string keyPrefix = "", bool nullIsAbsent = true)
{
    /// <summary>The value of <paramref name="key"/>, or null when it is left out (or null, where that means left out).</summary>
    /// <exception cref="InvalidDataException">The value is null and nulls are not taken as left out.</exception>
    public JsonNode? Value(string key)
    {
        if (!o.TryGetPropertyValue(key, out var v)) return null;
        return v ?? (nullIsAbsent ? null : throw new InvalidDataException($"{source}: '{keyPrefix}{key}' must not be null"));
    }

    /// <summary>An integer in int's range; <paramref name="fallback"/> when left out, which a null fallback makes an error.</summary>
    /// <exception cref="InvalidDataException">Missing without a fallback, not a number, a fraction or out of range.</exception>
    public int Int(string key, int? fallback)
    {
        var v = Value(key);
        if (v is null) return fallback ?? throw new InvalidDataException($"{source}: missing '{keyPrefix}{key}'");
        if (v.GetValueKind() != JsonValueKind.Number || !v.AsValue().TryGetValue(out long l) || l < int.MinValue || l > int.MaxValue)
            throw Wrong(key, "an integer", v);
        return (int)l;
    }

    /// <summary>A finite number; <paramref name="fallback"/> when left out.</summary>
    /// <exception cref="InvalidDataException">Not a number, or one past double's range.</exception>
    public double Double(string key, double fallback)
    {
        var v = Value(key);
        if (v is null) return fallback;
        if (v.GetValueKind() != JsonValueKind.Number) throw Wrong(key, "a number", v);
        // A number past double's range (1e400) reads as ±Infinity, which a range check (rope_theta > 1) would let
        // through to be computed with: refused here, naming the key, for every float a config holds.
        if (!v.AsValue().TryGetValue(out double d) || !double.IsFinite(d)) throw Wrong(key, "a finite number", v);
        return d;
    }

    /// <summary>true or false; <paramref name="fallback"/> when left out.</summary>
    /// <exception cref="InvalidDataException">Anything else (0 and 1 included).</exception>
    public bool Bool(string key, bool fallback)
    {
        var v = Value(key);
        if (v is null) return fallback;
        return v.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Wrong(key, "true or false", v),
        };
    }

    /// <summary>A string; <paramref name="fallback"/> when left out.</summary>
    /// <exception cref="InvalidDataException">Not a string.</exception>
    [return: NotNullIfNotNull(nameof(fallback))]
    public string? String(string key, string? fallback)
    {
        var v = Value(key);
        if (v is null) return fallback;
        if (v.GetValueKind() != JsonValueKind.String) throw Wrong(key, "a string", v);
        return v.GetValue<string>();
    }

    private InvalidDataException Wrong(string key, string expected, JsonNode got) =>
        new($"{source}: '{keyPrefix}{key}' must be {expected}, got {got.ToJsonString()}");
}
