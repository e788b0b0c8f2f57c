using System.Buffers;
using System.Text.Json;

namespace Parrot.Cli.Serve;

/// <summary>The response bodies of the OpenAI protocol: chat completions, their stream chunks, the model list.</summary>
internal static class OpenAiJson
{
    private static byte[] Write(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer)) body(w);
        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] Completion(string id, long created, string model, string content, string finishReason, int promptTokens, int completionTokens) => Write(w =>
    {
        w.WriteStartObject();
        Header(w, id, "chat.completion", created, model);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteStartObject("message");
        w.WriteString("role", "assistant");
        w.WriteString("content", content);
        w.WriteNull("refusal");
        w.WriteEndObject();
        w.WriteNull("logprobs");
        w.WriteString("finish_reason", finishReason);
        w.WriteEndObject();
        w.WriteEndArray();
        Usage(w, promptTokens, completionTokens);
        w.WriteEndObject();
    });

    /// <summary>A stream chunk: a delta (role and/or content) or, with <paramref name="finishReason"/>, the last one with an empty delta.</summary>
    public static byte[] Chunk(string id, long created, string model, string? role, string? content, string? finishReason) => Write(w =>
    {
        w.WriteStartObject();
        Header(w, id, "chat.completion.chunk", created, model);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteStartObject("delta");
        if (role is not null) w.WriteString("role", role);
        if (content is not null) w.WriteString("content", content);
        w.WriteEndObject();
        w.WriteNull("logprobs");
        if (finishReason is null) w.WriteNull("finish_reason"); else w.WriteString("finish_reason", finishReason);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
    });

    /// <summary>The usage chunk sent last when stream_options.include_usage is set: no choices.</summary>
    public static byte[] UsageChunk(string id, long created, string model, int promptTokens, int completionTokens) => Write(w =>
    {
        w.WriteStartObject();
        Header(w, id, "chat.completion.chunk", created, model);
        w.WriteStartArray("choices");
        w.WriteEndArray();
        Usage(w, promptTokens, completionTokens);
        w.WriteEndObject();
    });

    public static byte[] Models(string model, long created) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("object", "list");
        w.WriteStartArray("data");
        w.WriteStartObject();
        w.WriteString("id", model);
        w.WriteString("object", "model");
        w.WriteNumber("created", created);
        w.WriteString("owned_by", "parrot");
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
    });

    public static byte[] Health(string status) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("status", status);
        w.WriteEndObject();
    });

    private static void Header(Utf8JsonWriter w, string id, string obj, long created, string model)
    {
        w.WriteString("id", id);
        w.WriteString("object", obj);
        w.WriteNumber("created", created);
        w.WriteString("model", model);
        w.WriteNull("system_fingerprint");
    }

    private static void Usage(Utf8JsonWriter w, int prompt, int completion)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", prompt);
        w.WriteNumber("completion_tokens", completion);
        w.WriteNumber("total_tokens", prompt + completion);
        w.WriteEndObject();
    }
}
