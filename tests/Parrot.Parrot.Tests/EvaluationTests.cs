using Parrot.Parrot.Evaluation;

namespace Parrot.Parrot.Tests;

public class EvaluationTests
{
    private static readonly (char, string)[] Options = [('A', "red"), ('B', "dark red"), ('C', "blue"), ('D', "green")];

    [TestCase("A", 'A')]
    [TestCase("B.", 'B')]
    [TestCase("The answer is (C).", 'C')]
    [TestCase("答案是 D。", 'Z')]             // "。" is not among the replaced characters: the token is "D。"
    [TestCase("blue", 'C')]
    [TestCase("It is dark red.", 'Z')]        // "red" is inside "dark red": two options' texts match, so none
    [TestCase("A or B", 'Z')]                 // two letters: ambiguous
    [TestCase("I think it is a cat", 'Z')]    // lower-case "a" is not an option letter
    [TestCase("", 'Z')]
    [TestCase("green and blue", 'Z')]
    public void ExtractsAnswersByRule(string answer, char expected) =>
        Assert.That(AnswerExtraction.Extract(answer, Options), Is.EqualTo(expected));

    [Test]
    public void PromptFollowsTheProtocolInEachLanguage()
    {
        var q = new MultipleChoiceQuestion("What colour is the circle?", "Look at the left.", [('A', "red"), ('B', "blue")], "en");
        Assert.That(q.Prompt(), Is.EqualTo("Look at the left.\nWhat colour is the circle?\nA. red\nB. blue\nAnswer with the option's letter from the given choices directly."));
        var zh = new MultipleChoiceQuestion("圆是什么颜色？", null, [('A', "红色"), ('B', "蓝色")], "zh");
        Assert.That(zh.Prompt(), Does.EndWith("\nB. 蓝色\n请直接用给定选项中的选项字母回答。"));
        Assert.That(BenchmarkLanguages.Instructions.Keys, Is.EquivalentTo(new[] { "en", "zh", "pt", "ar", "tr", "ru" }));
        Assert.Throws<ArgumentException>(() => new MultipleChoiceQuestion("q", null, [('A', "x")], "fr").Prompt());
    }

    [TestCase("MMMB_en.tsv", "en")]
    [TestCase("mmmb_cn.tsv", "zh")]
    [TestCase("MTL_MMBench_DEV_ar.tsv", "ar")]
    [TestCase("bench_ru.tsv", "ru")]
    [TestCase("other.tsv", null)]
    public void LanguageFromFileName(string name, string? lang) => Assert.That(BenchmarkLanguages.FromFileName(name), Is.EqualTo(lang));

    [Test]
    public void TsvRoundTripsQuotedFieldsWithTabsQuotesAndNewlines()
    {
        var path = Path.Combine(Path.GetTempPath(), $"parrot-tsv-{Guid.NewGuid():N}.tsv");
        try
        {
            TsvTable.Write(path, ["index", "question", "answer"], [["1", "a\tb \"quoted\"\nsecond line", "A"], ["2", "", "B"]]);
            var t = TsvTable.Read(path);
            Assert.That(t.Columns, Is.EqualTo(new[] { "index", "question", "answer" }));
            Assert.That(t.Rows[0][1], Is.EqualTo("a\tb \"quoted\"\nsecond line"));
            Assert.That(t.Rows[1][1], Is.EqualTo(""));
            Assert.That(t.IndexOf("answer"), Is.EqualTo(2));
            var unquoted = TsvTable.Parse("index\tq\n1\tplain text\n", "mem");
            Assert.That(unquoted.Rows[0][1], Is.EqualTo("plain text"));
            Assert.That(() => TsvTable.Parse("a\tb\n1\n", "bad.tsv"), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("bad.tsv").And.Message.Contain("row 1"));
            Assert.That(() => TsvTable.Parse("a\n\"open\n", "bad.tsv"), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("not closed"));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void ProtocolsScoreUnitsAsTheBenchmarksDefine()
    {
        var items = new List<ScoredItem>
        {
            new(1, null, "colour", true), new(1_000_001, null, "colour", true), new(2_000_001, null, "colour", false),
            new(2, null, "count", true), new(1_000_002, null, "count", true),
        };
        Assert.That(Scoring.Accuracy(items, ScoringProtocol.Vanilla).Overall, Is.EqualTo(4 / 5.0));
        var circ = Scoring.Accuracy(items, ScoringProtocol.Circular);
        Assert.That(circ.Count, Is.EqualTo(2));
        Assert.That(circ.Overall, Is.EqualTo(0.5));
        Assert.That(circ.PerCategory["colour"], Is.EqualTo(0));
        var grouped = new List<ScoredItem> { new(1, "g1", "x", true), new(2, "g1", "x", false), new(3, "g2", "x", true) };
        Assert.That(Scoring.Accuracy(grouped, ScoringProtocol.Grouped).Overall, Is.EqualTo(0.5));
        Assert.That(Scoring.ProtocolFor("MTL_MMBench_DEV_en.tsv", false), Is.EqualTo(ScoringProtocol.Circular));
        Assert.That(Scoring.ProtocolFor("mmmb_en.tsv", true), Is.EqualTo(ScoringProtocol.Grouped));
        Assert.That(Scoring.ProtocolFor("mmmb_en.tsv", false), Is.EqualTo(ScoringProtocol.Vanilla));
    }
}
