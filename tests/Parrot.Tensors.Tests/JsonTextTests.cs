using System.Text;
using System.Text.Json;
using Parrot.Tensors.Formats;

namespace Parrot.Tensors.Tests;

public class JsonTextTests
{
    [Test]
    public void ReadableStringsAreReadAndUnreadableOnesAreNull()
    {
        using var doc = JsonDocument.Parse("""["a\u00e9\ud83d\ude00", "x\ud800", "\udc00y", 1]""");
        var items = doc.RootElement.EnumerateArray().ToArray();
        Assert.That(JsonText.TryGetString(items[0]), Is.EqualTo("a\u00e9\U0001F600"));
        Assert.That(JsonText.TryGetString(items[1]), Is.Null);
        Assert.That(JsonText.TryGetString(items[2]), Is.Null);
        Assert.Throws<ArgumentException>(() => JsonText.TryGetString(items[3]));
        // Invalid UTF-8 parses from bytes as well and is as unreadable.
        using var bytes = JsonDocument.Parse(new byte[] { (byte)'"', 0xFF, (byte)'"' });
        Assert.That(JsonText.TryGetString(bytes.RootElement), Is.Null);
    }

    [TestCase("""{"a": [1, {"b": "ok"}, {"c": "x\ud800"}]}""", "the string at $.a[2].c")]
    [TestCase("""{"a": {"k\udfff": 1}}""", "a key of $.a")]
    [TestCase("""["\ud800"]""", "the string at $[0]")]
    [TestCase("""{"a": ["\ud83d\ude00", null, true, 2.5]}""", null)]
    [TestCase("""{"a": """, null)] // not JSON: that is the parser's error to report
    public void TheFirstUnreadableStringIsLocated(string json, string? expected)
    {
        Assert.That(JsonText.FindUnreadable(json), Is.EqualTo(expected));
        if (expected is not null)
        {
            using var doc = JsonDocument.Parse(Encoding.UTF8.GetBytes(json));
            Assert.That(JsonText.FindUnreadable(doc.RootElement), Is.EqualTo(expected));
        }
    }
}
