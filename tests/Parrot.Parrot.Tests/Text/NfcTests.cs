using Parrot.Parrot.Text;

namespace Parrot.Parrot.Tests.Text;

/// <summary>Our NFC (tables from tools/make_nfc_tables.py) against ICU's, and the UAX #15 rules it must follow.</summary>
public class NfcTests
{
    [Test]
    public void AgreesWithIcuOnEveryCharacterThatNormalizationTouches()
    {
        var cases = TokenizerFixtures.ReadJsonLines("nfc-cases.jsonl").Select(e => e.GetProperty("text").GetString()!).ToList();
        var golden = TokenizerFixtures.ReadJsonLines("nfc-golden.jsonl").Select(e => e.GetProperty("nfc").GetString()!).ToList();
        Assert.That(golden, Has.Count.EqualTo(cases.Count));
        var failures = new List<string>();
        for (int i = 0; i < cases.Count; i++)
        {
            string actual = Nfc.Normalize(cases[i]);
            if (actual == golden[i]) continue;
            // Report the first differing case of the line (cases are space-separated).
            var a = actual.Split(' ');
            var e = golden[i].Split(' ');
            var c = cases[i].Split(' ');
            int k = Enumerable.Range(0, Math.Min(a.Length, e.Length)).FirstOrDefault(j => a[j] != e[j]);
            failures.Add($"line {i + 1}: NFC of {Hex(c.ElementAtOrDefault(k) ?? "")} is {Hex(e.ElementAtOrDefault(k) ?? "")}, got {Hex(a.ElementAtOrDefault(k) ?? "")}");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
    }

    [TestCase("e\u0301", "\u00E9")]
    [TestCase("A\u030A", "\u00C5")]
    [TestCase("\u212B", "\u00C5")]                      // singleton decomposition (Angstrom sign)
    [TestCase("\u2126", "\u03A9")]                      // Ohm sign
    [TestCase("\u0958", "\u0915\u093C")]                // composition exclusion stays decomposed
    [TestCase("a\u0301\u0323", "\u1EA1\u0301")]         // reordered (dot below 220 before acute 230), then composed
    [TestCase("\u1100\u1161\u11A8", "\uAC01")]          // Hangul L V T
    [TestCase("\uAC00\u11A8", "\uAC01")]                // Hangul LV + T
    [TestCase("\u0301abc", "\u0301abc")]                // leading mark has nothing to compose with
    [TestCase("\u0344", "\u0308\u0301")]                // non-starter decomposition
    [TestCase("\U0001D15E", "\U0001D157\U0001D165")]    // astral composition exclusion
    [TestCase("e\u0301\u0301", "\u00E9\u0301")]         // second acute is blocked by the first
    public void KnownCases(string input, string expected) =>
        Assert.That(Nfc.Normalize(input), Is.EqualTo(expected));

    [Test]
    public void TextAlreadyInNfcIsReturnedAsTheSameInstance()
    {
        foreach (string s in new[] { "plain ASCII", "中文文本", "Olá, coração", "مرحبا بالعالم", "𠀀😀", "" })
            Assert.That(Nfc.Normalize(s), Is.SameAs(s), s);
    }

    [Test]
    public void LoneSurrogatesPassThrough() =>
        Assert.That(Nfc.Normalize("a\uD800e\u0301\uDC00"), Is.EqualTo("a\uD800\u00E9\uDC00"));

    private static string Hex(string s) => string.Join(" ", s.EnumerateRunes().Select(r => $"U+{r.Value:X4}"));
}
