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

/// <summary>Keys of Hugging Face style token files that train-lm cannot honour are refused, not ignored.</summary>
public class TokenSequencesMaskTests
{
    private static string Write(string text)
    {
        var path = Path.Combine(Path.GetTempPath(), $"token-masks-{Guid.NewGuid():N}.jsonl");
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>These were read as plain "ids", so the masked prompt or the padding was trained on without a word.</summary>
    [TestCase("{\"ids\": [1, 2, 3], \"labels\": [-100, 2, 3]}", "\"labels\" differ from \"ids\" (at position 0)")]
    [TestCase("{\"ids\": [1, 2, 3], \"labels\": [1, 2]}", "\"labels\" differ from \"ids\" (at position 2)")]
    [TestCase("{\"ids\": [1, 2, 3], \"labels\": \"1 2 3\"}", "\"labels\" differ from \"ids\" (at position 0)")]
    [TestCase("{\"ids\": [1, 2, 0], \"attention_mask\": [1, 1, 0]}", "\"attention_mask\" is not all ones (at position 2)")]
    [TestCase("{\"ids\": [1, 2, 3], \"loss_mask\": [0, 1, 1]}", "\"loss_mask\" is not all ones (at position 0)")]
    public void MaskingKeysThatWouldChangeTrainingAreErrors(string line, string expected)
    {
        var path = Write("{\"ids\": [4, 5, 6]}\n" + line + "\n");
        try
        {
            Assert.That(() => TokenSequences.Read(path, 10), Throws.InstanceOf<InvalidDataException>().With.Message.StartWith($"{path}:2: {expected}"));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void CopiesThatChangeNothingAndOtherKeysAreAccepted()
    {
        var path = Write("{\"ids\": [1, 2, 3], \"labels\": [1, 2, 3], \"attention_mask\": [1, 1, 1], \"source\": \"x\"}\n{\"ids\": [4, 5, 6], \"labels\": null}\n");
        try
        {
            Assert.That(TokenSequences.Read(path, 10), Is.EqualTo(new[] { new[] { 1, 2, 3 }, new[] { 4, 5, 6 } }));
        }
        finally { File.Delete(path); }
    }
}
