using System.Text.Json;
using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Cli.Tests;

/// <summary>
/// `parrot bench gemm` as a tool (not its timings): the JSON it prints, the in-process A/B mode that flips
/// <see cref="GemmOptions.Experiment"/>, B rotated through copies, and its usage errors.
/// </summary>
[NonParallelizable] // --ab flips a process-wide switch while it runs
public class GemmBenchCommandTests
{
    private static JsonElement OnlyResult(string stdout)
    {
        var results = JsonDocument.Parse(stdout).RootElement;
        Assert.That(results.GetArrayLength(), Is.EqualTo(1));
        return results[0];
    }

    [Test]
    public void PlainRunPrintsOneSideOnly()
    {
        var r = CliInProcess.Run("bench", "gemm", "--sizes", "3x20x10", "--threads", "1", "--repeat", "3", "--json");
        Assert.That((r.Code, r.Stderr), Is.EqualTo((0, "")));
        var res = OnlyResult(r.Stdout);
        Assert.That(res.GetProperty("shape").GetString(), Is.EqualTo("3x20x10"));
        Assert.That(res.GetProperty("gflops").GetDouble(), Is.GreaterThan(0));
        Assert.That(res.TryGetProperty("ratio", out _), Is.False, "no A/B fields without --ab");
    }

    [Test]
    public void AbRunReportsBothSidesAndRestoresTheSwitch()
    {
        int saved = GemmOptions.Experiment;
        GemmOptions.Experiment = 7;
        try
        {
            var r = CliInProcess.Run("bench", "gemm", "--sizes", "5x64x48", "--threads", "1", "--repeat", "5", "--ab", "--b-copies", "3", "--json");
            Assert.That((r.Code, r.Stderr), Is.EqualTo((0, "")));
            var res = OnlyResult(r.Stdout);
            double a = res.GetProperty("ms").GetDouble(), b = res.GetProperty("ms_b").GetDouble();
            double q1 = res.GetProperty("ratio_q1").GetDouble(), ratio = res.GetProperty("ratio").GetDouble(), q3 = res.GetProperty("ratio_q3").GetDouble();
            Assert.That(a, Is.GreaterThan(0));
            Assert.That(b, Is.GreaterThan(0));
            Assert.That(res.GetProperty("gflops_b").GetDouble(), Is.GreaterThan(0));
            Assert.That(q1, Is.GreaterThan(0).And.LessThanOrEqualTo(ratio));
            Assert.That(q3, Is.GreaterThanOrEqualTo(ratio));
            Assert.That(GemmOptions.Experiment, Is.EqualTo(7), "the switch is put back as it was");
        }
        finally { GemmOptions.Experiment = saved; }
    }

    [Test]
    public void AbTableNamesBothSides()
    {
        var r = CliInProcess.Run("bench", "gemm", "--sizes", "4x16x16", "--threads", "1", "--repeat", "3", "--ab");
        Assert.That(r.Code, Is.EqualTo(0));
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines[0], Does.Contain("A/B on GemmOptions.Experiment"));
        Assert.That(lines[1], Does.Contain("GFLOP/s 0").And.Contain("GFLOP/s 1").And.Contain("1/0"));
        Assert.That(lines[2], Does.Match(@"^4×16·16×16 +[0-9.]+ +[0-9.]+ +[0-9.]+  [0-9.]+–[0-9.]+$"));
    }

    [TestCase("--b-copies", "0")]
    [TestCase("--repeat", "0")]
    public void CountsBelowOneAreUsageErrors(string flag, string value)
    {
        var r = CliInProcess.Run("bench", "gemm", "--sizes", "8", flag, value);
        Assert.That((r.Code, r.Stderr.TrimEnd()), Is.EqualTo((2, "parrot bench gemm: --threads, --repeat and --b-copies must be at least 1")));
    }

    [TestCase(new[] { 1.0, 2.0, 3.0, 4.0 }, 0.25, 1.75)]
    [TestCase(new[] { 4.0, 1.0, 3.0, 2.0 }, 0.5, 2.5)]
    [TestCase(new[] { 5.0 }, 0.75, 5.0)]
    [TestCase(new[] { 3.0, 1.0, 2.0 }, 1.0, 3.0)]
    public void QuantileInterpolatesBetweenSortedValues(double[] values, double q, double expected)
    {
        Assert.That(GemmBench.Quantile(values, q), Is.EqualTo(expected).Within(1e-12));
    }
}
