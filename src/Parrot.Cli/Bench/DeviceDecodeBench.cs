using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;

namespace Parrot.Cli;

/// <summary>
/// `parrot bench decoder --shape qwen2-7b --dtype bf16 --device cuda`: batch-1 greedy decode of a Qwen2 model with
/// synthetic weights on any device, through <see cref="Qwen2ForCausalLM"/> and its <see cref="KvCache"/> (the model's
/// own path: masks, RoPE tables and the cache on the device, the argmax on the device, one number read back per token).
/// Every weight is read once per token, so the floor is the weight bytes (the embedding table excepted: one row is read)
/// over the device's copy bandwidth, measured in the same run (bytes read + written per second, as PyTorch's peer in
/// bench/torch_model_peer.py measures it). Weights are random N(0, 0.02²) bf16 values tiled from one 16 Mi block (drawing
/// 7.6 billion numbers on the host would cost more than the whole measurement); norm weights are 1.
/// </summary>
internal static class DeviceDecodeBench
{
    /// <summary>What a run measured; on a CUDA device also the decode switches it ran with (<see cref="CudaBackend.DecodeSwitches"/>).</summary>
    internal sealed record Result(string Device, string Shape, string DType, long Parameters, long WeightBytes, int Prompt, int Tokens,
        double PrefillMs, double MsPerToken, double HostIssueMs, double CopyGigabytesPerSecond, double BoundMs, double RooflineFraction, int[] Generated,
        bool Static = false, bool CudaGraph = false, int GraphNodes = 0, bool Generator = false, bool HostPick = false, int Continuous = 0,
        string? CudaSwitches = null, double Temperature = 0, double RepetitionPenalty = 1);

    /// <summary>Qwen2-7B's shape (hidden 3584, 28 layers, 28/4 heads, MLP 18944, vocab 152064, untied).</summary>
    internal static readonly Qwen2Config Qwen7b = new()
    {
        VocabSize = 152064, HiddenSize = 3584, IntermediateSize = 18944, NumHiddenLayers = 28, NumAttentionHeads = 28, NumKeyValueHeads = 4,
        RopeTheta = 1e6, TieWordEmbeddings = false,
    };

    /// <summary>A small shape of the same build for runs on the CPU (the script's logic).</summary>
    internal static readonly Qwen2Config Tiny = new()
    {
        VocabSize = 512, HiddenSize = 128, IntermediateSize = 352, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, RopeTheta = 1e6,
    };

    internal static Qwen2Config Shape(string name) => name switch
    {
        "qwen2-7b" => Qwen7b,
        "qwen2-0.5b" => TrainBench.Qwen05b,
        "tiny" => Tiny,
        _ => throw new CliException($"--shape must be qwen2-7b, qwen2-0.5b or tiny, got '{name}'"),
    };

