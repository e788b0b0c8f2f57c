using System.Text;
using Parrot.Parrot.Text;

namespace Parrot.Cli.Tests;

/// <summary>`parrot train-tokenizer` through the built executable.</summary>
public class TrainTokenizerCommandTests
{
    private const string English = "The red circle is left of the blue square.\nHow many circles are there? There are 3 circles.\n";
    private const string Others = "红色的圆在蓝色正方形的左边。\nO círculo vermelho está à esquerda.\nKırmızı daire solda.\nКрасный круг слева.\nالدائرة الحمراء على اليسار.\n";

    [Test]
    public void TrainsFromSeveralFilesAndWritesALoadableTokenizer()
    {
        string dir = CliRunner.TempDir();
        string a = Path.Combine(dir, "en.txt"), b = Path.Combine(dir, "other.txt"), output = Path.Combine(dir, "tok", "tokenizer.json");
        File.WriteAllText(a, string.Concat(Enumerable.Repeat(English, 30)));
        File.WriteAllText(b, string.Concat(Enumerable.Repeat(Others, 30)));
        var (code, stdout, stderr) = CliRunner.Run(null, "train-tokenizer", "--input", $"{a},{b}", "--vocab-size", "400", "--out", output,
            "--special", "<|endoftext|>,<|im_start|>,<|im_end|>,<image>");
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stdout, Does.Contain($"wrote {output}: 400 ids (256 bytes + 140 merged tokens + 4 special)"));

        var tok = BpeTokenizer.Load(output);
        Assert.That(tok.IdCount, Is.EqualTo(400));
        Assert.That(tok.TokenToId("<image>"), Is.EqualTo(399));
        string text = "<|im_start|>user\n<image>\nКакого цвета круг? 红色。<|im_end|>";
        Assert.That(tok.Decode(tok.Encode(text)), Is.EqualTo(text));
        Assert.That(tok.Encode(" circles"), Has.Length.EqualTo(1));

        // The same inputs give the same file.
        string again = Path.Combine(dir, "again.json");
        Assert.That(CliRunner.Run(null, "train-tokenizer", "--input", $"{a},{b}", "--vocab-size", "400", "--out", again,
            "--special", "<|endoftext|>,<|im_start|>,<|im_end|>,<image>").ExitCode, Is.Zero);
        Assert.That(File.ReadAllBytes(again), Is.EqualTo(File.ReadAllBytes(output)));
    }

    [Test]
    public void BadInputsGiveClearErrors()
    {
        string dir = CliRunner.TempDir();
        string text = Path.Combine(dir, "text.txt");
        File.WriteAllText(text, English);
        string output = Path.Combine(dir, "tokenizer.json");

        var (code, _, stderr) = CliRunner.Run(null, "train-tokenizer", "--input", $"{text},{dir}/nope.txt", "--vocab-size", "300", "--out", output);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain($"parrot train-tokenizer: input file {dir}/nope.txt does not exist"));

        (code, _, stderr) = CliRunner.Run(null, "train-tokenizer", "--input", text, "--vocab-size", "259", "--out", output);
        Assert.That(code, Is.EqualTo(2), "a usage error");
        Assert.That(stderr, Does.Contain("vocabulary size 259 leaves no room for merges"));

        string empty = Path.Combine(dir, "empty.txt");
        File.WriteAllText(empty, "");
        (code, _, stderr) = CliRunner.Run(null, "train-tokenizer", "--input", empty, "--vocab-size", "300", "--out", output);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("the corpus is empty"));
        Assert.That(File.Exists(output), Is.False, "nothing is written on failure");

        // \ud800 (an unpaired surrogate) parses but is not text: reading it threw InvalidOperationException, and the message
        // named neither the file nor the line.
        string lines = Path.Combine(dir, "lines.jsonl");
        File.WriteAllText(lines, "{\"text\": \"fine\"}\n{\"text\": \"x\\ud800\"}\n");
        (code, _, stderr) = CliRunner.Run(null, "train-tokenizer", "--input", lines, "--jsonl-field", "text", "--vocab-size", "300", "--out", output);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain($"{lines}:2: \"text\" is not valid text"));
    }
}
