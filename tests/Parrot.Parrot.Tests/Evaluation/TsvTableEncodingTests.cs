using Parrot.Parrot.Evaluation;

namespace Parrot.Parrot.Tests.Evaluation;

/// <summary>Benchmark TSVs are read as UTF-8 strictly: a file in another encoding is named, not turned into U+FFFD questions.</summary>
public class TsvTableEncodingTests
{
    [Test]
    public void NonUtf8FileIsAnErrorWithTheLine()
    {
        var path = Path.Combine(Path.GetTempPath(), $"gbk-{Guid.NewGuid():N}_zh.tsv");
        // "中" in GBK is D6 D0: not UTF-8.
        File.WriteAllBytes(path, [.. "index\tquestion\tA\tB\tanswer\n1\tQ\ta\tb\tA\n2\t"u8, 0xD6, 0xD0, .. "\ta\tb\tB\n"u8]);
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => TsvTable.Read(path));
            Assert.That(e!.Message, Is.EqualTo($"{path}: line 3: not valid UTF-8 (byte 0xD6); save the file as UTF-8"));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void ByteOrderMarkAndCrlfStillRead()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bom-{Guid.NewGuid():N}_en.tsv");
        File.WriteAllBytes(path, [.. "\uFEFF"u8, .. "index\tquestion\r\n1\t中\r\n"u8]);
        try
        {
            var t = TsvTable.Read(path);
            Assert.That(t.Columns, Is.EqualTo(new[] { "index", "question" }));
            Assert.That(t.Rows.Single(), Is.EqualTo(new[] { "1", "中" }));
        }
        finally { File.Delete(path); }
    }
}
