using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Parrot.Nn;
using Parrot.Nn.Models.Qwen2;
using Parrot.Nn.Optim;
using Parrot.Tensors;
using Parrot.Tensors.Cpu;
using Parrot.Tensors.Cuda;

namespace Parrot.Cli;

/// <summary>
/// `parrot bench train`: median time of one training step (forward, backward, AdamW) of a Qwen2 decoder, with the
/// memory in use after the first and the last step. By default the lm-demo shape in float32 on the CPU
/// (`bench/train-vs-torch.sh` runs the PyTorch peer on the same shapes right after); `--shape qwen2-0.5b --dtype bf16
/// --device cuda` is the GPU figure of issue #7 (bf16 weights, float32 master weights and moments), with tokens/s
/// and MFU against `--peak-tflops` (bench/torch_model_peer.py times PyTorch eager on the same shape and formula).
/// FLOPs per token: 6·N (N = the weights of every matrix product, the LM head included) + 12·layers·hidden·seq
/// (attention scores and values, no causal discount) — PaLM's formula.
/// </summary>
internal static class TrainBench
{
    /// <summary>What a run measured.</summary>
    /// <param name="Attention">On a GPU, what the step's attention ran on (see <see cref="AttentionPath"/>); null elsewhere.</param>
    internal sealed record Result(string Device, string DType, long Parameters, int Batch, int Seq, int Steps, double MsPerStep, double TokensPerSecond,
        double FlopsPerToken, double Tflops, double? Mfu, long MemFirst, long MemLast, long PeakBytes, double FirstLoss, double LastLoss, string MemorySource,
        string? Attention = null);

    /// <summary>
    /// What the last attention call ran on: cuDNN's fused SDPA with its plan (version, graph style, engine), or our
    /// kernels and why (cuDNN switched off, or its reason for declining).
    /// </summary>
    internal static string AttentionPath(CudaBackend cuda) =>
        !cuda.CudnnAttention ? "our kernels (PARROT_CUDNN_ATTENTION=0)"
        : cuda.CudnnAttentionNote is string why ? $"our kernels (cuDNN declined: {why})"
        : cuda.CudnnAttentionPlan is string plan ? plan
        : "our kernels (no call reached cuDNN)";

