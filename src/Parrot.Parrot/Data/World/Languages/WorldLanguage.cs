using System.Text;

namespace Parrot.Parrot.Data.World;

/// <summary>
/// One language of the world: its lexicon and templates. Every language phrases the same
/// <see cref="QuestionForm"/>s and renders the same <see cref="AnswerValue"/>s, so a question and its
/// options mean the same thing in all six languages; only the words (with their agreement, cases and
/// measure words) differ. Phrasing variants are chosen by an integer the caller draws.
/// </summary>
public abstract class WorldLanguage
{
    private protected WorldLanguage() { }

    /// <summary>The language code used in sample metadata: en, zh, pt, ar, tr, ru.</summary>
    public abstract string Code { get; }

    /// <summary>The code in benchmark file names: as MMMB, "cn" for Chinese, otherwise <see cref="Code"/>.</summary>
    public string BenchmarkCode => Code == "zh" ? "cn" : Code;

    /// <summary>The multiple-choice instruction appended after the options (PARROT.md "Benchmarks", verbatim).</summary>
    public abstract string ChoiceInstruction { get; }

    /// <summary>The instruction appended to open questions, asking for a word or short phrase (as LLaVA's short-answer data).</summary>
    public abstract string ShortAnswerInstruction { get; }

    /// <summary>A one-sentence description of the scene; <paramref name="variant"/> picks the template.</summary>
    public abstract string Caption(Scene scene, int variant);

    /// <summary>The question sentence alone; <paramref name="variant"/> picks the phrasing.</summary>
    public abstract string Ask(Question question, int variant);

    /// <summary>The short answer <paramref name="value"/> as a reply to <paramref name="question"/> (agreeing with the noun it describes where the language needs it).</summary>
    public abstract string Answer(Question question, AnswerValue value);

    /// <summary>An open question: the question and the short-answer instruction on the next line.</summary>
    public string OpenPrompt(Question question, int variant) => Ask(question, variant) + "\n" + ShortAnswerInstruction;

    /// <summary>
    /// A multiple-choice prompt laid out as the benchmark prompt: the question, one line "A. …" per option,
    /// then the instruction.
    /// </summary>
    public string ChoicePrompt(ChoiceQuestion choice, int variant)
    {
        var sb = new StringBuilder(Ask(choice.Question, variant));
        for (int i = 0; i < choice.Options.Count; i++) sb.Append('\n').Append((char)('A' + i)).Append(". ").Append(Answer(choice.Question, choice.Options[i]));
        return sb.Append('\n').Append(ChoiceInstruction).ToString();
    }

    /// <summary>The six languages in the paper's order: en, zh, pt, ar, tr, ru.</summary>
    public static IReadOnlyList<WorldLanguage> All { get; } =
        [new EnglishLanguage(), new ChineseLanguage(), new PortugueseLanguage(), new ArabicLanguage(), new TurkishLanguage(), new RussianLanguage()];

    /// <summary>The language with code <paramref name="code"/> (en, zh or cn, pt, ar, tr, ru).</summary>
    public static WorldLanguage Get(string code) =>
        All.FirstOrDefault(l => l.Code == code || l.BenchmarkCode == code)
        ?? throw new ArgumentException($"unknown world language '{code}' (known: en, zh, pt, ar, tr, ru)", nameof(code));

    /// <summary>Joins list items with commas and a final conjunction ("a, b and c").</summary>
    private protected static string JoinList(IReadOnlyList<string> items, string comma, string lastJoiner)
    {
        if (items.Count == 1) return items[0];
        return string.Join(comma, items.Take(items.Count - 1)) + lastJoiner + items[^1];
    }

    /// <summary>Upper-cases the first letter (invariant rules; Turkish overrides for dotted/dotless i).</summary>
    private protected virtual string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..];

    /// <summary>Throws for an answer kind the question cannot have: a bug, never a user error.</summary>
    private protected static InvalidOperationException Unexpected(object what) =>
        new($"world language: nothing to say for {what}");
}
