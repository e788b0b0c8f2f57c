using System.Diagnostics;
using System.Text;

namespace Parrot.Parrot.Text;

/// <summary>
/// Learns a byte-level BPE vocabulary from text, for a tokenizer of the Qwen2 kind
/// (<see cref="BpeTokenizer"/> reads the result): NFC normalization, Qwen's split pattern, byte-level
/// symbols, merges, and special tokens matched before anything else.
/// <para>
/// The base vocabulary is the 256 byte symbols with ids 0–255 in GPT-2's order (the order of their
/// byte-level characters, so '!' is 0 and 'Ġ', a space, is 220, as in GPT-2 and Qwen). Words are counted
/// as the tokenizer will cut them, then the most frequent adjacent pair is merged, again and again, until
/// the vocabulary plus the special tokens reach <see cref="BpeTrainerOptions.VocabSize"/>. Ties between
/// equally frequent pairs go to the smaller (left id, right id). The special tokens take the ids right
/// after the learned vocabulary, in the order given. Training is deterministic: the same text and options
/// give a byte-identical <c>tokenizer.json</c>.
/// </para>
/// </summary>
public sealed class BpeTrainer
{
    /// <summary>Qwen2's pre-tokenizer pattern: contractions, letter runs with one leading non-letter, single digits, punctuation runs, line breaks, spaces.</summary>
    public const string QwenSplitPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private readonly BpeTrainerOptions _options;
    private readonly BpeWordCounter _counter;

    /// <summary>A trainer with no text yet; throws <see cref="ArgumentException"/> for bad options.</summary>
    public BpeTrainer(BpeTrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options with { SpecialTokens = options.SpecialTokens.ToArray() };
        _counter = new BpeWordCounter(_options.SpecialTokens, QwenSplitPattern);
    }

    /// <summary>Adds text to the corpus.</summary>
    public void AddText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        using var reader = new StringReader(text);
        _counter.Add(reader);
    }

    /// <summary>
    /// Adds a UTF-8 text file to the corpus, read in chunks. Throws <see cref="FileNotFoundException"/>
    /// for a missing file and <see cref="InvalidDataException"/> naming the file when it is not UTF-8.
    /// </summary>
    public void AddFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"input file {path} does not exist", path);
        try
        {
            using var reader = new StreamReader(path, new UTF8Encoding(false, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: true);
            _counter.Add(reader);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"{path} is not valid UTF-8 text ({e.Message})", e);
        }
    }

    /// <summary>
    /// Learns the merges from everything added so far. Throws <see cref="InvalidOperationException"/> when
    /// the corpus holds no text outside the special tokens. The result may have fewer ids than asked for
    /// when the corpus runs out of pairs seen <see cref="BpeTrainerOptions.MinPairFrequency"/> times.
    /// </summary>
    public BpeTrainingResult Train()
    {
        var clock = Stopwatch.StartNew();
        if (_counter.Counts.Count == 0)
            throw new InvalidOperationException("the corpus is empty (no text outside special tokens), so there is nothing to learn from");

        var tokens = new List<string>(_options.VocabSize);
        var idOfByte = new int[256];
        // GPT-2's order: byte symbols sorted by their character.
        foreach (int b in Enumerable.Range(0, 256).OrderBy(b => ByteLevelAlphabet.CharOfByte[b]))
        {
            idOfByte[b] = tokens.Count;
            tokens.Add(ByteLevelAlphabet.CharOfByte[b].ToString());
        }
        // Word order does not change the outcome (counts are sums, ties go by ids); sorting keeps it fixed anyway.
        var words = _counter.Counts.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        var learner = new BpeMergeLearner(tokens, idOfByte, words);
        learner.Run(_options.VocabSize - _options.SpecialTokens.Count, _options.MinPairFrequency);

        foreach (string special in _options.SpecialTokens)
            if (tokens.Contains(special))
                throw new InvalidOperationException($"special token '{special}' was also learned as a vocabulary token; choose a special token outside the byte-level alphabet");

        return new BpeTrainingResult(
            tokens, learner.Merges.Select(m => (tokens[m.Left], tokens[m.Right])).ToList(), _options.SpecialTokens.ToList(),
            _options.VocabSize, _counter.Characters, _counter.Words, words.Count, clock.Elapsed);
    }
}
