using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Cli.Serve;
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
