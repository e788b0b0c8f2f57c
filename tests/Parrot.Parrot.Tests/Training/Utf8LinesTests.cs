using Parrot.Parrot.Data;

namespace Parrot.Parrot.Tests.Training;

/// <summary>JSON-lines data files are decoded strictly: bad UTF-8 is named by file and line, a BOM and CRLF are fine.</summary>
public class Utf8LinesTests
{
    private static string Write(byte[] bytes)
    {
        var path = Path.Combine(Path.GetTempPath(), $"utf8lines-{Guid.NewGuid():N}.jsonl");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Test]
    public void BomCrlfAndAMissingFinalNewline()
    {
        var path = Write([.. "\uFEFF"u8, .. "{\"ids\": [1, 2]}\r\n\r\n{\"ids\": [3, 4]}"u8]);
        try
        {
            Assert.That(Utf8Lines.Read(path), Is.EqualTo(new[] { (1, "{\"ids\": [1, 2]}"), (2, ""), (3, "{\"ids\": [3, 4]}") }));
            Assert.That(TokenSequences.Read(path, 10), Is.EqualTo(new[] { new[] { 1, 2 }, new[] { 3, 4 } }));
        }
        finally { File.Delete(path); }
    }

    /// <summary>The token and text readers used to decode a Latin-1 byte to U+FFFD (and then report a JSON error about 0xEF, or train on the U+FFFD).</summary>
    [Test]
    public void NonUtf8IsNamedWithItsLine()
    {
        var path = Write([.. "{\"ids\": [1, 2]}\n{\"text\": \"caf"u8, 0xE9, .. "\"}\n"u8]);
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => Utf8Lines.Read(path).ToList());
            Assert.That(e!.Message, Is.EqualTo($"{path}:2: not valid UTF-8 (byte 0xE9 at byte 14 of the line)"));
            Assert.That(() => TokenSequences.Read(path, 10), Throws.InstanceOf<InvalidDataException>().With.Message.StartWith(path + ":2: not valid UTF-8"));
        }
        finally { File.Delete(path); }
    }
}
