using Parrot.Tests.Shared;

namespace Parrot.Cli.Tests;

/// <summary>
/// Error messages as a first-time user read them (the audit's reproductions): the command's name once, a path once, the
/// user's words (not a library class's name), one line on standard error.
/// </summary>
public class ErrorMessageTests() : TinyModelSetFixture("parrot-cli-error-message-tests")
{
    private static (int Code, string Stdout, string Stderr) Parrot(string? stdin, params string[] args)
    {
        var r = CliRunner.Run(stdin, args);
        TestContext.Out.WriteLine($"parrot {string.Join(' ', args)} → {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        return r;
    }

    private static int Count(string text, string part) => (text.Length - text.Replace(part, "", StringComparison.Ordinal).Length) / part.Length;

    /// <summary>A truncated image names its path once: the loader's message begins with it, and chat put it in front again.</summary>
    [Test]
    public void AnImageErrorNamesThePathOnce()
    {
        var truncated = Path.Combine(Root, "truncated.png");
        var bytes = File.ReadAllBytes(Red);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);

        var (code, _, stderr) = Parrot(null, "chat", "--model", ParrotDir, "--image", truncated, "--prompt", "x");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.StartWith($"parrot chat: --image: {truncated}: truncated: "));
        Assert.That(Count(stderr, truncated), Is.EqualTo(1), stderr);

