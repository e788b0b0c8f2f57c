using System.Diagnostics;
using System.Text.Json;
using Parrot.Cli;
using Parrot.Parrot.Text;

namespace Parrot.Cli.Tests;

/// <summary>`parrot tokenize`: in-process for the cases, and once through the built executable.</summary>
public class TokenizeCommandTests
{
    private static readonly string Fixtures = FindFixtures();
    private static string Tokenizer => Path.Combine(Fixtures, "qwen-tokenizer", "tokenizer.json.gz");

    private static string FindFixtures()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "Parrot.Parrot.Tests", "Fixtures");
            if (File.Exists(Path.Combine(candidate, "tokenizer-corpus.jsonl"))) return candidate;
        }
        throw new DirectoryNotFoundException("tests/Parrot.Parrot.Tests/Fixtures not found");
    }

    private static readonly Lazy<BpeTokenizer> Qwen = new(() => BpeTokenizer.Load(Tokenizer));

    /// <summary>Runs the command on <paramref name="input"/> with Qwen's tokenizer, or loading <paramref name="tokenizerFile"/>.</summary>
    private static (int Code, string Out, string Err) Run(string input, string? tokenizerFile = null, bool specialAsText = false)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        using var stdin = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(input));
        int code = tokenizerFile is null
            ? TokenizeCommand.Run(Qwen.Value, specialAsText, stdin, output, error)
            : TokenizeCommand.Run(tokenizerFile, specialAsText, stdin, output, error);
        return (code, output.ToString(), error.ToString());
    }

    private static int[][] Ids(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
        .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray()).ToArray();

    [Test]
    public void TheCorpusGivesTheGoldenIds()
    {
        var (code, output, error) = Run(File.ReadAllText(Path.Combine(Fixtures, "tokenizer-corpus.jsonl")));
        Assert.That(code, Is.Zero, error);
        var golden = File.ReadAllLines(Path.Combine(Fixtures, "tokenizer-golden.jsonl"));
        Assert.That(Ids(output), Is.EqualTo(Ids(string.Join("\n", golden))));
    }

    [Test]
    public void SpecialTokensAreParsedUnlessAskedNotTo()
    {
        const string line = "{\"text\": \"<|im_end|>\", \"other\": 1}\n";
        Assert.That(Run(line).Out, Is.EqualTo("{\"ids\":[151645]}" + Environment.NewLine));
        Assert.That(Ids(Run(line, specialAsText: true).Out)[0], Does.Not.Contain(151645).And.Length.GreaterThan(1));
    }

    [TestCase("{\"text\": \"ok\"}\n{\"text\": 5}\n", 2, "\"text\" is Number")]
    [TestCase("{\"text\": \"ok\"}\n{\"txt\": \"x\"}\n", 2, "the object has no \"text\"")]
    [TestCase("[1, 2]\n", 1, "expected a JSON object")]
    [TestCase("{\"text\": \"ok\"}\n\n", 2, "empty line")]
    [TestCase("{\"text\": \"ok\"}\n{\"text\": \"x\"\n", 2, "not valid JSON")]
    [TestCase("{\"text\": \"\\ud800\"}\n", 1, "\"text\" cannot be read as a string")]
    public void BadLinesStopWithTheLineNumber(string input, int badLine, string problem)
    {
        var (code, output, error) = Run(input);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.StartWith($"parrot tokenize: stdin line {badLine}: {problem}"));
        Assert.That(Ids(output), Has.Length.EqualTo(badLine - 1), "lines before the bad one are answered");
    }

    [Test]
    public void BadTokenizerFilesAreNamed()
    {
        string missing = Path.Combine(Path.GetTempPath(), $"missing-{Guid.NewGuid():N}.json");
        var (code, _, error) = Run("", missing);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.StartWith($"parrot tokenize: cannot use tokenizer {missing}: "));

        // A folder (a model directory given instead of its tokenizer.json) is named as one, not "Access … is denied".
        string folder = Path.Combine(Path.GetTempPath(), $"folder-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            (code, _, error) = Run("", folder);
            Assert.That(code, Is.EqualTo(1));
            Assert.That(error, Is.EqualTo($"parrot tokenize: cannot use tokenizer {folder}: it is a directory, not a tokenizer.json file{Environment.NewLine}"));
        }
        finally { Directory.Delete(folder); }

        string bad = Path.Combine(Path.GetTempPath(), $"bad-{Guid.NewGuid():N}.json");
        File.WriteAllText(bad, "{\"model\": {\"type\": \"Unigram\"}}");
        try
        {
            (code, _, error) = Run("", bad);
            Assert.That(code, Is.EqualTo(1));
            Assert.That(error, Does.StartWith($"parrot tokenize: cannot use tokenizer {bad}: ").And.Contain("model type 'Unigram' is not supported"));
        }
        finally { File.Delete(bad); }
    }

    /// <summary>A split pattern that backtracks catastrophically on one line: that line is named, no hang, no stack trace.</summary>
    [Test, CancelAfter(60_000)]
    public void ATokenizerPatternThatGivesUpNamesTheLine()
    {
        string tiny = Path.Combine(Fixtures, "..", "..", "..", "assets", "tiny", "lm", "tokenizer.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(tiny))!;
        json["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = "(a+)+$";
        string bad = Path.Combine(Path.GetTempPath(), $"redos-{Guid.NewGuid():N}.json");
        File.WriteAllText(bad, json.ToJsonString());
        try
        {
            var (code, output, error) = Run("{\"text\": \"aaa\"}\n{\"text\": \"" + new string('a', 40) + "!\"}\n", bad);
            Assert.That(code, Is.EqualTo(1));
            Assert.That(Ids(output), Has.Length.EqualTo(1), "the first line was answered");
            Assert.That(error, Does.StartWith("parrot tokenize: stdin line 2: " + bad).And.Contain("catastrophic backtracking"));
        }
        finally { File.Delete(bad); }
    }

    [Test]
    public void TheExecutableAnswersLineByLineAndFailsOnBadArguments()
    {
        string dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "parrot.dll");
        var (code, output, error) = Exec(dll, ["tokenize", "--tokenizer", Tokenizer], "{\"text\": \"Hello world\"}\n{\"text\": \"你好\"}\n");
        Assert.That(code, Is.Zero, error);
        Assert.That(Ids(output), Is.EqualTo(new[] { new[] { 9707, 1879 }, new[] { 108386 } }));

        (code, _, error) = Exec(dll, ["tokenize"], "");
        Assert.That(code, Is.Not.Zero);
        Assert.That(error, Does.Contain("--tokenizer"));

        // Bytes that are not UTF-8 on the second line.
        byte[] notUtf8 = [.. "{\"text\": \"a\"}\n{\"text\": \""u8, 0xFF, .. "\"}\n"u8];
        (code, output, error) = Exec(dll, ["tokenize", "--tokenizer", Tokenizer], notUtf8);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.StartWith("parrot tokenize: stdin line 2: not valid UTF-8"));
        Assert.That(Ids(output), Is.EqualTo(new[] { new[] { 64 } }));
    }

    /// <summary>Through the executable, as a user sees it: one line on stderr with the command's prefix (as every command's), exit code 1, nothing on stdout.</summary>
    [Test]
    public void TheExecutableNamesAMissingTokenizerWithTheCommandsPrefix()
    {
        string dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "parrot.dll");
        string missing = Path.Combine(Path.GetTempPath(), $"missing-{Guid.NewGuid():N}", "tokenizer.json");
        var (code, output, error) = Exec(dll, ["tokenize", "--tokenizer", missing], "{\"text\": \"a\"}\n");
        Assert.That(code, Is.EqualTo(1), error);
        Assert.That(error, Does.StartWith($"parrot tokenize: cannot use tokenizer {missing}: "));
        Assert.That(error.TrimEnd().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
        Assert.That(output, Is.Empty);
    }

    private static (int Code, string Out, string Err) Exec(string dll, string[] args, string stdin) =>
        Exec(dll, args, System.Text.Encoding.UTF8.GetBytes(stdin));

    private static (int Code, string Out, string Err) Exec(string dll, string[] args, byte[] stdin)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        info.ArgumentList.Add(dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.StandardInput.BaseStream.Write(stdin);
        process.StandardInput.Close();
        if (!process.WaitForExit(120_000)) { process.Kill(); Assert.Fail("parrot did not finish"); }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
