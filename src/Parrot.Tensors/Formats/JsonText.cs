using System.Text.Json;

namespace Parrot.Tensors.Formats;

/// <summary>
/// JSON strings that parse but cannot be read as .NET text: an escape that decodes to an unpaired UTF-16 surrogate
/// (<c>"\ud800"</c>), or invalid UTF-8 in a document parsed from bytes. System.Text.Json accepts them when parsing and
/// throws <see cref="InvalidOperationException"/>, naming neither the file nor the key, when one is read: by
/// <see cref="JsonElement.GetString"/>, <see cref="JsonProperty.Name"/>, <see cref="JsonElement.ValueEquals(string)"/>,
/// a JsonNode's GetValue&lt;string&gt;, and any key lookup of a JsonObject that has one such key. Readers of files
/// from outside the program use these helpers to report such a string as a problem of the file.
/// </summary>
public static class JsonText
{
    /// <summary>What is wrong with such a string, for messages: "{file}: {where} " + this.</summary>
    public const string NotText = "is not valid text (an unpaired UTF-16 surrogate escape such as \\ud800, or invalid UTF-8)";

    /// <summary>The text of the JSON string <paramref name="e"/>, or null when it cannot be read as text.</summary>
    /// <exception cref="ArgumentException"><paramref name="e"/> is not a JSON string.</exception>
    public static string? TryGetString(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.String) throw new ArgumentException($"expected a JSON string, got {e.ValueKind}", nameof(e));
        try { return e.GetString(); }
        catch (InvalidOperationException) { return null; }
    }

    /// <summary>
    /// Where the first string or key under <paramref name="e"/> that cannot be read as text lies ("the string at
    /// $.a[2].b", "a key of $.a"), or null when every one can. Meant for the error path (it reads every string once).
    /// </summary>
    public static string? FindUnreadable(JsonElement e) => Find(e, "$");

    /// <summary>As <see cref="FindUnreadable(JsonElement)"/> for JSON text; null also when the text is not JSON.</summary>
    public static string? FindUnreadable(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            using var doc = JsonDocument.Parse(json);
            return Find(doc.RootElement, "$");
        }
        catch (JsonException) { return null; }
    }

    private static string? Find(JsonElement e, string path)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.String:
                return TryGetString(e) is null ? $"the string at {path}" : null;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in e.EnumerateArray())
                    if (Find(item, $"{path}[{i++}]") is { } inItem) return inItem;
                return null;
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                {
                    string name;
                    try { name = p.Name; }
                    catch (InvalidOperationException) { return $"a key of {path}"; }
                    if (Find(p.Value, $"{path}.{FormatText.Printable(name, 80)}") is { } inValue) return inValue;
                }
                return null;
            default:
                return null;
        }
    }
}
