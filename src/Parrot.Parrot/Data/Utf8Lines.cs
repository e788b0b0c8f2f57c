using System.Text;

namespace Parrot.Parrot.Data;

/// <summary>
/// The lines of a text data file, decoded strictly: a byte sequence that is not UTF-8 is an error naming the
/// file and line (<see cref="File.ReadLines(string)"/> would turn it into U+FFFD and train on that). A UTF-8
/// byte order mark on the first line is skipped; "\r\n" and "\n" both end a line.
/// </summary>
public static class Utf8Lines
{
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Each line of <paramref name="path"/> with its 1-based number.</summary>
    public static IEnumerable<(int Number, string Text)> Read(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var line = new MemoryStream();
        int number = 0;
        while (true)
        {
            line.SetLength(0);
            int b;
            while ((b = stream.ReadByte()) >= 0 && b != '\n') line.WriteByte((byte)b);
            if (b < 0 && line.Length == 0) yield break;
            number++;
            var bytes = line.GetBuffer().AsSpan(0, (int)line.Length);
            if (bytes.EndsWith("\r"u8)) bytes = bytes[..^1];
            if (number == 1 && bytes.StartsWith("\uFEFF"u8)) bytes = bytes[3..];
            string text;
            try { text = Strict.GetString(bytes); }
            catch (DecoderFallbackException e)
            {
                throw new InvalidDataException($"{path}:{number}: not valid UTF-8 (byte 0x{e.BytesUnknown?[0]:X2} at byte {e.Index + 1} of the line)", e);
            }
            yield return (number, text);
        }
    }
}
