using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Parrot.Parrot;

namespace Parrot.Cli.Serve;

/// <summary>
/// The HTTP server of <c>parrot serve</c>: Kestrel on the given address, listening before the model is
/// loaded (<c>/health</c> says "loading" with 503 until <see cref="LoadModel"/> is done).
/// </summary>
internal sealed class ParrotServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private ParrotModel? _model;
    private Scheduler? _scheduler;

    private ParrotServer(WebApplication app, ServeOptions options)
    {
        _app = app;
        Options = options;
        Metrics = new ServeMetrics { QueueCapacity = options.MaxQueue, MaxBatch = options.MaxBatch };
        var full = Path.GetFullPath(options.ModelDirectory).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        ModelId = Path.GetFileName(full) is { Length: > 0 } name ? name : "parrot";
    }

    public ServeOptions Options { get; }
    public ServeMetrics Metrics { get; }
    public string ModelId { get; }
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    public Uri Address { get; private set; } = null!;
    public ParrotModel? Model => _model;
    public Scheduler? Scheduler => _scheduler;

    /// <summary>Binds and starts listening (the model is not loaded yet).</summary>
    public static async Task<ParrotServer> StartAsync(ServeOptions options)
    {
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes + 1;
            k.AddServerHeader = false;
            if (options.Host == "localhost") k.ListenLocalhost(options.Port);
            else if (IPAddress.TryParse(options.Host, out var ip)) k.Listen(ip, options.Port);
            else throw new CliException($"--host: '{options.Host}' is not an IP address or 'localhost'");
        });
        var app = builder.Build();
        var server = new ParrotServer(app, options);
        var endpoints = new Endpoints(server);
        app.Map("/v1/chat/completions", endpoints.ChatCompletions);
        app.Map("/v1/models", ctx => endpoints.Get(ctx, () => (200, OpenAiJson.Models(server.ModelId, server.Created))));
        app.Map("/health", endpoints.Health);
        app.Map("/metrics", endpoints.Metrics);
        app.MapGet("/", WebUi.WebUiPage.Serve);
        app.MapFallback(ctx => Endpoints.Error(ctx, new ApiException(404, $"no route {ctx.Request.Method} {ctx.Request.Path}", code: "not_found")));
        try { await app.StartAsync().ConfigureAwait(false); }
        // Kestrel wraps "address in use" in an IOException but lets other bind failures through as the bare
        // SocketException (an address this machine does not have, a privileged port): both are the user's input.
        catch (Exception e) when (e is IOException or SocketException)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw new CliException($"cannot listen on {options.Host}:{options.Port}: {e.Message}{BindHint(e)}");
        }
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Address = new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
        return server;
    }

    private static string BindHint(Exception e) => (e as SocketException ?? e.InnerException as SocketException)?.SocketErrorCode switch
    {
        SocketError.AddressNotAvailable => " (--host must be an address of this machine: 127.0.0.1, 0.0.0.0 for all, or one of its own)",
        SocketError.AccessDenied => " (ports below 1024 need administrator rights; choose a higher --port)",
        _ => "",
    };

    /// <summary>Loads the model and starts the scheduler; from then on requests are served.</summary>
    public void LoadModel(ParrotModelOptions? modelOptions = null)
    {
        var model = ParrotModel.Load(Options.ModelDirectory, modelOptions);
        _scheduler = new Scheduler(model, Options.MaxBatch, Options.MaxQueue, Metrics);
        _model = model;
        Metrics.Ready = true;
    }

    public async ValueTask DisposeAsync()
    {
        Metrics.Ready = false;
        await _app.StopAsync().ConfigureAwait(false);
        _scheduler?.Dispose();
        _model?.Dispose();
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
