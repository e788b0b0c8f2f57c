using System.Text.Json;
using Parrot.Parrot.Text;

namespace Parrot.Parrot.Tests.Text;

/// <summary>Parrot's ChatML formatting: prompt text, ids and labels against the replayed reference.</summary>
public class ChatMlTests
{
    private static readonly ChatMl Chat = new(TokenizerFixtures.Qwen);

    private static IEnumerable<TestCaseData> GoldenCases()
    {
        var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TokenizerFixtures.Folder, "chatml-golden.json")));
        int i = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            yield return new TestCaseData(c.Clone()).SetName($"Golden conversation {i++}");
    }

    [TestCaseSource(nameof(GoldenCases))]
    public void MatchesTheReference(JsonElement golden)
    {
        var turns = golden.GetProperty("conversation").EnumerateArray().Select(t => new ChatTurn(
            t.GetProperty("from").GetString() switch { "system" => ChatRole.System, "human" => ChatRole.User, _ => ChatRole.Assistant },
            t.GetProperty("value").GetString()!)).ToList();
        var prefaceJson = golden.GetProperty("preface");
        string? preface = prefaceJson.ValueKind == JsonValueKind.Null ? null : prefaceJson.GetString();

        var result = Chat.Format(turns, preface);

        Assert.That(result.Prompt, Is.EqualTo(golden.GetProperty("prompt").GetString()));
        Assert.That(result.Ids, Is.EqualTo(golden.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())));
        Assert.That(result.Labels, Is.EqualTo(golden.GetProperty("labels").EnumerateArray().Select(e => e.GetInt32())));
    }

    [Test]
    public void RenderWritesTheTextFormatGives()
    {
        ChatTurn[][] conversations =
        [
            [new(ChatRole.User, "A red circle.\nWhat colour is the circle?"), new(ChatRole.Assistant, "Red")],
            [new(ChatRole.System, "Be brief."), new(ChatRole.User, "Hi"), new(ChatRole.Assistant, "Hello"), new(ChatRole.User, "Again"), new(ChatRole.Assistant, "Hello")],
            [new(ChatRole.User, " Describe <image> it. ", HasImage: true), new(ChatRole.Assistant, "A square.")],
        ];
        foreach (var c in conversations)
            Assert.That(ChatMl.Render(c), Is.EqualTo(Chat.Format(c).Prompt));
        Assert.That(ChatMl.Render(conversations[0]), Is.EqualTo(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nA red circle.\nWhat colour is the circle?<|im_end|>\n<|im_start|>assistant\nRed<|im_end|>"));
    }

    [Test]
    public void QwenConstants()
    {
        Assert.That(Chat.AssistantHeaderLength, Is.EqualTo(3));
        Assert.That(Chat.ImStartId, Is.EqualTo(151644));
        Assert.That(Chat.ImEndId, Is.EqualTo(151645));
    }

    [Test]
    public void InferencePromptEndsWithTheAssistantHeader()
    {
        int[] ids = Chat.BuildQuery("What is this?", withImage: true);
        Assert.That(ids[^3..], Is.EqualTo(new[] { 151644, 77091, 198 }));
        Assert.That(ids.Count(i => i == ChatMl.ImageTokenIndex), Is.EqualTo(1));
        // The marker opens the user turn, right after its header, and the placeholder's "\n" stays text.
        int user = Array.IndexOf(ids, 872);
        Assert.That(ids[(user - 1)..(user + 4)], Is.EqualTo(new[] { 151644, 872, 198, ChatMl.ImageTokenIndex, 198 }));
        Assert.That(Chat.Format([new ChatTurn(ChatRole.User, "What is this?", HasImage: true)], "").Prompt,
            Does.EndWith("<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n"));
    }

    [Test]
    public void ImageTurnsMoveThePlaceholderToTheFront()
    {
        var withFlag = Chat.Format([new ChatTurn(ChatRole.User, "  Describe <image> this. ", HasImage: true)], "");
        var spelledOut = Chat.Format([new ChatTurn(ChatRole.User, "<image>\nDescribe  this.")], "");
        Assert.That(withFlag.Ids, Is.EqualTo(spelledOut.Ids));
    }

    [Test]
    public void LabelsCoverOnlyAssistantAnswersAndTheirEnd()
    {
        var turns = new List<ChatTurn>
        {
            new(ChatRole.User, "Hi"), new(ChatRole.Assistant, "Hello!"),
            new(ChatRole.User, "Bye"), new(ChatRole.Assistant, "Bye!"),
        };
        var r = Chat.FormatForTraining(turns);
        var learned = r.Labels.Select((l, i) => (l, i)).Where(p => p.l != ChatMl.IgnoreIndex).Select(p => p.i).ToArray();
        var tok = TokenizerFixtures.Qwen;
        // "Hello!" <|im_end|> "\n" for the first answer (not last), "Bye!" <|im_end|> for the last.
        string learnedText = string.Concat(learned.Select(i => tok.Decode(new[] { r.Ids[i] })));
        Assert.That(learnedText, Is.EqualTo("Hello!<|im_end|>\nBye!<|im_end|>"));
        Assert.That(learned.All(i => r.Labels[i] == r.Ids[i]), Is.True);
        Assert.That(r.Prompt, Does.StartWith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"));
        Assert.That(r.Ids[^1], Is.EqualTo(151645), "the last turn ends with <|im_end|> and no newline");
    }

    [Test]
    public void BadInputIsRejected()
    {
        Assert.Throws<ArgumentException>(() => Chat.Format([new ChatTurn(ChatRole.User, null!)]));
        Assert.Throws<ArgumentException>(() => Chat.Format([new ChatTurn((ChatRole)7, "x")]));
        Assert.Throws<ArgumentNullException>(() => Chat.Format(null!));
        var noChatMl = TokenizerFixtures.Build(TokenizerFixtures.TinyJson());
        var e = Assert.Throws<ArgumentException>(() => new ChatMl(noChatMl));
        Assert.That(e!.Message, Does.Contain("<|im_start|>"));
    }
}