    /// <param name="useStatic">Decode through <see cref="Qwen2StaticDecoder"/> (the step a CUDA graph can capture, run
    /// eagerly here: ids, positions and RoPE rows on the device, the argmax written back there), reading each token
    /// back as the eager loop does, so that ms/token and host_issue_ms compare with it.</param>
    /// <param name="cudaGraph">With <paramref name="useStatic"/>: on a CUDA device, capture the step once (after one
    /// eager step) and replay it per token (<see cref="GraphedStep"/>); elsewhere the same as without.</param>
    /// <param name="generator">Decode through the user-facing path instead: the generator's session (what `generate`,
    /// `chat` and the API run: greedy, so the argmax is taken on the device and the ids alone read back), eager, or
    /// with <paramref name="useStatic"/>/<paramref name="cudaGraph"/> the static step (replayed from a CUDA graph on a
    /// GPU, as that session always does). host_issue_ms is then the whole step (the session returns after its read).</param>
    /// <param name="hostPick">With <paramref name="generator"/>: the path greedy generation took before the pick moved to
    /// the device (each step's logits read back and the argmax taken on the host; what sampling still takes), to compare.</param>
    /// <param name="temperature">With <paramref name="generator"/>: sample at this temperature (seeded) instead of greedy,
    /// with <paramref name="repetitionPenalty"/>: the sampler's device paths (chunk sums, the chosen chunk) or, with
    /// <paramref name="hostPick"/> or <c>PARROT_TOPK_CANDIDATES=0</c>, the whole row read each step, to compare.</param>
    /// <param name="temperatureChunk">Ids a chunk of the sampler's chunk sums (<see cref="global::Parrot.Parrot.Inference.TopKCandidates.ChunkSize"/>):
    /// tests on the tiny shape (512 ids, one default chunk, where the sums cost more than the row) set fewer.</param>
    /// <param name="continuous">Instead: that many greedy sequences through the continuous batch's step (serve's), eager or
    /// with <paramref name="useStatic"/>/<paramref name="cudaGraph"/> the static step with slots (see <see cref="ContinuousDecodeBench"/>);
    /// ms/token is then ms per step of all of them.</param>
    internal static Result Run(string shapeName, DType dtype, Device device, int prompt, int tokens, TextWriter log, TextWriter? profile = null, bool useStatic = false,
        bool cudaGraph = false, bool generator = false, bool hostPick = false, int continuous = 0, double temperature = 0, double repetitionPenalty = 1,
        int temperatureChunk = global::Parrot.Parrot.Inference.TopKCandidates.ChunkSize)
    {
        if (hostPick && !generator) throw new CliException("--host-pick needs --generator");
        if ((temperature != 0 || repetitionPenalty != 1) && !generator) throw new CliException("--temperature and --repetition-penalty need --generator");
        if (!(temperature >= 0) || !double.IsFinite(temperature)) throw new CliException($"--temperature must be a finite number ≥ 0, got {temperature}");
        if (!(repetitionPenalty > 0) || !double.IsFinite(repetitionPenalty)) throw new CliException($"--repetition-penalty must be a finite number > 0, got {repetitionPenalty}");
        if (continuous > 0 && generator) throw new CliException("--continuous and --generator are two paths: pick one");
        useStatic |= cudaGraph;
        if (generator || continuous > 0) cudaGraph = useStatic && device.Kind == DeviceKind.Cuda && Backends.For(device) is CudaBackend;
        var cfg = Shape(shapeName);
        var sw = Stopwatch.StartNew();
        Qwen2ForCausalLM created;
        using (global::Parrot.Nn.Init.Deferred()) created = new Qwen2ForCausalLM(cfg, 0, dtype, initialize: false); // no host random numbers
        using var model = created;
        model.To(device);
        // Random weights without drawing 15 GB of numbers on the host: one block of N(0, 0.02²) bf16 values (16 Mi,
        // drawn once and copied in), tiled over every matrix from an offset of its own; norm weights 1.
        const int blockLength = 1 << 24;
        using (var block = Tensor.Normal([blockLength], 7, 0, 0.02, dtype, device))
        {
            int i = 0;
            foreach (var (name, p) in model.NamedParameters())
            {
                i++;
                if (name.EndsWith("norm.weight", StringComparison.Ordinal)) { p.Value.Fill(1.0); continue; }
                using var flat = p.Value.Reshape(-1);
                for (long off = 0; off < flat.Count; off += blockLength)
                {
                    int len = (int)Math.Min(blockLength, flat.Count - off);
                    int start = (int)((i * 1_000_003L) % (blockLength - len + 1));
                    using var dst = flat.Narrow(0, checked((int)off), len);
                    using var src = block.Narrow(0, start, len);
                    dst.CopyFrom(src);
                }
            }
        }
        long parameters = model.ParameterCount();
        long weightBytes = (parameters - (long)cfg.VocabSize * cfg.HiddenSize + cfg.HiddenSize) * dtype.SizeOf();
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{shapeName}: {parameters:N0} parameters, {dtype.Name()} on {device} (ready in {sw.Elapsed.TotalSeconds:F1} s); a token reads {weightBytes / 1e9:F3} GB"));

        double copyGbs = CopyBandwidth(device);
        double boundMs = weightBytes / (copyGbs * 1e6);
        using var ng = Graph.NoGrad();
        var rng = new Random(1);
        var ids = Enumerable.Range(0, prompt).Select(_ => (long)rng.Next(cfg.VocabSize)).ToArray();
        var times = new List<double>();
        var queued = new List<double>();
        var generated = new List<int>();
        int graphNodes = 0;
        double prefillMs = continuous > 0
            ? ContinuousDecodeBench.Decode(model, ids, tokens, continuous, useStatic, times, queued, generated, out graphNodes)
            : generator
            ? DecodeGenerator(model, ids, tokens, times, queued, generated, useStatic, hostPick, temperature, repetitionPenalty, temperatureChunk)
            : useStatic
            ? DecodeStatic(model, ids, tokens, device, times, queued, generated, profile, shapeName, dtype, cudaGraph, out graphNodes)
            : DecodeEager(model, ids, tokens, device, times, queued, generated, profile, shapeName, dtype);
        var steady = times.Skip(Math.Min(2, times.Count - 1)).Order().ToArray(); // the first steps warm kernels and plans
        double ms = steady[steady.Length / 2];
        var issue = queued.Skip(Math.Min(2, queued.Count - 1)).Order().ToArray();
        return new Result(device.ToString(), shapeName, dtype.Name(), parameters, weightBytes, prompt, tokens, prefillMs, ms, issue[issue.Length / 2],
            copyGbs, boundMs, boundMs / ms, [.. generated], useStatic, graphNodes > 0 || cudaGraph && generator, graphNodes, generator, hostPick, continuous,
            Backends.For(device) is CudaBackend cuda ? cuda.DecodeSwitches : null, temperature, repetitionPenalty);
    }

