using System.Text;

namespace Parrot.Parrot.Data;

/// <summary>
/// A generated multilingual text corpus for language-model smoke training: short factual sentences
/// about counted, coloured animals in places, written in the six Parrot languages (en, zh, pt, ar, tr,
/// ru) from the same random facts, so a model can learn each language's words and word order. Fully
/// deterministic for a seed; tokenised as UTF-8 bytes (ids 0–255, 256 = sentence separator).
/// </summary>
public static class MultilingualCorpus
{
    /// <summary>Vocabulary size of the byte tokenisation.</summary>
    public const int VocabSize = 257;

    /// <summary>The separator id placed between sentences.</summary>
    public const int Separator = 256;

    /// <summary>The languages, as Parrot's benchmarks name them.</summary>
    public static readonly string[] Languages = ["en", "zh", "pt", "ar", "tr", "ru"];

    private sealed record Lexicon(string[] Numbers, string[] Colours, string[] Animals, string[] Places, Func<string, string, string, string, string> Sentence);

    private static readonly Dictionary<string, Lexicon> Lexicons = new()
    {
        ["en"] = new(["one", "two", "three", "four", "five"], ["red", "green", "blue", "white", "black"],
            ["cats", "dogs", "birds", "horses", "fish"], ["garden", "house", "forest", "river", "city"],
            (n, c, a, p) => $"There are {n} {c} {a} in the {p}."),
        ["zh"] = new(["一", "两", "三", "四", "五"], ["红色的", "绿色的", "蓝色的", "白色的", "黑色的"],
            ["猫", "狗", "鸟", "马", "鱼"], ["花园", "房子", "森林", "河", "城市"],
            (n, c, a, p) => $"{p}里有{n}只{c}{a}。"),
        ["pt"] = new(["um", "dois", "três", "quatro", "cinco"], ["vermelhos", "verdes", "azuis", "brancos", "pretos"],
            ["gatos", "cães", "pássaros", "cavalos", "peixes"], ["jardim", "casa", "floresta", "rio", "cidade"],
            (n, c, a, p) => $"Há {n} {a} {c} no {p}."),
        ["ar"] = new(["واحد", "اثنان", "ثلاثة", "أربعة", "خمسة"], ["حمراء", "خضراء", "زرقاء", "بيضاء", "سوداء"],
            ["قطط", "كلاب", "طيور", "خيول", "أسماك"], ["الحديقة", "البيت", "الغابة", "النهر", "المدينة"],
            (n, c, a, p) => $"في {p} {n} {a} {c}."),
        ["tr"] = new(["bir", "iki", "üç", "dört", "beş"], ["kırmızı", "yeşil", "mavi", "beyaz", "siyah"],
            ["kedi", "köpek", "kuş", "at", "balık"], ["bahçede", "evde", "ormanda", "nehirde", "şehirde"],
            (n, c, a, p) => $"{p[..1].ToUpperInvariant()}{p[1..]} {n} {c} {a} var."),
        ["ru"] = new(["один", "два", "три", "четыре", "пять"], ["красных", "зелёных", "синих", "белых", "чёрных"],
            ["кошек", "собак", "птиц", "лошадей", "рыб"], ["саду", "доме", "лесу", "реке", "городе"],
            (n, c, a, p) => $"В {p} {n} {c} {a}."),
    };

    /// <summary>Sentence <paramref name="index"/> of the stream for <paramref name="seed"/>: language, text.</summary>
    public static (string Language, string Text) Sentence(ulong seed, long index)
    {
        ulong h = Mix(seed * 0x9E3779B97F4A7C15UL + (ulong)index);
        var lang = Languages[(int)(h % 6)];
        var lex = Lexicons[lang];
        int n = (int)((h >> 8) % 5), c = (int)((h >> 16) % 5), a = (int)((h >> 24) % 5), p = (int)((h >> 32) % 5);
        return (lang, lex.Sentence(lex.Numbers[n], lex.Colours[c], lex.Animals[a], lex.Places[p]));
    }

    /// <summary>
    /// <paramref name="count"/> windows of <paramref name="length"/> byte tokens cut from the sentence
    /// stream (sentences joined by the separator), the first window starting at sentence <paramref name="firstSentence"/>.
    /// </summary>
    public static List<int[]> Windows(ulong seed, int count, int length, long firstSentence = 0)
    {
        var windows = new List<int[]>(count);
        var buf = new List<int>(length);
        long s = firstSentence;
        while (windows.Count < count)
        {
            foreach (var b in Encoding.UTF8.GetBytes(Sentence(seed, s++).Text)) buf.Add(b);
            buf.Add(Separator);
            while (buf.Count >= length && windows.Count < count)
            {
                windows.Add(buf.GetRange(0, length).ToArray());
                buf.RemoveRange(0, length);
            }
        }
        return windows;
    }

    /// <summary>Decodes byte tokens back to text (separators become newlines).</summary>
    public static string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (var id in ids) bytes.Add(id == Separator ? (byte)'\n' : (byte)id);
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
