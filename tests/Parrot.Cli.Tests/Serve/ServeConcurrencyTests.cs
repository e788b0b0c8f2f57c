using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Cli.Serve;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tests.Shared;
using static Parrot.Cli.Tests.Serve.ServeTestHost;

namespace Parrot.Cli.Tests.Serve;

/// <summary>Continuous batching: batched = alone, the bounded queue (429), client disconnects and the deadline.</summary>
public class ServeConcurrencyTests
{
    private static string Content(JsonElement body) => body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;

    [Test]
    public async Task GreedyAnswersAreIdenticalAloneAndInABatch()
    {
        await using var server = await StartAsync(o => o with { MaxBatch = 8 });
        using var client = Client(server);
        string[] prompts = ["a", "Tell me about parrots, please", "¿Qué es esto?", "Short", "A longer question that takes more tokens to prefill", "中文问题"];
        int[] lengths = [12, 20, 7, 16, 9, 14];
        var alone = new string[prompts.Length];
        for (int i = 0; i < prompts.Length; i++)
        {
            var (s, b) = await PostAsync(client, Request(prompts[i], lengths[i]));
            Assert.That(s, Is.EqualTo(200));
            alone[i] = Content(b);
        }
        Assert.That(server.Scheduler!.LargestBatch, Is.EqualTo(1));

        // All at once, twice over (streams and plain), with different lengths so that they join and leave at different steps.
        var tasks = new List<Task<string>>();
        for (int round = 0; round < 2; round++)
            for (int i = 0; i < prompts.Length; i++)
            {
                int k = i;
                tasks.Add(round == 0
                    ? Task.Run(async () => Content((await PostAsync(client, Request(prompts[k], lengths[k]))).Body))
                    : Task.Run(async () =>
                    {
                        var (_, _, data) = await StreamAsync(client, Request(prompts[k], lengths[k], stream: true));
                        return string.Concat(data.SkipLast(1).Select(d => JsonDocument.Parse(d).RootElement.GetProperty("choices")[0].GetProperty("delta"))
                            .Select(d => d.TryGetProperty("content", out var t) ? t.GetString() : ""));
                    }));
            }
        var together = await Task.WhenAll(tasks);
        for (int i = 0; i < together.Length; i++) Assert.That(together[i], Is.EqualTo(alone[i % prompts.Length]), $"request {i}");
        Assert.That(server.Scheduler.LargestBatch, Is.GreaterThan(1), "requests were decoded together");
    }

    /// <summary>
    /// Requests with different repetition penalties decode in one batch, each with its own: the penalty is a per-request
    /// option (9ab639b), so a batch that applied one row's penalty (or seen ids) to another, or none, would answer a
    /// request differently from the ParrotModel API with its own options. The same question penalised and not (greedy and
    /// sampled), plus another question, all at once; the penalised and plain references differ, or the test proves nothing.
    /// </summary>
    [Test]
    public async Task RequestsWithDifferentPenaltiesShareABatchEachWithItsOwn([Values(0.0, 0.8)] double temperature)
    {
        await using var server = await StartAsync(o => o with { MaxBatch = 8 });
        using var client = Client(server);
        using var reference = ParrotModel.Load(ModelDir);
        const int tokens = 24;
        (string Question, double Penalty, ulong Seed)[] cases =
        [
            ("Hello there", 5, 7), ("Hello there", 1, 7), ("Tell me about parrots, please", 0.7, 11), ("Tell me about parrots, please", 1, 11),
            ("Hello there", 1.3, 3),
        ];
        var expected = cases.Select(c => reference.Ask(c.Question, (RgbImage?)null,
            new GenerationOptions { MaxNewTokens = tokens, Temperature = temperature, Seed = c.Seed, RepetitionPenalty = c.Penalty })).ToArray();
        Assert.That(expected[0], Is.Not.EqualTo(expected[1]), "precondition: the penalty changes the answer to the same question");
        Assert.That(expected[2], Is.Not.EqualTo(expected[3]), "precondition: a penalty below 1 changes the answer too");

        JsonObject Ask((string Question, double Penalty, ulong Seed) c, bool stream)
        {
            var r = Request(c.Question, maxTokens: tokens, stream: stream, temperature: temperature);
            r["seed"] = c.Seed;
            if (c.Penalty != 1) r["repetition_penalty"] = c.Penalty;
            return r;
        }
        var tasks = new List<Task<string>>();
        for (int round = 0; round < 2; round++)
            foreach (var c in cases)
                tasks.Add(round == 0
                    ? Task.Run(async () =>
                    {
                        var (status, body) = await PostAsync(client, Ask(c, stream: false));
                        Assert.That(status, Is.EqualTo(200), body.ToString());
                        return Content(body);
                    })
                    : Task.Run(async () =>
                    {
                        var (_, _, data) = await StreamAsync(client, Ask(c, stream: true));
                        return string.Concat(data.SkipLast(1).Select(d => JsonDocument.Parse(d).RootElement.GetProperty("choices")[0].GetProperty("delta"))
                            .Select(d => d.TryGetProperty("content", out var t) ? t.GetString() : ""));
                    }));
        var answers = await Task.WhenAll(tasks);
        for (int i = 0; i < answers.Length; i++)
            Assert.That(answers[i], Is.EqualTo(expected[i % cases.Length]), $"request {i}: '{cases[i % cases.Length].Question}', penalty {cases[i % cases.Length].Penalty}");
        Assert.That(server.Scheduler!.LargestBatch, Is.GreaterThan(1), "requests were decoded together (else the test proves nothing)");
    }

