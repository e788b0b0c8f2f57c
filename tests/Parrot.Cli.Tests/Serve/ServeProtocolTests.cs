using System.ClientModel;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using Parrot.Cli.Serve;
using Parrot.Parrot;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using static Parrot.Cli.Tests.Serve.ServeTestHost;

namespace Parrot.Cli.Tests.Serve;

/// <summary>The OpenAI protocol over real HTTP on loopback: shapes checked field by field, answers against the ParrotModel API.</summary>
public class ServeProtocolTests
{
    private ParrotServer _server = null!;
    private HttpClient _client = null!;
    private ParrotModel _reference = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        _server = await StartAsync();
        _client = Client(_server);
        _reference = ParrotModel.Load(ModelDir);
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        _client.Dispose();
        _reference.Dispose();
        await _server.DisposeAsync();
    }

    private string Expected(string question, RgbImage? image, int maxTokens) =>
        _reference.Ask(question, image, new GenerationOptions { MaxNewTokens = maxTokens });

    private int PromptTokens(string question, bool image)
    {
        var ids = _reference.Chat.BuildPrompt([new ChatTurn(ChatRole.User, question, image)]);
        if (!image) return ids.Length;
        var config = ParrotConfig.Load(Path.Combine(ModelDir, "config.json"));
        int visual = (28 / 7) * (28 / 7) + (config.MmVisionSelectFeature == "patch" ? 0 : 1); // the tiny tower: 28×28 images, 7×7 patches
        return ids.Length - 1 + visual;
    }

    [Test]
    public async Task ChatCompletionHasTheDocumentedShapeAndTheGreedyAnswer()
    {
        var (status, body) = await PostAsync(_client, Request("Hello there", maxTokens: 9));
        Assert.That(status, Is.EqualTo(200));
        Assert.That(body.GetProperty("id").GetString(), Does.StartWith("chatcmpl-"));
        Assert.That(body.GetProperty("object").GetString(), Is.EqualTo("chat.completion"));
        Assert.That(body.GetProperty("created").GetInt64(), Is.GreaterThan(1_600_000_000));
        Assert.That(body.GetProperty("model").GetString(), Is.EqualTo("tiny-parrot"));
        var choices = body.GetProperty("choices");
        Assert.That(choices.GetArrayLength(), Is.EqualTo(1));
        var choice = choices[0];
        Assert.That(choice.GetProperty("index").GetInt32(), Is.EqualTo(0));
        Assert.That(choice.GetProperty("message").GetProperty("role").GetString(), Is.EqualTo("assistant"));
        string content = choice.GetProperty("message").GetProperty("content").GetString()!;
        Assert.That(content, Is.EqualTo(Expected("Hello there", null, 9)));
        string finish = choice.GetProperty("finish_reason").GetString()!;
        var usage = body.GetProperty("usage");
        int completion = usage.GetProperty("completion_tokens").GetInt32();
        Assert.That(finish, Is.EqualTo(completion == 9 ? "length" : "stop"));
        Assert.That(completion, Is.InRange(1, 9));
        Assert.That(usage.GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(PromptTokens("Hello there", false)));
        Assert.That(usage.GetProperty("total_tokens").GetInt32(), Is.EqualTo(usage.GetProperty("prompt_tokens").GetInt32() + completion));
    }

    [Test]
    public async Task RepetitionPenaltyIsHonoured([Values(0.0, 0.8)] double temperature)
    {
        // It used to be ignored silently (then refused); now the request's penalty reaches the sampler. The reference is
        // the ParrotModel API with the same options; the unpenalised answer must differ, or the test could not fail.
        const int tokens = 24;
        var plain = new GenerationOptions { MaxNewTokens = tokens, Temperature = temperature, Seed = 7 };
        var penalised = plain with { RepetitionPenalty = 5 };
        string expected = _reference.Ask("Hello there", (RgbImage?)null, penalised);
        Assert.That(expected, Is.Not.EqualTo(_reference.Ask("Hello there", (RgbImage?)null, plain)), "precondition: the penalty changes the tiny model's answer");
        var request = Request("Hello there", maxTokens: tokens, temperature: temperature);
        request["repetition_penalty"] = 5;
        request["seed"] = 7;
        var (status, body) = await PostAsync(_client, request);
        Assert.That(status, Is.EqualTo(200), body.ToString());
        Assert.That(body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(), Is.EqualTo(expected));
    }

    [Test]
    public async Task StreamSendsDeltaChunksThatConcatenateToTheAnswerThenDone()
    {
        var request = Request("Stream me a story", maxTokens: 14, stream: true);
        request["stream_options"] = new JsonObject { ["include_usage"] = true };
        var (status, contentType, data) = await StreamAsync(_client, request);
        Assert.That(status, Is.EqualTo(200));
        Assert.That(contentType, Is.EqualTo("text/event-stream"));
        Assert.That(data[^1], Is.EqualTo("[DONE]"));
        var chunks = data.SkipLast(1).Select(d => JsonDocument.Parse(d).RootElement).ToList();
        string id = chunks[0].GetProperty("id").GetString()!;
        Assert.That(chunks.All(c => c.GetProperty("id").GetString() == id && c.GetProperty("object").GetString() == "chat.completion.chunk"), Is.True);
        Assert.That(chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString(), Is.EqualTo("assistant"));
        var usageChunk = chunks[^1];
        Assert.That(usageChunk.GetProperty("choices").GetArrayLength(), Is.EqualTo(0));
        var finishChunk = chunks[^2].GetProperty("choices")[0];
        Assert.That(finishChunk.GetProperty("finish_reason").GetString(), Is.AnyOf("stop", "length"));
        Assert.That(finishChunk.GetProperty("delta").EnumerateObject().Count(), Is.EqualTo(0));
        var text = string.Concat(chunks.SkipLast(1).Select(c => c.GetProperty("choices")[0].GetProperty("delta"))
            .Select(d => d.TryGetProperty("content", out var t) ? t.GetString() : ""));
        Assert.That(text, Is.EqualTo(Expected("Stream me a story", null, 14)));
        Assert.That(chunks.SkipLast(2).Skip(1).All(c => c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind == JsonValueKind.Null), Is.True);
        // Role chunk, at least one content delta (tokens that queue up while a chunk is sent share the next one), finish, usage.
        Assert.That(chunks.Count, Is.GreaterThanOrEqualTo(4));
        Assert.That(usageChunk.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(PromptTokens("Stream me a story", false)));
    }

    [Test]
    public async Task ImagesInDataUrlsAreSeenAndCountedInUsage()
    {
        const string question = "What colour is the square?";
        JsonObject WithImage(string png) => new()
        {
            ["model"] = "x", ["max_completion_tokens"] = 10, ["temperature"] = 0,
            ["messages"] = new JsonArray(new JsonObject
            {
                ["role"] = "user",
                ["content"] = new JsonArray(
                    new JsonObject { ["type"] = "text", ["text"] = question },
                    new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = DataUrl(png) } }),
            }),
        };
        var (status, red) = await PostAsync(_client, WithImage(RedPng));
        Assert.That(status, Is.EqualTo(200));
        string redAnswer = red.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.That(redAnswer, Is.EqualTo(Expected(question, ImageLoader.Load(RedPng), 10)));
        Assert.That(redAnswer, Is.Not.EqualTo(Expected(question, ImageLoader.Load(BluePng), 10)), "the image matters");
        Assert.That(red.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(PromptTokens(question, true)));
        var (_, blue) = await PostAsync(_client, WithImage(BluePng));
        Assert.That(blue.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(), Is.EqualTo(Expected(question, ImageLoader.Load(BluePng), 10)));

        var remote = WithImage(RedPng);
        remote["messages"]![0]!["content"]![1]!["image_url"]!["url"] = "https://example.com/cat.png";
        var (rs, rb) = await PostAsync(_client, remote);
        Assert.That(rs, Is.EqualTo(400));
        Assert.That(AssertError(rb).GetProperty("code").GetString(), Is.EqualTo("remote_image_url_not_allowed"));
    }

    /// <summary>
    /// A prompt whose text fits with the tokens asked for but whose image's visual tokens do not: the batch's join now
    /// refuses it before the image is encoded (acc2fdd); serve's answer is what it was, a 400 context_length_exceeded on
    /// 'messages' counting the visual tokens, and one token less is served.
    /// </summary>
    [Test]
    public async Task AnImagePromptPastTheContextIsA400CountingItsVisualTokens()
    {
        string question = new('x', 900);
        int length = PromptTokens(question, true), context = _reference.ContextLength;
        int asked = context - length + 1;
        Assert.That(asked, Is.GreaterThan(1));
        Assert.That(PromptTokens(question, false) + asked, Is.LessThanOrEqualTo(context), "precondition: the text alone fits");
        JsonObject WithImage(int maxTokens) => new()
        {
            ["model"] = "x", ["max_tokens"] = maxTokens, ["temperature"] = 0,
            ["messages"] = new JsonArray(new JsonObject
            {
                ["role"] = "user",
                ["content"] = new JsonArray(
                    new JsonObject { ["type"] = "text", ["text"] = question },
                    new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = DataUrl(RedPng) } }),
            }),
        };
        var (status, body) = await PostAsync(_client, WithImage(asked));
        Assert.That(status, Is.EqualTo(400), body.ToString());
        var error = AssertError(body);
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("context_length_exceeded"));
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo("messages"));
        Assert.That(error.GetProperty("message").GetString(), Is.EqualTo(
            $"this model's maximum context length is {context} tokens; the prompt has {length} tokens and {asked} more were asked for (max new tokens), {length + asked} in all"));
        (status, body) = await PostAsync(_client, WithImage(asked - 1));
        Assert.That(status, Is.EqualTo(200), body.ToString());
        Assert.That(body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(length));
    }

    [Test]
    public async Task ModelsHealthAndMetrics()
    {
        var models = JsonDocument.Parse(await _client.GetStringAsync("/v1/models")).RootElement;
        Assert.That(models.GetProperty("object").GetString(), Is.EqualTo("list"));
        var m = models.GetProperty("data")[0];
        Assert.That((m.GetProperty("id").GetString(), m.GetProperty("object").GetString()), Is.EqualTo(("tiny-parrot", "model")));
        Assert.That(m.GetProperty("owned_by").ValueKind, Is.EqualTo(JsonValueKind.String));
        Assert.That(JsonDocument.Parse(await _client.GetStringAsync("/health")).RootElement.GetProperty("status").GetString(), Is.EqualTo("ok"));

        await PostAsync(_client, Request("count me", maxTokens: 3));
        var metrics = await _client.GetStringAsync("/metrics");
        foreach (var name in new[] { "parrot_requests_total{code=\"200\"}", "parrot_queue_length ", "parrot_batch_size ", "parrot_generated_tokens_total ", "parrot_tokens_per_second ", "parrot_prompt_tokens_total " })
            Assert.That(metrics, Does.Contain(name));
        var generated = metrics.Split('\n').Single(l => l.StartsWith("parrot_generated_tokens_total ", StringComparison.Ordinal));
        Assert.That(double.Parse(generated.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThanOrEqualTo(1));
        Assert.That(metrics.Split('\n').Where(l => l.Length > 0 && !l.StartsWith('#')).All(l => l.Split(' ').Length == 2), Is.True, "Prometheus text: name{labels} value");
    }

    [Test]
    public async Task HealthSaysLoadingUntilTheModelIsLoaded()
    {
        await using var server = await StartAsync(load: false);
        using var client = Client(server);
        using (var r = await client.GetAsync("/health"))
        {
            Assert.That((int)r.StatusCode, Is.EqualTo(503));
            Assert.That(JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString(), Is.EqualTo("loading"));
        }
        var (status, body) = await PostAsync(client, Request("too early"));
        Assert.That(status, Is.EqualTo(503));
        AssertError(body);
        server.LoadModel();
        using (var r = await client.GetAsync("/health")) Assert.That((int)r.StatusCode, Is.EqualTo(200));
        Assert.That((await PostAsync(client, Request("now", maxTokens: 2))).Status, Is.EqualTo(200));
    }

    [Test]
    public async Task TheOfficialOpenAiClientTalksToTheServer()
    {
        var client = new ChatClient("tiny-parrot", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_server.Address, "/v1") });
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 8, Temperature = 0 };
        ChatCompletion completion = (await client.CompleteChatAsync([new UserChatMessage("Hi from OpenAI's client")], options)).Value;
        Assert.That(completion.Content[0].Text, Is.EqualTo(Expected("Hi from OpenAI's client", null, 8)));
        Assert.That(completion.Role, Is.EqualTo(ChatMessageRole.Assistant));
        Assert.That(completion.FinishReason, Is.AnyOf(ChatFinishReason.Stop, ChatFinishReason.Length));
        Assert.That(completion.Usage.InputTokenCount, Is.EqualTo(PromptTokens("Hi from OpenAI's client", false)));
        Assert.That(completion.Usage.TotalTokenCount, Is.EqualTo(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount));

        // Streaming, with an image part built by the client.
        var image = ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(File.ReadAllBytes(RedPng)), "image/png");
        var message = new UserChatMessage(ChatMessageContentPart.CreateTextPart("What colour is the square?"), image);
        var text = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync([message], options))
        {
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.That(text.ToString(), Is.EqualTo(Expected("What colour is the square?", ImageLoader.Load(RedPng), 8)));
        Assert.That(finish, Is.Not.Null);

        // An error comes back as the client's exception with our status.
        var bad = Assert.ThrowsAsync<ClientResultException>(async () =>
            await client.CompleteChatAsync([new UserChatMessage("x")], new ChatCompletionOptions { Temperature = 7 }));
        Assert.That(bad!.Status, Is.EqualTo(400));
    }
}
