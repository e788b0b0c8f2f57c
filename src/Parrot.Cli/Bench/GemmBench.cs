using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Parrot.Tensors;
using Parrot.Tensors.Cpu;
using Parrot.Tensors.Cpu.Gemm;

// In the root namespace (not Parrot.Cli.Bench) so that BenchCommand registers every bench with one line and no using.
namespace Parrot.Cli;

/// <summary>
/// `parrot bench gemm`: GFLOP/s of the CPU matrix product on square and decoding shapes. Each shape is
/// warmed up, then timed in samples of at least <see cref="MinSampleSeconds"/> (many calls per sample for
/// small shapes); the median sample is reported. `bench/gemm-vs-numpy.sh` runs numpy the same way right
/// after it and prints the ratios.
/// </summary>
internal static class GemmBench
{
    /// <summary>Square 1024–4096, then 1 and 16 rows against K × N between 896 and 4864 (a decoder's projections).</summary>
    public const string DefaultSizes =
        "1024,2048,4096,1x896x4864,1x4864x896,1x896x896,1x4864x4864,16x896x4864,16x4864x896,16x896x896,16x4864x4864";

    private const double MinSampleSeconds = 0.02;
    private const double WarmupSeconds = 0.2;

    public static Command Create()
    {
        var sizes = new Option<string>("--sizes")
        {
            Description = "Comma-separated shapes: N for N×N·N×N, or MxKxN for [M,K]·[K,N]",
            DefaultValueFactory = _ => DefaultSizes,
        };
        var threads = new Option<int>("--threads")
        {
            Description = "Threads the product may use",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        var repeat = new Option<int>("--repeat")
        {
            Description = "Timed samples per shape (the median is reported)",
            DefaultValueFactory = _ => 9,
        };
        var dtype = new Option<string>("--dtype")
        {
            Description = "Operand dtype: f32, or bf16 (bf16 operands, float32 accumulation and result)",
            DefaultValueFactory = _ => "f32",
        };
        dtype.AcceptOnlyFromAmong("f32", "bf16");
        var json = new Option<bool>("--json") { Description = "Print the results as JSON instead of a table" };
        var vector256 = new Option<bool>("--vector256") { Description = "Use the Vector256 kernels even where AVX-512 is available" };
        var transposedB = new Option<bool>("--bt")
        {
            Description = "Give B as the transpose of a row-major [N, K] matrix (x · Wᵀ, as a linear layer with [out, in] weights)",
        };

        var ab = new Option<bool>("--ab")
        {
            Description = "A/B in one process: alternate GemmOptions.Experiment between 0 and 1 sample by sample (ABBA), "
                + "report both and the speed ratio 1/0 as the median of adjacent pairs",
        };
        var bCopies = new Option<int>("--b-copies")
        {
            Description = "Rotate the calls through this many copies of B, so that with enough copies B comes from memory, not cache",
            DefaultValueFactory = _ => 1,
        };

        var command = new Command("gemm", "GFLOP/s of the CPU matrix product (median of repeats, after warm-up)");
        command.Options.Add(sizes);
        command.Options.Add(threads);
        command.Options.Add(repeat);
        command.Options.Add(dtype);
        command.Options.Add(json);
        command.Options.Add(vector256);
        command.Options.Add(transposedB);
        command.Options.Add(ab);
        command.Options.Add(bCopies);
        command.SetAction(parse =>
        {
            TextWriter output = parse.InvocationConfiguration.Output, error = parse.InvocationConfiguration.Error;
            List<(int M, int K, int N)> shapes;
            try { shapes = ParseSizes(parse.GetValue(sizes)!); }
            catch (FormatException e)
            {
                error.WriteLine($"parrot bench gemm: {e.Message}");
                return 2;
            }
            int t = parse.GetValue(threads), r = parse.GetValue(repeat), copies = parse.GetValue(bCopies);
            if (t < 1 || r < 1 || copies < 1)
            {
                error.WriteLine("parrot bench gemm: --threads, --repeat and --b-copies must be at least 1");
                return 2;
            }
            var type = DTypeOption.Resolve(parse.GetValue(dtype));
            var setup = new Setup(t, r, type, parse.GetValue(vector256), parse.GetValue(transposedB), parse.GetValue(ab), copies);
            return Run(shapes, setup, parse.GetValue(json), output);
        });
        return command;
    }

    /// <summary>What every shape of one run is measured with.</summary>
    private sealed record Setup(int Threads, int Repeat, DType DType, bool Vector256, bool TransposedB, bool AB, int BCopies);

    private static int Run(List<(int M, int K, int N)> shapes, Setup setup, bool json, TextWriter output)
    {
        int savedWorkers = CpuParallel.Workers;
        bool savedForce = GemmOptions.ForceVector256;
        int savedExperiment = GemmOptions.Experiment;
        CpuParallel.Workers = setup.Threads;
        GemmOptions.ForceVector256 = setup.Vector256;
        var results = new List<GemmResult>();
        try
        {
            if (!json) PrintHeader(setup, output);
            foreach (var (m, k, n) in shapes)
            {
                var timing = Measure(m, k, n, setup);
                double flops = 2.0 * m * n * k;
                var res = new GemmResult($"{m}x{k}x{n}", m, k, n, DTypeOption.Name(setup.DType), setup.Threads,
                    Math.Round(flops / timing.SecondsA / 1e9, 2), Math.Round(timing.SecondsA * 1e3, 4));
                if (timing.Pairs is { } pairs)
                    res = res with
                    {
                        GflopsB = Math.Round(flops / timing.SecondsB / 1e9, 2),
                        MsB = Math.Round(timing.SecondsB * 1e3, 4),
                        Ratio = Math.Round(Quantile(pairs, 0.5), 4),
                        RatioQ1 = Math.Round(Quantile(pairs, 0.25), 4),
                        RatioQ3 = Math.Round(Quantile(pairs, 0.75), 4),
                    };
                results.Add(res);
                if (!json) PrintRow(res, output);
            }
        }
        finally
        {
            CpuParallel.Workers = savedWorkers;
            GemmOptions.ForceVector256 = savedForce;
            GemmOptions.Experiment = savedExperiment;
        }
        if (json) output.WriteLine(JsonSerializer.Serialize(results, GemmBenchJson.Default.ListGemmResult));
        return 0;
    }

    private static void PrintHeader(Setup setup, TextWriter output)
    {
        string width = GemmOptions.ForceVector256 || !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "Vector256" : "Vector512";
        output.WriteLine($"parrot bench gemm: {DTypeOption.Name(setup.DType)}, {setup.Threads} thread(s), median of {setup.Repeat}, {width} kernels"
            + (setup.TransposedB ? ", B transposed" : "") + (setup.BCopies > 1 ? $", B rotated through {setup.BCopies} copies" : "")
            + (setup.AB ? ", A/B on GemmOptions.Experiment (0 then 1, ABBA)" : ""));
        if (setup.AB)
            output.WriteLine($"{"shape (M×K·K×N)",-22} {"GFLOP/s 0",10} {"GFLOP/s 1",10} {"1/0",7}  {"pairs q1–q3",-13}");
        else
            output.WriteLine($"{"shape (M×K·K×N)",-22} {"GFLOP/s",9} {"ms",10}");
    }

    private static void PrintRow(GemmResult r, TextWriter output)
    {
        string shape = $"{r.M}×{r.K}·{r.K}×{r.N}";
        if (r.Ratio is { } ratio)
            output.WriteLine($"{shape,-22} {r.Gflops,10:F1} {r.GflopsB,10:F1} {ratio,7:F3}  {r.RatioQ1:F3}–{r.RatioQ3:F3}");
        else
            output.WriteLine($"{shape,-22} {r.Gflops,9:F1} {r.Ms,10:F3}");
    }

    /// <summary>
    /// Median seconds per product of side 0 (and of side 1 with <see cref="Setup.AB"/>, plus the speed ratio of
    /// each pair of adjacent samples, time of 0 over time of 1).
    /// </summary>
    private sealed record Timing(double SecondsA, double SecondsB, double[]? Pairs);

    /// <summary>Times one shape: warm-up, then samples of at least <see cref="MinSampleSeconds"/>.</summary>
    private static Timing Measure(int m, int k, int n, Setup setup)
    {
        using var scope = TensorScope.Begin();
        var a = Tensor.Normal([m, k], seed: 1, dtype: setup.DType);
        var bs = new Tensor[setup.BCopies];
        for (int i = 0; i < bs.Length; i++)
            bs[i] = setup.TransposedB
                ? Tensor.Normal([n, k], seed: 2 + (ulong)i, dtype: setup.DType).Transpose(0, 1)
                : Tensor.Normal([k, n], seed: 2 + (ulong)i, dtype: setup.DType);
        var c = Tensor.Empty([m, n], DType.F32);
        var backend = a.Backend;
        int next = 0;
        void Call() { backend.MatMul(a, bs[next], c); next = (next + 1) % bs.Length; }

        // Warm-up of both sides: tiered JIT, page faults in C and the pack buffers, and caches.
        var sw = Stopwatch.StartNew();
        int calls = 0;
        do
        {
            if (setup.AB) GemmOptions.Experiment = calls & 1;
            Call();
            calls++;
        } while (sw.Elapsed.TotalSeconds < WarmupSeconds || calls < 2 * bs.Length);
        double perCall = sw.Elapsed.TotalSeconds / calls;
        int inner = Math.Max(1, (int)Math.Ceiling(MinSampleSeconds / perCall));

        int sides = setup.AB ? 2 : 1;
        var samples = new double[sides][];
        for (int side = 0; side < sides; side++) samples[side] = new double[setup.Repeat];
        for (int s = 0; s < setup.Repeat * sides; s++)
        {
            // ABBA: 0 1 1 0 0 1 1 0 …, so a drift of the machine's speed falls on both sides alike.
            int side = setup.AB ? ((s + 1) / 2) & 1 : 0;
            if (setup.AB) GemmOptions.Experiment = side;
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < inner; i++) Call();
            samples[side][s / sides] = Stopwatch.GetElapsedTime(t0).TotalSeconds / inner;
        }
        if (!setup.AB) return new Timing(Median(samples[0]), 0, null);
        // Sample i of each side were taken back to back (pair i: positions 2i and 2i + 1).
        var pairs = new double[setup.Repeat];
        for (int i = 0; i < pairs.Length; i++) pairs[i] = samples[0][i] / samples[1][i];
        return new Timing(Median(samples[0]), Median(samples[1]), pairs);
    }

