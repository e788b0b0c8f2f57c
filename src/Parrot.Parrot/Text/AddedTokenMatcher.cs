using System.Buffers;
using System.Globalization;

namespace Parrot.Parrot.Text;

/// <summary>
/// Finds added tokens in text the way Hugging Face's AddedVocabulary does: leftmost-longest,
/// non-overlapping matches over all tokens of the set; then a match of a single_word token that touches
/// a word character is dropped, lstrip/rstrip widen a match over neighbouring whitespace, and (when
/// special tokens are read as text) matches of special tokens are dropped.
/// </summary>
internal sealed class AddedTokenMatcher
{
    /// <summary>A stretch of the text: an added token (Token not null) or ordinary text.</summary>
    public readonly record struct Segment(int Start, int End, AddedToken? Token);

    private readonly SearchValues<char> _firstChars;
    // Candidates by first character, longest first.
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens.GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
        _firstChars = SearchValues.Create(_byFirstChar.Keys.ToArray());
    }

    public bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>Splits <paramref name="text"/> into segments that cover it in order.</summary>
    public void Split(ReadOnlySpan<char> text, bool matchSpecial, List<Segment> segments)
    {
        int offset = 0; // end of the previous accepted match
        int scan = 0;   // where the search for the next match resumes
        while (scan < text.Length)
        {
            int found = text[scan..].IndexOfAny(_firstChars);
            if (found < 0) break;
            int start = scan + found;
            AddedToken? token = LongestAt(text, start);
            if (token is null) { scan = start + 1; continue; }
            int stop = start + token.Content.Length;
            scan = stop; // matches never overlap, accepted or not
            if (token.Special && !matchSpecial) continue;
            if (token.SingleWord && ((start > 0 && IsWordChar(text, start - 1, before: true))
                                     || (stop < text.Length && IsWordChar(text, stop, before: false))))
                continue;
            // Whitespace already swallowed by the previous match's rstrip stays with it.
            if (token.LStrip)
                while (start > offset && char.IsWhiteSpace(text[start - 1])) start--;
            if (token.RStrip)
                while (stop < text.Length && char.IsWhiteSpace(text[stop])) stop++;
            if (start > offset) segments.Add(new Segment(offset, start, null));
            segments.Add(new Segment(start, stop, token));
            offset = scan = stop;
        }
        if (offset < text.Length) segments.Add(new Segment(offset, text.Length, null));
    }

    private AddedToken? LongestAt(ReadOnlySpan<char> text, int start)
    {
        if (!_byFirstChar.TryGetValue(text[start], out var candidates)) return null;
        foreach (var t in candidates)
            if (text[start..].StartsWith(t.Content, StringComparison.Ordinal)) return t;
        return null;
    }

    /// <summary>
    /// Word character as in Rust's regex <c>\w</c>: letters, marks, decimal digits, letter numbers,
    /// connector punctuation, and the joiners. <paramref name="before"/> reads the code point ending at
    /// <paramref name="index"/> (for a surrogate pair), otherwise the one starting there.
    /// </summary>
    private static bool IsWordChar(ReadOnlySpan<char> text, int index, bool before)
    {
        int cp = text[index];
        if (before && char.IsLowSurrogate(text[index]) && index > 0 && char.IsHighSurrogate(text[index - 1]))
            cp = char.ConvertToUtf32(text[index - 1], text[index]);
        else if (!before && char.IsHighSurrogate(text[index]) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]))
            cp = char.ConvertToUtf32(text[index], text[index + 1]);
        if (cp is 0x200C or 0x200D) return true;
        return CharUnicodeInfo.GetUnicodeCategory(cp) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter
                or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
                or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber
                or UnicodeCategory.ConnectorPunctuation => true,
            _ => false,
        };
    }
}
