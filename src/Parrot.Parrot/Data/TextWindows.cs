using System.Text.Json;
using Parrot.Parrot.Text;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Data;

/// <summary>
/// Language-model training windows from plain text: JSON lines <c>{"text": ...}</c> (extra keys such as
/// <c>id</c> and <c>language</c>, as in a world's <c>text/lm.jsonl</c>, are ignored) are tokenized, each document is
/// followed by the end-of-text token, the documents are concatenated in file order and cut into windows of
/// equal length (the remainder is dropped).
/// </summary>
public static class TextWindows
{
    /// <summary>The end-of-document token (Qwen's).</summary>
    public const string EndOfText = "<|endoftext|>";

    /// <summary>Windows of <paramref name="length"/> ids from the documents of <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">A line is not a JSON object with a string "text" (file and line named), the tokenizer has no <see cref="EndOfText"/>, or the text gives no full window.</exception>
    /// <param name="path">The JSON-lines file.</param>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="length">Tokens per window.</param>
    /// <param name="documents">Documents read.</param>
    /// <param name="parseSpecialTokens">Whether special tokens written in the text (<c>&lt;|im_start|&gt;</c>, …) become
    /// their control ids, as ChatML-formatted documents need; off by default: text is text.</param>
    public static List<int[]> Read(string path, BpeTokenizer tokenizer, int length, out int documents, bool parseSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (length < 2) throw new ArgumentOutOfRangeException(nameof(length), length, "TextWindows: windows need at least 2 tokens");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: text file not found", path);
        int eot = tokenizer.TokenToId(EndOfText) ?? throw new InvalidDataException($"the tokenizer has no {EndOfText} token to separate documents");
        var stream = new List<int>();
        documents = 0;
        foreach (var (lineNo, line) in Utf8Lines.Read(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            string text;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"{path}:{lineNo}: expected an object with a string \"text\"");
                text = JsonText.TryGetString(t) ?? throw new InvalidDataException($"{path}:{lineNo}: \"text\" {JsonText.NotText}");
            }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{lineNo}: not valid JSON ({e.Message})", e); }
            // Unless asked, text is text: a "<|im_end|>" written inside a document is not a control token.
            tokenizer.Encode(text, stream, parseSpecialTokens);
            stream.Add(eot);
            documents++;
        }
        int count = stream.Count / length;
        if (count == 0) throw new InvalidDataException($"{path}: {stream.Count} tokens in {documents} documents make no window of {length} tokens");
        var windows = new List<int[]>(count);
        for (int i = 0; i < count; i++) windows.Add(stream.GetRange(i * length, length).ToArray());
        return windows;
    }
}
