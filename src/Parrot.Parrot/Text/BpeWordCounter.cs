using System.Runtime.InteropServices;
using System.Text;

namespace Parrot.Parrot.Text;

/// <summary>
/// Counts the pre-tokenized words of a corpus exactly as <see cref="BpeTokenizer"/> will see them:
/// special tokens are cut out of the raw text first, the rest is NFC-normalized and split by the
/// pre-tokenizer pattern. Text is processed in chunks on all cores; counts are sums, so the result does
/// not depend on the order in which chunks finish.
/// </summary>
internal sealed class BpeWordCounter
{
    private const int ChunkChars = 1 << 18;

    private readonly AddedTokenMatcher _specials;
    private readonly RegexPreTokenizer _split;
    private readonly Dictionary<string, long> _counts = new(StringComparer.Ordinal);

    public BpeWordCounter(IEnumerable<string> specialTokens, string splitPattern)
    {
        _specials = new AddedTokenMatcher(specialTokens.Select((s, i) =>
            new AddedToken(i, s, Special: true, SingleWord: false, LStrip: false, RStrip: false, Normalized: false)));
        _split = new RegexPreTokenizer(splitPattern, "BpeTrainer");
    }

    /// <summary>Words and how often each was seen.</summary>
    public IReadOnlyDictionary<string, long> Counts => _counts;

    /// <summary>Characters read so far.</summary>
    public long Characters { get; private set; }

    /// <summary>Words (pre-tokenized pieces) seen so far, with repeats.</summary>
    public long Words { get; private set; }

    /// <summary>Counts the words of everything <paramref name="reader"/> yields.</summary>
    public void Add(TextReader reader)
    {
        int batchSize = 2 * Environment.ProcessorCount;
        var batch = new List<string>(batchSize);
        foreach (string chunk in Chunks(reader))
        {
            batch.Add(chunk);
            if (batch.Count == batchSize) { CountBatch(batch); batch.Clear(); }
        }
        CountBatch(batch);
    }

    private void CountBatch(List<string> batch)
    {
        if (batch.Count == 0) return;
        var local = new Dictionary<string, long>[batch.Count];
        var pieces = new long[batch.Count];
        Parallel.For(0, batch.Count, i => local[i] = CountChunk(batch[i], out pieces[i]));
        for (int i = 0; i < batch.Count; i++)
        {
            foreach (var (word, n) in local[i])
                CollectionsMarshal.GetValueRefOrAddDefault(_counts, word, out _) += n;
            Characters += batch[i].Length;
            Words += pieces[i];
        }
    }

    private Dictionary<string, long> CountChunk(string chunk, out long pieceCount)
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var bySpan = counts.GetAlternateLookup<ReadOnlySpan<char>>();
        var segments = new List<AddedTokenMatcher.Segment>();
        var pieces = new List<Range>();
        pieceCount = 0;
        _specials.Split(chunk, matchSpecial: true, segments);
        foreach (var segment in segments)
        {
            if (segment.Token is not null) continue;
            string text = Nfc.Normalize(chunk.Substring(segment.Start, segment.End - segment.Start));
            pieces.Clear();
            _split.Split(text, pieces);
            foreach (var r in pieces)
            {
                var word = text.AsSpan()[r];
                if (word.IsEmpty) continue;
                CollectionsMarshal.GetValueRefOrAddDefault(bySpan, word, out _)++;
                pieceCount++;
            }
        }
        return counts;
    }

    /// <summary>
    /// Cuts the text into pieces of about <see cref="ChunkChars"/> characters, each cut just after a line
    /// break that a letter or digit follows. No pre-tokenizer piece of the Qwen/GPT split patterns spans
    /// such a place (only whitespace may follow a line break inside a piece), NFC never combines across a
    /// line break, and special tokens hold none, so counting chunk by chunk equals counting the whole text.
    /// </summary>
    internal static IEnumerable<string> Chunks(TextReader reader)
    {
        var pending = new StringBuilder();
        var buffer = new char[ChunkChars];
        int searchFrom = 0;
        while (true)
        {
            int n = reader.ReadBlock(buffer, 0, buffer.Length);
            if (n > 0) pending.Append(buffer, 0, n);
            if (n == 0 || pending.Length >= ChunkChars)
            {
                if (n == 0)
                {
                    if (pending.Length > 0) yield return pending.ToString();
                    yield break;
                }
                int cut = LastCut(pending, searchFrom);
                if (cut > 0)
                {
                    yield return pending.ToString(0, cut);
                    pending.Remove(0, cut);
                    searchFrom = 0;
                }
                else searchFrom = Math.Max(0, pending.Length - 1);
            }
        }
    }

    /// <summary>The last index i ≥ 1 with a line break at i − 1 and a letter or digit at i, or 0.</summary>
    private static int LastCut(StringBuilder text, int from)
    {
        for (int i = text.Length - 1; i > Math.Max(0, from); i--)
            if (text[i - 1] == '\n' && char.IsLetterOrDigit(text[i])) return i;
        return 0;
    }
}
