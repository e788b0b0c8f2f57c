using System.Text.Json.Nodes;
using Parrot.Tensors.Formats;

namespace Parrot.Cli.Tests;

/// <summary>
/// `parrot forward` / `parrot generate` on Parrot model directories with `--image`, against the golden logits of
/// tools/parrot_reference.py (Fixtures/parrot from tests/Parrot.Parrot.Tests).
/// </summary>
public class ParrotForwardGenerateTests
{
    private static string Fixture(string name) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", name);
    private static string ImagePath => Fixture("image.png");

    private static long[] Prompt()
    {
        using var t = Npy.Read(Fixture("prompt.npy"));
        return t.ToLongArray();
    }

    private static string Tokens(IEnumerable<long> ids) => "--tokens=" + string.Join(",", ids);

    private static double RelL2ToGolden(string npy, string golden, int rows)
    {
        using var ours = Npy.Read(npy);
        Assert.That(ours.Shape.ToArray(), Is.EqualTo(new[] { rows, 64 }));
        using var gold = Npy.Read(golden);
        var a = ours.ToArray<float>(); var b = gold.ToFloatArray();
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { num += (a[i] - (double)b[i]) * (a[i] - (double)b[i]); den += (double)b[i] * b[i]; }
        return Math.Sqrt(num / den);
    }

