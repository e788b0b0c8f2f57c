using System.Text.Json;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;

namespace Parrot.Cli.Serve;

/// <summary>A validated <c>POST /v1/chat/completions</c> request.</summary>
internal sealed record ChatRequest(
    IReadOnlyList<ChatTurn> Turns, RgbImage? Image, GenerationOptions Options, int? MaxTokens, bool Stream, bool IncludeUsage);

/// <summary>
/// Reads the OpenAI chat-completions request body: every field is checked for its type and range, and any
/// problem is an <see cref="ApiException"/> (400) naming the field, before the model sees anything.
/// </summary>
internal static class ChatRequestParser
{
    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 32 };

    public static ChatRequest Parse(ReadOnlyMemory<byte> body, ServeOptions limits)
    {
        // RFC 8259 lets a parser ignore a UTF-8 byte order mark; some Windows clients send one, and it was
        // answered with "'0xEF' is an invalid start of a value" (the data files and tokenize accept it too).
        if (body.Span.StartsWith("\uFEFF"u8)) body = body[3..];
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body, DocumentOptions); }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not valid JSON: {e.Message}", code: "invalid_json");
        }
        using (doc)
        {
            try { return Parse(doc.RootElement, limits); }
            catch (InvalidOperationException e)
            {
                // JSON that parses but cannot be read as text (a lone surrogate escape such as "\ud800").
                throw ApiException.BadRequest($"the request body has a value that cannot be read: {e.Message}", code: "invalid_json");
            }
        }
    }

    private static ChatRequest Parse(JsonElement root, ServeOptions limits)
    {
        if (root.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"the request body must be a JSON object, not {Kind(root)}");
        if (Field(root, "model") is { } model && model.ValueKind != JsonValueKind.String)
            throw ApiException.BadRequest($"'model' must be a string, not {Kind(model)}", "model");
        if (Field(root, "n") is { } n && !(n.ValueKind == JsonValueKind.Number && n.TryGetInt64(out long nv) && nv == 1))
            throw ApiException.BadRequest("'n' must be 1: this server generates one choice per request", "n", "unsupported_value");
        // These were ignored, so a request for the best of several answers, a min-p cut, top
        // log-probabilities or a forced tool call silently got one plain answer without them.
        if (Field(root, "best_of") is { } bo && !(bo.ValueKind == JsonValueKind.Number && bo.TryGetInt64(out long bov) && bov == 1))
            throw ApiException.BadRequest("'best_of' must be 1: this server generates one choice per request", "best_of", "unsupported_value");
        if (Field(root, "min_p") is { } mp && !(mp.ValueKind == JsonValueKind.Number && mp.TryGetDouble(out double mpv) && mpv == 0))
            throw ApiException.BadRequest("'min_p' is not supported by this server (only 0)", "min_p", "unsupported_parameter");
        if (Field(root, "top_logprobs") is { } tlp && !(tlp.ValueKind == JsonValueKind.Number && tlp.TryGetInt64(out long tlpv) && tlpv == 0))
            throw ApiException.BadRequest("'top_logprobs' is not supported by this server (log-probabilities are not returned)", "top_logprobs", "unsupported_parameter");
        if (Field(root, "tool_choice") is { } tc && !(tc.ValueKind == JsonValueKind.String && tc.GetString() is "none" or "auto"))
            throw ApiException.BadRequest("'tool_choice' is not supported by this server (only \"none\" or \"auto\": no function calling)", "tool_choice", "unsupported_parameter");
        if (Field(root, "logprobs") is { } lp && lp.ValueKind != JsonValueKind.False)
            throw ApiException.BadRequest("'logprobs' is not supported by this server", "logprobs", "unsupported_parameter");
        if (Field(root, "tools") is { } tools && !(tools.ValueKind == JsonValueKind.Array && tools.GetArrayLength() == 0))
            throw ApiException.BadRequest("'tools' (function calling) is not supported by this server", "tools", "unsupported_parameter");
        // Parameters that constrain the answer: ignoring them would return an answer the client did not ask for.
        if (Field(root, "functions") is { } functions && !(functions.ValueKind == JsonValueKind.Array && functions.GetArrayLength() == 0))
            throw ApiException.BadRequest("'functions' (function calling) is not supported by this server", "functions", "unsupported_parameter");
        if (Field(root, "response_format") is { } format
            && !(format.ValueKind == JsonValueKind.Object && format.TryGetProperty("type", out var formatType) && formatType.ValueKind == JsonValueKind.String && formatType.GetString() == "text"))
            throw ApiException.BadRequest("'response_format' is not supported by this server (only {\"type\": \"text\"}: no JSON mode or structured outputs)", "response_format", "unsupported_parameter");
        if (Field(root, "logit_bias") is { } bias && !(bias.ValueKind == JsonValueKind.Object && !bias.EnumerateObject().Any()))
            throw ApiException.BadRequest("'logit_bias' is not supported by this server (only {})", "logit_bias", "unsupported_parameter");

        var (turns, image) = Messages(root, limits);
        int? maxTokens = PositiveInt(root, "max_completion_tokens") ?? PositiveInt(root, "max_tokens");
        double temperature = Number(root, "temperature", 0, 2) ?? 1.0;
        // 5e-324 used to reach the sampler and fail the request with a 500 that blamed the checkpoint for non-finite logits.
        if (temperature > 0 && temperature < 1 / GenerationOptions.MaxLogitScale)
            throw ApiException.BadRequest($"'temperature' must be 0 (greedy) or at least {1 / GenerationOptions.MaxLogitScale:G3}: logits divided by a smaller one overflow", "temperature");
        double topP = Number(root, "top_p", 0, 1) ?? 1.0;
        if (topP <= 0) throw ApiException.BadRequest("'top_p' must be greater than 0 and at most 1", "top_p");
        int topK = 0;
        if (Field(root, "top_k") is { } tk)
        {
            if (tk.ValueKind != JsonValueKind.Number || !tk.TryGetInt32(out topK) || topK < -1)
                throw ApiException.BadRequest("'top_k' must be an integer ≥ 0 (0 or -1: off)", "top_k");
            if (topK == -1) topK = 0;
        }
        ulong seed;
        if (Field(root, "seed") is { } s)
        {
            // Any 64-bit integer, signed or not: an unsigned seed from 2^63 up used to be told it "must be an integer".
            if (s.ValueKind == JsonValueKind.Number && s.TryGetInt64(out long sv)) seed = unchecked((ulong)sv);
            else if (s.ValueKind == JsonValueKind.Number && s.TryGetUInt64(out ulong uv)) seed = uv;
            else throw ApiException.BadRequest("'seed' must be an integer from -2^63 to 2^64 - 1", "seed");
        }
        else seed = (ulong)Random.Shared.NextInt64();
        foreach (var penalty in new[] { "presence_penalty", "frequency_penalty" })
            if (Number(root, penalty, -2, 2) is double p && p != 0)
                throw ApiException.BadRequest($"'{penalty}' is not supported by this server (only 0)", penalty, "unsupported_parameter");
        var stops = Stops(root);
        bool stream = Field(root, "stream") is { } st
            ? st.ValueKind is JsonValueKind.True or JsonValueKind.False ? st.GetBoolean() : throw ApiException.BadRequest("'stream' must be a boolean", "stream")
            : false;
        bool includeUsage = false;
        if (Field(root, "stream_options") is { } so)
        {
            if (so.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("'stream_options' must be an object", "stream_options");
            if (!stream) throw ApiException.BadRequest("'stream_options' is only allowed with 'stream': true", "stream_options");
            if (Field(so, "include_usage") is { } iu)
                includeUsage = iu.ValueKind is JsonValueKind.True or JsonValueKind.False ? iu.GetBoolean()
                    : throw ApiException.BadRequest("'stream_options.include_usage' must be a boolean", "stream_options.include_usage");
        }
        // vLLM's extension (Hugging Face's rule: a seen id's positive logit divided by it, a negative one multiplied), which
        // the engine's sampler implements; it used to be ignored silently. 1 is off.
        double repetitionPenalty = 1;
        if (Field(root, "repetition_penalty") is { } rp)
        {
            if (rp.ValueKind != JsonValueKind.Number || !rp.TryGetDouble(out repetitionPenalty) || !double.IsFinite(repetitionPenalty) || repetitionPenalty <= 0)
                throw ApiException.BadRequest("'repetition_penalty' must be a number greater than 0 (1: off)", "repetition_penalty");
        }
        var options = new GenerationOptions { Temperature = temperature, TopP = topP, TopK = topK, RepetitionPenalty = repetitionPenalty, Seed = seed, StopStrings = stops, IgnoreEos = limits.IgnoreEos };
        // The engine's own rule for the combinations (a tiny temperature under a penalty overflows the logits): a 400
        // naming it rather than a 500 from the first draw.
        try { options.Validate(); }
        catch (ArgumentException e) { throw ApiException.BadRequest(e.Message.Replace("generation: ", ""), repetitionPenalty != 1 ? "repetition_penalty" : "temperature"); }
        return new ChatRequest(turns, image, options, maxTokens, stream, includeUsage);
    }

    private static (List<ChatTurn>, RgbImage?) Messages(JsonElement root, ServeOptions limits)
    {
        if (Field(root, "messages") is not { } messages) throw ApiException.BadRequest("'messages' is required", "messages");
        if (messages.ValueKind != JsonValueKind.Array) throw ApiException.BadRequest($"'messages' must be an array, not {Kind(messages)}", "messages");
        int count = messages.GetArrayLength();
        if (count == 0) throw ApiException.BadRequest("'messages' is empty: send at least one message", "messages");
        if (count > limits.MaxMessages) throw ApiException.BadRequest($"'messages' has {count} messages; at most {limits.MaxMessages} are allowed", "messages");
        var turns = new List<ChatTurn>(count);
        RgbImage? image = null;
        int images = 0, i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            string at = $"messages[{i}]";
            if (m.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"'{at}' must be an object, not {Kind(m)}", at);
            if (Field(m, "role") is not { ValueKind: JsonValueKind.String } r) throw ApiException.BadRequest($"'{at}.role' is required and must be a string", $"{at}.role");
            var role = r.GetString() switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                var other => throw ApiException.BadRequest($"'{at}.role' is '{Clip(other!)}'; expected 'system', 'developer', 'user' or 'assistant'", $"{at}.role"),
            };
            var content = Field(m, "content");
            string text;
            bool hasImage = false;
            if (content is null || content.Value.ValueKind == JsonValueKind.Null)
            {
                if (role != ChatRole.Assistant) throw ApiException.BadRequest($"'{at}.content' is required", $"{at}.content");
                text = "";
            }
            else if (content.Value.ValueKind == JsonValueKind.String) text = content.Value.GetString()!;
            else if (content.Value.ValueKind == JsonValueKind.Array)
            {
                var parts = new List<string>();
                int j = 0;
                if (content.Value.GetArrayLength() == 0) throw ApiException.BadRequest($"'{at}.content' is an empty array", $"{at}.content");
                foreach (var part in content.Value.EnumerateArray())
                {
                    string pat = $"{at}.content[{j++}]";
                    if (part.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"'{pat}' must be an object, not {Kind(part)}", pat);
                    if (Field(part, "type") is not { ValueKind: JsonValueKind.String } type) throw ApiException.BadRequest($"'{pat}.type' is required and must be a string", $"{pat}.type");
                    switch (type.GetString())
                    {
                        case "text":
                            if (Field(part, "text") is not { ValueKind: JsonValueKind.String } t) throw ApiException.BadRequest($"'{pat}.text' is required and must be a string", $"{pat}.text");
                            parts.Add(t.GetString()!);
                            break;
                        case "image_url":
                            if (role != ChatRole.User) throw ApiException.BadRequest($"'{pat}': only user messages may carry images", pat);
                            if (++images > limits.MaxImages)
                                throw ApiException.BadRequest($"too many images: at most {limits.MaxImages} per request (Parrot looks at one image per conversation)", pat, "too_many_images");
                            image = Images.Decode(part, pat, limits);
                            hasImage = true;
                            break;
                        default:
                            throw ApiException.BadRequest($"'{pat}.type' is '{Clip(type.GetString()!)}'; expected 'text' or 'image_url'", $"{pat}.type");
                    }
                }
                text = string.Join("\n", parts);
            }
            else throw ApiException.BadRequest($"'{at}.content' must be a string or an array of content parts, not {Kind(content.Value)}", $"{at}.content");
            turns.Add(new ChatTurn(role, text, hasImage));
            i++;
        }
        return (turns, image);
    }

    private static List<string> Stops(JsonElement root)
    {
        var stops = new List<string>();
        if (Field(root, "stop") is not { } stop) return stops;
        if (stop.ValueKind == JsonValueKind.String) stops.Add(stop.GetString()!);
        else if (stop.ValueKind == JsonValueKind.Array)
        {
            if (stop.GetArrayLength() > 4) throw ApiException.BadRequest("'stop' may have at most 4 sequences", "stop");
            foreach (var s in stop.EnumerateArray())
                stops.Add(s.ValueKind == JsonValueKind.String ? s.GetString()! : throw ApiException.BadRequest("'stop' must be a string or an array of strings", "stop"));
        }
        else throw ApiException.BadRequest("'stop' must be a string or an array of strings", "stop");
        foreach (var s in stops)
        {
            if (s.Length == 0) throw ApiException.BadRequest("'stop' sequences must not be empty", "stop");
            if (s.Length > 256) throw ApiException.BadRequest("'stop' sequences must be at most 256 characters", "stop");
        }
        return stops;
    }

    /// <summary>A field; null when absent or JSON null.</summary>
    internal static JsonElement? Field(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private static int? PositiveInt(JsonElement root, string name)
    {
        if (Field(root, name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int x) || x < 1)
            throw ApiException.BadRequest($"'{name}' must be an integer ≥ 1", name);
        return x;
    }

    private static double? Number(JsonElement root, string name, double min, double max)
    {
        if (Field(root, name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double x) || !double.IsFinite(x) || x < min || x > max)
            throw ApiException.BadRequest($"'{name}' must be a number from {min} to {max}", name);
        return x;
    }

    internal static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object", JsonValueKind.Array => "an array", JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number", JsonValueKind.True or JsonValueKind.False => "a boolean", _ => "null",
    };

    internal static string Clip(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
