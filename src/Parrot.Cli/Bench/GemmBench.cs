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

        var command = new Command("gemm", "GFLOP/s of the CPU matrix product (median of repeats, after warm-up)");
        command.Options.Add(sizes);
        command.Options.Add(threads);
        command.Options.Add(repeat);
        command.Options.Add(dtype);
        command.Options.Add(json);
        command.Options.Add(vector256);
        command.Options.Add(transposedB);
        command.SetAction(parse =>
        {
            List<(int M, int K, int N)> shapes;
            try { shapes = ParseSizes(parse.GetValue(sizes)!); }
            catch (FormatException e)
            {
                Console.Error.WriteLine($"parrot bench gemm: {e.Message}");
                return 2;
            }
            int t = parse.GetValue(threads), r = parse.GetValue(repeat);
            if (t < 1 || r < 1)
            {
                Console.Error.WriteLine("parrot bench gemm: --threads and --repeat must be at least 1");
                return 2;
            }
            var type = parse.GetValue(dtype) == "bf16" ? DType.BF16 : DType.F32;
            return Run(shapes, t, r, type, parse.GetValue(json), parse.GetValue(vector256), parse.GetValue(transposedB));
        });
        return command;
    }

    private static int Run(List<(int M, int K, int N)> shapes, int threads, int repeat, DType dtype, bool json, bool vector256, bool transposedB)
    {
        int savedWorkers = CpuParallel.Workers;
        bool savedForce = GemmOptions.ForceVector256;
        CpuParallel.Workers = threads;
        GemmOptions.ForceVector256 = vector256;
        var results = new List<GemmResult>();
        try
        {
            if (!json)
            {
                Console.WriteLine($"parrot bench gemm: {DTypeLabel(dtype)}, {threads} thread(s), median of {repeat}, {(GemmOptions.ForceVector256 || !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "Vector256" : "Vector512")} kernels{(transposedB ? ", B transposed" : "")}");
                Console.WriteLine($"{"shape (M×K·K×N)",-22} {"GFLOP/s",9} {"ms",10}");
            }
            foreach (var (m, k, n) in shapes)
            {
                double seconds = Measure(m, k, n, dtype, repeat, transposedB);
                double gflops = 2.0 * m * n * k / seconds / 1e9;
                var res = new GemmResult($"{m}x{k}x{n}", m, k, n, DTypeLabel(dtype), threads, Math.Round(gflops, 2), Math.Round(seconds * 1e3, 4));
                results.Add(res);
                if (!json)
                    Console.WriteLine($"{$"{m}×{k}·{k}×{n}",-22} {gflops,9:F1} {seconds * 1e3,10:F3}");
            }
        }
        finally
        {
            CpuParallel.Workers = savedWorkers;
            GemmOptions.ForceVector256 = savedForce;
        }
        if (json) Console.WriteLine(JsonSerializer.Serialize(results, GemmBenchJson.Default.ListGemmResult));
        return 0;
    }

    /// <summary>Median seconds per product for one shape.</summary>
    private static double Measure(int m, int k, int n, DType dtype, int repeat, bool transposedB)
    {
        using var scope = TensorScope.Begin();
        var a = Tensor.Normal([m, k], seed: 1, dtype: dtype);
        var b = transposedB ? Tensor.Normal([n, k], seed: 2, dtype: dtype).Transpose(0, 1) : Tensor.Normal([k, n], seed: 2, dtype: dtype);
        var c = Tensor.Empty([m, n], DType.F32);
        var backend = a.Backend;

        // Warm-up: tiered JIT, page faults in C and the pack buffers, and caches.
        var sw = Stopwatch.StartNew();
        int calls = 0;
        do { backend.MatMul(a, b, c); calls++; } while (sw.Elapsed.TotalSeconds < WarmupSeconds || calls < 2);
        double perCall = sw.Elapsed.TotalSeconds / calls;
        int inner = Math.Max(1, (int)Math.Ceiling(MinSampleSeconds / perCall));

        var samples = new double[repeat];
        for (int s = 0; s < repeat; s++)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < inner; i++) backend.MatMul(a, b, c);
            samples[s] = Stopwatch.GetElapsedTime(t0).TotalSeconds / inner;
        }
        Array.Sort(samples);
        return samples[repeat / 2];
    }

    private static string DTypeLabel(DType t) => t == DType.BF16 ? "bf16" : "f32";

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
internal sealed record GemmResult(string Shape, int M, int K, int N, string Dtype, int Threads, double Gflops, double Ms);

[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.SnakeCaseLower)]
[System.Text.Json.Serialization.JsonSerializable(typeof(List<GemmResult>))]
internal sealed partial class GemmBenchJson : System.Text.Json.Serialization.JsonSerializerContext;
