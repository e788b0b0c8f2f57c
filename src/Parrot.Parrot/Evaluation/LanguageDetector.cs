using System.Globalization;
using System.Text;

namespace Parrot.Parrot.Evaluation;

/// <summary>
/// The language a short answer is written in, for the language-fidelity rate (the erosion symptom Parrot
/// addresses: a model asked in Arabic that answers in English). The script decides first, by letter count:
/// Han → zh (ja when kana appear), Arabic → ar, Cyrillic → ru, Hangul → ko, other non-Latin letters →
/// "other". Latin text is told apart between en, pt and tr by evidence: common function and answer words
/// of each language, and letters only one of them uses (ã õ á é í ó ú â ê ô à for pt; ş ğ ı İ ö ü for tr).
/// Latin text without evidence, or with as much for two languages, is undetermined (null).
/// </summary>
public static class LanguageDetector
{
    private static readonly Dictionary<string, HashSet<string>> Words = new(StringComparer.Ordinal)
    {
        ["en"] = Set("the an is are was were be of and in on at it its this that these those there with to for from not answer option options choice correct image picture shows show what which how many color colour left right top bottom center yes red green blue yellow orange purple white black circle square triangle star heart small large big i think"),
        ["pt"] = Set("o os as um uma uns umas do dos das na nas em que é são está estão com para por não sim resposta opção alternativa correta imagem mostra qual quais quantos cor esquerda direita cima baixo centro vermelho verde azul amarelo laranja roxo branco preto círculo quadrado triângulo estrela coração pequeno grande eu acho"),
        ["tr"] = Set("bir ve bu şu ile için değil evet hayır cevap yanıt seçenek doğru resim görüntü görselde var yok ne hangi kaç renk sol sağ üst alt merkez kırmızı yeşil mavi sarı turuncu mor beyaz siyah daire kare üçgen yıldız kalp küçük büyük bence"),
    };

    private static readonly string PortugueseLetters = "ãõáéíóúâêôà";
    private static readonly string TurkishLetters = "şğıöü";

    private static HashSet<string> Set(string words) => new(words.Split(' ', StringSplitOptions.RemoveEmptyEntries), StringComparer.Ordinal);

    /// <summary>The language of <paramref name="text"/> (en, zh, pt, ar, tr, ru, ja, ko or other), or null when it cannot be told.</summary>
    public static string? Detect(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int han = 0, kana = 0, hangul = 0, arabic = 0, cyrillic = 0, latin = 0, other = 0;
        for (int i = 0; i < text.Length; i++)
        {
            int cp = char.IsSurrogatePair(text, i) ? char.ConvertToUtf32(text[i], text[++i]) : text[i];
            if (cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0xF900 and <= 0xFAFF or >= 0x20000 and <= 0x3134F) han++;
            else if (cp is >= 0x3040 and <= 0x30FF) kana++;
            else if (cp is >= 0xAC00 and <= 0xD7AF or >= 0x1100 and <= 0x11FF) hangul++;
            else if (cp is >= 0x0600 and <= 0x06FF or >= 0x0750 and <= 0x077F or >= 0x08A0 and <= 0x08FF or >= 0xFB50 and <= 0xFDFF or >= 0xFE70 and <= 0xFEFF)
            {
                if (Rune.IsLetter(new Rune(cp))) arabic++;
            }
            else if (cp is >= 0x0400 and <= 0x052F) cyrillic++;
            else if (Rune.IsLetter(new Rune(cp)))
            {
                if (cp <= 0x024F || cp is >= 0x1E00 and <= 0x1EFF) latin++;
                else other++;
            }
        }
        int cjk = han + kana;
        int max = new[] { cjk, hangul, arabic, cyrillic, latin, other }.Max();
        if (max == 0) return null;
        if (cjk == max) return kana > 0 ? "ja" : "zh";
        if (arabic == max) return "ar";
        if (cyrillic == max) return "ru";
        if (hangul == max) return "ko";
        if (other == max) return "other";
        return DetectLatin(text);
    }

