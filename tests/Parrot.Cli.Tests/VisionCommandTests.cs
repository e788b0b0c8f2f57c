using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli.Tests;

/// <summary>
/// `parrot vision` end to end: a PNG through our preprocessing and tower against PIL's preprocessing and the
/// independent PyTorch tower (tools/make_clip_fixtures.py), and clear errors on bad input.
/// </summary>
public class VisionCommandTests
{
    private static string Clip(params string[] parts) => Path.Combine([TestContext.CurrentContext.TestDirectory, "Fixtures", "clip", .. parts]);

    private static string Image => Clip("image.png");

    private static double RelL2(string ours, string gold)
    {
        using var a = Npy.Read(ours);
        using var b = Npy.Read(gold);
        Assert.That(a.DType, Is.EqualTo(DType.F32));
        Assert.That(a.Shape.ToArray(), Is.EqualTo(b.Shape.ToArray()));
        var x = a.ToArray<float>(); var y = b.ToArray<float>();
        double num = 0, den = 0;
        for (int i = 0; i < x.Length; i++) { num += (x[i] - y[i]) * (double)(x[i] - y[i]); den += (double)y[i] * y[i]; }
        return Math.Sqrt(num / den);
    }

    [TestCase(new string[0], "vision_layer-2.npy")]
    [TestCase(new[] { "--layer", "-2" }, "vision_layer-2.npy")]
    [TestCase(new[] { "--layer=-2" }, "vision_layer-2.npy")]
    [TestCase(new[] { "--layer", "3", "--pad" }, "vision_layer3_pad.npy")]
    public void VisionWritesTheEndToEndGolden(string[] extra, string golden)
    {
        var output = Path.Combine(CliRunner.TempDir(), "feats.npy");
        var r = CliRunner.Run(null, ["vision", "--model", Clip("f32-standalone"), "--image", Image, "--out", output, .. extra]);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        double e = RelL2(output, Clip("f32-standalone", golden));
        TestContext.Out.WriteLine($"parrot vision {string.Join(' ', extra)}: relative L2 error vs PIL + PyTorch {e:E2}");
        Assert.That(e, Is.LessThanOrEqualTo(1e-5));
    }

    /// <summary>
    /// --dtype bf16 keeps the tower's weights in bf16: the written float32 states follow PyTorch's bf16 computation of
    /// the same image (tools/make_clip_fixtures.py), to bf16 precision, and are not the float32 path's.
    /// </summary>
    [Test]
    public void VisionInBf16FollowsPyTorchsBf16Golden()
    {
        var dir = CliRunner.TempDir();
        string f32 = Path.Combine(dir, "f32.npy"), bf16 = Path.Combine(dir, "bf16.npy");
        var r = CliRunner.Run(null, "vision", "--model", Clip("f32-standalone"), "--image", Image, "--out", f32, "--dtype", "f32");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        r = CliRunner.Run(null, "vision", "--model", Clip("f32-standalone"), "--image", Image, "--out", bf16, "--dtype", "bf16");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        double vsBf16 = RelL2(bf16, Clip("f32-standalone", "vision_layer-2_bf16.npy"));
        double vsF32 = RelL2(bf16, Clip("f32-standalone", "vision_layer-2.npy"));
        double torchBf16VsF32 = RelL2(Clip("f32-standalone", "vision_layer-2_bf16.npy"), Clip("f32-standalone", "vision_layer-2.npy"));
        TestContext.Out.WriteLine($"parrot vision --dtype bf16: relative L2 {vsBf16:E2} from PyTorch's bf16, {vsF32:E2} from its float32 (PyTorch's bf16 from its float32: {torchBf16VsF32:E2})");
        Assert.That(RelL2(f32, Clip("f32-standalone", "vision_layer-2.npy")), Is.LessThanOrEqualTo(1e-5));
        Assert.That(vsBf16, Is.LessThanOrEqualTo(2e-2));
        Assert.That(vsF32, Is.LessThanOrEqualTo(2e-2));
        Assert.That(RelL2(bf16, f32), Is.GreaterThan(1e-4), "bf16 gave the float32 path's states: --dtype was not applied");
        r = CliRunner.Run(null, "vision", "--model", Clip("f32-standalone"), "--image", Image, "--out", bf16, "--dtype", "f16");
        Assert.That(r.ExitCode, Is.EqualTo(2));
    }

