using System.CommandLine;
using Parrot.Cli.Serve;
using Parrot.Parrot;

namespace Parrot.Cli;

/// <summary>
/// `parrot serve --model DIR [--host 127.0.0.1] [--port 8080] [--device cpu|cuda|cuda:N] [--max-batch N] [--max-queue N]`:
/// an OpenAI-compatible HTTP server (chat completions with images and streaming, /v1/models, /health,
/// /metrics) with continuous batching. Binds to loopback by default; runs until Ctrl+C.
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Parrot or Qwen2 model directory (config.json, safetensors, tokenizer.json)", Required = true };
        var host = new Option<string>("--host") { Description = "Address to listen on (an IP address or localhost)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port)", DefaultValueFactory = _ => 8080 };
        var device = DeviceOption.Create();
        var dtype = DTypeOption.Create();
        var maxBatch = new Option<int>("--max-batch") { Description = "Most requests decoded together (continuous batching)", DefaultValueFactory = _ => 8 };
        var maxQueue = new Option<int>("--max-queue") { Description = "Most requests waiting for a place in the batch; more get 429", DefaultValueFactory = _ => 64 };
        var cmd = new Command("serve", "Serve a model over HTTP with the OpenAI chat-completions protocol (images, streaming, continuous batching)");
        foreach (var o in new Option[] { model, host, port, device, dtype, maxBatch, maxQueue }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("serve", () =>
        {
            string dir = p.GetValue(model)!;
            var dev = DeviceOption.Resolve(p.GetValue(device), "serve");
            if (!Directory.Exists(dir)) throw new CliException($"--model: {dir} is not a directory");
            var options = new ServeOptions
            {
                ModelDirectory = dir, Host = p.GetValue(host)!, Port = p.GetValue(port),
                MaxBatch = p.GetValue(maxBatch), MaxQueue = p.GetValue(maxQueue),
            };
            options.Validate();
            return Run(options, dev, DTypeOption.Resolve(p.GetValue(dtype))).GetAwaiter().GetResult();
        }));
        return cmd;
    }


    private static async Task<int> Run(ServeOptions options, global::Parrot.Tensors.Device device, global::Parrot.Tensors.DType dtype)
    {
        await using var server = await ParrotServer.StartAsync(options).ConfigureAwait(false);
        Console.Out.WriteLine($"parrot serve: listening on {server.Address} (loading {options.ModelDirectory}…)");
        Console.Out.Flush();
        server.LoadModel(new ParrotModelOptions { Device = device, DType = dtype });
        var m = server.Model!;
        Console.Out.WriteLine($"parrot serve: model '{server.ModelId}' loaded ({DTypeOption.Name(m.DType)}, {(m.IsMultimodal ? m.SupportsImages ? "Parrot, images" : "Parrot, text only" : "Qwen2, text only")}, context {m.ContextLength}); ready");
        Console.Out.Flush();
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        try { await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false); }
        catch (OperationCanceledException) { }
        Console.Out.WriteLine("parrot serve: stopped");
        return 0;
    }
}
