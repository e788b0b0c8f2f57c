using System.Text.Json;

namespace Parrot.Cli.Tests;

public class MakeWorldCommandTests
{
    [Test]
    public void MakesAWorld_AndTheSameSeedGivesTheSameFiles()
    {
        var dir = CliRunner.TempDir();
        string a = Path.Combine(dir, "a"), b = Path.Combine(dir, "b");
        string[] args = ["--seed", "5", "--size", "48", "--stage1", "20", "--stage2", "60", "--bench", "14", "--text", "5", "--ratios", "1,1,1,1,1,1"];
        var (code, stdout, stderr) = CliRunner.Run(null, ["make-world", "--out", a, .. args]);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("80 images").And.Contain("en 10 zh 10 pt 10 ar 10 tr 10 ru 10"));
        Assert.That(CliRunner.Run(null, ["make-world", "--out", b, .. args]).ExitCode, Is.EqualTo(0));
        foreach (var f in Directory.EnumerateFiles(a, "*", SearchOption.AllDirectories))
            Assert.That(File.ReadAllBytes(Path.Combine(b, Path.GetRelativePath(a, f))), Is.EqualTo(File.ReadAllBytes(f)), f);
        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(a, "world.json")));
        Assert.That(manifest.RootElement.GetProperty("image_size").GetInt32(), Is.EqualTo(48));
        Assert.That(File.ReadAllLines(Path.Combine(a, "benchmark", "mmmb_cn.tsv")), Has.Length.EqualTo(15));
        Directory.Delete(dir, true);
    }

    [TestCase("--ratios", "1,2,3", "needs 6")]
    [TestCase("--ratios", "1,2,x,4,5,6", "'x' is not a number")]
    [TestCase("--size", "8", "image size")]
    [TestCase("--stage2", "-3", "stage-2 count")]
    [TestCase("--mc-fraction", "2", "multiple-choice fraction")]
    [TestCase("--max-turns", "0", "max turns")]
    public void BadArgumentsAreReportedClearly(string option, string value, string message)
    {
        var dir = CliRunner.TempDir();
        var (code, _, stderr) = CliRunner.Run(null, "make-world", "--out", Path.Combine(dir, "w"), option, value);
        Assert.That(code, Is.EqualTo(2), "a usage error");
        Assert.That(stderr, Does.StartWith("parrot make-world:").And.Contain(message));
        Directory.Delete(dir, true);
    }

    [Test]
    public void RefusesANonEmptyDirectoryThatIsNotAWorld()
    {
        var dir = CliRunner.TempDir();
        File.WriteAllText(Path.Combine(dir, "keep.txt"), "user data");
        var (code, _, stderr) = CliRunner.Run(null, "make-world", "--out", dir, "--stage1", "1", "--stage2", "1", "--bench", "0", "--text", "0");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("not empty"));
        Assert.That(File.ReadAllText(Path.Combine(dir, "keep.txt")), Is.EqualTo("user data"));
        Directory.Delete(dir, true);
    }
}
