using System.Runtime.InteropServices;
using System.Text;

namespace Parrot.Parrot.Text;

/// <summary>
/// Decodes ids one at a time, as a generator produces them. A character split across tokens (a CJK
/// character or an emoji is often two or three byte-level tokens) is held back until its last byte
/// arrives, so every returned string is whole text; <see cref="Flush"/> ends the stream. Concatenating
/// everything returned, flush included, gives exactly <see cref="BpeTokenizer.Decode"/> of all the ids.
/// </summary>
public sealed class TokenStreamDecoder
{
    private readonly BpeTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    // The framework's stateful UTF-8 decoder keeps the bytes of an incomplete sequence between calls and
    // replaces invalid ones exactly as a one-shot decode of the whole byte string would.
    private readonly Decoder _utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private readonly List<byte> _bytes = new();
    private char[] _chars = new char[64];

    internal TokenStreamDecoder(BpeTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Adds one id; returns the text it completes (possibly empty). Unknown ids throw, naming the id.</summary>
    public string Push(int id)
    {
        _bytes.Clear();
        _tokenizer.AppendBytes(id, _skipSpecialTokens, _bytes);
        return Convert(flush: false);
    }

    /// <summary>Ends the stream: returns U+FFFD for bytes of an unfinished character, if any, and resets.</summary>
    public string Flush()
    {
        _bytes.Clear();
        return Convert(flush: true);
    }

    private string Convert(bool flush)
    {
        var input = CollectionsMarshal.AsSpan(_bytes);
        // At most one char per byte, plus up to 3 held bytes that may each turn into U+FFFD.
        int needed = input.Length + 4;
        if (_chars.Length < needed) _chars = new char[Math.Max(needed, _chars.Length * 2)];
        int n = _utf8.GetChars(input, _chars, flush);
        return n == 0 ? string.Empty : new string(_chars, 0, n);
    }
}
