// Load benchmark of `parrot serve`: a tiny generated Qwen2 model served by a separate `parrot serve` process
// on loopback; for each level, N concurrent clients send streaming chat completions back to back for a
// fixed time (and at most --max-requests each). Reports errors, aggregate generated tokens/s, p50/p99 time
// to first token, p50/p99 per-token latency (time per output token after the first, per request) and the server's resident memory
// at start and after each level. Loopback only; bounded in time and count.
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tests.Shared;

string parrot = Arg("--parrot") ?? throw new ArgumentException("--parrot PATH/parrot.dll is required");
double seconds = double.Parse(Arg("--seconds") ?? "60", CultureInfo.InvariantCulture);
int[] levels = (Arg("--clients") ?? "1,4,8,16").Split(',').Select(int.Parse).ToArray();
int maxTokens = int.Parse(Arg("--max-tokens") ?? "64", CultureInfo.InvariantCulture);
int maxRequests = int.Parse(Arg("--max-requests") ?? "100000", CultureInfo.InvariantCulture);
int hidden = int.Parse(Arg("--hidden") ?? "128", CultureInfo.InvariantCulture);
int layers = int.Parse(Arg("--layers") ?? "4", CultureInfo.InvariantCulture);

var dir = Path.Combine(Path.GetTempPath(), "parrot-serve-load", Guid.NewGuid().ToString("N"));
Directory.CreateDirectory(dir);
var config = TinyModels.TextConfig(0.02) with { HiddenSize = hidden, IntermediateSize = hidden * 11 / 4, NumHiddenLayers = layers, MaxPositionEmbeddings = 4096 };
using (var model = new Qwen2ForCausalLM(config, 7)) Qwen2Loader.Save(model, dir);
TinyModels.WriteTokenizer(dir);
Console.Error.WriteLine($"model: Qwen2 hidden {hidden}, {layers} layers, MLP {config.IntermediateSize}, heads {config.NumAttentionHeads}/{config.NumKeyValueHeads}, vocab {config.VocabSize}, float32");

var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
foreach (var a in new[] { parrot, "serve", "--model", dir, "--port", "0", "--max-batch", levels.Max().ToString(CultureInfo.InvariantCulture), "--max-queue", "64" }) psi.ArgumentList.Add(a);
using var server = Process.Start(psi)!;
_ = server.StandardError.ReadToEndAsync();
try
{
    var listening = await server.StandardOutput.ReadLineAsync() ?? throw new InvalidOperationException("the server said nothing");
    var url = new Uri(listening.Split(' ')[4]);
    await server.StandardOutput.ReadLineAsync(); // ready
    using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1000 }) { BaseAddress = url, Timeout = TimeSpan.FromMinutes(5) };
    await OneRequest(http, 0, new List<double>(), new List<double>()); // warm-up
    long startRss = Rss(server.Id);
    Console.WriteLine($"server RSS at start: {startRss / 1048576.0:F1} MiB; {seconds} s per level, max_tokens {maxTokens}, temperature 1");
    Console.WriteLine();
    Console.WriteLine("| clients | requests | errors | tokens | tokens/s | × 1 client | TTFT p50 ms | TTFT p99 ms | per-token p50 ms | per-token p99 ms | RSS MiB |");
    Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    double? single = null;
    foreach (int n in levels)
    {
        var ttft = new List<double>();
        var gaps = new List<double>();
        long tokens = 0, requests = 0, errors = 0;
        var clock = Stopwatch.StartNew();
        var until = TimeSpan.FromSeconds(seconds);
        await Task.WhenAll(Enumerable.Range(0, n).Select(c => Task.Run(async () =>
        {
            var myTtft = new List<double>();
            var myGaps = new List<double>();
            int count = 0;
            while (clock.Elapsed < until && count++ < maxRequests)
            {
                try
                {
                    int t = await OneRequest(http, c * 1_000_003 + count, myTtft, myGaps);
                    Interlocked.Add(ref tokens, t);
                    Interlocked.Increment(ref requests);
                }
                catch (Exception e)
                {
                    Interlocked.Increment(ref errors);
                    Console.Error.WriteLine($"error: {e.Message}");
                }
            }
            lock (ttft) { ttft.AddRange(myTtft); gaps.AddRange(myGaps); }
        })));
        double elapsed = clock.Elapsed.TotalSeconds;
        double rate = tokens / elapsed;
        single ??= rate;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {n} | {requests} | {errors} | {tokens} | {rate:F0} | {rate / single.Value:F2} | {P(ttft, 50):F1} | {P(ttft, 99):F1} | {P(gaps, 50):F2} | {P(gaps, 99):F2} | {Rss(server.Id) / 1048576.0:F1} |"));
    }
}
finally
{
    if (!server.HasExited) server.Kill(true);
    server.WaitForExit(10_000);
    try { Directory.Delete(dir, true); } catch (IOException) { }
}
return 0;

async Task<int> OneRequest(HttpClient http, int seed, List<double> ttft, List<double> gaps)
{
    var body = new JsonObject
    {
        ["model"] = "tiny", ["max_tokens"] = maxTokens, ["seed"] = seed, ["stream"] = true,
        ["stream_options"] = new JsonObject { ["include_usage"] = true },
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"Tell me a story number {seed}." }),
    };
    var sw = Stopwatch.StartNew();
    using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
    {
        Content = new StringContent(body.ToJsonString(), Encoding.UTF8, new MediaTypeHeaderValue("application/json")),
    };
    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
    if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"HTTP {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
    double? last = null;
    double first = 0;
    int completion = -1;
    bool done = false;
    string? line;
    while ((line = await reader.ReadLineAsync()) is not null)
    {
        if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
        var data = line[6..];
        if (data == "[DONE]") { done = true; break; }
        using var doc = JsonDocument.Parse(data);
        var root = doc.RootElement;
        if (root.TryGetProperty("error", out var err)) throw new InvalidOperationException(err.GetProperty("message").GetString());
        if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object) completion = usage.GetProperty("completion_tokens").GetInt32();
        var choices = root.GetProperty("choices");
        if (choices.GetArrayLength() == 0) continue;
        if (!choices[0].GetProperty("delta").TryGetProperty("content", out var content) || content.GetString() is not { Length: > 0 }) continue;
        double now = sw.Elapsed.TotalMilliseconds;
        if (last is null) { ttft.Add(now); first = now; }
        last = now;
    }
    if (!done || completion < 0) throw new InvalidOperationException("the stream ended without usage or [DONE]");
    // Time per output token after the first (vLLM's TPOT): the stream's span over the tokens that followed.
    if (completion > 1 && last is double end) gaps.Add((end - first) / (completion - 1));
    return completion;
}

static double P(List<double> xs, double p)
{
    if (xs.Count == 0) return double.NaN;
    var s = xs.OrderBy(x => x).ToArray();
    return s[Math.Min(s.Length - 1, (int)Math.Ceiling(p / 100 * s.Length) - 1)];
}

static long Rss(int pid)
{
    foreach (var l in File.ReadLines($"/proc/{pid}/status"))
        if (l.StartsWith("VmRSS:", StringComparison.Ordinal)) return long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    return 0;
}

string? Arg(string name)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