    private static string? DetectLatin(string text)
    {
        var score = new Dictionary<string, int>(StringComparer.Ordinal) { ["en"] = 0, ["pt"] = 0, ["tr"] = 0 };
        foreach (var word in LatinWords(text))
        {
            // Upper-case I is ı in Turkish ("KIRMIZI" is "kırmızı"): a word matches in either reading.
            string lower = word.ToLowerInvariant(), turkish = word.Replace('I', 'ı').Replace('İ', 'i').ToLowerInvariant();
            foreach (var (lang, set) in Words)
                if (set.Contains(lower) || set.Contains(turkish)) score[lang]++;
            if (lower.AsSpan().IndexOfAny(PortugueseLetters) >= 0) score["pt"]++;
            if (lower.AsSpan().IndexOfAny(TurkishLetters) >= 0 || word.Contains('İ')) score["tr"]++;
        }
        var best = score.OrderByDescending(kv => kv.Value).ToList();
        return best[0].Value > 0 && best[0].Value > best[1].Value ? best[0].Key : null;
    }

    /// <summary>Words of letters (and apostrophes), as written.</summary>
    private static IEnumerable<string> LatinWords(string text)
    {
        var sb = new StringBuilder();
        foreach (char c in text)
        {
            if (char.IsLetter(c) || c == '\'') sb.Append(c);
            else if (sb.Length > 0) { yield return sb.ToString(); sb.Clear(); }
        }
        if (sb.Length > 0) yield return sb.ToString();
    }

    /// <summary>
    /// Whether <paramref name="prediction"/> is a free-form answer, one that carries language: after dropping
    /// punctuation and every option letter standing alone, some letter remains ("B." is not; "B. rojo" and
    /// "红色" are).
    /// </summary>
    public static bool IsFreeForm(string prediction, IEnumerable<char> optionLetters)
    {
        ArgumentNullException.ThrowIfNull(prediction);
        var letters = optionLetters.ToHashSet();
        var cleaned = new StringBuilder(prediction.Length);
        foreach (var ch in prediction) cleaned.Append(char.IsPunctuation(ch) || char.IsSymbol(ch) ? ' ' : ch);
        foreach (var token in cleaned.ToString().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
        {
            if (token.Length == 1 && letters.Contains(token[0])) continue;
            if (token.Any(char.IsLetter)) return true;
        }
        return false;
    }
}

/// <summary>The language-fidelity count of a set of answers.</summary>
/// <param name="FreeForm">Answers that carry language (<see cref="LanguageDetector.IsFreeForm"/>).</param>
/// <param name="InLanguage">Free-form answers detected in the question's language.</param>
/// <param name="Undetermined">Free-form answers whose language cannot be told (short Latin text without evidence).</param>
public sealed record LanguageFidelity(int FreeForm, int InLanguage, int Undetermined)
{
    /// <summary>InLanguage / (FreeForm − Undetermined), or null when no answer's language could be told.</summary>
    public double? Rate => FreeForm - Undetermined > 0 ? InLanguage / (double)(FreeForm - Undetermined) : null;

    /// <summary>The sum of two counts.</summary>
    public static LanguageFidelity operator +(LanguageFidelity a, LanguageFidelity b) =>
        new(a.FreeForm + b.FreeForm, a.InLanguage + b.InLanguage, a.Undetermined + b.Undetermined);

    /// <summary>Counts <paramref name="answers"/> (prediction, option letters, question language).</summary>
    public static LanguageFidelity Of(IEnumerable<(string Prediction, IEnumerable<char> Options, string Language)> answers)
    {
        int free = 0, inLang = 0, und = 0;
        foreach (var (prediction, options, language) in answers)
        {
            if (!LanguageDetector.IsFreeForm(prediction, options)) continue;
            free++;
            var detected = LanguageDetector.Detect(prediction);
            if (detected is null) und++;
            else if (detected == language) inLang++;
        }
        return new LanguageFidelity(free, inLang, und);
    }

    /// <summary>The rate as a percentage with its counts, e.g. "92.0% (23 of 25; 3 undetermined)".</summary>
    public override string ToString() =>
        Rate is { } r
            ? string.Create(CultureInfo.InvariantCulture, $"{100 * r:F1}% ({InLanguage} of {FreeForm - Undetermined}{(Undetermined > 0 ? $"; {Undetermined} undetermined" : "")})")
            : FreeForm == 0 ? "n/a (no free-form answers)" : $"n/a ({Undetermined} undetermined)";
}