    /// <summary>
    /// Greedy generation through <see cref="global::Parrot.Parrot.Inference.Generator"/> (end-of-sequence ignored), the
    /// session eager or static as <paramref name="useStatic"/> says; each step's time runs from one token's event to the
    /// next (the step, the ids read back; with <paramref name="hostPick"/> the logits read and the host's argmax instead;
    /// with a temperature, the sampler's reads and its draw, seed 1). Returns the time to the first token.
    /// </summary>
    private static double DecodeGenerator(Qwen2ForCausalLM model, long[] ids, int tokens, List<double> times, List<double> queued, List<int> generated, bool useStatic,
        bool hostPick, double temperature, double repetitionPenalty, int temperatureChunk)
    {
        var mode = useStatic ? global::Parrot.Parrot.Inference.DecodeStepMode.Static : global::Parrot.Parrot.Inference.DecodeStepMode.Eager;
        var lm = global::Parrot.Parrot.Inference.Generator.Wrap(model, mode);
        var gen = new global::Parrot.Parrot.Inference.Generator(hostPick ? global::Parrot.Parrot.Inference.Generator.LogitsOnly(lm) : lm, endOfSequenceIds: [])
        {
            TemperatureChunk = temperatureChunk,
        };
        var options = new global::Parrot.Parrot.Inference.GenerationOptions
        {
            MaxNewTokens = tokens + 1, IgnoreEos = true, Temperature = temperature, RepetitionPenalty = repetitionPenalty, Seed = 1,
        };
        var sw = Stopwatch.StartNew();
        double? prefillMs = null;
        foreach (var e in gen.Stream([new global::Parrot.Parrot.Inference.GenerationPrompt(ids.Select(i => (int)i).ToArray())], options))
        {
            if (e.Token is not int t) continue;
            double ms = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            if (prefillMs is null) { prefillMs = ms; continue; } // the prefill's token, which the other paths leave out too
            times.Add(ms);
            queued.Add(ms);
            generated.Add(t);
        }
        return prefillMs ?? 0;
    }

