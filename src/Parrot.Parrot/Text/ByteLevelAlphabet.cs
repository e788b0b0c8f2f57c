namespace Parrot.Parrot.Text;

/// <summary>
/// GPT-2's reversible map between bytes and printable characters, which byte-level BPE vocabularies are
/// written in: the printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves, the other
/// 68 bytes (controls, space, DEL, NBSP, soft hyphen) take the characters from U+0100 on, in byte order.
/// So a space is 'Ġ' (U+0120) and a newline 'Ċ' (U+010A).
/// </summary>
internal static class ByteLevelAlphabet
{
    /// <summary>Character that stands for each byte.</summary>
    public static readonly char[] CharOfByte = BuildCharOfByte();

    /// <summary>Byte that a character stands for, or -1 for characters outside the alphabet (index: char code up to U+0143).</summary>
    private static readonly short[] ByteOfChar = BuildByteOfChar();

    private static char[] BuildCharOfByte()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
            map[b] = StandsForItself(b) ? (char)b : (char)next++;
        return map;
    }

    private static bool StandsForItself(int b) => b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;

    private static short[] BuildByteOfChar()
    {
        var inverse = new short[256 + 68];
        Array.Fill(inverse, (short)-1);
        for (int b = 0; b < 256; b++) inverse[CharOfByte[b]] = (short)b;
        return inverse;
    }

    /// <summary>The byte that <paramref name="c"/> stands for, or -1 when it is not in the alphabet.</summary>
    public static int ByteOf(char c) => c < ByteOfChar.Length ? ByteOfChar[c] : -1;

    /// <summary>
    /// Appends the bytes a token string stands for. As in Hugging Face's ByteLevel decoder, a token with any
    /// character outside the alphabet (an added token such as "&lt;think&gt;" is inside it; one with, say,
    /// CJK text is not) contributes its own UTF-8 bytes instead.
    /// </summary>
    public static void AppendBytes(string token, List<byte> output)
    {
        foreach (char c in token)
        {
            if (ByteOf(c) < 0)
            {
                output.AddRange(System.Text.Encoding.UTF8.GetBytes(token));
                return;
            }
        }
        foreach (char c in token) output.Add((byte)ByteOf(c));
    }
}
