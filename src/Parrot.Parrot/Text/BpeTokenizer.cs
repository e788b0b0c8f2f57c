using System.IO.Compression;
using System.Text;

namespace Parrot.Parrot.Text;

/// <summary>
/// A byte-level BPE tokenizer (GPT-2 / Qwen family) read from a Hugging Face <c>tokenizer.json</c>.
/// Encoding follows the Hugging Face pipeline: added tokens are cut out of the raw text first
/// (leftmost-longest), the rest is NFC-normalized, split by the file's pre-tokenizer pattern, mapped to
/// the byte-level alphabet and merged by BPE rank. Decoding joins the tokens' bytes and reads them as
/// UTF-8 (invalid sequences become U+FFFD). No BOS/EOS is ever added: Qwen's template adds none.
/// Instances are immutable apart from an internal word cache and safe to share between threads.
/// </summary>
public sealed class BpeTokenizer
{
    private readonly BytePairEncoder _bpe;
    private readonly RegexPreTokenizer? _preTokenizer;
    private readonly bool _normalizeNfc;
    private readonly AddedTokenMatcher _rawMatcher;        // added tokens with normalized = false
    private readonly AddedTokenMatcher _normalizedMatcher; // added tokens with normalized = true
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly string?[] _tokenOfId;
    private readonly bool[] _isSpecial;

    private const long MaxJsonBytes = 1L << 30;

    private BpeTokenizer(TokenizerDefinition def, string source)
    {
        _vocab = def.Vocab;
        _bpe = new BytePairEncoder(def.Vocab, def.Merges, def.IgnoreMerges);
        _preTokenizer = def.SplitPattern is null ? null : new RegexPreTokenizer(def.SplitPattern, source);
        _normalizeNfc = def.NormalizeNfc;
        AddedTokens = def.AddedTokens.AsReadOnly();
        _addedByContent = def.AddedTokens.ToDictionary(t => t.Content, StringComparer.Ordinal);
        // Normalized added tokens are looked for in normalized text, so their own content is normalized too.
        _rawMatcher = new AddedTokenMatcher(def.AddedTokens.Where(t => !t.Normalized));
        _normalizedMatcher = new AddedTokenMatcher(def.AddedTokens.Where(t => t.Normalized)
            .Select(t => _normalizeNfc ? t with { Content = Nfc.Normalize(t.Content) } : t));

        _tokenOfId = def.VocabTokenOfId;
        int size = _tokenOfId.Length;
        // Trailing ids that nothing uses are not ids.
        while (size > 0 && _tokenOfId[size - 1] is null && !def.AddedTokens.Exists(t => t.Id == size - 1)) size--;
        Array.Resize(ref _tokenOfId, size);
        _isSpecial = new bool[size];
        foreach (var t in def.AddedTokens)
        {
            _tokenOfId[t.Id] = t.Content;
            _isSpecial[t.Id] = t.Special;
        }
    }

    /// <summary>
    /// Reads a <c>tokenizer.json</c> file (also accepted gzip-compressed). Throws
    /// <see cref="InvalidDataException"/> for a malformed file and <see cref="NotSupportedException"/> for a
    /// component this tokenizer does not implement, both naming the file and the problem;
    /// <see cref="FileNotFoundException"/>/<see cref="IOException"/> when it cannot be read.
    /// </summary>
    public static BpeTokenizer Load(string path)
    {
        // Reading a folder fails with "Access to the path … is denied", which reads as a permissions problem.
        if (Directory.Exists(path)) throw new IOException($"{path}: it is a directory, not a tokenizer.json file");
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B)
        {
            try
            {
                using var gz = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
                using var plain = new MemoryStream();
                var buffer = new byte[1 << 16];
                for (int n; (n = gz.Read(buffer)) > 0;)
                {
                    // Real tokenizer files are tens of MB: anything near this is a decompression bomb.
                    if (plain.Length + n > MaxJsonBytes)
                        throw new InvalidDataException($"{path}: decompresses to more than {MaxJsonBytes >> 20} MiB");
                    plain.Write(buffer, 0, n);
                }
                bytes = plain.ToArray();
            }
            catch (InvalidDataException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
            {
                throw new InvalidDataException($"{path}: corrupt gzip data ({e.Message})", e);
            }
        }
        return FromJson(bytes, path);
    }

