namespace Parrot.Parrot.Text;

/// <summary>Settings of <see cref="BpeTrainer"/>.</summary>
public sealed record BpeTrainerOptions
{
    /// <summary>The special tokens a Qwen2-style chat model needs: end of text and the ChatML turn markers.</summary>
    public static IReadOnlyList<string> DefaultSpecialTokens { get; } = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

    /// <summary>
    /// Number of token ids wanted in all: the 256 byte symbols, the learned merges and the special tokens.
    /// This is the embedding-table size of a model that uses the tokenizer. Must leave room for at least one merge.
    /// </summary>
    public required int VocabSize { get; init; }

    /// <summary>Special tokens, in the order of their ids, which follow the BPE vocabulary.</summary>
    public IReadOnlyList<string> SpecialTokens { get; init; } = DefaultSpecialTokens;

    /// <summary>
    /// A pair seen fewer times than this is never merged: training stops early (with fewer ids than
    /// <see cref="VocabSize"/>) rather than spend ids memorizing one-off strings.
    /// </summary>
    public int MinPairFrequency { get; init; } = 2;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first problem.</summary>
    internal void Validate()
    {
        var specials = SpecialTokens ?? throw new ArgumentException("SpecialTokens is null");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string s in specials)
        {
            if (string.IsNullOrEmpty(s)) throw new ArgumentException("a special token is empty");
            if (!seen.Add(s)) throw new ArgumentException($"special token '{s}' is given twice");
            // Files are cut into chunks at line starts; a token spanning a line break could be cut in two.
            if (s.AsSpan().IndexOfAny('\r', '\n') >= 0) throw new ArgumentException($"special token '{Escape(s)}' holds a line break");
            if (s.Length == 1 && ByteLevelAlphabet.ByteOf(s[0]) >= 0)
                throw new ArgumentException($"special token '{s}' is a byte-level symbol of the base vocabulary");
        }
        int reserved = ByteLevelAlphabet.CharOfByte.Length + specials.Count;
        if (VocabSize <= reserved)
            throw new ArgumentException($"vocabulary size {VocabSize} leaves no room for merges: the 256 byte symbols and {specials.Count} special tokens already take {reserved} ids (ask for more than {reserved})");
        if (MinPairFrequency < 1) throw new ArgumentException($"the minimum pair frequency must be at least 1, got {MinPairFrequency}");
    }

    private static string Escape(string s) => s.Replace("\r", "\\r").Replace("\n", "\\n");
}
