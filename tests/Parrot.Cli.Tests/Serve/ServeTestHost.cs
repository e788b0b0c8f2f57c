using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Cli.Serve;
using Parrot.Tests.Shared;

namespace Parrot.Cli.Tests.Serve;

/// <summary>A tiny Parrot model directory (with its CLIP tower) and in-process servers on loopback ephemeral ports.</summary>
internal static class ServeTestHost
{
    private static readonly object Lock = new();
    private static string? _root;

    /// <summary>The shared tiny model directory (made once per test run) and two PNGs beside it.</summary>
    public static string Root
    {
        get
        {
            lock (Lock)
            {
                if (_root is null)
                {
                    var root = TinyModels.TempDir("parrot-serve-tests");
                    TinyModels.WriteParrot(Path.Combine(root, "tiny-parrot"));
                    TinyModels.WritePng(Path.Combine(root, "red.png"), 230, 20, 20);
                    TinyModels.WritePng(Path.Combine(root, "blue.png"), 20, 20, 230, width: 20, height: 34);
                    _root = root;
                }
                return _root;
            }
        }
    }

    public static string ModelDir => Path.Combine(Root, "tiny-parrot");

    /// <summary>
    /// The same model with a 200k-position context, for answers long enough (the tiny model decodes
    /// thousands of tokens a second) that a test can disconnect, queue or time out while one runs.
    /// </summary>
    public static string LongModelDir
    {
        get
        {
            lock (Lock)
            {
                var dir = Path.Combine(Root, "long-parrot");
                if (!Directory.Exists(dir))
                {
                    var tmp = dir + ".tmp";
                    CopyDirectory(ModelDir, tmp);
                    var config = JsonNode.Parse(File.ReadAllText(Path.Combine(tmp, "config.json")))!;
                    config["max_position_embeddings"] = 200_000;
                    File.WriteAllText(Path.Combine(tmp, "config.json"), config.ToJsonString());
                    Directory.Move(tmp, dir);
                }
                return dir;
            }
        }
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(from)) CopyDirectory(d, Path.Combine(to, Path.GetFileName(d)));
    }

    /// <summary>Deletes the shared directory (end of the run).</summary>
    public static void Clean()
    {
        lock (Lock)
        {
            if (_root is null) return;
            try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
            _root = null;
        }
    }
    public static string RedPng => Path.Combine(Root, "red.png");
    public static string BluePng => Path.Combine(Root, "blue.png");

    public static string DataUrl(string png) => "data:image/png;base64," + Convert.ToBase64String(File.ReadAllBytes(png));

    /// <summary>Starts a server on 127.0.0.1 with a free port and loads the tiny model.</summary>
    public static async Task<ParrotServer> StartAsync(Func<ServeOptions, ServeOptions>? configure = null, bool load = true)
    {
        var options = new ServeOptions { ModelDirectory = ModelDir, Port = 0 };
        if (configure is not null) options = configure(options);
        var server = await ParrotServer.StartAsync(options);
        if (load) server.LoadModel();
        return server;
    }

    public static HttpClient Client(ParrotServer server) => new() { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(2) };

    public static JsonObject UserMessage(string text) => new() { ["role"] = "user", ["content"] = text };

    public static JsonObject Request(string text, int maxTokens = 10, bool stream = false, double temperature = 0) => new()
    {
        ["model"] = "anything",
        ["messages"] = new JsonArray(UserMessage(text)),
        ["max_tokens"] = maxTokens,
        ["temperature"] = temperature,
        ["stream"] = stream,
    };

    public static StringContent Json(string body) => new(body, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));

    public static async Task<(int Status, JsonElement Body)> PostAsync(HttpClient client, JsonNode request) => await PostAsync(client, request.ToJsonString());

    public static async Task<(int Status, JsonElement Body)> PostAsync(HttpClient client, string body)
    {
        using var response = await client.PostAsync("/v1/chat/completions", Json(body));
        var text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>Posts a streaming request and returns every SSE data payload up to and including [DONE].</summary>
    public static async Task<(int Status, string ContentType, List<string> Data)> StreamAsync(HttpClient client, JsonNode request)
    {
        using var message = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json(request.ToJsonString()) };
        using var response = await client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead);
        var data = new List<string>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        string? line;
        while ((line = await reader.ReadLineAsync()) is not null)
        {
            if (line.Length == 0) continue;
            Assert.That(line, Does.StartWith("data: "), "every SSE line is a data line");
            data.Add(line["data: ".Length..]);
        }
        return ((int)response.StatusCode, response.Content.Headers.ContentType?.MediaType ?? "", data);
    }

    /// <summary>Asserts <paramref name="body"/> is an OpenAI error object and returns it.</summary>
    public static JsonElement AssertError(JsonElement body)
    {
        Assert.That(body.ValueKind, Is.EqualTo(JsonValueKind.Object));
        var error = body.GetProperty("error");
        Assert.That(error.GetProperty("message").GetString(), Is.Not.Empty);
        Assert.That(error.GetProperty("type").ValueKind, Is.EqualTo(JsonValueKind.String));
        Assert.That(error.TryGetProperty("param", out var p) && p.ValueKind is JsonValueKind.String or JsonValueKind.Null, Is.True, "error.param");
        Assert.That(error.TryGetProperty("code", out var c) && c.ValueKind is JsonValueKind.String or JsonValueKind.Null, Is.True, "error.code");
        return error;
    }
}

/// <summary>Removes the tiny models when the serve tests are done.</summary>
[SetUpFixture]
public class ServeTestsCleanup
{
    [OneTimeTearDown]
    public void Clean() => ServeTestHost.Clean();
}
