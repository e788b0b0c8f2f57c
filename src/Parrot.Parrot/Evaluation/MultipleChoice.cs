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
    /// in the question's language — the Chinese one, as VLMEvalKit's Parrot wrapper does (its <c>cn_string</c>),
    /// whenever the text before it holds a CJK ideograph (U+4E00–U+9FFF), whatever the file's language.
    /// </summary>
    public string Prompt()
    {
        if (!BenchmarkLanguages.Instructions.TryGetValue(Language, out var instruction))
            throw new ArgumentException($"no multiple-choice instruction for language '{Language}'");
        var sb = new StringBuilder();
        if (!string.IsNullOrWhiteSpace(Hint)) sb.Append(Hint).Append('\n');
        sb.Append(Question);
        foreach (var (letter, text) in Options) sb.Append('\n').Append(letter).Append(". ").Append(text);
        bool cjk = false;
        for (int i = 0; i < sb.Length && !cjk; i++) cjk = sb[i] is >= '\u4E00' and <= '\u9FFF';
        sb.Append('\n').Append(cjk ? BenchmarkLanguages.Instructions["zh"] : instruction);
        return sb.ToString();
    }

    /// <summary>
    /// The option Parrot's raw answer picks, as the reference scores it: Parrot's model-side cleanup
    /// (<see cref="ParrotAnswerCleanup.Apply"/>, which acts only when <see cref="Prompt"/> ends with the English
    /// instruction), then VLMEvalKit's rule-based matching (<see cref="AnswerExtraction.Extract"/>); 'Z' when
    /// nothing matches. The cleanup is idempotent, so an answer already cleaned (a VLMEvalKit prediction of
    /// Parrot) gives the same letter.
    /// </summary>
    public char Extract(string rawAnswer) => AnswerExtraction.Extract(ParrotAnswerCleanup.Apply(Prompt(), rawAnswer), Options);
}

/// <summary>
/// VLMEvalKit's rule-based answer matching (<c>can_infer</c> in vlmeval/utils/matching_util.py, then
/// <c>'Z'</c> under exact matching, with no model judge), reproduced rule for rule.
/// </summary>
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

    /// <summary>An API judge's failure text: when present the letter rule is skipped (the text rule still runs).</summary>
    public const string JudgeFailure = "Failed to obtain answer via API";

    /// <summary>Exactly the characters the letter rule turns into spaces (nothing else: no fullwidth or other Unicode punctuation).</summary>
    public const string ReplacedCharacters = ".()[],:;!*#{}";

    /// <summary>
    /// The option <paramref name="answer"/> picks, by VLMEvalKit's rules in order:
    /// <list type="number">
    /// <item>a refusal phrase (<see cref="Refusals"/>, case-sensitive substring) → 'Z';</item>
    /// <item>every character of <see cref="ReplacedCharacters"/> becomes a space and the result is split at
    /// whitespace (Python's <c>str.split()</c>); exactly one option letter among the tokens (a letter counts
    /// once however often it occurs) → that letter; no option letter but a token <c>Z</c> → 'Z';</item>
    /// <item>else the answer and the option texts are lower-cased (Python's <c>str.lower()</c>) and the
    /// options whose text occurs in the answer counted: exactly one → it (two, as with "red" inside
    /// "dark red", is no answer);</item>
    /// <item>else 'Z'.</item>
    /// </list>
    /// The letter rule is skipped when the answer contains <see cref="JudgeFailure"/>.
    /// </summary>
    public static char Extract(string answer, IReadOnlyList<(char Letter, string Text)> options)
    {
        ArgumentNullException.ThrowIfNull(answer);
        ArgumentNullException.ThrowIfNull(options);
        return MatchLetter(answer, options) ?? MatchText(answer, options) ?? None;
    }

    /// <summary>can_infer_option: the letter rule (with the refusals); null where it gives False.</summary>
    internal static char? MatchLetter(string answer, IReadOnlyList<(char Letter, string Text)> options)
    {
        if (answer.Contains(JudgeFailure, StringComparison.Ordinal)) return null;
        foreach (var refusal in Refusals)
            if (answer.Contains(refusal, StringComparison.Ordinal)) return None;
        var replaced = new StringBuilder(answer.Length);
        foreach (var ch in answer) replaced.Append(ReplacedCharacters.Contains(ch) ? ' ' : ch);
        var tokens = PythonText.Split(replaced.ToString()).ToHashSet(StringComparer.Ordinal);
        var found = options.Select(o => o.Letter).Distinct().Where(l => tokens.Contains(l.ToString())).ToList();
        if (found.Count == 1) return found[0];
        if (found.Count == 0 && tokens.Contains("Z")) return None;
        return null;
    }

    /// <summary>can_infer_text: the one option whose lower-cased text is in the lower-cased answer; null otherwise.</summary>
    internal static char? MatchText(string answer, IReadOnlyList<(char Letter, string Text)> options)
    {
        var lower = PythonText.Lower(answer);
        var candidates = options.Where(o => lower.Contains(PythonText.Lower(o.Text), StringComparison.Ordinal)).Select(o => o.Letter).Distinct().ToList();
        return candidates.Count == 1 ? candidates[0] : null;
    }
}

