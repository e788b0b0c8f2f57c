using System.Text;
using System.Text.Json.Nodes;
using Parrot.Cli.Serve;
using static Parrot.Cli.Tests.Serve.ServeTestHost;

namespace Parrot.Cli.Tests.Serve;

/// <summary>Bad input never hurts the server: each kind gets a 4xx OpenAI error object; a fuzz run then a normal request.</summary>
public class ServeBadInputTests
{
    private ParrotServer _server = null!;
    private HttpClient _client = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        _server = await StartAsync(o => o with { MaxBodyBytes = 64 * 1024, MaxImagePixels = 30 * 24, MaxQueue = 1000 });
        _client = Client(_server);
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        _client.Dispose();
        await _server.DisposeAsync();
    }

    private static string Valid(Action<JsonObject> change)
    {
        var r = Request("hi", maxTokens: 2);
        change(r);
        return r.ToJsonString();
    }

    private static string WithContent(JsonNode content) => Valid(r => r["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }));

    private static JsonObject ImagePart(string url) => new() { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = url } };

    public static IEnumerable<TestCaseData> Cases()
    {
        TestCaseData Case(string name, string body, int status, string? param, string? code = null) => new TestCaseData(body, status, param, code).SetName(name);
        yield return Case("NotJson", "{\"messages\": [", 400, null, "invalid_json");
        yield return Case("EmptyBody", "", 400, null, "invalid_json");
        yield return Case("ArrayBody", "[1,2]", 400, null);
        yield return Case("DeepNesting", new string('[', 5000) + new string(']', 5000), 400, null, "invalid_json");
        yield return Case("LoneSurrogate", "{\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}],\"max_tokens\":2}", 400, null, "invalid_json");
        yield return Case("MissingMessages", "{\"model\":\"m\"}", 400, "messages");
        yield return Case("EmptyMessages", Valid(r => r["messages"] = new JsonArray()), 400, "messages");
        yield return Case("MessagesNotArray", Valid(r => r["messages"] = "hi"), 400, "messages");
        yield return Case("MessageNotObject", Valid(r => r["messages"] = new JsonArray(5)), 400, "messages[0]");
        yield return Case("UnknownRole", Valid(r => r["messages"] = new JsonArray(new JsonObject { ["role"] = "wizard", ["content"] = "x" })), 400, "messages[0].role");
        yield return Case("RoleNotString", Valid(r => r["messages"] = new JsonArray(new JsonObject { ["role"] = 3, ["content"] = "x" })), 400, "messages[0].role");
        yield return Case("ContentMissing", Valid(r => r["messages"] = new JsonArray(new JsonObject { ["role"] = "user" })), 400, "messages[0].content");
        yield return Case("ContentNumber", WithContent(42), 400, "messages[0].content");
        yield return Case("ContentEmptyParts", WithContent(new JsonArray()), 400, "messages[0].content");
        yield return Case("PartUnknownType", WithContent(new JsonArray(new JsonObject { ["type"] = "input_audio" })), 400, "messages[0].content[0].type");
        yield return Case("TextPartWithoutText", WithContent(new JsonArray(new JsonObject { ["type"] = "text" })), 400, "messages[0].content[0].text");
        yield return Case("ModelNotString", Valid(r => r["model"] = 1), 400, "model");
        yield return Case("NTwo", Valid(r => r["n"] = 2), 400, "n", "unsupported_value");
        yield return Case("MaxTokensZero", Valid(r => r["max_tokens"] = 0), 400, "max_tokens");
        yield return Case("MaxTokensString", Valid(r => r["max_tokens"] = "ten"), 400, "max_tokens");
        yield return Case("MaxTokensHuge", Valid(r => r["max_tokens"] = 1e12), 400, "max_tokens");
        yield return Case("TemperatureNegative", Valid(r => r["temperature"] = -1), 400, "temperature");
        yield return Case("TemperatureAbsurd", Valid(r => r["temperature"] = 1e308), 400, "temperature");
        // Used to reach the sampler and fail with a 500 that blamed the checkpoint for non-finite logits.
        yield return Case("TemperatureTooSmallToDivideBy", Valid(r => r["temperature"] = 5e-324), 400, "temperature");
        yield return Case("TopPZero", Valid(r => r["top_p"] = 0), 400, "top_p");
        yield return Case("TopPAboveOne", Valid(r => r["top_p"] = 1.5), 400, "top_p");
        yield return Case("TopKNegative", Valid(r => r["top_k"] = -5), 400, "top_k");
        yield return Case("SeedFraction", Valid(r => r["seed"] = 1.5), 400, "seed");
        yield return Case("StreamString", Valid(r => r["stream"] = "yes"), 400, "stream");
        yield return Case("StopNumber", Valid(r => r["stop"] = 3), 400, "stop");
        yield return Case("StopEmpty", Valid(r => r["stop"] = ""), 400, "stop");
        yield return Case("StopTooMany", Valid(r => r["stop"] = new JsonArray("a", "b", "c", "d", "e")), 400, "stop");
        yield return Case("PenaltyUnsupported", Valid(r => r["presence_penalty"] = 1), 400, "presence_penalty");
        // These used to be ignored: one plain answer without the best-of, min-p cut, log-probabilities or tool call asked for.
        yield return Case("BestOfFive", Valid(r => r["best_of"] = 5), 400, "best_of", "unsupported_value");
        yield return Case("BestOfHuge", Valid(r => r["best_of"] = 1e9), 400, "best_of", "unsupported_value");
        yield return Case("MinPUnsupported", Valid(r => r["min_p"] = 0.1), 400, "min_p", "unsupported_parameter");
        yield return Case("RepetitionPenaltyZero", Valid(r => r["repetition_penalty"] = 0), 400, "repetition_penalty");
        yield return Case("RepetitionPenaltyNegative", Valid(r => r["repetition_penalty"] = -1.3), 400, "repetition_penalty");
        yield return Case("RepetitionPenaltyString", Valid(r => r["repetition_penalty"] = "1.3"), 400, "repetition_penalty");
        // Positive and finite but past the engine's bound (max(P, 1/P) at most 1e269): its rule, a 400 on the field, greedy too.
        yield return Case("RepetitionPenaltyHuge", Valid(r => r["repetition_penalty"] = 1e300), 400, "repetition_penalty");
        yield return Case("RepetitionPenaltyTiny", Valid(r => { r["repetition_penalty"] = 1e-300; r["temperature"] = 0; }), 400, "repetition_penalty");
        // Sampling at the least temperature under a penalty overflows the logits: the engine's rule, a 400 (not a 500 at the first draw).
        yield return Case("RepetitionPenaltyWithTinyTemperature", Valid(r => { r["repetition_penalty"] = 1.5; r["temperature"] = 1.1e-269; }), 400, "repetition_penalty");
        yield return Case("TopLogprobsUnsupported", Valid(r => r["top_logprobs"] = 5), 400, "top_logprobs", "unsupported_parameter");
        yield return Case("ToolChoiceRequired", Valid(r => r["tool_choice"] = "required"), 400, "tool_choice", "unsupported_parameter");
        yield return Case("SeedBeyondUInt64", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2,\"seed\":18446744073709551616}", 400, "seed");
        // These used to be ignored, so the answer silently was not JSON / not biased / a plain text answer.
        yield return Case("JsonModeUnsupported", Valid(r => r["response_format"] = new JsonObject { ["type"] = "json_object" }), 400, "response_format", "unsupported_parameter");
        yield return Case("ResponseFormatNotObject", Valid(r => r["response_format"] = "json"), 400, "response_format", "unsupported_parameter");
        yield return Case("LogitBiasUnsupported", Valid(r => r["logit_bias"] = new JsonObject { ["5"] = 100 }), 400, "logit_bias", "unsupported_parameter");
        yield return Case("LegacyFunctionsUnsupported", Valid(r => r["functions"] = new JsonArray(new JsonObject { ["name"] = "f" })), 400, "functions", "unsupported_parameter");
        yield return Case("RemoteImage", WithContent(new JsonArray(ImagePart("http://127.0.0.1/x.png"))), 400, "messages[0].content[0].image_url.url", "remote_image_url_not_allowed");
        yield return Case("NotDataUrl", WithContent(new JsonArray(ImagePart("file:///etc/passwd"))), 400, "messages[0].content[0].image_url.url", "invalid_image_url");
        yield return Case("DataUrlNotImage", WithContent(new JsonArray(ImagePart("data:text/plain;base64,aGVsbG8="))), 400, "messages[0].content[0].image_url.url", "invalid_image_url");
        yield return Case("BadBase64", WithContent(new JsonArray(ImagePart("data:image/png;base64,@@@not base64@@@"))), 400, "messages[0].content[0].image_url.url", "invalid_image");
        yield return Case("Base64NotAnImage", WithContent(new JsonArray(ImagePart("data:image/png;base64," + Convert.ToBase64String(Encoding.UTF8.GetBytes("definitely not a png file"))))), 400, "messages[0].content[0].image_url.url", "invalid_image");
        yield return Case("ImageOverPixelLimit", WithContent(new JsonArray(ImagePart(DataUrl(BigPng())))), 400, "messages[0].content[0].image_url.url", "image_too_large");
        yield return Case("TooManyImages", WithContent(new JsonArray(ImagePart(DataUrl(RedPng)), ImagePart(DataUrl(RedPng)))), 400, "messages[0].content[1]", "too_many_images");
        yield return Case("ImageInAssistantTurn", Valid(r => r["messages"] = new JsonArray(new JsonObject { ["role"] = "assistant", ["content"] = new JsonArray(ImagePart(DataUrl(RedPng))) })), 400, "messages[0].content[0]");
        yield return Case("BodyOverLimit", Valid(r => r["messages"] = new JsonArray(UserMessage(new string('a', 70 * 1024)))), 413, null, "request_too_large");
        yield return Case("PromptOverContext", Valid(r => r["messages"] = new JsonArray(UserMessage(new string('a', 1100)))), 400, "messages", "context_length_exceeded");
        yield return Case("AnswerOverContext", Valid(r => r["max_tokens"] = 5000), 400, "messages", "context_length_exceeded");
        yield return Case("ImageMarkerWithoutImage", Valid(r => r["messages"] = new JsonArray(UserMessage("look: <image>"))), 400, "messages");
    }

    private static string BigPng() => Path.Combine(Root, "big.png") is var p && File.Exists(p) ? p : global::Parrot.Tests.Shared.TinyModels.WritePng(p, 1, 2, 3, width: 40, height: 40);

    [TestCaseSource(nameof(Cases))]
    public async Task MalformedRequestGetsA4xxErrorObject(string body, int status, string? param, string? code)
    {
        var (got, json) = await PostAsync(_client, body);
        Assert.That(got, Is.EqualTo(status), json.ToString());
        var error = AssertError(json);
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo(param), error.GetProperty("message").GetString());
        if (code is not null) Assert.That(error.GetProperty("code").GetString(), Is.EqualTo(code));
    }

    [Test]
    public async Task NeutralValuesOfUnsupportedParametersAreAccepted()
    {
        var (status, body) = await PostAsync(_client, Valid(r =>
        {
            r["response_format"] = new JsonObject { ["type"] = "text" };
            r["logit_bias"] = new JsonObject();
            r["functions"] = new JsonArray();
            r["best_of"] = 1;
            r["min_p"] = 0;
            r["repetition_penalty"] = 1;
            r["top_logprobs"] = 0;
            r["tool_choice"] = "none";
            r["seed"] = 18446744073709551615UL; // 2^64 − 1: an integer, used to be refused as if it were not
        }));
        Assert.That(status, Is.EqualTo(200), body.ToString());
    }

    [Test]
    public async Task ABodyWithAUtf8ByteOrderMarkIsRead()
    {
        var (status, body) = await PostAsync(_client, "\uFEFF" + Valid(_ => { }));
        Assert.That(status, Is.EqualTo(200), body.ToString());
    }

    [Test]
    public async Task WrongMethodAndUnknownRoutesAre4xx()
    {
        using (var r = await _client.GetAsync("/v1/chat/completions")) { Assert.That((int)r.StatusCode, Is.EqualTo(405)); AssertError(System.Text.Json.JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement); }
        using (var r = await _client.GetAsync("/v1/nothing")) { Assert.That((int)r.StatusCode, Is.EqualTo(404)); AssertError(System.Text.Json.JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement); }
    }

    /// <summary>≥ 10,000 malformed requests from 8 concurrent clients: all 4xx with an error object; then a normal one succeeds.</summary>
    [Test]
    public async Task FuzzTenThousandMalformedRequestsThenANormalOne()
    {
        var rng = new Random(1234);
        var seeds = Cases().Select(c => (string)c.Arguments[0]!).Where(s => s.Length < 4000).ToArray();
        string valid = Request("fuzz me", maxTokens: 1).ToJsonString();
        var bodies = new string[10_000];
        for (int i = 0; i < bodies.Length; i++) bodies[i] = Malformed(rng, valid, seeds);
        int next = -1, fiveHundreds = 0, notError = 0;
        var statuses = new int[bodies.Length];
        async Task Worker()
        {
            using var client = Client(_server);
            int i;
            while ((i = Interlocked.Increment(ref next)) < bodies.Length)
            {
                using var response = await client.PostAsync("/v1/chat/completions", Json(bodies[i]));
                statuses[i] = (int)response.StatusCode;
                var text = await response.Content.ReadAsStringAsync();
                if (statuses[i] >= 500) Interlocked.Increment(ref fiveHundreds);
                else if (statuses[i] is < 400 or >= 500 || !text.Contains("\"error\"", StringComparison.Ordinal)) Interlocked.Increment(ref notError);
            }
        }
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(Worker)));
        Assert.That(fiveHundreds, Is.Zero, "no 5xx for bad input");
        Assert.That(notError, Is.Zero, "every malformed request gets a 4xx with an error object");
        Assert.That(statuses.Count(s => s is >= 400 and < 500), Is.EqualTo(bodies.Length));

        var (status, body) = await PostAsync(_client, Request("still alive?", maxTokens: 3));
        Assert.That(status, Is.EqualTo(200));
        Assert.That(body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").ValueKind, Is.EqualTo(System.Text.Json.JsonValueKind.String));
    }

    /// <summary>A request that is malformed by construction: a known-bad case, a cut or byte-flipped valid body, or a valid body with one field of the wrong kind.</summary>
    private static string Malformed(Random rng, string valid, string[] seeds)
    {
        switch (rng.Next(4))
        {
            case 0: return seeds[rng.Next(seeds.Length)];
            case 1: return valid[..rng.Next(valid.Length - 1)]; // truncated: never valid JSON
            case 2:
            {
                // Garbage JSON-ish bytes.
                var chars = "{}[]\":,0123456789abc -.eE\\nulltruefalse";
                var sb = new StringBuilder();
                int n = rng.Next(1, 60);
                for (int i = 0; i < n; i++) sb.Append(chars[rng.Next(chars.Length)]);
                string s = sb.ToString();
                return s.StartsWith('{') ? s + "{" : s; // an object must not be accidentally complete and valid
            }
            default:
            {
                var r = JsonNode.Parse(valid)!.AsObject();
                JsonNode?[] wrong = [null, 0, -3, 1.5e300, "", "text", true, new JsonArray(), new JsonObject(), new JsonArray(1, "a")];
                string[] fields = ["messages", "max_tokens", "temperature", "top_p", "top_k", "seed", "stream", "stop", "n"];
                string field = fields[rng.Next(fields.Length)];
                JsonNode? value;
                do value = wrong[rng.Next(wrong.Length)]?.DeepClone(); while (!IsWrong(field, value));
                r[field] = value;
                return r.ToJsonString();
            }
        }
    }

    private static double Num(JsonNode v) => double.Parse(v.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Whether <paramref name="value"/> is invalid for <paramref name="field"/> (so the case is malformed).</summary>
    private static bool IsWrong(string field, JsonNode? value) => field switch
    {
        "messages" => true, // null, scalars, empty or malformed arrays, objects
        "max_tokens" => value is null ? false : !(value.GetValueKind() == System.Text.Json.JsonValueKind.Number && Num(value) is >= 1 and <= 5 && Num(value) % 1 == 0),
        "temperature" => value is not null && !(value.GetValueKind() == System.Text.Json.JsonValueKind.Number && Num(value) is >= 0 and <= 2),
        "top_p" => value is not null && !(value.GetValueKind() == System.Text.Json.JsonValueKind.Number && Num(value) is > 0 and <= 1),
        "top_k" => value is not null && !(value.GetValueKind() == System.Text.Json.JsonValueKind.Number && Num(value) is >= -1 and < int.MaxValue && Num(value) % 1 == 0),
        "seed" => value is not null && !(value.GetValueKind() == System.Text.Json.JsonValueKind.Number && Num(value) % 1 == 0 && Math.Abs(Num(value)) < 9e18),
        "stream" => value is not null && value.GetValueKind() is not (System.Text.Json.JsonValueKind.True or System.Text.Json.JsonValueKind.False),
        "stop" => value switch
        {
            null => false,
            JsonArray a => a.Count > 4 || a.Any(x => x is null || x.GetValueKind() != System.Text.Json.JsonValueKind.String || x.GetValue<string>() == ""),
            _ => value.GetValueKind() != System.Text.Json.JsonValueKind.String || value.GetValue<string>() == "",
        },
        "n" => value is not null && !(value.GetValueKind() == System.Text.Json.JsonValueKind.Number && Num(value) == 1),
        _ => false,
    };
}