    public static Command Create()
    {
        var shape = new Option<string?>("--shape") { Description = "qwen2-0.5b (hidden 896, 24 layers, 14/2 heads, MLP 4864, vocab 151936, tied), qwen2-7b or tiny (the peer's shapes): overrides --hidden/--layers/--vocab" };
        var hidden = new Option<int>("--hidden") { DefaultValueFactory = _ => 128, Description = "Model width" };
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 4, Description = "Decoder layers" };
        var vocab = new Option<int>("--vocab") { DefaultValueFactory = _ => 257, Description = "Vocabulary size" };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 16, Description = "Sequences per step" };
        var seq = new Option<int>("--seq") { DefaultValueFactory = _ => 64, Description = "Tokens per sequence" };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 30, Description = "Timed steps (after 3 warm-up steps)" };
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => Environment.ProcessorCount, Description = "CPU threads" };
        var checkpointing = new Option<bool>("--checkpointing") { Description = "Recompute layer activations in backward" };
        var device = DeviceOption.Create();
        var dtype = new Option<string>("--dtype") { DefaultValueFactory = _ => "f32", Description = "f32, or bf16 (bf16 weights, float32 master weights and moments)" };
        var peak = new Option<double?>("--peak-tflops") { Description = "The device's dense peak in TFLOP/s for the dtype (H100 SXM / H200 bf16: 989): prints MFU" };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var cudaProfile = new Option<bool>("--cuda-profile") { Description = "On a GPU, time one more step operation by operation (CUDA events) and print the table to stderr" };
        var cmd = new Command("train", "Time per training step (forward + backward + AdamW) of a Qwen2 decoder, with tokens/s, MFU and memory in use");
        foreach (var o in new Option[] { shape, hidden, layers, vocab, batch, seq, steps, threads, checkpointing, device, dtype, peak, json, cudaProfile }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("bench train", () =>
        {
            CpuParallel.Workers = Math.Max(1, p.GetValue(threads));
            var dev = DeviceOption.Resolve(p.GetValue(device), "bench train");
            var dt = p.GetValue(dtype) switch { "f32" => DType.F32, "bf16" => DType.BF16, var o => throw new CliException($"--dtype must be f32 or bf16, got '{o}'") };
            int h = p.GetValue(hidden);
            var cfg = p.GetValue(shape) switch
            {
                null => new Qwen2Config
                {
                    VocabSize = p.GetValue(vocab), HiddenSize = h, IntermediateSize = h * 11 / 4 / 8 * 8, NumHiddenLayers = p.GetValue(layers),
                    NumAttentionHeads = Math.Max(1, h / 32), NumKeyValueHeads = Math.Max(1, h / 64), RopeTheta = 10000,
                },
                var o => DeviceDecodeBench.Shape(o),
            };
            int b = p.GetValue(batch), t = p.GetValue(seq), n = p.GetValue(steps);
            if (b < 1 || t < 2 || n < 1) throw new CliException("--batch and --steps must be positive and --seq at least 2");
            var r = Run(cfg, dt, dev, b, t, n, p.GetValue(checkpointing), p.GetValue(peak), p.GetValue(cudaProfile) ? Console.Error : null);
            if (p.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(r, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
            else Console.WriteLine(Describe(r));
            return 0;
        }));
        return cmd;
    }

    /// <summary>Qwen2-0.5B's shape.</summary>
    internal static readonly Qwen2Config Qwen05b = new()
    {
        VocabSize = 151936, HiddenSize = 896, IntermediateSize = 4864, NumHiddenLayers = 24, NumAttentionHeads = 14, NumKeyValueHeads = 2,
        RopeTheta = 1e6, TieWordEmbeddings = true,
    };

    /// <summary>FLOPs of one trained token (PaLM's formula: 6·matmul weights + 12·layers·hidden·seq).</summary>
    internal static double FlopsPerToken(Qwen2Config c, long parameters, int seq)
    {
        long embed = (long)c.VocabSize * c.HiddenSize;
        long matmul = c.TieWordEmbeddings ? parameters : parameters - embed; // the lookup is no product; a tied table is the head's product
        return 6.0 * matmul + 12.0 * c.NumHiddenLayers * c.HiddenSize * seq;
    }

    /// <summary>Memory in use on <paramref name="device"/>: the CUDA allocator's statistics, else the CPU's tensor bytes.</summary>
    internal static (long InUse, long Peak, string Source) Memory(Device device) =>
        device.Kind == DeviceKind.Cuda && Backends.For(device) is CudaBackend cuda
            ? (cuda.BytesInUse, cuda.PeakBytesInUse, "cuda allocator")
            : (MemoryStats.CpuBytesInUse, MemoryStats.CpuPeakBytes, "cpu tensors");

    /// <summary>
    /// Times <paramref name="n"/> steps after 3 warm-up steps; with <paramref name="profile"/> on a GPU, one more step
    /// runs under <see cref="CudaBackend.StartProfile"/> and its table is written there.
    /// </summary>
    internal static Result Run(Qwen2Config cfg, DType dtype, Device device, int b, int t, int n, bool checkpointing, double? peakTflops, TextWriter? profile = null)
    {
        using var model = new Qwen2ForCausalLM(cfg, 1, dtype) { GradientCheckpointing = checkpointing };
        model.To(device);
        using Optimizer opt = dtype == DType.F32 ? new AdamW(model.Parameters(), 1e-3) : new MixedPrecisionAdamW(model.Parameters(), 1e-3);
        var ids = new long[b * t];
        var rng = new Random(2);
        for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(cfg.VocabSize);
        var times = new List<double>();
        long memFirst = 0;
        double first = double.NaN, last = double.NaN, lastTimed = double.NaN; // lastTimed: the loss before the latest step's
        var cuda = device.Kind == DeviceKind.Cuda ? Backends.For(device) as CudaBackend : null;
        bool profiled = profile is not null && cuda is not null;
        for (int step = 0; step < n + 3 + (profiled ? 1 : 0); step++)
        {
            bool profiling = profiled && step == n + 3;
            if (profiling) cuda!.StartProfile();
            var sw = Stopwatch.StartNew();
            using (var scope = TensorScope.Begin())
            {
                var x = Tensor.FromArray(ids, device, b, t);
                var loss = Losses.NextTokenCrossEntropy(model.Forward(x), x);
                opt.ZeroGrad();
                loss.Backward();
                opt.Step();
                lastTimed = last;
                last = loss.Value.Item(); // the step's one host read, after the update: the timing includes the whole step
                if (step == 0) first = last;
            }
            if (profiling) { last = lastTimed; profile!.Write($"one training step, batch {b}×{t}, {dtype.Name()}:\n" + cuda!.StopProfile().Format(40)); continue; }
            if (step >= 3) times.Add(sw.Elapsed.TotalMilliseconds);
            if (step == 0) memFirst = Memory(device).InUse;
        }
        times.Sort();
        double median = times[times.Count / 2];
        var (memLast, peak, source) = Memory(device);
        long parameters = model.ParameterCount();
        double tokensPerSecond = b * t / (median * 1e-3);
        double fpt = FlopsPerToken(cfg, parameters, t);
        double tflops = fpt * tokensPerSecond / 1e12;
        return new Result(device.ToString(), dtype.Name(), parameters, b, t, n, median, tokensPerSecond, fpt, tflops,
            peakTflops is double pk && pk > 0 ? tflops / pk : null, memFirst, memLast, peak, first, last, source,
            cuda is null ? null : AttentionPath(cuda));
    }

    internal static string Describe(Result r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.Parameters:N0} parameters, {r.DType} on {r.Device}, batch {r.Batch}×{r.Seq}: {r.MsPerStep:F1} ms/step (median of {r.Steps}), {r.TokensPerSecond:F0} tokens/s, " +
        $"{r.Tflops:F2} TFLOP/s{(r.Mfu is double m ? $" = MFU {m:P1}" : "")}; loss {r.FirstLoss:F4} → {r.LastLoss:F4}; memory in use ({r.MemorySource}) after step 1 {r.MemFirst / 1e6:F2} MB, " +
        $"after step {r.Steps + 3} {r.MemLast / 1e6:F2} MB; peak {r.PeakBytes / 1e6:F1} MB{(r.Attention is null ? "" : "; attention: " + r.Attention)}");
}
