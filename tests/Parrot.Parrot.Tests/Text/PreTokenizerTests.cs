using Parrot.Parrot.Text;

namespace Parrot.Parrot.Tests.Text;

/// <summary>
/// Qwen's split pattern on .NET gives the pieces that Oniguruma (Hugging Face's engine, which sees code
/// points and folds case by Unicode) gives, including where the JavaScript reference differs from it.
/// </summary>
public class PreTokenizerTests
{
    private static readonly RegexPreTokenizer Split = new(TokenizerFixtures.QwenPattern, "test");

    private static string[] Pieces(string text)
    {
        var ranges = new List<Range>();
        Split.Split(text, ranges);
        return ranges.Select(r => text[r]).ToArray();
    }

    [TestCase("Hello world", new[] { "Hello", " world" })]
    [TestCase("a   b", new[] { "a", "  ", " b" })]
    [TestCase("abc   \ndef", new[] { "abc", "   \n", "def" })]
    [TestCase("DON'T I'M", new[] { "DON", "'T", " I", "'M" })]
    [TestCase(" 123", new[] { " ", "1", "2", "3" })]
    [TestCase("$hello!!!\n\n", new[] { "$hello", "!!!\n\n" })]
    [TestCase("a\r\n\r\nb", new[] { "a", "\r\n\r\n", "b" })]
    [TestCase("x  ", new[] { "x", "  " })]
    public void BasicPieces(string text, string[] expected) => Assert.That(Pieces(text), Is.EqualTo(expected));

    [TestCase("𠀀𠀁字", new[] { "𠀀𠀁字" })]                   // astral CJK letters are \p{L}
    [TestCase("😀abc", new[] { "😀abc" })]                     // an astral symbol is the optional lead of a letter run
    [TestCase("𝟎𝟏", new[] { "𝟎", "𝟏" })]                     // astral digits are \p{N}, one at a time
    [TestCase("a𝐀b c", new[] { "a𝐀b", " c" })]
    [TestCase("😀😀 x", new[] { "😀😀", " x" })]
    public void AstralCharactersAreSingleCodePoints(string text, string[] expected) =>
        Assert.That(Pieces(text), Is.EqualTo(expected));

    [Test]
    public void LoneSurrogatesAreSymbolsLikeTheReplacementCharacterTheyBecome()
    {
        // (Not as [TestCase]: attribute strings are stored as UTF-8, which cannot hold a lone surrogate.)
        Assert.That(Pieces("\uD800abc"), Is.EqualTo(new[] { "\uD800abc" }));
        Assert.That(Pieces("ab\uDC00 \uD800\uD800"), Is.EqualTo(new[] { "ab", "\uDC00", " \uD800\uD800" }));
        Assert.That(Pieces("\uD83D\uDE00\uD800x"), Is.EqualTo(new[] { "\uD83D\uDE00\uD800", "x" }));
    }

    [Test]
    public void CaseInsensitiveContractionsFoldLongS()
    {
        // Oniguruma's (?i) folds U+017F (long s) to 's'; .NET's does not, so the group is rewritten.
        Assert.That(Pieces("'\u017F"), Is.EqualTo(new[] { "'\u017F" }));
        Assert.That(Pieces("'S 'Ll"), Is.EqualTo(new[] { "'S", " '", "Ll" }));
        Assert.That(RegexPreTokenizer.ExpandCaseInsensitiveLiteralGroups("(?i:'s|'ll)|x"),
            Is.EqualTo("(?:'[sSſ]|'[lL][lL])|x"));
        Assert.That(RegexPreTokenizer.ExpandCaseInsensitiveLiteralGroups(@"(?i:\w+)"), Is.EqualTo(@"(?i:\w+)"));
    }

    [Test]
    public void WhitespaceIsUnicodeWhiteSpaceAsInHuggingFace()
    {
        // U+0085 is White_Space (Rust, Oniguruma, .NET); JavaScript's \s leaves it out.
        Assert.That(Pieces("a \u0085b"), Is.EqualTo(new[] { "a", " ", "\u0085b" }));
        // U+FEFF is not White_Space, so it is a symbol; JavaScript's \s includes it (and gives "a", "  ", "\uFEFF", " b").
        Assert.That(Pieces("a  \uFEFF b"), Is.EqualTo(new[] { "a", " ", " \uFEFF", " b" }));
    }

    [Test]
    public void BadPatternsAreRefusedNamingTheSource()
    {
        var e = Assert.Throws<NotSupportedException>(() => new RegexPreTokenizer("(unclosed", "my.json"));
        Assert.That(e!.Message, Does.Contain("my.json").And.Contain("(unclosed"));
    }
}
