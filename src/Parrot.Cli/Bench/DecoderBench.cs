using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Cpu;

// In the root namespace (not Parrot.Cli.Bench), like GemmBench, so BenchCommand registers it with one line.
namespace Parrot.Cli;

/// <summary>
/// `parrot bench decoder`: inference speed of a Qwen2-0.5B-shaped decoder (hidden 896, 24 layers, 14 heads,
/// 2 KV heads, MLP 4864, vocab 151936, untied head, float32, random weights): prefill of 128 and 512 tokens
/// (batch 1; logits of every position, as Hugging Face computes them, and of the last position only, which is
/// all generation needs), and per-token decode with the KV cache after a 128-token prompt (median over the
/// decoded tokens). Decoding one token reads every weight once, so its floor is the weight bytes over the
/// memory bandwidth, measured in the same run as a 2-thread copy of a buffer far larger than the caches.
/// bench/decoder-vs-torch.sh runs PyTorch on the same shapes and prints ratios. <c>--profile</c> times the
/// parts of a layer separately (the same calls the layer makes, one after the other).
/// </summary>
internal static class DecoderBench
{
    /// <summary>What one run measured; times in milliseconds (medians).</summary>
    internal sealed record Result(
        int Layers, long Parameters, long DecodeWeightBytes, double CopyGigabytesPerSecond, double DecodeBoundMs,
        Dictionary<string, double> PrefillMs, Dictionary<string, double> PrefillLastMs, double DecodeMs, int DecodeTokens);

