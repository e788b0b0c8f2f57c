using System.Text;
using Microsoft.AspNetCore.Http;

namespace Parrot.Cli.Serve;

/// <summary>The request handlers. Every failure a client can cause is answered with a 4xx OpenAI error object.</summary>
internal sealed class Endpoints(ParrotServer server)
{
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public async Task ChatCompletions(HttpContext ctx)
    {
        int status = 200;
        try
        {
            status = await Chat(ctx).ConfigureAwait(false);
        }
        catch (ApiException e)
        {
            status = e.Status;
            if (e.Status == 429) ctx.Response.Headers.RetryAfter = server.Options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await Error(ctx, e).ConfigureAwait(false);
        }
        catch (Exception) when (ctx.RequestAborted.IsCancellationRequested)
        {
            status = 499; // the client went away
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"parrot serve: internal error: {e}");
            status = 500;
            await Error(ctx, new ApiException(500, "internal server error", "server_error")).ConfigureAwait(false);
        }
        server.Metrics.Response(status);
    }

    private async Task<int> Chat(HttpContext ctx)
    {
        if (!HttpMethods.IsPost(ctx.Request.Method))
            throw new ApiException(405, $"{ctx.Request.Method} is not allowed here; use POST", code: "method_not_allowed");
        var body = await ReadBody(ctx).ConfigureAwait(false);
        var request = ChatRequestParser.Parse(body, server.Options);
        var model = server.Model;
        var scheduler = server.Scheduler;
        if (model is null || scheduler is null || !server.Metrics.Ready)
            throw new ApiException(503, "the model is still loading; try again shortly", "server_error", code: "model_loading");
        if (request.Image is not null && !model.SupportsImages)
            throw ApiException.BadRequest(model.IsMultimodal ? "this Parrot model has no vision tower, so it cannot take images" : "this is a text-only model; it cannot take images", "messages", "images_not_supported");

        using var job = new Job(request, server.Options.Deadline, ctx.RequestAborted);
        if (!scheduler.TryEnqueue(job))
            throw new ApiException(429, "the server is busy: the request queue is full; retry later", "rate_limit_error", code: "queue_full");
        int promptTokens;
        try { promptTokens = await job.Started.Task.ConfigureAwait(false); }
        catch (OperationCanceledException) { return 499; }

        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string? finish = null;
        if (!request.Stream)
        {
            var text = new StringBuilder();
            await foreach (var e in job.Events.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                text.Append(e.Text);
                finish ??= e.FinishReason;
            }
            ThrowIfUnfinished(job, finish);
            var json = OpenAiJson.Completion(id, created, server.ModelId, text.ToString(), finish!, promptTokens, job.CompletionTokens);
            ctx.Response.ContentType = "application/json";
            await ctx.Response.Body.WriteAsync(json, ctx.RequestAborted).ConfigureAwait(false);
            return 200;
        }

        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Response.Headers["X-Accel-Buffering"] = "no";
        var abort = ctx.RequestAborted;
        await Send(ctx, OpenAiJson.Chunk(id, created, server.ModelId, "assistant", "", null), abort).ConfigureAwait(false);
        var reader = job.Events.Reader;
        var pending = new StringBuilder();
        ApiException? failed = null;
        try
        {
            while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
            {
                // Tokens that arrived while the last chunk was being sent go out together, in one chunk and one flush.
                while (reader.TryRead(out var e))
                {
                    pending.Append(e.Text);
                    if (e.FinishReason is not null) finish = e.FinishReason;
                }
                if (pending.Length > 0) await Send(ctx, OpenAiJson.Chunk(id, created, server.ModelId, null, pending.ToString(), null), abort).ConfigureAwait(false);
                pending.Clear();
            }
        }
        catch (ApiException e) when (finish is null)
        {
            // The scheduler failed the job (its error, after the text it had sent): it goes out as the error event below,
            // not as an unfinished stream with no word of why.
            failed = e;
        }
        if (finish is null)
        {
            if (job.End == JobEnd.Cancelled || abort.IsCancellationRequested) return 499;
            // Headers are gone: the error travels as an event, as OpenAI's servers do mid-stream.
            var err = failed ?? (job.End == JobEnd.Deadline
                ? new ApiException(504, "the request did not finish before the server's deadline", "timeout_error", code: "deadline_exceeded")
                : new ApiException(500, "generation failed", "server_error"));
            await Send(ctx, err.ToJson(), abort).ConfigureAwait(false);
            await ctx.Response.Body.WriteAsync(Done, abort).ConfigureAwait(false);
            return err.Status;
        }
        await Send(ctx, OpenAiJson.Chunk(id, created, server.ModelId, null, null, finish), abort).ConfigureAwait(false);
        if (request.IncludeUsage) await Send(ctx, OpenAiJson.UsageChunk(id, created, server.ModelId, promptTokens, job.CompletionTokens), abort).ConfigureAwait(false);
        await ctx.Response.Body.WriteAsync(Done, abort).ConfigureAwait(false);
        await ctx.Response.Body.FlushAsync(abort).ConfigureAwait(false);
        return 200;
    }

    private static void ThrowIfUnfinished(Job job, string? finish)
    {
        if (finish is not null) return;
        throw job.End switch
        {
            JobEnd.Deadline => new ApiException(504, "the request did not finish before the server's deadline", "timeout_error", code: "deadline_exceeded"),
            JobEnd.Cancelled => new OperationCanceledException(),
            _ => new ApiException(500, "generation failed", "server_error"),
        };
    }

    private static async Task Send(HttpContext ctx, byte[] json, CancellationToken abort)
    {
        var body = ctx.Response.Body;
        await body.WriteAsync("data: "u8.ToArray(), abort).ConfigureAwait(false);
        await body.WriteAsync(json, abort).ConfigureAwait(false);
        await body.WriteAsync("\n\n"u8.ToArray(), abort).ConfigureAwait(false);
        await body.FlushAsync(abort).ConfigureAwait(false);
    }

    /// <summary>The body, at most --max-body bytes (413 beyond).</summary>
    private async Task<ReadOnlyMemory<byte>> ReadBody(HttpContext ctx)
    {
        try { return await ReadBodyWithinLimit(ctx).ConfigureAwait(false); }
        catch (ApiException)
        {
            // The rest of the body stays unread, so Kestrel will drop the connection after the error response:
            // say so, or a client that pools connections sends its next request on a socket about to close.
            ctx.Response.Headers.Connection = "close";
            throw;
        }
    }

    private async Task<ReadOnlyMemory<byte>> ReadBodyWithinLimit(HttpContext ctx)
    {
        long limit = server.Options.MaxBodyBytes;
        if (ctx.Request.ContentLength is long declared && declared > limit) throw TooLarge(limit);
        var buffer = new MemoryStream();
        var chunk = new byte[16384];
        try
        {
            while (true)
            {
                int n = await ctx.Request.Body.ReadAsync(chunk, ctx.RequestAborted).ConfigureAwait(false);
                if (n == 0) break;
                if (buffer.Length + n > limit) throw TooLarge(limit);
                buffer.Write(chunk, 0, n);
            }
        }
        catch (BadHttpRequestException e)
        {
            throw e.StatusCode == 413 ? TooLarge(limit) : new ApiException(e.StatusCode is >= 400 and < 500 ? e.StatusCode : 400, $"bad request: {e.Message}");
        }
        return buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
    }

    private static ApiException TooLarge(long limit) =>
        new(413, $"the request body is larger than the server's limit of {limit} bytes", code: "request_too_large");

    public async Task Get(HttpContext ctx, Func<(int, byte[])> body)
    {
        if (!HttpMethods.IsGet(ctx.Request.Method))
        {
            await Error(ctx, new ApiException(405, $"{ctx.Request.Method} is not allowed here; use GET", code: "method_not_allowed")).ConfigureAwait(false);
            return;
        }
        var (status, json) = body();
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.Body.WriteAsync(json).ConfigureAwait(false);
    }

    public Task Health(HttpContext ctx) => Get(ctx, () => server.Metrics.Ready ? (200, OpenAiJson.Health("ok")) : (503, OpenAiJson.Health("loading")));

    public async Task Metrics(HttpContext ctx)
    {
        if (!HttpMethods.IsGet(ctx.Request.Method))
        {
            await Error(ctx, new ApiException(405, $"{ctx.Request.Method} is not allowed here; use GET", code: "method_not_allowed")).ConfigureAwait(false);
            return;
        }
        ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await ctx.Response.WriteAsync(server.Metrics.Render()).ConfigureAwait(false);
    }

    public static async Task Error(HttpContext ctx, ApiException e)
    {
        if (ctx.Response.HasStarted) return;
        ctx.Response.StatusCode = e.Status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.Body.WriteAsync(e.ToJson()).ConfigureAwait(false);
    }
}