    /// <summary>Builds a tokenizer from the UTF-8 text of a <c>tokenizer.json</c>; <paramref name="source"/> names it in errors.</summary>
    public static BpeTokenizer FromJson(ReadOnlySpan<byte> utf8Json, string source = "tokenizer.json")
    {
        var def = TokenizerDefinition.Parse(utf8Json, source);
        return new BpeTokenizer(def, source);
    }

    /// <summary>The added tokens (special and not) in file order.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>One more than the largest token id.</summary>
    public int IdCount => _tokenOfId.Length;

    /// <summary>The id of a token string (vocabulary or added token), or null.</summary>
    public int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out var added) ? added.Id
        : _vocab.TryGetValue(token, out int id) ? id : null;

    /// <summary>The token string of an id (in the byte-level alphabet for vocabulary tokens), or null for an unknown id.</summary>
    public string? IdToToken(int id) => (uint)id < (uint)_tokenOfId.Length ? _tokenOfId[id] : null;

    /// <summary>Whether <paramref name="id"/> is a special added token such as <c>&lt;|im_end|&gt;</c>.</summary>
    public bool IsSpecial(int id) => (uint)id < (uint)_isSpecial.Length && _isSpecial[id];

    /// <summary>Token ids of <paramref name="text"/>.</summary>
    /// <param name="text">Any string; lone surrogates are encoded as U+FFFD.</param>
    /// <param name="parseSpecialTokens">When false, special tokens in the text are tokenized as ordinary
    /// text (Hugging Face's <c>split_special_tokens</c>); non-special added tokens still match.</param>
    public int[] Encode(string text, bool parseSpecialTokens = true)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        Encode(text, ids, parseSpecialTokens);
        return ids.ToArray();
    }

    /// <summary>Appends the token ids of <paramref name="text"/> to <paramref name="ids"/>.</summary>
    public void Encode(string text, List<int> ids, bool parseSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(ids);
        var segments = new List<AddedTokenMatcher.Segment>();
        _rawMatcher.Split(text, parseSpecialTokens, segments);
        var pieces = new List<Range>();
        foreach (var segment in segments)
        {
            if (segment.Token is not null) { ids.Add(segment.Token.Id); continue; }
            string piece = text.Substring(segment.Start, segment.End - segment.Start);
            if (_normalizeNfc) piece = Nfc.Normalize(piece);
            if (_normalizedMatcher.IsEmpty)
            {
                EncodeOrdinary(piece, ids, pieces);
                continue;
            }
            var inner = new List<AddedTokenMatcher.Segment>();
            _normalizedMatcher.Split(piece, parseSpecialTokens, inner);
            foreach (var s in inner)
            {
                if (s.Token is not null) ids.Add(s.Token.Id);
                else EncodeOrdinary(piece.AsSpan(s.Start, s.End - s.Start), ids, pieces);
            }
        }
    }

    private void EncodeOrdinary(ReadOnlySpan<char> text, List<int> ids, List<Range> pieces)
    {
        if (_preTokenizer is null)
        {
            _bpe.EncodeWord(text, ids);
            return;
        }
        pieces.Clear();
        _preTokenizer.Split(text, pieces);
        foreach (var r in pieces) _bpe.EncodeWord(text[r], ids);
    }

    /// <summary>
    /// The text of <paramref name="ids"/>: the tokens' bytes joined and read as UTF-8, invalid or
    /// incomplete sequences as U+FFFD. Throws <see cref="ArgumentOutOfRangeException"/> naming an unknown id.
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var bytes = new List<byte>(ids.Length * 4);
        foreach (int id in ids) AppendBytes(id, skipSpecialTokens, bytes);
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <summary>A decoder for ids that arrive one at a time (generation), which only emits whole characters.</summary>
    public TokenStreamDecoder CreateStreamDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    internal void AppendBytes(int id, bool skipSpecialTokens, List<byte> output)
    {
        string token = IdToToken(id)
            ?? throw new ArgumentOutOfRangeException(nameof(id), id, $"Decode: unknown token id {id} (ids go from 0 to {IdCount - 1})");
        if (skipSpecialTokens && _isSpecial[id]) return;
        // As in Hugging Face, added tokens go through the ByteLevel decoder too; their ASCII text maps to itself.
        ByteLevelAlphabet.AppendBytes(token, output);
    }
}