    /// <summary>The model's own eager decode: a <see cref="KvCache"/>, the ids copied in and the argmax read back each token. Returns the prefill's ms.</summary>
    private static double DecodeEager(Qwen2ForCausalLM model, long[] ids, int tokens, Device device, List<double> times, List<double> queued, List<int> generated,
        TextWriter? profile, string shapeName, DType dtype)
    {
        int prompt = ids.Length;
        using var cache = new KvCache(model.Config.NumHiddenLayers, prompt + tokens + 4);
        long next;
        var sw = Stopwatch.StartNew();
        using (var scope = TensorScope.Begin())
        {
            var logits = model.Forward(Tensor.FromArray(ids, device, 1, prompt), cache: cache).Value;
            next = (long)logits.Narrow(1, prompt - 1, 1).ArgMax(-1).Item();
        }
        double prefillMs = sw.Elapsed.TotalMilliseconds;
        for (int s = 0; s < tokens; s++)
        {
            sw.Restart();
            using var scope = TensorScope.Begin();
            var logits = model.Forward(Tensor.FromArray(new[] { next }, device, 1, 1), cache: cache).Value;
            var best = logits.ArgMax(-1);
            queued.Add(sw.Elapsed.TotalMilliseconds); // the host's time to issue the step (a GPU runs it meanwhile)
            next = (long)best.Item(); // greedy; the one host read of the step
            times.Add(sw.Elapsed.TotalMilliseconds);
            generated.Add((int)next);
        }
        if (profile is not null && device.Kind == DeviceKind.Cuda && Backends.For(device) is CudaBackend cuda)
        {
            cuda.StartProfile();
            using (var scope = TensorScope.Begin())
                next = (long)model.Forward(Tensor.FromArray(new[] { next }, device, 1, 1), cache: cache).Value.ArgMax(-1).Item();
            profile.Write($"one decode step ({shapeName}, {dtype.Name()}, position {prompt + tokens}):\n" + cuda.StopProfile().Format(40));
        }
        return prefillMs;
    }

    /// <summary>
    /// The static step (<see cref="Qwen2StaticDecoder"/>: <see cref="Qwen2StaticDecoder.BeginStep"/> on the host, then
    /// <see cref="Qwen2StaticDecoder.Issue"/>), issued eagerly or, with <paramref name="cudaGraph"/> on a GPU, replayed from
    /// a graph captured at the second step; the token is read back each step as in <see cref="DecodeEager"/> (the read is
    /// not part of the step). Returns the prefill's ms; <paramref name="graphNodes"/>: the captured graph's operations.
    /// </summary>
    private static double DecodeStatic(Qwen2ForCausalLM model, long[] ids, int tokens, Device device, List<double> times, List<double> queued, List<int> generated,
        TextWriter? profile, string shapeName, DType dtype, bool cudaGraph, out int graphNodes)
    {
        int prompt = ids.Length;
        using var dec = new Qwen2StaticDecoder(model, 1, prompt + tokens + 4);
        using var step = new GraphedStep(device, dec.Issue, useGraph: cudaGraph);
        var sw = Stopwatch.StartNew();
        dec.Prefill([ids.Select(i => (int)i).ToArray()]);
        // A pick of no number (−1: logits all NaN or −∞) is refused before the next step embeds it.
        Generator.CheckPick(dec.ReadTokens()[0], null, 1, 0, 1);
        double prefillMs = sw.Elapsed.TotalMilliseconds;
        for (int s = 0; s < tokens; s++)
        {
            sw.Restart();
            dec.BeginStep();
            step.Run();
            queued.Add(sw.Elapsed.TotalMilliseconds); // the host's time to issue the step
            int next = dec.ReadTokens()[0];
            times.Add(sw.Elapsed.TotalMilliseconds);
            Generator.CheckPick(next, null, s + 2, 0, 1);
            generated.Add(next);
        }
        graphNodes = step.GraphNodes;
        if (profile is not null && device.Kind == DeviceKind.Cuda && Backends.For(device) is CudaBackend cuda)
        {
            cuda.StartProfile();
            dec.BeginStep();
            step.Run();
            _ = dec.ReadTokens();
            profile.Write($"one static decode step{(step.Captured ? $" (a CUDA graph of {step.GraphNodes} nodes)" : "")} ({shapeName}, {dtype.Name()}, position {prompt + tokens}):\n" + cuda.StopProfile().Format(40));
        }
        return prefillMs;
    }

