using System.Text.Json;

namespace Parrot.Cli.Tests;

/// <summary>
/// `parrot bench decoder`'s --dtype on the random Qwen2-0.5B shape and its --serve protocol (what
/// bench/decoder-vs-torch.sh --dtype bf16 drives): bf16 weights are half the bytes a decode step reads, and the
/// measurements answer in either dtype.
/// </summary>
[TestFixture]
public sealed class DecoderBenchCommandTests
{
    private static (JsonElement Ready, JsonElement Decode) Serve(params string[] extra)
    {
        var r = CliRunner.Run("decode 4 2\nbogus\nquit\n", ["bench", "decoder", "--serve", "--layers", "1", .. extra]);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(4), r.Stdout);
        Assert.That(JsonDocument.Parse(lines[2]).RootElement.GetProperty("error").GetString(), Is.EqualTo("unknown command 'bogus'"));
        Assert.That(lines[3], Does.Contain("\"bye\":true"));
        return (JsonDocument.Parse(lines[0]).RootElement, JsonDocument.Parse(lines[1]).RootElement);
    }

    [Test]
    public void ServeDecodesInBf16WithHalfTheWeightBytes()
    {
        var (f32, f32Decode) = Serve();
        var (bf16, bf16Decode) = Serve("--dtype", "bf16");
        Assert.That(f32.GetProperty("dtype").GetString(), Is.EqualTo("f32"));
        Assert.That(bf16.GetProperty("dtype").GetString(), Is.EqualTo("bf16"));
        Assert.That(bf16.GetProperty("parameters").GetInt64(), Is.EqualTo(f32.GetProperty("parameters").GetInt64()));
        Assert.That(2 * bf16.GetProperty("weight_bytes").GetInt64(), Is.EqualTo(f32.GetProperty("weight_bytes").GetInt64()));
        foreach (var d in new[] { f32Decode, bf16Decode })
        {
            var ms = d.GetProperty("ms").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            Assert.That(ms, Has.Length.EqualTo(2));
            Assert.That(ms, Has.All.GreaterThan(0));
        }
    }

    [Test]
    public void DTypeIsRefusedWithAModelDirectoryAndOutsideF32AndBf16()
    {
        var r = CliRunner.Run(null, "bench", "decoder", "--model", "anywhere", "--dtype", "bf16");
        Assert.That((r.ExitCode, r.Stderr.TrimEnd()), Is.EqualTo((2, "parrot bench decoder: --dtype is for the synthetic shapes; --model times the directory's model in float32")));
        r = CliRunner.Run(null, "bench", "decoder", "--dtype", "f16");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr, Does.Contain("'f16'"));
    }
}