    [TestCase("f32-separate")]
    [TestCase("bf16-bundled")]
    public void ForwardWithAnImageWritesTheReferenceLogits(string variant)
    {
        var ids = Prompt();
        var output = Path.Combine(CliRunner.TempDir(), "logits.npy");
        var r = CliRunner.Run(null, "forward", "--model", Fixture(variant), Tokens(ids), "--image", ImagePath, "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        // T' = T - 1 + (1 + 16): the placeholder became the CLS token and 4 x 4 patches.
        Assert.That(RelL2ToGolden(output, Path.Combine(Fixture(variant), "logits.npy"), ids.Length - 1 + 17), Is.LessThan(1e-4));
    }

    [Test]
    public void ForwardTakesAListStartingWithThePlaceholderAndTextOnlyPrompts()
    {
        var text = Prompt().Where(i => i != -200).ToArray();
        var dir = CliRunner.TempDir();
        var r = CliRunner.Run(null, "forward", "--model", Fixture("f32-separate"), Tokens(new long[] { -200 }.Concat(text)), "--image", ImagePath, "--out", Path.Combine(dir, "first.npy"));
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(RelL2ToGolden(Path.Combine(dir, "first.npy"), Path.Combine(Fixture("f32-separate"), "logits_image_first.npy"), text.Length + 17), Is.LessThan(1e-4));
        r = CliRunner.Run(null, "forward", "--model", Fixture("f32-separate"), "--tokens", string.Join(",", text), "--out", Path.Combine(dir, "text.npy"));
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(RelL2ToGolden(Path.Combine(dir, "text.npy"), Path.Combine(Fixture("f32-separate"), "logits_text.npy"), text.Length), Is.LessThan(1e-4));
    }

    [TestCase("f32-separate", true)]
    [TestCase("bf16-bundled", false)]
    public void GenerateWithAnImageMatchesTheReference(string variant, bool ignoreEos)
    {
        using var gold = Npy.Read(Path.Combine(Fixture(variant), "greedy.npy"));
        var expected = gold.ToLongArray().ToList();
        if (!ignoreEos) expected = expected.Take(expected.IndexOf(63) + 1).ToList(); // eos_token_id 63 ends it
        var args = new List<string> { "generate", "--model", Fixture(variant), Tokens(Prompt()), "--image", ImagePath, "--max-new-tokens", "8" };
        if (ignoreEos) args.Add("--ignore-eos");
        var r = CliRunner.Run(null, args.ToArray());
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(r.Stdout.Trim(), Is.EqualTo(string.Join(",", expected)));
    }

    /// <summary>
    /// The fixture's context is 256: an image's 17 visual tokens count towards it (T' = T − 1 + 17), in forward and in
    /// generate alike, checked before the tower runs.
    /// </summary>
    [Test]
    public void VisualTokensCountTowardsTheContext()
    {
        var text = Prompt().Where(i => i != -200).ToArray();
        var ids = new long[] { -200 }.Concat(Enumerable.Range(0, 240 - text.Length).SelectMany(_ => text.Take(1))).Concat(text).ToArray(); // 241 ids: T' = 257
        Assert.That(ids.Length - 1 + 17, Is.EqualTo(257));
        string output = Path.Combine(CliRunner.TempDir(), "logits.npy");
        var r = CliRunner.Run(null, "forward", "--model", Fixture("f32-separate"), Tokens(ids), "--image", ImagePath, "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.Contain("maximum context length is 256 tokens; the prompt has 257 tokens"));
        r = CliRunner.Run(null, "forward", "--model", Fixture("f32-separate"), Tokens(ids.Take(ids.Length - 1)), "--image", ImagePath, "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr); // T' = 256: the whole context
        var shorter = ids.Take(ids.Length - 5).ToArray(); // T' = 252
        r = CliRunner.Run(null, "generate", "--model", Fixture("f32-separate"), Tokens(shorter), "--image", ImagePath, "--max-new-tokens", "5");
        Assert.That(r.ExitCode, Is.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.Contain("the prompt has 252 tokens and 5 more were asked for (max new tokens), 257 in all"));
        r = CliRunner.Run(null, "generate", "--model", Fixture("f32-separate"), Tokens(shorter), "--image", ImagePath, "--max-new-tokens", "4", "--ignore-eos");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(r.Stdout.Trim().Split(','), Has.Length.EqualTo(4));
    }

    [Test]
    public void VisionOverridesTheConfigsTowerPath()
    {
        var dir = Path.Combine(CliRunner.TempDir(), "model");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(Fixture("f32-separate"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        config["mm_vision_tower"] = "/mnt/training-machine/clip-vit-large-patch14-336";
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        var output = Path.Combine(dir, "logits.npy");
        var r = CliRunner.Run(null, "forward", "--model", dir, Tokens(Prompt()), "--image", ImagePath, "--out", output);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("mm_vision_tower '/mnt/training-machine/clip-vit-large-patch14-336'"));
        r = CliRunner.Run(null, "forward", "--model", dir, Tokens(Prompt()), "--image", ImagePath, "--vision", Fixture("tower"), "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(RelL2ToGolden(output, Path.Combine(Fixture("f32-separate"), "logits.npy"), Prompt().Length + 16), Is.LessThan(1e-4));
    }

    /// <summary>
    /// --vision, like every path flag, is from the current directory, not from the model folder (which holds a decoy
    /// tower/ without a config here); config.json's mm_vision_tower is from the model folder. A missing --vision is
    /// named as resolved.
    /// </summary>
    [Test]
    public void ARelativeVisionIsFromTheCurrentDirectory()
    {
        var root = CliRunner.TempDir();
        var dir = Path.Combine(root, "model");
        Directory.CreateDirectory(Path.Combine(dir, "tower"));
        foreach (var f in Directory.GetFiles(Fixture("f32-separate"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        Directory.CreateDirectory(Path.Combine(root, "tower"));
        foreach (var f in Directory.GetFiles(Fixture("tower"))) File.Copy(f, Path.Combine(root, "tower", Path.GetFileName(f)));
        var output = Path.Combine(root, "logits.npy");
        var r = CliRunner.RunIn(root, null, "forward", "--model", "model", Tokens(Prompt()), "--image", ImagePath, "--vision", "tower", "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(RelL2ToGolden(output, Path.Combine(Fixture("f32-separate"), "logits.npy"), Prompt().Length + 16), Is.LessThan(1e-4));
        // Without --vision: mm_vision_tower "../tower", from the model folder (root/tower), not from the current
        // directory (model/tower here, where "../tower" is the decoy).
        File.Delete(output);
        r = CliRunner.RunIn(Path.Combine(dir, "tower"), null, "forward", "--model", "..", Tokens(Prompt()), "--image", ImagePath, "--out", output);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);

        r = CliRunner.RunIn(root, null, "generate", "--model", dir, Tokens(Prompt()), "--image", ImagePath, "--vision", "nowhere", "--max-new-tokens", "1");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr, Is.EqualTo($"parrot generate: --vision: {Path.Combine(root, "nowhere")} is not a directory (--vision nowhere, from the current directory)\n"));
    }

    [Test]
    public void ClearErrorsForImageArguments()
    {
        var ids = Prompt();
        var text = ids.Where(i => i != -200).ToArray();
        string outFile = Path.Combine(CliRunner.TempDir(), "x.npy");
        string qwen2 = Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "qwen2", "f32-gqa-untied");
        string notAnImage = Path.Combine(CliRunner.TempDir(), "notes.png");
        File.WriteAllText(notAnImage, "this is not a picture");
        var cases = new (string[] Args, string Expected)[]
        {
            (["forward", "--model", Fixture("f32-separate"), Tokens(ids), "--out", outFile], "-200 but no --image"),
            (["generate", "--model", Fixture("f32-separate"), Tokens(ids), "--max-new-tokens", "2"], "-200 but no --image"),
            (["forward", "--model", Fixture("f32-separate"), Tokens(text), "--image", ImagePath, "--out", outFile], "--tokens has no image placeholder -200"),
            (["forward", "--model", Fixture("f32-separate"), Tokens(ids.Append(-200)), "--image", ImagePath, "--out", outFile], "appears 2 times"),
            (["forward", "--model", qwen2, "--tokens", "1,2,3", "--image", ImagePath, "--out", outFile], "text-only Qwen2 model takes no images"),
            (["generate", "--model", qwen2, "--tokens=-200,1,2", "--max-new-tokens", "2"], "-200 is the image placeholder"),
            (["forward", "--model", Fixture("f32-separate"), Tokens(ids), "--image", notAnImage, "--out", outFile], notAnImage),
            (["generate", "--model", Fixture("f32-separate"), Tokens(ids), "--image", notAnImage + ".missing", "--max-new-tokens", "2"], notAnImage + ".missing"),
            (["forward", "--model", Fixture("f32-separate"), Tokens(ids.Append(64)), "--image", ImagePath, "--out", outFile], "id 64 is outside the vocabulary [0, 64)"),
            // Stopped inside the model with "LanguageMoe: the prompt has no text tokens to steer the routing".
            (["generate", "--model", Fixture("f32-separate"), "--tokens=-200", "--image", ImagePath, "--max-new-tokens", "2"], "the prompt is the image placeholder -200 alone"),
        };
        foreach (var (args, expected) in cases)
        {
            var r = CliRunner.Run(null, args);
            Assert.That(r.ExitCode, Is.Not.EqualTo(0), string.Join(" ", args));
            Assert.That(r.Stderr, Does.Contain(expected), string.Join(" ", args));
            Assert.That(r.Stderr, Does.Not.Contain("   at "), "a message, not a stack trace");
        }
        Assert.That(File.Exists(outFile), Is.False);
    }

    [Test]
    public void ForwardHelpDocumentsTheSplicedLength()
    {
        var r = CliRunner.Run(null, "forward", "--help");
        Assert.That(r.ExitCode, Is.EqualTo(0));
        Assert.That(r.Stdout, Does.Contain("--image").And.Contain("--vision").And.Contain("T' = T - 1 + 1 + N"));
    }
}
