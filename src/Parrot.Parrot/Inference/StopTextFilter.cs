using System.Text;
using Parrot.Parrot.Text;

namespace Parrot.Parrot.Inference;

/// <summary>
/// Turns generated ids into streamed text: whole characters only (the tokenizer's stream decoder holds back
/// an unfinished UTF-8 sequence), special tokens skipped, and no part of a stop string ever released: a tail
/// of the text that could still grow into a stop string is held back until it cannot, and once the text
/// contains a stop string it is cut where the earliest one begins.
/// </summary>
internal sealed class StopTextFilter
{
    private readonly TokenStreamDecoder _decoder;
    private readonly string[] _stops;
    private readonly StringBuilder _text = new();
    private readonly int _longest;
    private int _emitted;

    public StopTextFilter(BpeTokenizer tokenizer, IReadOnlyList<string> stops)
    {
        _decoder = tokenizer.CreateStreamDecoder(skipSpecialTokens: true);
        _stops = stops.ToArray();
        _longest = _stops.Length == 0 ? 0 : _stops.Max(s => s.Length);
    }

    /// <summary>True once a stop string was found (the text is final).</summary>
    public bool Stopped { get; private set; }

    /// <summary>The answer so far, as released.</summary>
    public string Text => _text.ToString(0, _emitted);

    /// <summary>Adds a generated id; returns the text it releases.</summary>
    public string Push(int id) => Stopped ? "" : Scan(_decoder.Push(id), final: false);

    /// <summary>Ends the stream; returns whatever was held back (nothing of a stop string).</summary>
    public string Finish() => Stopped ? "" : Scan(_decoder.Flush(), final: true);

    private string Scan(string piece, bool final)
    {
        _text.Append(piece);
        if (_stops.Length == 0) return Release(_text.Length);
        // Everything before _emitted was released because no stop string could start there: only the tail can match.
        string tail = _text.ToString(_emitted, _text.Length - _emitted);
        int at = -1;
        foreach (var s in _stops)
        {
            int i = tail.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (at < 0 || i < at)) at = i;
        }
        if (at >= 0)
        {
            Stopped = true;
            string released = Release(_emitted + at);
            _text.Length = _emitted;
            return released;
        }
        if (final) return Release(_text.Length);
        // Hold back the longest suffix that is a proper prefix of some stop string.
        int hold = tail.Length;
        for (int q = Math.Max(0, tail.Length - _longest + 1); q < tail.Length; q++)
        {
            string suffix = tail[q..];
            if (_stops.Any(s => s.Length > suffix.Length && s.StartsWith(suffix, StringComparison.Ordinal))) { hold = q; break; }
        }
        // Never end a release between the two halves of a surrogate pair.
        if (hold > 0 && hold < tail.Length && char.IsHighSurrogate(tail[hold - 1])) hold--;
        return Release(_emitted + hold);
    }

    private string Release(int upTo)
    {
        if (upTo <= _emitted) return "";
        string s = _text.ToString(_emitted, upTo - _emitted);
        _emitted = upTo;
        return s;
    }
}