    public static Command Create()
    {
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 24, Description = "Decoder layers (24 for Qwen2-0.5B; fewer for quick runs)" };
        var prefill = new Option<string>("--prefill") { DefaultValueFactory = _ => "128,512", Description = "Prompt lengths to time prefill at, comma-separated" };
        var prompt = new Option<int>("--prompt") { DefaultValueFactory = _ => 128, Description = "Prompt length before the timed decode steps" };
        var decode = new Option<int>("--decode") { DefaultValueFactory = _ => 32, Description = "Decode steps timed (the median is reported)" };
        var repeats = new Option<int>("--repeats") { DefaultValueFactory = _ => 3, Description = "Timed prefill repeats per length, after one warm-up (the median is reported)" };
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => 2, Description = "Threads" };
        var profile = new Option<bool>("--profile") { Description = "Also time each part of a layer (prefill of the first length, and decode)" };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var cmd = new Command("decoder", "Prefill and KV-cache decode speed of a Qwen2-0.5B-shaped decoder, with the memory-bandwidth bound of decode");
        foreach (var o in new Option[] { layers, prefill, prompt, decode, repeats, threads, profile, json }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            int[] lengths;
            try { lengths = p.GetValue(prefill)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(); }
            catch (FormatException) { Console.Error.WriteLine("--prefill must be comma-separated integers"); return 2; }
            int nLayers = p.GetValue(layers), nPrompt = p.GetValue(prompt), nDecode = p.GetValue(decode), nRepeats = p.GetValue(repeats);
            if (nLayers < 1 || nPrompt < 1 || nDecode < 1 || nRepeats < 1 || lengths.Length == 0 || lengths.Any(l => l < 1))
            {
                Console.Error.WriteLine("--layers, --prompt, --decode, --repeats and the --prefill lengths must be positive");
                return 2;
            }
            CpuParallel.Workers = Math.Max(1, p.GetValue(threads));
            bool asJson = p.GetValue(json);
            var log = asJson ? TextWriter.Null : Console.Out;
            var r = Run(nLayers, lengths, nPrompt, nDecode, nRepeats, p.GetValue(profile) ? log : null, log);
            if (asJson) Console.WriteLine(JsonSerializer.Serialize(r));
            return 0;
        });
        return cmd;
    }

    /// <summary>The Qwen2-0.5B shape with <paramref name="layers"/> layers.</summary>
    internal static Qwen2Config Config(int layers) => new()
    {
        VocabSize = 151936, HiddenSize = 896, IntermediateSize = 4864, NumHiddenLayers = layers,
        NumAttentionHeads = 14, NumKeyValueHeads = 2, RopeTheta = 1e6, RmsNormEps = 1e-6, TieWordEmbeddings = false,
    };

    /// <summary>Builds the model and measures everything; progress lines go to <paramref name="log"/>.</summary>
    internal static Result Run(int layers, int[] lengths, int promptLength, int decodeSteps, int repeats, TextWriter? profileLog, TextWriter log)
    {
        var cfg = Config(layers);
        var sw = Stopwatch.StartNew();
        using var model = Build(cfg);
        long parameters = model.ParameterCount();
        // Decoding reads every weight except the embedding table (one row of it).
        long weightBytes = model.NamedParameters().Where(np => np.Name != "model.embed_tokens.weight").Sum(np => np.Parameter.Value.Count * np.Parameter.Value.ElementSize);
        log.WriteLine($"Qwen2-0.5B shape, {layers} layers, {parameters:N0} parameters, float32, {CpuParallel.Workers} threads (built in {sw.Elapsed.TotalSeconds:F1} s)");

        double copyGbs = CopyBandwidth();
        double boundMs = weightBytes / (copyGbs * 1e6);
        log.WriteLine($"copy bandwidth {copyGbs:F1} GB/s (bytes read + written); decode reads {weightBytes / 1e9:F3} GB of weights: bound {boundMs:F1} ms/token");

        using var noGrad = Graph.NoGrad();
        var rng = new Random(7);
        long[] Ids(int n) => Enumerable.Range(0, n).Select(_ => (long)rng.Next(cfg.VocabSize)).ToArray();

        var prefillAll = new Dictionary<string, double>();
        var prefillLast = new Dictionary<string, double>();
        foreach (int t in lengths)
        {
            var ids = Ids(t);
            double all = Median(repeats, () =>
            {
                using var scope = TensorScope.Begin();
                _ = model.Forward(Tensor.FromArray(ids, 1, t));
            });
            double last = Median(repeats, () =>
            {
                using var scope = TensorScope.Begin();
                var h = model.Model.Forward(model.Model.EmbedTokens.Forward(Tensor.FromArray(ids, 1, t)));
                _ = model.LmHead(h.Value.Narrow(1, t - 1, 1));
            });
            prefillAll[t.ToString(CultureInfo.InvariantCulture)] = all;
            prefillLast[t.ToString(CultureInfo.InvariantCulture)] = last;
            log.WriteLine($"prefill {t,4} tokens: {all,8:F1} ms (all logits)  {last,8:F1} ms (last position's logits)");
        }

        var decodeTimes = new List<double>();
        using (var cache = new KvCache(layers, promptLength + decodeSteps + 2))
        {
            using (var scope = TensorScope.Begin()) _ = model.Forward(Tensor.FromArray(Ids(promptLength), 1, promptLength), cache: cache);
            // One untimed step first: the first call of each single-row path compiles it.
            for (int step = 0; step <= decodeSteps; step++)
            {
                var next = Ids(1);
                var t0 = Stopwatch.GetTimestamp();
                using (var scope = TensorScope.Begin()) _ = model.Forward(Tensor.FromArray(next, 1, 1), cache: cache);
                if (step > 0) decodeTimes.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
        }
        decodeTimes.Sort();
        double decodeMs = decodeTimes[decodeTimes.Count / 2];
        log.WriteLine($"decode after {promptLength} tokens: {decodeMs:F1} ms/token (median of {decodeSteps}; {decodeMs / boundMs:F2}× the bandwidth bound)");

        if (profileLog is not null)
        {
            LayerProfile.Prefill(model, Ids(lengths[0]), profileLog);
            LayerProfile.Decode(model, Ids(promptLength), Ids(decodeSteps), profileLog);
        }
        return new Result(layers, parameters, weightBytes, copyGbs, boundMs, prefillAll, prefillLast, decodeMs, decodeSteps);
    }

    /// <summary>
    /// The model with uniform random weights of the initializer's standard deviation (norm scales 1): drawing
    /// 600M normal samples would take longer than the benchmark, and the values do not change the speed.
    /// </summary>
    private static Qwen2ForCausalLM Build(Qwen2Config cfg)
    {
        Qwen2ForCausalLM model;
        using (Init.Deferred()) model = new Qwen2ForCausalLM(cfg, seed: 1, initialize: false);
        double bound = cfg.InitializerRange * Math.Sqrt(3);
        ulong seed = 1;
        foreach (var (name, p) in model.NamedParameters())
            if (!name.EndsWith("norm.weight", StringComparison.Ordinal))
                p.Value.Backend.Random(p.Value, RandomKind.Uniform, seed++, -bound, bound);
        return model;
    }

    /// <summary>Median time of <paramref name="repeats"/> calls after one warm-up call, in milliseconds.</summary>
    private static double Median(int repeats, Action body)
    {
        body();
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            body();
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        Array.Sort(times);
        return times[repeats / 2];
    }

    /// <summary>
    /// GB/s of a contiguous float32 copy of 256 MiB on the configured threads (the engine's copy: one memcpy
    /// per thread), counting bytes read plus bytes written as STREAM does; the best of several.
    /// </summary>
    private static double CopyBandwidth()
    {
        const int n = 64 << 20;
        using var src = Tensor.Full([n], 1.0);
        using var dst = Tensor.Zeros([n]);
        double best = double.MaxValue;
        for (int i = 0; i < 8; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            dst.CopyFrom(src);
            best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        return 2.0 * n * sizeof(float) / best / 1e9;
    }
}