        (code, _, stderr) = Parrot($"/image {truncated}\n/exit\n", "chat", "--model", ParrotDir);
        Assert.That(code, Is.EqualTo(0));
        Assert.That(stderr, Does.Contain($"/image: {truncated}: truncated: "));
        Assert.That(Count(stderr, truncated), Is.EqualTo(1), stderr);
    }

    /// <summary>A library message that begins with the command's name ("generate: …", "train-lm: …") gets it once.</summary>
    [Test]
    public void TheCommandIsNamedOnce()
    {
        var (_, _, stderr) = Parrot(null, "generate", "--model", QwenDir, "--tokens", "99999", "--max-new-tokens", "1");
        Assert.That(stderr, Does.StartWith("parrot generate: token id 99999 is outside the vocabulary [0, "));

        var world = Path.Combine(Root, "world");
        Directory.CreateDirectory(world);
        (_, _, stderr) = Parrot(null, "pretrain-vision", "--world", world, "--out", Path.Combine(Root, "tower"), "--steps", "0");
        Assert.That(stderr, Is.EqualTo("parrot pretrain-vision: steps must be positive, got 0\n"));

        var ragged = Path.Combine(Root, "ragged.jsonl");
        File.WriteAllText(ragged, "{\"ids\": [1, 2, 3]}\n{\"ids\": [4, 5]}\n");
        (_, _, stderr) = Parrot(null, "train-lm", "--model", QwenDir, "--tokens", ragged, "--steps", "1", "--batch", "1", "--lr", "1e-4",
            "--log", Path.Combine(Root, "log.jsonl"), "--out", Path.Combine(Root, "lm-out"));
        Assert.That(stderr, Is.EqualTo("parrot train-lm: sequence 2 has 2 tokens, the first has 3: all must be equal\n"));
    }

    /// <summary>Options the library refuses are named in the user's words, not after the library's classes.</summary>
    [Test]
    public void NoLibraryClassIsNamed()
    {
        var (_, _, stderr) = Parrot(null, "make-world", "--out", Path.Combine(Root, "w8"), "--size", "8");
        Assert.That(stderr, Is.EqualTo("parrot make-world: the image size must be 32–1024 pixels, got 8\n"));

        var corpus = Path.Combine(Root, "corpus.txt");
        File.WriteAllText(corpus, "a b c\n");
        (_, _, stderr) = Parrot(null, "train-tokenizer", "--input", corpus, "--vocab-size", "100", "--out", Path.Combine(Root, "tok.json"));
        Assert.That(stderr, Does.StartWith("parrot train-tokenizer: vocabulary size 100 leaves no room for merges"));

        var data = Path.Combine(Root, "data.json");
        File.WriteAllText(data, "[]");
        (_, _, stderr) = Parrot(null, "train", "--stage", "1", "--model", ParrotDir, "--data", data, "--images", Root, "--out", Path.Combine(Root, "t"),
            "--batch", "16", "--micro-batch", "3");
        Assert.That(stderr, Is.EqualTo("parrot train: the global batch 16 must be a multiple of the micro-batch 3\n"));
    }

    /// <summary>
    /// The same kind of problem gets the same exit code in every command: a value out of its range is a usage error (2) in
    /// make-world and train-tokenizer too (they gave 1), a missing --image is 2 in vision as in forward (vision gave 1), and
    /// a --device that cannot be used is 2 in selftest as in every model command (selftest gave 1, without the option's name).
    /// </summary>
    [Test]
    public void TheSameProblemGetsTheSameExitCode()
    {
        foreach (var (option, value, message) in new[]
        {
            ("--size", "8", "the image size must be 32–1024 pixels, got 8"),
            ("--mc-fraction", "2", "the multiple-choice fraction must be in [0, 1], got 2"),
            ("--max-turns", "0", "max turns must be 1–"),
            ("--stage1", "-1", "the stage-1 count must be ≥ 0, got -1"),
        })
        {
            var (code, stdout, stderr) = Parrot(null, "make-world", "--out", Path.Combine(Root, "w"), option, value);
            Assert.That((code, stdout), Is.EqualTo((2, "")), $"make-world {option} {value}: {stderr}");
            Assert.That(stderr, Does.StartWith($"parrot make-world: {message}"));
        }
        Assert.That(Directory.Exists(Path.Combine(Root, "w")), Is.False, "nothing written");

        var corpus = Path.Combine(Root, "corpus.txt");
        File.WriteAllText(corpus, "a b c\n");
        foreach (var (settings, message) in new[]
        {
            (new[] { "--vocab-size", "100" }, "vocabulary size 100 leaves no room"),
            (["--vocab-size", "300", "--min-frequency", "0"], "the minimum pair frequency must be at least 1"),
        })
        {
            var (code, _, stderr) = Parrot(null, ["train-tokenizer", "--input", corpus, .. settings, "--out", Path.Combine(Root, "tok.json")]);
            Assert.That(code, Is.EqualTo(2), $"train-tokenizer {string.Join(' ', settings)}: {stderr}");
            Assert.That(stderr, Does.StartWith($"parrot train-tokenizer: {message}"));
        }

        var missing = Path.Combine(Root, "missing.png");
        var (fc, _, ferr) = Parrot(null, "forward", "--model", ParrotDir, "--tokens=-200,5", "--image", missing, "--out", Path.Combine(Root, "f.npy"));
        var (vc, _, verr) = Parrot(null, "vision", "--model", Path.Combine(ParrotDir, "vision"), "--image", missing, "--out", Path.Combine(Root, "v.npy"));
        Assert.That((fc, ferr), Is.EqualTo((2, $"parrot forward: --image: {missing}: no such file\n")));
        Assert.That((vc, verr), Is.EqualTo((2, $"parrot vision: --image: {missing}: no such file\n")));
        var (cc, _, cerr) = Parrot(null, "chat", "--model", ParrotDir, "--image", missing, "--prompt", "hi");
        Assert.That((cc, cerr), Is.EqualTo((2, $"parrot chat: --image: {missing}: no such file\n")), "chat says it as forward and vision do");

        if (global::Parrot.Tensors.Cuda.CudaBackend.IsAvailable(out _)) return; // a GPU: the device is not the problem
        var (sc, _, serr) = Parrot(null, "selftest", "--device", "cuda", "--op", "softmax");
        Assert.That(sc, Is.EqualTo(2), serr);
        Assert.That(serr, Does.StartWith("parrot selftest: --device cuda: no CUDA device: "));
    }
}
