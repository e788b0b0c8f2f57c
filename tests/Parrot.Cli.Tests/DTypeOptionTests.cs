using Parrot.Autograd;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tensors.Formats;
using Parrot.Tests.Shared;

namespace Parrot.Cli.Tests;

/// <summary>
/// `--dtype f32|bf16` of forward, generate, chat, eval and serve: bf16 keeps a bf16 checkpoint's weights and computes
/// like PyTorch's bf16 (against its golden logits), each command's bf16 output is the library's bf16 output, and
/// anything but f32 or bf16 is a usage error.
/// </summary>
public class DTypeOptionTests() : TinyModelSetFixture("parrot-cli-dtype-tests")
{
    private static string Qwen2(string variant) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "qwen2", variant);
    private static string ParrotFixture(string name) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", name);

    private static int[] FirstRow(string dir)
    {
        using var ids = Npy.Read(Path.Combine(dir, "ids.npy"));
        using var row = ids.Select(0, 0);
        return row.ToLongArray().Select(i => (int)i).ToArray();
    }

    private static double RelL2(float[] a, float[] b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { num += (a[i] - (double)b[i]) * (a[i] - (double)b[i]); den += (double)b[i] * b[i]; }
        return Math.Sqrt(num / den);
    }

    private static float[] Forward(string dir, int[] ids, params string[] extra)
    {
        var output = Path.Combine(CliRunner.TempDir(), "logits.npy");
        var r = CliRunner.Run(null, ["forward", "--model", dir, "--tokens", string.Join(",", ids), "--out", output, .. extra]);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        using var logits = Npy.Read(output);
        Assert.That(logits.DType, Is.EqualTo(DType.F32), "the logits file is float32 whatever the compute dtype");
        return logits.ToArray<float>();
    }

    /// <summary>
    /// The bf16 fixture (tools/make_qwen2_fixtures.py) carries PyTorch's logits computed in float32 on its bf16 weights
    /// and computed in bf16. The default lands on the first (6e-7 relative L2 here); --dtype bf16 stays within bf16's
    /// precision of PyTorch's bf16 compute (1.1e-2: both round differently inside, and PyTorch's own bf16 logits are as
    /// far from its float32 ones) and far enough from float32's to show the flag took effect.
    /// </summary>
    [Test]
    public void ForwardInBf16ComputesInBf16()
    {
        string dir = Qwen2("bf16-gqa-untied");
        var ids = FirstRow(dir);
        using var goldF32 = Npy.Read(Path.Combine(dir, "logits.npy"));
        using var goldF32Row = goldF32.Select(0, 0);
        var f32Gold = goldF32Row.ToFloatArray();
        var bf16Gold = Npy.Read(Path.Combine(dir, "logits_bf16.npy")).ToArray<float>();

        var f32 = Forward(dir, ids);
        var bf16 = Forward(dir, ids, "--dtype", "bf16");
        double f32Error = RelL2(f32, f32Gold), bf16Error = RelL2(bf16, bf16Gold), bf16FromF32 = RelL2(bf16, f32Gold);
        TestContext.Out.WriteLine($"f32 vs PyTorch f32 {f32Error:E2}; bf16 vs PyTorch bf16 {bf16Error:E2}; bf16 vs PyTorch f32 {bf16FromF32:E2}");
        Assert.That(f32Error, Is.LessThanOrEqualTo(1e-4));
        Assert.That(bf16Error, Is.LessThanOrEqualTo(2e-2));
        Assert.That(bf16FromF32, Is.GreaterThan(10 * f32Error), "--dtype bf16 computed in float32");
    }

    /// <summary>
    /// On the tiny Qwen2 (float32 weights, rounded to bf16 by the flag) the bf16 and float32 greedy paths part within 48
    /// tokens (checked first; the bf16 fixture's do not: it loops on one phrase), so the flag must reach the model.
    /// </summary>
    [Test]
    public void GenerateInBf16IsTheLibrarysBf16Greedy()
    {
        int[] ids = [5, 17, 42, 9, 3];
        List<int> expected, f32;
        using (var m = Qwen2Loader.Load(QwenDir, DType.BF16))
            expected = GreedyDecoder.Generate(m, ids, 48, [], ignoreEos: true);
        using (var m = Qwen2Loader.Load(QwenDir, DType.F32))
            f32 = GreedyDecoder.Generate(m, ids, 48, [], ignoreEos: true);
        Assert.That(expected, Is.Not.EqualTo(f32), "the test needs a prompt on which the dtypes part");
        var r = CliRunner.Run(null, "generate", "--model", QwenDir, $"--tokens={string.Join(",", ids)}", "--max-new-tokens", "48", "--ignore-eos", "--dtype", "bf16");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(r.Stdout.Trim(), Is.EqualTo(string.Join(",", expected)));
    }

    /// <summary>A Parrot directory with an image: the CLI's bf16 logits are the library's, bit for bit.</summary>
    [Test]
    public void ParrotForwardInBf16IsTheLibrarysBf16Logits()
    {
        string dir = ParrotFixture("bf16-bundled"), image = ParrotFixture("image.png");
        using var prompt = Npy.Read(ParrotFixture("prompt.npy"));
        var ids = prompt.ToLongArray().Select(i => (int)i).ToArray();
        float[] expected;
        using (var model = ParrotModelDirectory.Load(dir, DType.BF16))
        using (var scope = TensorScope.Begin())
            expected = model.Logits(ids, ImageLoader.Load(image)).ToFloatArray();
        var output = Path.Combine(CliRunner.TempDir(), "logits.npy");
        var r = CliRunner.Run(null, "forward", "--model", dir, "--tokens=" + string.Join(",", ids), "--image", image, "--out", output, "--dtype", "bf16");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        using var ours = Npy.Read(output);
        Assert.That(ours.ToArray<float>(), Is.EqualTo(expected));
    }

    /// <summary>Over 48 tokens the tiny Parrot's bf16 and float32 answers part (checked first), so the flag must reach the model.</summary>
    [Test]
    public void ChatInBf16IsTheLibrarysBf16Answer()
    {
        var options = new GenerationOptions { MaxNewTokens = 48 };
        string expected, f32;
        using (var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { DType = DType.BF16 }))
        {
            Assert.That(model.DType, Is.EqualTo(DType.BF16));
            expected = model.Ask("Что на картинке?", Red, options);
        }
        using (var model = ParrotModel.Load(ParrotDir)) f32 = model.Ask("Что на картинке?", Red, options);
        Assert.That(expected, Is.Not.EqualTo(f32), "the test needs a prompt on which the dtypes part");
        var (code, stdout, stderr) = CliRunner.Run(null, "chat", "--model", ParrotDir, "--image", Red, "--prompt", "Что на картинке?", "--max-new-tokens", "48", "--dtype", "bf16");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Is.EqualTo(expected + Environment.NewLine));
    }

    [TestCase("forward")]
    [TestCase("generate")]
    [TestCase("chat")]
    [TestCase("eval")]
    [TestCase("serve")]
    public void OtherDTypesAreUsageErrors(string command)
    {
        var r = CliRunner.Run(null, command, "--model", QwenDir, "--dtype", "f16");
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr, Does.Contain("Argument 'f16' not recognized. Must be one of:").And.Contain("'f32'").And.Contain("'bf16'"));
    }
}