/// <summary>
/// The answer cleanup of VLMEvalKit's Parrot wrapper (vlmeval/vlm/parrot.py, <c>generate_inner</c>): applied
/// to the generated text, model-side, before matching. It acts only when the prompt ends with
/// "Answer with the option's letter from the given choices directly." or "请直接回答选项字母。" — so on
/// English questions, not on the Chinese ones (whose instruction is "请直接用给定选项中的选项字母回答。") nor
/// on pt/ar/tr/ru. Then, repeatedly: strip ASCII punctuation and whitespace from both ends; if the text is
/// longer than one character and starts with an uppercase ASCII letter followed by whitespace or punctuation,
/// it becomes that letter; else if it ends with an uppercase letter preceded by whitespace or punctuation, it
/// becomes that letter; else if it contains "answer is" or "answer:" (any case) it is cut after the first
/// occurrence of the first of these found, then after "option" when present, and the loop goes on; else it stays.
/// </summary>
public static class ParrotAnswerCleanup
{
    /// <summary>The prompt endings that turn the cleanup on.</summary>
    public static readonly IReadOnlyList<string> Triggers = ["Answer with the option's letter from the given choices directly.", "请直接回答选项字母。"];

    /// <summary>Python's <c>string.punctuation</c>.</summary>
    internal const string AsciiPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    /// <summary>Python's <c>string.whitespace</c>.</summary>
    internal const string AsciiWhitespace = " \t\n\r\v\f";

    /// <summary>Whether the cleanup applies to answers to <paramref name="prompt"/>.</summary>
    public static bool AppliesTo(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return Triggers.Any(t => prompt.EndsWith(t, StringComparison.Ordinal));
    }

    /// <summary>
    /// <paramref name="answer"/> cleaned as the reference cleans it when <paramref name="prompt"/> (the benchmark
    /// prompt; the reference's query adds <c>&lt;image&gt;\n</c> in front, which does not change its end)
    /// triggers it, else unchanged. Idempotent.
    /// </summary>
    public static string Apply(string prompt, string answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        if (!AppliesTo(prompt)) return answer;
        const string both = AsciiPunctuation + AsciiWhitespace;
        while (true)
        {
            answer = answer.Trim(both.ToCharArray());
            // Indexing by UTF-16 unit rather than code point gives the same decisions: every test is against ASCII.
            if (answer.Length <= 1) break;
            if (IsAsciiUpper(answer[0]) && both.Contains(answer[1])) return answer[..1];
            if (IsAsciiUpper(answer[^1]) && both.Contains(answer[^2])) return answer[^1..];
            var lower = PythonText.Lower(answer);
            if (lower.Contains("answer is", StringComparison.Ordinal) || lower.Contains("answer:", StringComparison.Ordinal))
            {
                answer = AfterPrefix(answer, ["answer is", "answer:"]);
                answer = AfterPrefix(answer, ["option"]);
            }
            else break;
        }
        return answer;
    }

    private static bool IsAsciiUpper(char c) => c is >= 'A' and <= 'Z';

    /// <summary>
    /// process_answer_prefix: the text after the first prefix found in the lower-cased text. As in Python, the
    /// position found in the lower-cased text is used in the original, counted in code points.
    /// </summary>
    private static string AfterPrefix(string answer, string[] prefixes)
    {
        var lower = PythonText.Lower(answer);
        foreach (var prefix in prefixes)
        {
            int at = lower.IndexOf(prefix, StringComparison.Ordinal);
            if (at < 0) continue;
            int codePoint = PythonText.CodePointCount(lower, at) + prefix.Length;
            return PythonText.FromCodePoint(answer, codePoint);
        }
        return answer;
    }
}

/// <summary>Python 3 string semantics the reference relies on.</summary>
internal static class PythonText
{
    /// <summary>Python's <c>str.isspace()</c> for one UTF-16 unit: .NET whitespace plus U+001C–U+001F.</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001C' and <= '\u001F';

    /// <summary><c>str.split()</c> without arguments: runs of whitespace separate, no empty pieces.</summary>
    public static List<string> Split(string s)
    {
        var parts = new List<string>();
        int i = 0;
        while (i < s.Length)
        {
            while (i < s.Length && IsSpace(s[i])) i++;
            int start = i;
            while (i < s.Length && !IsSpace(s[i])) i++;
            if (i > start) parts.Add(s[start..i]);
        }
        return parts;
    }

    /// <summary>
    /// <c>str.lower()</c>: the invariant simple lower-case mapping plus Unicode's one unconditional full
    /// mapping, U+0130 (İ) → "i\u0307" (Turkish text), as Python applies it. Greek final sigma (Python's one
    /// context rule) is not applied.
    /// </summary>
    public static string Lower(string s)
    {
        if (!s.Contains('\u0130')) return s.ToLowerInvariant();
        var sb = new StringBuilder(s.Length + 4);
        foreach (var c in s)
        {
            if (c == '\u0130') sb.Append("i\u0307");
            else sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }

    /// <summary>Code points in <c>s[..end]</c> (a surrogate pair counts once).</summary>
    public static int CodePointCount(string s, int end)
    {
        int n = 0;
        for (int i = 0; i < end; i++)
            if (!(char.IsLowSurrogate(s[i]) && i > 0 && char.IsHighSurrogate(s[i - 1]))) n++;
        return n;
    }

    /// <summary><c>s[codePoint:]</c> with Python's slicing: "" past the end.</summary>
    public static string FromCodePoint(string s, int codePoint)
    {
        int i = 0, n = 0;
        while (i < s.Length && n < codePoint)
        {
            i += char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? 2 : 1;
            n++;
        }
        return s[i..];
    }
}