    /// <summary>Copy bandwidth of <paramref name="device"/> in GB/s (read + write): 1 GiB device-to-device on a GPU (CUDA events), 256 MiB on the CPU.</summary>
    internal static double CopyBandwidth(Device device)
    {
        if (device.Kind == DeviceKind.Cuda && Backends.For(device) is CudaBackend cuda)
        {
            const int n = 256 << 20;
            using var src = Tensor.Full([n], 1.25, DType.F32, device);
            using var dst = Tensor.Empty([n], DType.F32, device);
            double ms = cuda.MedianMilliseconds(() => cuda.Copy(src, dst));
            return 2.0 * n * 4 / (ms * 1e-3) / 1e9;
        }
        {
            const int n = 64 << 20;
            using var src = Tensor.Full([n], 1.25, DType.F32, device);
            using var dst = Tensor.Empty([n], DType.F32, device);
            var best = double.MaxValue;
            for (int r = 0; r < 4; r++)
            {
                var sw = Stopwatch.StartNew();
                dst.CopyFrom(src);
                best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
            }
            return 2.0 * n * 4 / (best * 1e-3) / 1e9;
        }
    }

    internal static string Json(Result r) => JsonSerializer.Serialize(r, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower });

    internal static string Describe(Result r)
    {
        string path = (r.CudaGraph ? r.GraphNodes > 0 ? $" (static step, CUDA graph of {r.GraphNodes} nodes)" : " (static step, CUDA graph)" : r.Static ? " (static step)" : "")
            + (r.Generator ? " through the generator's session" : "")
            + (r.Continuous > 0 ? $" through the continuous batch's step{(r.Static ? " with slots" : "")}, {r.Continuous} greedy sequences (ms per step of all)" : "");
        // Temperature 0 with a penalty is greedy, but not the device's plain argmax: the sampler picks from the row's top
        // logits and its seen ids' logits (TopKCandidates), so it is described as the sampler's.
        if (r.Temperature > 0 || r.RepetitionPenalty != 1)
            path += string.Create(CultureInfo.InvariantCulture, $", {(r.Temperature > 0 ? $"sampled at temperature {r.Temperature:G4}" : "greedy")}{(r.RepetitionPenalty != 1 ? $" with repetition penalty {r.RepetitionPenalty:G4}" : "")}");
        if (r.HostPick) path += ", the logits read back and the pick on the host";
        string step = r.Generator || r.Continuous > 0
            ? r.HostPick ? "a step includes the logits read and the host's pick"
            : r.Temperature > 0 ? "a step includes the sampler's reads and its draw"
            : r.RepetitionPenalty != 1 ? "a step includes the sampler's reads and its pick" : "a step includes the argmax on the device and the ids read"
            : string.Create(CultureInfo.InvariantCulture, $"the host issues a step in {r.HostIssueMs:F2} ms");
        return string.Create(CultureInfo.InvariantCulture,
            $"{r.Shape} {r.DType} on {r.Device}{path}: prefill {r.Prompt} tokens {r.PrefillMs:F1} ms; decode {r.MsPerToken:F2} ms/token (median of {r.Tokens}; {step}); " +
            $"copy bandwidth {r.CopyGigabytesPerSecond:F0} GB/s → bound {r.BoundMs:F2} ms/token = {r.RooflineFraction:P1} of the roofline");
    }
}