    [Test]
    public async Task AFullQueueAnswers429WithRetryAfter()
    {
        await using var server = await StartAsync(o => o with { ModelDirectory = LongModelDir, MaxBatch = 1, MaxQueue = 1, IgnoreEos = true });
        using var client = Client(server);
        var longOne = Request("keep going", maxTokens: 150_000, stream: true).ToJsonString();
        using var first = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json(longOne) }, HttpCompletionOption.ResponseHeadersRead);
        Assert.That((int)first.StatusCode, Is.EqualTo(200));
        // The batch is full; one request may wait; the next is refused.
        var waiting = client.PostAsync("/v1/chat/completions", Json(Request("wait", maxTokens: 1).ToJsonString()));
        await WaitUntil(() => server.Metrics.QueueLength == 1);
        using (var refused = await client.PostAsync("/v1/chat/completions", Json(Request("no room", maxTokens: 1).ToJsonString())))
        {
            Assert.That((int)refused.StatusCode, Is.EqualTo(429));
            Assert.That(refused.Headers.RetryAfter?.Delta, Is.EqualTo(TimeSpan.FromSeconds(1)));
            var error = AssertError(JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement);
            Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("queue_full"));
        }
        first.Dispose(); // the long one goes away; the waiting one gets its turn
        using var served = await waiting;
        Assert.That((int)served.StatusCode, Is.EqualTo(200));
    }

    [Test]
    public async Task ADisconnectedClientCancelsItsGenerationAndFreesItsPlace()
    {
        await using var server = await StartAsync(o => o with { ModelDirectory = LongModelDir, MaxBatch = 4, IgnoreEos = true });
        using var client = Client(server);
        using (var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json(Request("endless", maxTokens: 150_000, stream: true).ToJsonString()) }, HttpCompletionOption.ResponseHeadersRead))
        {
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            for (int i = 0; i < 3; i++) await reader.ReadLineAsync();
            Assert.That(server.Metrics.BatchSize, Is.EqualTo(1));
        }
        await WaitUntil(() => server.Metrics.Cancelled == 1 && server.Metrics.BatchSize == 0);
        long generated = server.Metrics.GeneratedTokens;
        Assert.That(generated, Is.LessThan(150_000), "generation stopped early");
        await Task.Delay(200);
        Assert.That(server.Metrics.GeneratedTokens, Is.EqualTo(generated), "nothing more is generated for it");
        Assert.That((await PostAsync(client, Request("next", maxTokens: 2))).Status, Is.EqualTo(200));
    }

    [Test]
    public async Task ARequestPastItsDeadlineGetsATimeoutError()
    {
        await using var server = await StartAsync(o => o with { ModelDirectory = LongModelDir, IgnoreEos = true, Deadline = TimeSpan.FromMilliseconds(300) });
        using var client = Client(server);
        var (status, body) = await PostAsync(client, Request("slow", maxTokens: 150_000));
        Assert.That(status, Is.EqualTo(504));
        Assert.That(AssertError(body).GetProperty("code").GetString(), Is.EqualTo("deadline_exceeded"));
        await WaitUntil(() => server.Metrics.BatchSize == 0);
        Assert.That(server.Metrics.Render(), Does.Contain("parrot_requests_deadline_total 1"));
    }

    /// <summary>
    /// A request whose logits hold no number fails alone: a text model whose embedding of a byte b is NaN (untied head)
    /// makes the prompt of a question with b give an all-NaN row, so its sequence ends with an error at its first step,
    /// while a long answer is decoding beside it. The bad request gets a 500 error object (non-streaming) or an error
    /// event then [DONE] (streaming), each naming the problem; the long answer goes on to its end, the same as alone.
    /// Before, the batch's step threw and the scheduler failed every request in the batch.
    /// </summary>
    [Test]
    public async Task ARequestWhoseLogitsHoldNoNumberFailsAloneWhileTheOthersComplete()
    {
        // The long question's answer (greedy, 5,000 tokens, as the server runs it) from the clean model picks the byte b
        // that its prompt and answer never meet; b's embedding row NaN changes nothing for it.
        string dir = Path.Combine(Root, "nan-byte-qwen2");
        char b;
        lock (NaNModelLock)
        {
            var config = TinyModels.TextConfig() with { TieWordEmbeddings = false, MaxPositionEmbeddings = 8192 };
            using var lm = new Qwen2ForCausalLM(config, 7);
            var tmp = dir + ".tmp";
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
            Directory.CreateDirectory(tmp);
            Qwen2Loader.Save(lm, tmp);
            TinyModels.WriteTokenizer(tmp);
            var met = new HashSet<int>();
            using (var clean = ParrotModel.Load(tmp))
            {
                ChatTurn[] ask = [new ChatTurn(ChatRole.User, "Tell me about parrots")];
                met.UnionWith(clean.Chat.BuildPrompt(ask));
                met.UnionWith(clean.Generate(ask, null, new GenerationOptions { MaxNewTokens = 5000, IgnoreEos = true }).Tokens);
            }
            // A letter or digit (the byte-level tokenizer: id = byte), so that the question stays plain text.
            b = "~#%&*+=@^|0123456789QXZJKVWYqxzjkvwy".FirstOrDefault(c => !met.Contains(c));
            Assert.That(b, Is.Not.EqualTo('\0'), "a byte that the long answer never meets");
            var embed = lm.NamedParameters().Single(x => x.Name == "model.embed_tokens.weight").Parameter.Value;
            using (var nan = Tensor.Full([config.HiddenSize], double.NaN))
            using (var row = embed.Narrow(0, b, 1))
            using (var flat = row.Reshape(config.HiddenSize))
                flat.CopyFrom(nan);
            Qwen2Loader.Save(lm, tmp);
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            Directory.Move(tmp, dir);
        }
        await using var server = await StartAsync(o => o with { ModelDirectory = dir, MaxBatch = 4, IgnoreEos = true });
        using var client = Client(server);
        var good = Request("Tell me about parrots", maxTokens: 5000);
        var (status, body) = await PostAsync(client, good);
        Assert.That(status, Is.EqualTo(200), $"the long answer alone (its tokens never meet '{b}')");
        string alone = Content(body);
        Assert.That(server.Scheduler!.LargestBatch, Is.EqualTo(1));

        good["stream"] = true;
        using var message = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json(good.ToJsonString()) };
        using var response = await client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead);
        Assert.That((int)response.StatusCode, Is.EqualTo(200));
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var data = new List<string>();
        async Task<string?> NextData()
        {
            string? line;
            while ((line = await reader.ReadLineAsync()) is { Length: 0 }) { }
            if (line is null) return null;
            Assert.That(line, Does.StartWith("data: "));
            data.Add(line["data: ".Length..]);
            return data[^1];
        }
        for (int i = 0; i < 2; i++) await NextData(); // the role chunk and the first text: it is decoding

        // Both at once, while it decodes. Non-streaming: a 500 error object that names the problem.
        var plain = PostAsync(client, Request($"what is {b} here?", maxTokens: 50));
        var streaming = StreamAsync(client, Request($"and {b} again", maxTokens: 50, stream: true));
        (status, body) = await plain;
        Assert.That(status, Is.EqualTo(500));
        var error = AssertError(body);
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("server_error"));
        Assert.That(error.GetProperty("message").GetString(), Does.StartWith("generation failed: ").And.Contain("the logits of step 1 are all NaN or −∞, so no token can be chosen"));

        // Streaming: the role chunk, then the error as an event, then [DONE].
        var (streamStatus, _, events) = await streaming;
        Assert.That(streamStatus, Is.EqualTo(200), "headers go before the first step");
        Assert.That(events, Has.Count.EqualTo(3), string.Join("\n", events));
        Assert.That(events[^1], Is.EqualTo("[DONE]"));
        var streamed = AssertError(JsonDocument.Parse(events[1]).RootElement);
        Assert.That(streamed.GetProperty("message").GetString(), Does.Contain("the logits of step 1 are all NaN or −∞"));

        // The long answer goes on to its end, the same as alone.
        while (await NextData() is { } d && d != "[DONE]") { }
        Assert.That(data[^1], Is.EqualTo("[DONE]"), "the long answer's stream ended normally");
        var chunks = data.SkipLast(1).Select(d => JsonDocument.Parse(d).RootElement.GetProperty("choices")[0]).ToList();
        Assert.That(chunks[^1].GetProperty("finish_reason").GetString(), Is.EqualTo("length"));
        string together = string.Concat(chunks.Select(c => c.GetProperty("delta")).Select(d => d.TryGetProperty("content", out var t) ? t.GetString() : ""));
        Assert.That(together, Is.EqualTo(alone));
        Assert.That(server.Scheduler.LargestBatch, Is.GreaterThan(1), "the bad requests were decoded beside the long one (else the test proves nothing)");
        Assert.That(server.Metrics.GeneratedTokens, Is.EqualTo(2 * 5000), "the failed requests generated nothing");
        await WaitUntil(() => server.Metrics.Render().Contains("parrot_requests_total{code=\"500\"} 2"));
    }

    private static readonly object NaNModelLock = new();

    /// <summary>
    /// A sampled request on a model whose every row of logits holds a +∞ (the final norm keeps one hidden unit, scaled by
    /// 1e30, and two head rows of ±1e30 on it overflow to +∞ and −∞) gets a 500 error object that names the problem; a
    /// greedy one gets its answer (the +∞ id). Before, a request with a temperature and no top_p got a 200 answer made of
    /// the vocabulary's last id (∞ − ∞ made every probability NaN and the draw ran past them all).
    /// </summary>
    [Test]
    public async Task ASampledRequestOnAPlusInfinityRowFailsClearly()
    {
        string dir = Path.Combine(Root, "plus-inf-qwen2");
        lock (PlusInfinityModelLock)
        {
            if (!Directory.Exists(dir))
            {
                var tmp = dir + ".tmp";
                if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
                Directory.CreateDirectory(tmp);
                using (var lm = new Qwen2ForCausalLM(TinyModels.TextConfig() with { TieWordEmbeddings = false }, 5))
                {
                    var p = lm.NamedParameters().ToDictionary(x => x.Name, x => x.Parameter.Value);
                    int hidden = lm.Config.HiddenSize;
                    using (var norm = Tensor.FromArray(Enumerable.Range(0, hidden).Select(i => i == 0 ? 1e30 : 0.0).ToArray(), hidden))
                        p["model.norm.weight"].CopyFrom(norm);
                    p["lm_head.weight"].Narrow(0, 7, 1).Narrow(1, 0, 1).Fill(1e30);
                    p["lm_head.weight"].Narrow(0, 9, 1).Narrow(1, 0, 1).Fill(-1e30);
                    Qwen2Loader.Save(lm, tmp);
                }
                TinyModels.WriteTokenizer(tmp);
                Directory.Move(tmp, dir);
            }
        }
        await using var server = await StartAsync(o => o with { ModelDirectory = dir, MaxBatch = 4, IgnoreEos = true });
        using var client = Client(server);
        var (status, body) = await PostAsync(client, Request("hi", maxTokens: 4));
        Assert.That(status, Is.EqualTo(200), "greedy takes the +∞ logit");
        (status, body) = await PostAsync(client, Request("hi", maxTokens: 4, temperature: 0.7));
        Assert.That(status, Is.EqualTo(500), body.ToString());
        var error = AssertError(body);
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("server_error"));
        Assert.That(error.GetProperty("message").GetString(), Does.StartWith("generation failed: ")
            .And.Contain("the logits leave no probability to sample from (a +∞ logit) — the checkpoint or the inputs hold non-finite values"));
    }

    private static readonly object PlusInfinityModelLock = new();

    private static async Task WaitUntil(Func<bool> condition)
    {
        var until = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > until) Assert.Fail("condition not reached in 30 s");
            await Task.Delay(10);
        }
    }
}
