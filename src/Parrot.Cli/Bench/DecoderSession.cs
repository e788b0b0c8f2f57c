using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Cpu;

namespace Parrot.Cli;

/// <summary>
/// A Qwen2-0.5B-shaped model with random weights and the single measurements `parrot bench decoder` is made of:
/// one prefill, a run of decode steps, the copy bandwidth. Inference only (no gradients recorded).
/// </summary>
internal sealed class DecoderSession : IDisposable
{
    private readonly Qwen2ForCausalLM _model;
    private readonly Random _rng = new(7);
    private readonly IDisposable _noGrad = Graph.NoGrad();

    /// <summary>The Qwen2-0.5B shape with <paramref name="layers"/> layers.</summary>
    public static Qwen2Config Config(int layers) => new()
    {
        VocabSize = 151936, HiddenSize = 896, IntermediateSize = 4864, NumHiddenLayers = layers,
        NumAttentionHeads = 14, NumKeyValueHeads = 2, RopeTheta = 1e6, RmsNormEps = 1e-6, TieWordEmbeddings = false,
    };

    /// <param name="dtype">The weights' dtype: float32, or bf16 (what a released checkpoint stores; products accumulate in float32).</param>
    public DecoderSession(int layers, DType dtype = DType.F32)
    {
        var cfg = Config(layers);
        // Uniform weights of the initializer's standard deviation (norm scales stay 1): drawing 600M normal
        // samples would take longer than the benchmark, and the values do not change the speed.
        using (Init.Deferred()) _model = new Qwen2ForCausalLM(cfg, seed: 1, dtype, initialize: false);
        double bound = cfg.InitializerRange * Math.Sqrt(3);
        ulong seed = 1;
        foreach (var (name, p) in _model.NamedParameters())
            if (!name.EndsWith("norm.weight", StringComparison.Ordinal))
                p.Value.Backend.Random(p.Value, RandomKind.Uniform, seed++, -bound, bound);
    }

    public Qwen2ForCausalLM Model => _model;

    public long Parameters => _model.ParameterCount();

    /// <summary>Bytes a decode step reads: every weight except the embedding table (of which it reads one row).</summary>
    public long DecodeWeightBytes => _model.NamedParameters().Where(np => np.Name != "model.embed_tokens.weight")
        .Sum(np => np.Parameter.Value.Count * np.Parameter.Value.ElementSize);

    /// <summary><paramref name="n"/> random token ids.</summary>
    public long[] Ids(int n) => Enumerable.Range(0, n).Select(_ => (long)_rng.Next(_model.Config.VocabSize)).ToArray();

    /// <summary>
    /// Milliseconds (wall, and CPU time of the process) of one prefill of <paramref name="t"/> random tokens:
    /// logits of every position, or of the last only.
    /// </summary>
    public (double Wall, double Cpu) Prefill(int t, bool lastOnly)
    {
        var ids = Ids(t);
        double c0 = ProcessCpuMs();
        var t0 = Stopwatch.GetTimestamp();
        using (var scope = TensorScope.Begin())
        {
            if (lastOnly)
            {
                var h = _model.Model.Forward(_model.Model.EmbedTokens.Forward(Tensor.FromArray(ids, 1, t)));
                _ = _model.LmHead(h.Value.Narrow(1, t - 1, 1));
            }
            else _ = _model.Forward(Tensor.FromArray(ids, 1, t));
        }
        return (Stopwatch.GetElapsedTime(t0).TotalMilliseconds, ProcessCpuMs() - c0);
    }

