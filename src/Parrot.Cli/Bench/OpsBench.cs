using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Parrot.Tensors;
using Parrot.Tensors.Cpu;

// In the root namespace (not Parrot.Cli.Bench), like GemmBench, so BenchCommand registers it with one line.
namespace Parrot.Cli;

/// <summary>
/// `parrot bench ops`: throughput of the memory-bound ops (elementwise, reductions, softmax) on 16M float32
/// elements, the median of several timed repeats after warm-up. Each op allocates its result, as user code
/// does; ours comes from the engine's caching allocator (a freed block of the same size class is reused, as
/// in a training loop), numpy's from fresh memory each call, so numpy also pays first-touch page faults on
/// its outputs (reductions allocate nothing sizeable). bench/ops-vs-numpy.sh runs numpy on the same ops
/// and prints ratios.
/// </summary>
internal static class OpsBench
{
    /// <summary>One measured op: its name, the elements it reads, the bytes it moves and the median time.</summary>
    internal sealed record Result(string Op, string Shape, long Elements, long Bytes, double Milliseconds)
    {
        public double GigabytesPerSecond => Bytes / (Milliseconds * 1e6);
        public double GigaElementsPerSecond => Elements / (Milliseconds * 1e6);
    }

    public static Command Create()
    {
        var repeats = new Option<int>("--repeats") { Description = "Timed repeats per op (the median is reported)", DefaultValueFactory = _ => 15 };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON" };
        var filter = new Option<string?>("--op") { Description = "Only the ops whose name contains this text" };
        var command = new Command("ops", "Elementwise ops, reductions and softmax on 16M float32 elements (GB/s, Gelem/s)");
        command.Options.Add(repeats);
        command.Options.Add(json);
        command.Options.Add(filter);
        command.SetAction(parse =>
        {
            int r = parse.GetValue(repeats);
            if (r < 1) { Console.Error.WriteLine("parrot bench ops: --repeats must be at least 1"); return 2; }
            var results = Run(r, parse.GetValue(filter), parse.GetValue(json) ? null : Console.Out);
            if (parse.GetValue(json)) Console.WriteLine(ToJson(results));
            return 0;
        });
        return command;
    }

    /// <summary>Measures every op (or those matching <paramref name="filter"/>), printing a line per op to <paramref name="log"/>.</summary>
    public static List<Result> Run(int repeats, string? filter, TextWriter? log)
    {
        const int n = 1 << 24, side = 4096;
        const long f32 = 4;
        using var a = Tensor.Normal([n], seed: 1);
        using var b = Tensor.Normal([n], seed: 2);
        using var m = a.ViewAs(side, side);
        var ops = new (string Name, string Shape, long Bytes, Func<Tensor> Run)[]
        {
            ("add", "[16777216]", 3 * f32 * n, () => a + b),
            ("mul", "[16777216]", 3 * f32 * n, () => a * b),
            ("exp", "[16777216]", 2 * f32 * n, () => a.Exp()),
            ("tanh", "[16777216]", 2 * f32 * n, () => a.Tanh()),
            ("gelu-erf", "[16777216]", 2 * f32 * n, () => a.Gelu()),
            ("gelu-tanh", "[16777216]", 2 * f32 * n, () => a.Gelu(tanhApproximation: true)),
            ("silu", "[16777216]", 2 * f32 * n, () => a.Silu()),
            ("sum", "[16777216]", f32 * n, () => a.Sum()),
            ("max", "[16777216]", f32 * n, () => a.Max()),
            ("mean", "[16777216]", f32 * n, () => a.Mean()),
            ("sum-last-axis", "[4096, 4096]", f32 * n, () => m.Sum(-1)),
            ("softmax-last-axis", "[4096, 4096]", 2 * f32 * n, () => m.Softmax(-1)),
        };
        if (log is not null)
            log.WriteLine($"{"op",-18} {"shape",-13} {"ms",9} {"GB/s",8} {"Gelem/s",8}   (median of {repeats}, {CpuParallel.Workers} threads)");
        var results = new List<Result>();
        foreach (var (name, shape, bytes, run) in ops)
        {
            if (filter is not null && !name.Contains(filter, StringComparison.OrdinalIgnoreCase)) continue;
            for (int w = 0; w < 3; w++) run().Dispose(); // warm-up: JIT tiers, first-touch page faults of the inputs
            var times = new double[repeats];
            for (int i = 0; i < repeats; i++)
            {
                long start = Stopwatch.GetTimestamp();
                run().Dispose();
                times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
            Array.Sort(times);
            double median = repeats % 2 == 1 ? times[repeats / 2] : (times[repeats / 2 - 1] + times[repeats / 2]) / 2;
            var result = new Result(name, shape, n, bytes, median);
            results.Add(result);
            log?.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name,-18} {shape,-13} {median,9:F3} {result.GigabytesPerSecond,8:F2} {result.GigaElementsPerSecond,8:F3}"));
        }
        return results;
    }

    private static string ToJson(List<Result> results)
    {
        var rows = results.Select(r => new Dictionary<string, object>
        {
            ["op"] = r.Op,
            ["shape"] = r.Shape,
            ["elements"] = r.Elements,
            ["bytes"] = r.Bytes,
            ["ms"] = Math.Round(r.Milliseconds, 4),
            ["gbps"] = Math.Round(r.GigabytesPerSecond, 3),
            ["gelems"] = Math.Round(r.GigaElementsPerSecond, 4),
        });
        return JsonSerializer.Serialize(new Dictionary<string, object> { ["engine"] = "parrot", ["threads"] = CpuParallel.Workers, ["results"] = rows });
    }
}
