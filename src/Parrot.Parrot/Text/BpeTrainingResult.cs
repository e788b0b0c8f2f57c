using System.Text.Encodings.Web;
using System.Text.Json;

namespace Parrot.Parrot.Text;

/// <summary>A trained byte-level BPE vocabulary, and its <c>tokenizer.json</c>.</summary>
public sealed class BpeTrainingResult
{
    internal BpeTrainingResult(List<string> tokens, List<(string Left, string Right)> merges, List<string> specialTokens,
        int requestedVocabSize, long characters, long words, int distinctWords, TimeSpan mergeTime)
    {
        Tokens = tokens.AsReadOnly();
        Merges = merges.AsReadOnly();
        SpecialTokens = specialTokens.AsReadOnly();
        RequestedVocabSize = requestedVocabSize;
        Characters = characters;
        Words = words;
        DistinctWords = distinctWords;
        MergeTime = mergeTime;
    }

    /// <summary>The BPE vocabulary in id order (byte-level strings): 256 byte symbols, then learned tokens.</summary>
    public IReadOnlyList<string> Tokens { get; }

    /// <summary>The merges in rank order, as the two byte-level strings they join.</summary>
    public IReadOnlyList<(string Left, string Right)> Merges { get; }

    /// <summary>Special tokens; the i-th has id <c>Tokens.Count + i</c>.</summary>
    public IReadOnlyList<string> SpecialTokens { get; }

    /// <summary>Ids in all: vocabulary plus special tokens (less than <see cref="RequestedVocabSize"/> when the corpus ran out of pairs).</summary>
    public int IdCount => Tokens.Count + SpecialTokens.Count;

    /// <summary>The size that was asked for.</summary>
    public int RequestedVocabSize { get; }

    /// <summary>Characters of training text read.</summary>
    public long Characters { get; }

    /// <summary>Pre-tokenized words in the corpus, with repeats.</summary>
    public long Words { get; }

    /// <summary>Distinct pre-tokenized words.</summary>
    public int DistinctWords { get; }

    /// <summary>Time spent learning the merges (after counting).</summary>
    public TimeSpan MergeTime { get; }

    /// <summary>The UTF-8 text of a <c>tokenizer.json</c> in the layout of Qwen2's, deterministic to the byte.</summary>
    public byte[] ToJson()
    {
        var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions
               {
                   Indented = true,
                   NewLine = "\n",
                   // Byte-level symbols such as 'Ġ' stay readable, as in Hugging Face's files.
                   Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
               }))
        {
            json.WriteStartObject();
            json.WriteString("version", "1.0");
            json.WriteNull("truncation");
            json.WriteNull("padding");
            json.WriteStartArray("added_tokens");
            for (int i = 0; i < SpecialTokens.Count; i++)
            {
                json.WriteStartObject();
                json.WriteNumber("id", Tokens.Count + i);
                json.WriteString("content", SpecialTokens[i]);
                json.WriteBoolean("single_word", false);
                json.WriteBoolean("lstrip", false);
                json.WriteBoolean("rstrip", false);
                json.WriteBoolean("normalized", false);
                json.WriteBoolean("special", true);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteStartObject("normalizer");
            json.WriteString("type", "NFC");
            json.WriteEndObject();
            json.WriteStartObject("pre_tokenizer");
            json.WriteString("type", "Sequence");
            json.WriteStartArray("pretokenizers");
            json.WriteStartObject();
            json.WriteString("type", "Split");
            json.WriteStartObject("pattern");
            json.WriteString("Regex", BpeTrainer.QwenSplitPattern);
            json.WriteEndObject();
            json.WriteString("behavior", "Isolated");
            json.WriteBoolean("invert", false);
            json.WriteEndObject();
            WriteByteLevel(json, null);
            json.WriteEndArray();
            json.WriteEndObject();
            WriteByteLevel(json, "post_processor");
            WriteByteLevel(json, "decoder");
            json.WriteStartObject("model");
            json.WriteString("type", "BPE");
            json.WriteNull("dropout");
            json.WriteNull("unk_token");
            json.WriteString("continuing_subword_prefix", "");
            json.WriteString("end_of_word_suffix", "");
            json.WriteBoolean("fuse_unk", false);
            json.WriteBoolean("byte_fallback", false);
            json.WriteBoolean("ignore_merges", false);
            json.WriteStartObject("vocab");
            for (int id = 0; id < Tokens.Count; id++) json.WriteNumber(Tokens[id], id);
            json.WriteEndObject();
            json.WriteStartArray("merges");
            foreach (var (left, right) in Merges)
            {
                json.WriteStartArray();
                json.WriteStringValue(left);
                json.WriteStringValue(right);
                json.WriteEndArray();
            }
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndObject();
        }
        stream.WriteByte((byte)'\n');
        return stream.ToArray();
    }

    private static void WriteByteLevel(Utf8JsonWriter json, string? name)
    {
        if (name is null) json.WriteStartObject(); else json.WriteStartObject(name);
        json.WriteString("type", "ByteLevel");
        json.WriteBoolean("add_prefix_space", false);
        json.WriteBoolean("trim_offsets", false);
        json.WriteBoolean("use_regex", false);
        json.WriteEndObject();
    }

    /// <summary>
    /// Writes the <c>tokenizer.json</c> to <paramref name="path"/> atomically (a temporary file in the same
    /// folder, then a rename), creating the folder when needed.
    /// </summary>
    public void Save(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new IOException($"{path} is a directory; give the path of the tokenizer.json to write");
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var json = ToJson();
        global::Parrot.Tensors.Formats.AtomicFile.Write(full, file => file.Write(json));
    }

    /// <summary>The tokenizer this vocabulary defines, read back from its JSON.</summary>
    public BpeTokenizer ToTokenizer() => BpeTokenizer.FromJson(ToJson(), "trained tokenizer");
}