    /// <summary>
    /// Milliseconds of each of <paramref name="steps"/> decode steps (one token, logits of the whole vocabulary)
    /// with the KV cache after an untimed prefill of <paramref name="prompt"/> tokens and one untimed step, and
    /// the process CPU time of all the timed steps.
    /// </summary>
    public (double[] Wall, double Cpu) Decode(int prompt, int steps)
    {
        using var cache = new KvCache(_model.Config.NumHiddenLayers, prompt + steps + 1);
        using (var scope = TensorScope.Begin()) _ = _model.Forward(Tensor.FromArray(Ids(prompt), 1, prompt), cache: cache);
        var times = new double[steps];
        double cpu = 0;
        for (int step = -1; step < steps; step++)
        {
            if (step == 0) cpu = ProcessCpuMs();
            var next = Ids(1);
            var t0 = Stopwatch.GetTimestamp();
            using (var scope = TensorScope.Begin()) _ = _model.Forward(Tensor.FromArray(next, 1, 1), cache: cache);
            if (step >= 0) times[step] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        return (times, ProcessCpuMs() - cpu);
    }

    /// <summary>
    /// GB/s of a contiguous float32 copy of 256 MiB on the configured threads (the engine's copy: one memcpy per
    /// thread), counting bytes read plus bytes written as STREAM does; the best of several. The decode target of
    /// issue #4 is stated against this figure (weight bytes / copy bandwidth).
    /// </summary>
    public static double CopyBandwidth()
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

    /// <summary>Floats summed by <see cref="ReadBandwidth"/>: 2 GiB, the size of the decoder's weights.</summary>
    internal const int ReadBandwidthFloats = 512 << 20;

    /// <summary>
    /// GB/s of a pure read stream: the configured threads each sum one contiguous part of a 2 GiB float32 array
    /// (about the decoder's weight bytes) with eight independent 16-wide (8-wide without AVX-512) accumulators, nothing written; the best
    /// of several passes. Decoding one token is exactly such a stream (plus a little arithmetic), so this is
    /// what the hardware gives the weights; the copy figure counts its writes as traffic too and is not the
    /// same number. Printed for information beside the copy bound, which stays the target.
    /// </summary>
    public static unsafe double ReadBandwidth(int floats = ReadBandwidthFloats, int passes = 6)
    {
        using var buffer = Tensor.Full([floats], 1.0);
        float* p = (float*)buffer.DataPointer;
        int parts = CpuParallel.Workers;
        var sums = new float[parts];
        double best = double.MaxValue;
        for (int i = 0; i < passes; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            CpuParallel.For(parts, w => sums[w] = SumRange(p, (long)floats * w / parts / 128 * 128, w == parts - 1 ? floats : (long)floats * (w + 1) / parts / 128 * 128));
            best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        double total = sums.Sum(s => (double)s);
        if (Math.Abs(total - floats) > 1e-3 * floats) throw new InvalidOperationException($"read bandwidth: summed {total} of {floats} ones");
        return (double)floats * sizeof(float) / best / 1e9;
    }

    /// <summary>Σ p[i] for i in [from, to), eight vectors per step (to − from a multiple of 128 except at the end).</summary>
    private static unsafe float SumRange(float* p, long from, long to)
    {
        // Without AVX-512, Vector512 code runs emulated and would understate the bandwidth: sum in Vector256.
        if (!Vector512.IsHardwareAccelerated) return SumRange256(p, from, to);
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        long i = from;
        for (; i + 128 <= to; i += 128)
        {
            float* q = p + i;
            s0 += Vector512.Load(q); s1 += Vector512.Load(q + 16); s2 += Vector512.Load(q + 32); s3 += Vector512.Load(q + 48);
            s4 += Vector512.Load(q + 64); s5 += Vector512.Load(q + 80); s6 += Vector512.Load(q + 96); s7 += Vector512.Load(q + 112);
        }
        // Each lane sums at most 2^29 / 128 ones here: exact in float32 up to 2^24 per lane for arrays ≤ 2^31 floats.
        float sum = Vector512.Sum(((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)));
        for (; i < to; i++) sum += p[i];
        return sum;
    }

    private static unsafe float SumRange256(float* p, long from, long to)
    {
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
        long i = from;
        for (; i + 64 <= to; i += 64)
        {
            float* q = p + i;
            s0 += Vector256.Load(q); s1 += Vector256.Load(q + 8); s2 += Vector256.Load(q + 16); s3 += Vector256.Load(q + 24);
            s4 += Vector256.Load(q + 32); s5 += Vector256.Load(q + 40); s6 += Vector256.Load(q + 48); s7 += Vector256.Load(q + 56);
        }
        // Each lane sums at most 2^29 / 64 ones here: exact in float32 up to 2^24 per lane for arrays ≤ 2^30 floats.
        float sum = Vector256.Sum(((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)));
        for (; i < to; i++) sum += p[i];
        return sum;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec { public long Seconds, Nanoseconds; }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec t);

    /// <summary>CPU time of the whole process in ms (CLOCK_PROCESS_CPUTIME_ID), or 0 where that clock is not available.</summary>
    public static double ProcessCpuMs()
    {
        if (!OperatingSystem.IsLinux()) return 0;
        return ClockGetTime(2, out var t) == 0 ? t.Seconds * 1e3 + t.Nanoseconds / 1e6 : 0;
    }

    public static double Median(IEnumerable<double> values)
    {
        var v = values.OrderBy(x => x).ToArray();
        return v[v.Length / 2];
    }

    public void Dispose()
    {
        _noGrad.Dispose();
        _model.Dispose();
    }
}
