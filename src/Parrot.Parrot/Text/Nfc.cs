using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text;

[assembly: InternalsVisibleTo("Parrot.Parrot.Tests")]

namespace Parrot.Parrot.Text;

/// <summary>
/// Unicode Normalization Form C (UAX #15). The project runs with invariant globalization, where
/// <see cref="string.Normalize()"/> returns its input unchanged, so the tokenizer's NFC normalizer needs
/// its own implementation. Tables come from tools/make_nfc_tables.py (<see cref="UnicodeVersion"/>).
/// </summary>
internal static partial class Nfc
{
    private const int NoFlag = 1 << 8, MaybeFlag = 1 << 9;
    private const int HangulSBase = 0xAC00, HangulLBase = 0x1100, HangulVBase = 0x1161, HangulTBase = 0x11A7;
    private const int HangulLCount = 19, HangulVCount = 21, HangulTCount = 28;
    private const int HangulNCount = HangulVCount * HangulTCount, HangulSCount = HangulLCount * HangulNCount;

    // Per code point: combining class in the low byte, quick-check flags above it. Two-level table over
    // blocks of 256 code points; blocks with nothing to say share block 0 (all zero).
    private static readonly ushort[] BlockIndex;
    private static readonly ushort[] BlockData;
    private static readonly Dictionary<int, int[]> DecompositionOf;
    private static readonly Dictionary<long, int> CompositeOf;

    static Nfc()
    {
        var info = new Dictionary<int, ushort>();
        void Or(int cp, int bits) => info[cp] = (ushort)(info.GetValueOrDefault(cp) | bits);
        var ccc = CombiningClassRanges;
        for (int i = 0; i < ccc.Length; i += 3)
            for (int cp = ccc[i]; cp <= ccc[i + 1]; cp++) Or(cp, ccc[i + 2]);
        var no = QuickCheckNoRanges;
        for (int i = 0; i < no.Length; i += 2)
            for (int cp = no[i]; cp <= no[i + 1]; cp++) Or(cp, NoFlag);
        var maybe = QuickCheckMaybeRanges;
        for (int i = 0; i < maybe.Length; i += 2)
            for (int cp = maybe[i]; cp <= maybe[i + 1]; cp++) Or(cp, MaybeFlag);

        BlockIndex = new ushort[0x110000 >> 8];
        var blocks = new Dictionary<int, int>();
        var data = new List<ushort>(new ushort[256]);
        foreach (var cp in info.Keys.OrderBy(c => c))
        {
            int block = cp >> 8;
            if (!blocks.TryGetValue(block, out int slot))
            {
                slot = blocks[block] = data.Count / 256;
                data.AddRange(new ushort[256]);
                BlockIndex[block] = (ushort)slot;
            }
            data[slot * 256 + (cp & 0xFF)] = info[cp];
        }
        BlockData = data.ToArray();

        DecompositionOf = new Dictionary<int, int[]>();
        var dec = Decompositions;
        for (int i = 0; i < dec.Length; i += 2 + dec[i + 1])
            DecompositionOf[dec[i]] = dec.Slice(i + 2, dec[i + 1]).ToArray();
        CompositeOf = new Dictionary<long, int>();
        var comp = Compositions;
        for (int i = 0; i < comp.Length; i += 3)
            CompositeOf[PairKey(comp[i], comp[i + 1])] = comp[i + 2];
    }

    private static long PairKey(int first, int second) => ((long)first << 21) | (uint)second;

    private static int Info(int cp) => BlockData[(BlockIndex[cp >> 8] << 8) | (cp & 0xFF)];

    internal static int CombiningClass(int cp) => Info(cp) & 0xFF;

    /// <summary>Returns <paramref name="text"/> in NFC; the same instance when it already is.</summary>
    public static string Normalize(string text)
    {
        if (IsNormalizedQuick(text)) return text;
        int[] buffer = ArrayPool<int>.Shared.Rent(text.Length + text.Length / 4 + 16);
        try
        {
            int n = Decompose(text, ref buffer);
            ReorderCanonically(buffer.AsSpan(0, n));
            n = Compose(buffer.AsSpan(0, n));
            var sb = new StringBuilder(n + 8);
            for (int i = 0; i < n; i++)
            {
                int cp = buffer[i];
                // Lone surrogates pass through as the UTF-16 unit they were.
                if (cp is >= 0xD800 and <= 0xDFFF) sb.Append((char)cp);
                else sb.Append(new Rune(cp).ToString());
            }
            return sb.ToString();
        }
        finally { ArrayPool<int>.Shared.Return(buffer); }
    }