    [Test]
    public void APreprocessorConfigInTheModelDirectoryIsUsed()
    {
        var dir = CliRunner.TempDir();
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Clip("f32-standalone", f), Path.Combine(dir, f));
        var output = Path.Combine(dir, "feats.npy");
        // The same settings as the default for this tower, spelled as transformers writes them: same answer.
        File.WriteAllText(Path.Combine(dir, "preprocessor_config.json"),
            """{"crop_size": {"height": 28, "width": 28}, "size": {"shortest_edge": 28}, "resample": 3, "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}""");
        var r = CliRunner.Run(null, "vision", "--model", dir, "--image", Image, "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(RelL2(output, Clip("f32-standalone", "vision_layer-2.npy")), Is.LessThanOrEqualTo(1e-5));
        // Another mean: another answer, so the file was read.
        File.WriteAllText(Path.Combine(dir, "preprocessor_config.json"), """{"crop_size": 28, "size": 28, "image_mean": [0.5, 0.5, 0.5]}""");
        r = CliRunner.Run(null, "vision", "--model", dir, "--image", Image, "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(RelL2(output, Clip("f32-standalone", "vision_layer-2.npy")), Is.GreaterThan(1e-3));
        // A crop the tower cannot take.
        File.WriteAllText(Path.Combine(dir, "preprocessor_config.json"), """{"crop_size": 336, "size": 336}""");
        r = CliRunner.Run(null, "vision", "--model", dir, "--image", Image, "--out", output);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("336x336").And.Contain("28x28"));
    }

    [Test]
    public void AParrotCheckpointNeedsTheTowersConfig()
    {
        var output = Path.Combine(CliRunner.TempDir(), "feats.npy");
        var r = CliRunner.Run(null, "vision", "--model", Clip("f32-parrot"), "--image", Image, "--out", output);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("mm_vision_tower"));
        r = CliRunner.Run(null, "vision", "--model", Clip("f32-parrot"), "--config", Clip("f32-parrot", "clip_config.json"), "--image", Image, "--out", output, "--layer", "0");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        using var feats = Npy.Read(output);
        Assert.That(feats.Shape.ToArray(), Is.EqualTo(new[] { 17, 32 }));
    }

    [Test]
    public void BadArgumentsAndFilesAreClearErrors()
    {
        var dir = CliRunner.TempDir();
        var output = Path.Combine(dir, "feats.npy");
        var model = Clip("f32-standalone");

        void Fails(string expected, params string[] args)
        {
            var r = CliRunner.Run(null, ["vision", .. args]);
            Assert.That(r.ExitCode, Is.Not.EqualTo(0), $"parrot vision {string.Join(' ', args)}");
            Assert.That(r.Stderr, Does.Contain(expected), $"parrot vision {string.Join(' ', args)}");
            Assert.That(r.Stderr, Does.Not.Contain("   at "), "no stack trace");
        }

        Fails("--image", "--model", model, "--out", output);
        Fails("no such file", "--model", model, "--image", Path.Combine(dir, "missing.png"), "--out", output);
        var junk = Path.Combine(dir, "junk.png");
        File.WriteAllBytes(junk, [0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3, 4, 5, 6]);
        Fails("junk.png", "--model", model, "--image", junk, "--out", output);
        Fails("nowhere", "--model", Path.Combine(dir, "nowhere"), "--image", Image, "--out", output);
        Fails("--layer 4", "--model", model, "--image", Image, "--out", output, "--layer", "4");
        Fails("--layer -5", "--model", model, "--image", Image, "--out", output, "--layer=-5");
        Fails("x", "--model", model, "--image", Image, "--out", output, "--layer", "x");
        Fails(Path.Combine(dir, "no-dir"), "--model", model, "--image", Image, "--out", Path.Combine(dir, "no-dir", "feats.npy"));
        Fails("config.json", "--model", dir, "--image", Image, "--out", output);
        Assert.That(File.Exists(output), Is.False, "nothing is written on failure");
    }
}
