using System.Text.Json;

namespace Parrot.Cli.Serve;

/// <summary>
/// A request the server answers with an OpenAI-style error object
/// <c>{"error": {"message", "type", "param", "code"}}</c> and <see cref="Status"/>.
/// </summary>
internal sealed class ApiException(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    /// <summary>A 400 invalid_request_error about <paramref name="param"/>.</summary>
    public static ApiException BadRequest(string message, string? param = null, string? code = null) => new(400, message, "invalid_request_error", param, code);

    /// <summary>The error object as JSON.</summary>
    public byte[] ToJson() => ErrorJson(Message, Type, Param, Code);

    public static byte[] ErrorJson(string message, string type, string? param, string? code)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteStartObject("error");
            w.WriteString("message", message);
            w.WriteString("type", type);
            if (param is null) w.WriteNull("param"); else w.WriteString("param", param);
            if (code is null) w.WriteNull("code"); else w.WriteString("code", code);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return ms.ToArray();
    }
}
