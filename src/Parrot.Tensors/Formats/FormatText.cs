using System.Text;

namespace Parrot.Tensors.Formats;

/// <summary>Text from hostile files made safe to put in an error message.</summary>
internal static class FormatText
{
    /// <summary>
    /// At most <paramref name="max"/> characters of <paramref name="s"/>, control characters shown as
    /// \uXXXX, so that a name from a corrupt file cannot flood a log or break a terminal.
    /// </summary>
    public static string Printable(string s, int max = 200)
    {
        var sb = new StringBuilder(Math.Min(s.Length, max) + 8);
        int n = Math.Min(s.Length, max);
        for (int i = 0; i < n; i++)
        {
            char c = s[i];
            if (char.IsControl(c) || char.IsSurrogate(c)) sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        if (s.Length > max) sb.Append("...");
        return sb.ToString();
    }

    /// <summary>Raw bytes of a JSON token as printable ASCII, for "expected X, found Y" messages.</summary>
    public static string Printable(ReadOnlySpan<byte> utf8, int max = 40)
    {
        var sb = new StringBuilder();
        foreach (byte b in utf8.Length > max ? utf8[..max] : utf8)
            sb.Append(b is >= 0x20 and < 0x7f ? (char)b : '?');
        if (utf8.Length > max) sb.Append("...");
        return sb.ToString();
    }
}
