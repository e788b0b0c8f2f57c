using System.Text;

namespace Parrot.Parrot.Evaluation;

/// <summary>The benchmark languages and their multiple-choice instructions (PARROT.md "Benchmarks").</summary>
public static class BenchmarkLanguages
{
    /// <summary>The instruction appended to a multiple-choice prompt, per language code.</summary>
    public static readonly IReadOnlyDictionary<string, string> Instructions = new Dictionary<string, string>
    {
        ["en"] = "Answer with the option's letter from the given choices directly.",
        ["zh"] = "请直接用给定选项中的选项字母回答。",
        ["pt"] = "Responda diretamente com a letra da opção das escolhas dadas.",
        ["ar"] = "أجب مباشرةً بحرف الخيار من الاختيارات المعطاة.",
        ["ru"] = "Ответьте буквой варианта из предложенных вариантов напрямую.",
        ["tr"] = "Verilen seçeneklerden doğrudan seçeneğin harfi ile cevap verin.",
    };

    /// <summary>
    /// The benchmark language code for <paramref name="code"/> (en, zh — also cn, as MMMB's file names write
    /// Chinese —, pt, ar, tr, ru; any case), or null when it is none of them.
    /// </summary>
    public static string? Normalize(string? code)
    {
        if (code is null) return null;
        var c = code.Trim().ToLowerInvariant();
        if (c == "cn") c = "zh";
        return Instructions.ContainsKey(c) ? c : null;
    }

    /// <summary>The language of a benchmark file from its name (…_en, …_cn or …_zh, …_pt, …_ar, …_tr, …_ru), or null.</summary>
    public static string? FromFileName(string path)
    {
        var name = Path.GetFileNameWithoutExtension(path).ToLowerInvariant();
        foreach (var (suffix, lang) in new[] { ("_en", "en"), ("_cn", "zh"), ("_zh", "zh"), ("_pt", "pt"), ("_ar", "ar"), ("_tr", "tr"), ("_ru", "ru") })
            if (name.EndsWith(suffix, StringComparison.Ordinal) || name.Contains(suffix + "_", StringComparison.Ordinal)) return lang;
        return null;
    }
}

/// <summary>One multiple-choice question: prompt building and answer extraction.</summary>
public sealed record MultipleChoiceQuestion(string Question, string? Hint, IReadOnlyList<(char Letter, string Text)> Options, string Language)
{
    /// <summary>
    /// The prompt: <c>[hint\n]question</c>, then <c>\nA. …</c> per option, then a newline and the instruction
    /// in the question's language.
    /// </summary>
    public string Prompt()
    {
        if (!BenchmarkLanguages.Instructions.TryGetValue(Language, out var instruction))
            throw new ArgumentException($"no multiple-choice instruction for language '{Language}'");
        var sb = new StringBuilder();
        if (!string.IsNullOrWhiteSpace(Hint)) sb.Append(Hint).Append('\n');
        sb.Append(Question);
        foreach (var (letter, text) in Options) sb.Append('\n').Append(letter).Append(". ").Append(text);
        sb.Append('\n').Append(instruction);
        return sb.ToString();
    }

    /// <summary>
    /// The option a free-form answer picks, by rule: punctuation stripped, a single option letter standing
    /// alone wins; else a single option whose text appears in the answer; else 'Z' (no answer, VLMEvalKit's mark).
    /// </summary>
    public char Extract(string answer) => AnswerExtraction.Extract(answer, Options);
}

/// <summary>Rule-based answer extraction (no model judge).</summary>
public static class AnswerExtraction
{
    /// <summary>The letter meaning "could not be extracted".</summary>
    public const char None = 'Z';

    /// <summary>VLMEvalKit's refusals: an answer containing one of these is 'Z' whatever else it says.</summary>
    public static readonly IReadOnlyList<string> Refusals =
    [
        "Sorry, I can't help with images of people yet.",
        "I can't process this file.",
        "I'm sorry, but without the image provided",
        "Cannot determine the answer",
    ];

    /// <summary>See <see cref="MultipleChoiceQuestion.Extract"/>; a VLMEvalKit refusal phrase (<see cref="Refusals"/>) gives 'Z'.</summary>
    public static char Extract(string answer, IReadOnlyList<(char Letter, string Text)> options)
    {
        ArgumentNullException.ThrowIfNull(answer);
        ArgumentNullException.ThrowIfNull(options);
        foreach (var refusal in Refusals)
            if (answer.Contains(refusal, StringComparison.Ordinal)) return None;
        var cleaned = new StringBuilder(answer.Length);
        foreach (var ch in answer) cleaned.Append(char.IsPunctuation(ch) || char.IsSymbol(ch) ? ' ' : ch);
        var tokens = cleaned.ToString().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var letters = options.Select(o => o.Letter).ToHashSet();
        var found = tokens.Where(t => t.Length == 1 && letters.Contains(t[0])).Select(t => t[0]).Distinct().ToList();
        if (found.Count == 1) return found[0];
        var lower = answer.ToLowerInvariant();
        var byText = options.Where(o => o.Text.Length > 0 && lower.Contains(o.Text.ToLowerInvariant(), StringComparison.Ordinal)).Select(o => o.Letter).Distinct().ToList();
        // When one option's text contains another's (e.g. "red" and "dark red"), keep the longest match only.
        if (byText.Count > 1)
        {
            var texts = options.Where(o => byText.Contains(o.Letter)).ToList();
            byText = texts.Where(o => !texts.Any(p => p.Letter != o.Letter && p.Text.Length > o.Text.Length && p.Text.Contains(o.Text, StringComparison.OrdinalIgnoreCase))).Select(o => o.Letter).ToList();
        }
        return byText.Count == 1 ? byText[0] : None;
    }
}