    /// <summary>UAX #15 quick check; "maybe" counts as "no" (the full algorithm then decides).</summary>
    public static bool IsNormalizedQuick(ReadOnlySpan<char> text)
    {
        int lastClass = 0;
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            if (cp < 0x300) { lastClass = 0; continue; }
            if (char.IsHighSurrogate((char)cp) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cp = char.ConvertToUtf32((char)cp, text[++i]);
            int info = Info(cp);
            int cls = info & 0xFF;
            if ((info & (NoFlag | MaybeFlag)) != 0 || (cls != 0 && lastClass > cls)) return false;
            lastClass = cls;
        }
        return true;
    }

    private static int Decompose(string text, ref int[] buffer)
    {
        int n = 0;
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cp = char.ConvertToUtf32(text[i], text[++i]);
            if (n + 4 > buffer.Length) Grow(ref buffer, n + 4);
            int s = cp - HangulSBase;
            if ((uint)s < HangulSCount)
            {
                buffer[n++] = HangulLBase + s / HangulNCount;
                buffer[n++] = HangulVBase + s % HangulNCount / HangulTCount;
                if (s % HangulTCount != 0) buffer[n++] = HangulTBase + s % HangulTCount;
            }
            else if (cp >= 0xC0 && DecompositionOf.TryGetValue(cp, out var parts))
            {
                if (n + parts.Length > buffer.Length) Grow(ref buffer, n + parts.Length);
                parts.CopyTo(buffer, n);
                n += parts.Length;
            }
            else buffer[n++] = cp;
        }
        return n;
    }

    private static void Grow(ref int[] buffer, int needed)
    {
        var bigger = ArrayPool<int>.Shared.Rent(Math.Max(needed, buffer.Length * 2));
        buffer.CopyTo(bigger, 0);
        ArrayPool<int>.Shared.Return(buffer);
        buffer = bigger;
    }

    /// <summary>Stable sort of each run of non-starters by combining class.</summary>
    private static void ReorderCanonically(Span<int> cps)
    {
        for (int i = 1; i < cps.Length; i++)
        {
            int cls = CombiningClass(cps[i]);
            if (cls == 0) continue;
            int cp = cps[i], j = i;
            while (j > 0 && CombiningClass(cps[j - 1]) > cls) { cps[j] = cps[j - 1]; j--; }
            cps[j] = cp;
        }
    }

    /// <summary>Canonical composition in place (UAX #15 §1.3, Hangul included); returns the new length.</summary>
    private static int Compose(Span<int> cps)
    {
        if (cps.Length == 0) return 0;
        int starterPos = 0, starter = cps[0];
        // A leading non-starter has no starter to compose with: make every later mark count as blocked.
        int lastClass = CombiningClass(starter) == 0 ? 0 : 256;
        int outPos = 1;
        for (int i = 1; i < cps.Length; i++)
        {
            int cp = cps[i], cls = CombiningClass(cp);
            // Not blocked: nothing between the starter and cp, or only marks of a lower class.
            int composite = lastClass < cls || lastClass == 0 ? ComposePair(starter, cp) : -1;
            if (composite >= 0)
            {
                cps[starterPos] = starter = composite;
                continue;
            }
            if (cls == 0) { starterPos = outPos; starter = cp; }
            lastClass = cls;
            cps[outPos++] = cp;
        }
        return outPos;
    }

    private static int ComposePair(int first, int second)
    {
        int l = first - HangulLBase, v = second - HangulVBase;
        if ((uint)l < HangulLCount && (uint)v < HangulVCount)
            return HangulSBase + (l * HangulVCount + v) * HangulTCount;
        int s = first - HangulSBase, t = second - HangulTBase;
        if ((uint)s < HangulSCount && s % HangulTCount == 0 && t > 0 && t < HangulTCount)
            return first + t;
        return CompositeOf.TryGetValue(PairKey(first, second), out int composite) ? composite : -1;
    }
}
