using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace Parrot.Cli.Serve;

/// <summary>Request, queue and throughput counters, written in the Prometheus text format at <c>/metrics</c>.</summary>
internal sealed class ServeMetrics
{
    private readonly ConcurrentDictionary<int, long> _responses = new();
    private readonly Queue<(long Ticks, int Tokens)> _recent = new();
    private readonly object _lock = new();
    private long _promptTokens, _generatedTokens, _cancelled, _deadline, _steps, _ttftCount;
    private double _ttftSum;

    public int QueueLength;
    public int BatchSize;
    public int QueueCapacity;
    public int MaxBatch;
    public volatile bool Ready;

    public long Cancelled => Interlocked.Read(ref _cancelled);
    public long GeneratedTokens => Interlocked.Read(ref _generatedTokens);

    public void Response(int status) => _responses.AddOrUpdate(status, 1, (_, n) => n + 1);
    public void PromptTokens(int n) => Interlocked.Add(ref _promptTokens, n);
    public void CancelledOne() => Interlocked.Increment(ref _cancelled);
    public void DeadlineOne() => Interlocked.Increment(ref _deadline);

    public void FirstToken(TimeSpan t)
    {
        lock (_lock) { _ttftSum += t.TotalSeconds; _ttftCount++; }
    }

    /// <summary>One decode step that generated <paramref name="tokens"/> tokens.</summary>
    public void Step(int tokens)
    {
        Interlocked.Add(ref _generatedTokens, tokens);
        Interlocked.Increment(ref _steps);
        lock (_lock)
        {
            _recent.Enqueue((Environment.TickCount64, tokens));
            Trim();
        }
    }

    private void Trim()
    {
        long cutoff = Environment.TickCount64 - 10_000;
        while (_recent.Count > 0 && _recent.Peek().Ticks < cutoff) _recent.Dequeue();
    }

    /// <summary>Generated tokens per second over the last 10 seconds.</summary>
    public double TokensPerSecond()
    {
        lock (_lock)
        {
            Trim();
            return _recent.Sum(r => r.Tokens) / 10.0;
        }
    }

    public string Render()
    {
        var sb = new StringBuilder();
        void Metric(string name, string type, string help, params (string Labels, double Value)[] values)
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            foreach (var (labels, value) in values)
                sb.Append(name).Append(labels).Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
        Metric("parrot_model_loaded", "gauge", "1 once the model is loaded and requests are served.", ("", Ready ? 1 : 0));
        var responses = _responses.OrderBy(kv => kv.Key).Select(kv => ($"{{code=\"{kv.Key}\"}}", (double)kv.Value)).ToArray();
        Metric("parrot_requests_total", "counter", "Chat-completion requests answered, by HTTP status.", responses.Length > 0 ? responses : [("{code=\"200\"}", 0)]);
        Metric("parrot_requests_cancelled_total", "counter", "Generations stopped because the client disconnected.", ("", Cancelled));
        Metric("parrot_requests_deadline_total", "counter", "Requests stopped by the per-request deadline.", ("", Interlocked.Read(ref _deadline)));
        Metric("parrot_queue_length", "gauge", "Requests waiting for a place in the batch.", ("", Volatile.Read(ref QueueLength)));
        Metric("parrot_queue_capacity", "gauge", "Most requests that may wait (--max-queue).", ("", QueueCapacity));
        Metric("parrot_batch_size", "gauge", "Sequences in the running decode batch.", ("", Volatile.Read(ref BatchSize)));
        Metric("parrot_batch_capacity", "gauge", "Most sequences decoded together (--max-batch).", ("", MaxBatch));
        Metric("parrot_prompt_tokens_total", "counter", "Prompt tokens prefilled (image tokens included).", ("", Interlocked.Read(ref _promptTokens)));
        Metric("parrot_generated_tokens_total", "counter", "Tokens generated.", ("", GeneratedTokens));
        Metric("parrot_decode_steps_total", "counter", "Decode steps of the batch.", ("", Interlocked.Read(ref _steps)));
        Metric("parrot_tokens_per_second", "gauge", "Generated tokens per second over the last 10 seconds.", ("", TokensPerSecond()));
        double sum; long count;
        lock (_lock) { sum = _ttftSum; count = _ttftCount; }
        Metric("parrot_time_to_first_token_seconds", "summary", "Time from arrival to the first generated token.", ("_sum", sum), ("_count", count));
        return sb.ToString();
    }
}
