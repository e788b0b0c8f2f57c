using Parrot.Parrot;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Vision;
using Parrot.Tests.Shared;

namespace Parrot.Cli.Tests;

public class ChatCommandTests() : TinyModelSetFixture("parrot-cli-chat-tests")
{
    private static readonly GenerationOptions Short = new() { MaxNewTokens = 12 };

    [Test]
    public void OneShotPrintsTheAnswerAndExits()
    {
        string expected;
        using (var model = ParrotModel.Load(ParrotDir)) expected = model.Ask("Что на картинке?", Red, Short);
        var (code, stdout, stderr) = CliRunner.Run(null, "chat", "--model", ParrotDir, "--image", Red, "--prompt", "Что на картинке?", "--max-new-tokens", "12");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Is.EqualTo(expected + Environment.NewLine));
    }

    [Test]
    public void SamplingFlagsReachTheGenerator()
    {
        var options = new GenerationOptions { MaxNewTokens = 10, Temperature = 1.3, TopP = 0.9, TopK = 40, Seed = 7, RepetitionPenalty = 1.2 };
        string expected;
        using (var model = ParrotModel.Load(QwenDir)) expected = model.Ask("Hello", (string?)null, options);
        string[] args = ["chat", "--model", QwenDir, "--prompt", "Hello", "--max-new-tokens", "10", "--temperature", "1.3", "--top-p", "0.9", "--top-k", "40", "--seed", "7", "--repetition-penalty", "1.2"];
        var (code, stdout, stderr) = CliRunner.Run(null, args);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Is.EqualTo(expected + Environment.NewLine));
        string greedy;
        using (var model = ParrotModel.Load(QwenDir)) greedy = model.Ask("Hello", (string?)null, new GenerationOptions { MaxNewTokens = 10 });
        Assert.That(expected, Is.Not.EqualTo(greedy), "sampling at temperature 1.3 should leave the greedy path");
    }

    /// <summary>The tiny models' context is 1024: a message that does not fit with --max-new-tokens is refused, as serve refuses it; interactively the session goes on (the turn is not kept) and says how to make room.</summary>
    [Test]
    public void MessagesPastTheContextAreRefused()
    {
        string tooLong = new('x', 1100);
        var (code, stdout, stderr) = CliRunner.Run(null, "chat", "--model", QwenDir, "--prompt", tooLong, "--max-new-tokens", "4");
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain("maximum context length is 1024 tokens; the prompt has").And.Contain("4 more were asked for (max new tokens)"));
        (code, stdout, stderr) = CliRunner.Run(null, "chat", "--model", QwenDir, "--prompt", "Hello", "--max-new-tokens", "1020");
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain("1020 more were asked for"));

        string expected;
        using (var model = ParrotModel.Load(QwenDir)) expected = model.Ask("Hello", (string?)null, new GenerationOptions { MaxNewTokens = 4 });
        (code, stdout, stderr) = CliRunner.Run(tooLong + "\nHello\n/exit\n", "chat", "--model", QwenDir, "--max-new-tokens", "4");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stderr, Does.Contain("error: this model's maximum context length is 1024 tokens").And.Contain("/reset starts a new conversation"));
        Assert.That(stdout, Is.EqualTo(expected + Environment.NewLine + Environment.NewLine), "the refused turn left no trace in the history");
    }

    [Test]
    public void InteractiveSessionKeepsHistoryAttachesImagesAndResets()
    {
        string a1, a2, a3, a4;
        using (var model = ParrotModel.Load(ParrotDir))
        {
            var chat = model.StartChat();
            a1 = chat.Send("Hello!", (string?)null, Short);
            a2 = chat.Send("What is this?", Red, Short);
            a3 = chat.Send("E esta?", Blue, Short);
            chat.Reset();
            a4 = chat.Send("Hello!", (string?)null, Short);
        }
        Assert.That(a4, Is.EqualTo(a1));
        string script = string.Join("\n", "Hello!", "/image " + Red, "What is this?", "", "/nonsense", "/image " + Path.Combine(Root, "missing.png"),
            $"/image \"{Blue}\"", "E esta?", "/reset", "Hello!", "/exit", "never read") + "\n";
        var (code, stdout, stderr) = CliRunner.Run(script, "chat", "--model", ParrotDir, "--max-new-tokens", "12");
        Assert.That(code, Is.EqualTo(0), stderr);
        string nl = Environment.NewLine;
        Assert.That(stdout, Is.EqualTo(a1 + nl + nl + a2 + nl + nl + a3 + nl + nl + a4 + nl + nl));
        Assert.That(stderr, Does.Contain("(conversation reset)").And.Contain("unknown command /nonsense").And.Contain("missing.png: no such file"));
    }

    [Test]
    public void ImageOnTheCommandLineGoesWithTheFirstMessage_AndEndOfInputEndsTheSession()
    {
        string a1, a2;
        using (var model = ParrotModel.Load(ParrotDir))
        {
            var chat = model.StartChat("Be brief.");
            a1 = chat.Send("Describe it.", Red, Short);
            a2 = chat.Send("Why?", (string?)null, Short);
        }
        var (code, stdout, stderr) = CliRunner.Run("Describe it.\nWhy?\n", "chat", "--model", ParrotDir, "--image", Red, "--system", "Be brief.", "--max-new-tokens", "12");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Is.EqualTo(a1 + Environment.NewLine + Environment.NewLine + a2 + Environment.NewLine + Environment.NewLine));
    }

    /// <summary>
    /// An empty or blank --prompt is a usage error, as an empty line is skipped in the interactive chat: it was sent to the
    /// model as a message and answered.
    /// </summary>
    [TestCase("")]
    [TestCase("  \t ")]
    public void AnEmptyPromptIsAUsageError(string prompt)
    {
        var (code, stdout, stderr) = CliRunner.Run(null, "chat", "--model", QwenDir, "--prompt", prompt, "--max-new-tokens", "4");
        Assert.That((code, stdout), Is.EqualTo((2, "")), stderr);
        Assert.That(stderr, Is.EqualTo("parrot chat: --prompt is empty: give the message to answer, or leave --prompt out for an interactive chat\n"));
    }

    [Test]
    public void BadInputsAreClearErrors()
    {
        var (code, _, stderr) = CliRunner.Run(null, "chat", "--model", ParrotDir, "--image", Path.Combine(Root, "nope.png"), "--prompt", "x");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--image").And.Contain("nope.png"));

        (code, _, stderr) = CliRunner.Run(null, "chat", "--model", ParrotDir, "--prompt", "x", "--top-p", "0");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("top-p"));

        (code, _, stderr) = CliRunner.Run(null, "chat", "--model", QwenDir, "--image", Red, "--prompt", "x");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("text-only"));

        (code, _, stderr) = CliRunner.Run(null, "chat", "--model", Path.Combine(Root, "none"), "--prompt", "x");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("not a directory"));
    }
}
