namespace Parrot.Cli.Serve;

/// <summary>How <c>parrot serve</c> runs: where it listens and the limits that protect it from bad or excessive input.</summary>
internal sealed record ServeOptions
{
    /// <summary>Model directory.</summary>
    public required string ModelDirectory { get; init; }

    /// <summary>Address to bind (an IP address or "localhost"); loopback by default.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one.</summary>
    public int Port { get; init; } = 8080;

    /// <summary>Most sequences decoded together.</summary>
    public int MaxBatch { get; init; } = 8;

    /// <summary>Most requests waiting for a place in the batch; more get 429.</summary>
    public int MaxQueue { get; init; } = 64;

    /// <summary>Largest request body, in bytes.</summary>
    public long MaxBodyBytes { get; init; } = 16L << 20;

    /// <summary>Largest decoded image, width × height.</summary>
    public long MaxImagePixels { get; init; } = 16_000_000;

    /// <summary>Most images in one request (Parrot looks at one image per conversation).</summary>
    public int MaxImages { get; init; } = 1;

    /// <summary>Most messages in one request.</summary>
    public int MaxMessages { get; init; } = 256;

    /// <summary>Time a request may take from arrival to its last token (queue included).</summary>
    public TimeSpan Deadline { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Seconds a 429 asks the client to wait (Retry-After).</summary>
    public int RetryAfterSeconds { get; init; } = 1;

    /// <summary>Benchmarks and tests: answers run to their max_tokens, past end-of-sequence tokens.</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>Throws <see cref="CliException"/> naming the first value out of range.</summary>
    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new CliException($"--port: {Port} is not a TCP port (0–65535)");
        if (MaxBatch < 1) throw new CliException($"--max-batch: must be ≥ 1, got {MaxBatch}");
        if (MaxQueue < 0) throw new CliException($"--max-queue: must be ≥ 0, got {MaxQueue}");
        if (MaxBodyBytes < 1024 || MaxImagePixels < 1 || MaxImages < 0 || MaxMessages < 1 || Deadline <= TimeSpan.Zero)
            throw new CliException("serve: a limit is out of range");
    }
}