    private static double Median(double[] values) => Quantile(values, 0.5);

    /// <summary>The q-quantile by linear interpolation between the sorted values.</summary>
    internal static double Quantile(double[] values, double q)
    {
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>Parses "1024,1x896x4864" into (M, K, N) triples.</summary>
    internal static List<(int M, int K, int N)> ParseSizes(string text)
    {
        var list = new List<(int, int, int)>();
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = item.Split('x', 'X', '×');
            if (parts.Length is not (1 or 3)) throw new FormatException($"size '{item}' is neither N nor MxKxN");
            var dims = new int[parts.Length];
            for (int i = 0; i < parts.Length; i++)
                if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]) || dims[i] < 1)
                    throw new FormatException($"size '{item}' has an invalid dimension '{parts[i]}'");
            list.Add(parts.Length == 1 ? (dims[0], dims[0], dims[0]) : (dims[0], dims[1], dims[2]));
        }
        if (list.Count == 0) throw new FormatException("no sizes given");
        return list;
    }
}

/// <summary>One measured shape, as `--json` prints it.</summary>
internal sealed record GemmResult(string Shape, int M, int K, int N, string Dtype, int Threads, double Gflops, double Ms)
{
    /// <summary>With --ab: side 1 (Gflops and Ms are side 0), and the speed ratio 1/0 over adjacent pairs.</summary>
    public double? GflopsB { get; init; }
    public double? MsB { get; init; }
    public double? Ratio { get; init; }
    public double? RatioQ1 { get; init; }
    public double? RatioQ3 { get; init; }
}

[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
[System.Text.Json.Serialization.JsonSerializable(typeof(List<GemmResult>))]
internal sealed partial class GemmBenchJson : System.Text.Json.Serialization.JsonSerializerContext;
