using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Parrot.Parrot.Text;

/// <summary>
/// Hugging Face's Split pre-tokenizer with behavior "Isolated": every match of the pattern is a piece,
/// and so is every stretch of text between matches.
/// <para>
/// The pattern is written for engines that see code points (Oniguruma in Hugging Face's Rust library),
/// while .NET's Regex sees UTF-16 units: an astral letter such as 𠀀 (U+20000) is two surrogates to it,
/// which neither <c>\p{L}</c> nor <c>\p{N}</c> matches. So text holding surrogate pairs is matched in a
/// stand-in copy where each astral code point is replaced by one BMP character of the same Unicode
/// general category, and the match positions are mapped back. This is exact for patterns whose classes
/// are category-based (<c>\p{..}</c>, <c>\s</c>, <c>\w</c>, <c>\d</c>) with BMP literals, which is what
/// GPT-style split patterns are.
/// </para>
/// <para>
/// Case-insensitive groups made only of literal letters (the <c>(?i:'s|'t|...)</c> contractions) are
/// rewritten to explicit classes using Unicode simple case folding, because .NET does not fold 'ſ'
/// (U+017F) to 's' as Oniguruma does.
/// </para>
/// </summary>
internal sealed class RegexPreTokenizer
{
    /// <summary>
    /// Longest one match may take. GPT-style split patterns match in microseconds; a pattern with
    /// catastrophic backtracking (say <c>(a+)+$</c>) would otherwise hang the caller on some texts.
    /// </summary>
    internal static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);

    private readonly Regex _regex;
    private readonly char[] _standIn = new char[32];
    private readonly string _source;

    public RegexPreTokenizer(string pattern, string source)
    {
        _source = source;
        string rewritten = ExpandCaseInsensitiveLiteralGroups(pattern);
        try
        {
            // The default backtracking engine: split patterns use look-ahead (\s+(?!\S)), which
            // NonBacktracking lacks, and its leftmost-first alternation is what Oniguruma does.
            _regex = new Regex(rewritten, RegexOptions.Compiled | RegexOptions.CultureInvariant, MatchTimeout);
        }
        catch (ArgumentException e)
        {
            throw new NotSupportedException($"{source}: the pre-tokenizer pattern is not a valid .NET regular expression ({e.Message}): {pattern}", e);
        }
        if (pattern.Any(char.IsSurrogate))
            throw new NotSupportedException($"{source}: the pre-tokenizer pattern holds astral characters, which the UTF-16 matcher cannot honour: {pattern}");
        BuildStandIns(pattern);
    }

    /// <summary>Appends the [start, end) ranges of the pieces of <paramref name="text"/> to <paramref name="pieces"/>.</summary>
    public void Split(ReadOnlySpan<char> text, List<Range> pieces)
    {
        if (text.IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            SplitBmp(text, pieces, map: null);
            return;
        }
        char[] copy = ArrayPool<char>.Shared.Rent(text.Length);
        int[] map = ArrayPool<int>.Shared.Rent(text.Length + 1);
        try
        {
            int n = 0;
            for (int i = 0; i < text.Length; i++)
            {
                map[n] = i;
                char c = text[i];
                if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                {
                    int cp = char.ConvertToUtf32(c, text[i + 1]);
                    copy[n++] = _standIn[(int)CharUnicodeInfo.GetUnicodeCategory(cp)];
                    i++;
                }
                // A lone surrogate becomes U+FFFD, as its bytes will be; .NET's classes misjudge lone surrogates.
                else copy[n++] = char.IsSurrogate(c) ? '\uFFFD' : c;
            }
            map[n] = text.Length;
            SplitBmp(copy.AsSpan(0, n), pieces, map);
        }
        finally
        {
            ArrayPool<char>.Shared.Return(copy);
            ArrayPool<int>.Shared.Return(map);
        }
    }

    private void SplitBmp(ReadOnlySpan<char> text, List<Range> pieces, int[]? map)
    {
        int previousEnd = 0;
        try
        {
            foreach (var m in _regex.EnumerateMatches(text))
            {
                if (m.Length == 0) continue;
                if (m.Index > previousEnd) Add(previousEnd, m.Index);
                Add(m.Index, m.Index + m.Length);
                previousEnd = m.Index + m.Length;
            }
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new InvalidDataException($"{_source}: the pre-tokenizer pattern took over {MatchTimeout.TotalSeconds:0} s to find one piece after character {previousEnd} of a {text.Length}-character text (catastrophic backtracking?): {_regex}", e);
        }
        if (previousEnd < text.Length) Add(previousEnd, text.Length);

        void Add(int start, int end) => pieces.Add(map is null ? start..end : map[start]..map[end]);
    }

    /// <summary>Picks, per general category, a BMP character that the pattern does not mention.</summary>
    private void BuildStandIns(string pattern)
    {
        var mentioned = new HashSet<char>();
        foreach (char c in pattern)
        {
            mentioned.Add(c);
            mentioned.Add(char.ToLowerInvariant(c));
            mentioned.Add(char.ToUpperInvariant(c));
        }
        var found = new bool[_standIn.Length];
        for (int c = 0x100; c < 0x10000; c++)
        {
            if (char.IsSurrogate((char)c) || char.IsWhiteSpace((char)c) || mentioned.Contains((char)c) || c == 0x17F) continue;
            int cat = (int)CharUnicodeInfo.GetUnicodeCategory((char)c);
            if (found[cat]) continue;
            // A cased letter must not case-fold onto a letter the pattern mentions.
            if (mentioned.Contains(char.ToLowerInvariant((char)c)) || mentioned.Contains(char.ToUpperInvariant((char)c))) continue;
            _standIn[cat] = (char)c;
            found[cat] = true;
        }
        // Every category with astral members needs a stand-in; controls, surrogates and separators have none.
        for (int cat = 0; cat <= (int)UnicodeCategory.OtherNotAssigned; cat++)
            if (!found[cat] && cat is not ((int)UnicodeCategory.Control or (int)UnicodeCategory.Surrogate
                    or (int)UnicodeCategory.SpaceSeparator or (int)UnicodeCategory.LineSeparator or (int)UnicodeCategory.ParagraphSeparator))
                throw new InvalidOperationException($"no BMP stand-in for Unicode category {(UnicodeCategory)cat}");
    }

    /// <summary>
    /// Rewrites <c>(?i:...)</c> groups whose body is only letters, digits, apostrophes and <c>|</c> into
    /// <c>(?:...)</c> with each letter replaced by the class of its simple case-fold equivalents.
    /// </summary>
    internal static string ExpandCaseInsensitiveLiteralGroups(string pattern)
    {
        var sb = new StringBuilder(pattern.Length * 2);
        int i = 0;
        while (i < pattern.Length)
        {
            int open = pattern.IndexOf("(?i:", i, StringComparison.Ordinal);
            // An escaped "\(" is a literal parenthesis, not a group: leave it alone.
            if (open < 0 || (open > 0 && CountBackslashesBefore(pattern, open) % 2 == 1))
            {
                int stop = open < 0 ? pattern.Length : open + 1;
                sb.Append(pattern, i, stop - i);
                i = stop;
                continue;
            }
            int close = pattern.IndexOf(')', open + 4);
            string body = close < 0 ? "" : pattern[(open + 4)..close];
            if (close < 0 || body.Length == 0 || !body.All(c => char.IsAsciiLetterOrDigit(c) || c is '\'' or '|'))
            {
                sb.Append(pattern, i, open + 4 - i);
                i = open + 4;
                continue;
            }
            sb.Append(pattern, i, open - i).Append("(?:");
            foreach (char c in body)
            {
                if (!char.IsAsciiLetter(c)) { sb.Append(c); continue; }
                sb.Append('[').Append(char.ToLowerInvariant(c)).Append(char.ToUpperInvariant(c));
                // Simple case folding maps these two non-ASCII letters onto ASCII ones.
                if (c is 's' or 'S') sb.Append('\u017F');
                if (c is 'k' or 'K') sb.Append('\u212A');
                sb.Append(']');
            }
            sb.Append(')');
            i = close + 1;
        }
        return sb.ToString();
    }

    private static int CountBackslashesBefore(string s, int index)
    {
        int n = 0;
        while (index - n - 1 >= 0 && s[index - n - 1] == '\\') n++;
        return n;
    }
}
