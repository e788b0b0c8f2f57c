using System.CommandLine;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Parrot.Parrot.Text;

[assembly: InternalsVisibleTo("Parrot.Cli.Tests")]

namespace Parrot.Cli;

/// <summary>
/// `parrot tokenize --tokenizer FILE`: JSON lines <c>{"text": "..."}</c> on standard input, one
/// <c>{"ids": [...]}</c> line per input line on standard output (written as soon as it is ready, so a
/// caller can talk to it line by line). A bad file or line stops with a message naming it and exit code 1.
/// </summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var tokenizer = new Option<string>("--tokenizer")
        {
            Description = "Hugging Face tokenizer.json of a byte-level BPE model such as Qwen (also accepted gzip-compressed)",
            Required = true,
        };
        var specialAsText = new Option<bool>("--special-as-text")
        {
            Description = "Tokenize special tokens such as <|im_end|> in the text as ordinary text",
        };
        var command = new Command("tokenize", "Token ids of JSON lines {\"text\": \"...\"} read from standard input");
        command.Options.Add(tokenizer);
        command.Options.Add(specialAsText);
        command.SetAction(parse =>
        {
            using var stdin = Console.OpenStandardInput();
            using var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = false };
            return Run(parse.GetValue(tokenizer)!, parse.GetValue(specialAsText), stdin, stdout, Console.Error);
        });
        return command;
    }

    internal static int Run(string tokenizerPath, bool specialAsText, Stream input, TextWriter output, TextWriter error)
    {
        BpeTokenizer tokenizer;
        try
        {
            tokenizer = BpeTokenizer.Load(tokenizerPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or NotSupportedException)
        {
            // The tokenizer's own messages begin with the path: it is named once.
            string problem = e.Message.StartsWith(tokenizerPath + ": ", StringComparison.Ordinal) ? e.Message[(tokenizerPath.Length + 2)..] : e.Message;
            error.WriteLine($"parrot tokenize: cannot use tokenizer {tokenizerPath}: {problem}");
            return 1;
        }
        return Run(tokenizer, specialAsText, input, output, error);
    }

    internal static int Run(BpeTokenizer tokenizer, bool specialAsText, Stream input, TextWriter output, TextWriter error)
    {
        int lineNumber = 0;
        var ids = new List<int>();
        var line = new StringBuilder();
        // Lines are split as bytes and checked one by one, so that bad UTF-8 is reported on its own line.
        var reader = new BufferedStream(input, 1 << 16);
        var bytes = new MemoryStream();
        while (ReadLine(reader, bytes))
        {
            lineNumber++;
            var raw = bytes.GetBuffer().AsMemory(0, (int)bytes.Length);
            if (lineNumber == 1 && raw.Span.StartsWith("\uFEFF"u8)) raw = raw[3..];
            string? problem = ReadText(raw, out string text);
            if (problem is not null)
            {
                output.Flush();
                error.WriteLine($"parrot tokenize: stdin line {lineNumber}: {problem}");
                return 1;
            }
            ids.Clear();
            try { tokenizer.Encode(text, ids, parseSpecialTokens: !specialAsText); }
            catch (InvalidDataException e) // the tokenizer's split pattern gave up on this text
            {
                output.Flush();
                error.WriteLine($"parrot tokenize: stdin line {lineNumber}: {e.Message}");
                return 1;
            }
            line.Clear().Append("{\"ids\":[");
            for (int i = 0; i < ids.Count; i++)
            {
                if (i > 0) line.Append(',');
                line.Append(ids[i]);
            }
            line.Append("]}");
            output.WriteLine(line);
            // Answer each line at once: a caller may wait for it before writing the next.
            output.Flush();
        }
        return 0;
    }

    /// <summary>Reads up to the next '\n' (dropped, with a '\r' before it) into <paramref name="line"/>; false at the end.</summary>
    private static bool ReadLine(Stream input, MemoryStream line)
    {
        line.SetLength(0);
        int b;
        while ((b = input.ReadByte()) >= 0 && b != '\n') line.WriteByte((byte)b);
        if (b < 0 && line.Length == 0) return false;
        if (line.Length > 0 && line.GetBuffer()[line.Length - 1] == '\r') line.SetLength(line.Length - 1);
        return true;
    }

    /// <summary>The "text" of one input line, or a description of what is wrong with the line.</summary>
    private static string? ReadText(ReadOnlyMemory<byte> line, out string text)
    {
        text = "";
        if (!System.Text.Unicode.Utf8.IsValid(line.Span)) return "not valid UTF-8";
        if (line.Span.Trim(" \t\r"u8).IsEmpty) return "empty line; expected {\"text\": \"...\"}";
        try
        {
            using var doc = JsonDocument.Parse(line);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                return $"expected a JSON object {{\"text\": \"...\"}}, got {doc.RootElement.ValueKind}";
            if (!doc.RootElement.TryGetProperty("text", out var value))
                return "the object has no \"text\"";
            if (value.ValueKind != JsonValueKind.String)
                return $"\"text\" is {value.ValueKind}, not a string";
            text = value.GetString()!;
            return null;
        }
        catch (JsonException e)
        {
            return $"not valid JSON ({e.Message})";
        }
        catch (InvalidOperationException e)
        {
            // System.Text.Json refuses strings with unpaired surrogate escapes such as "\ud800".
            return $"\"text\" cannot be read as a string ({e.Message})";
        }
    }
}
