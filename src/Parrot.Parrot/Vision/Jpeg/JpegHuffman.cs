using System.Runtime.CompilerServices;

namespace Parrot.Parrot.Vision.Jpeg;

/// <summary>Raised for a JPEG our decoder does not handle or finds inconsistent; the loader then falls back
/// to ImageSharp's decoder, which is more lenient but not bit-exact with libjpeg-turbo.</summary>
internal sealed class JpegFallbackException(string message) : Exception(message);

/// <summary>A canonical Huffman table (JPEG Annex C) with a 9-bit lookahead for the common short codes.</summary>
internal sealed class JpegHuffmanTable
{
    private const int LookaheadBits = 9;
    private readonly int[] maxCode = new int[18];   // largest code of each length, −1 when none
    private readonly int[] valueOffset = new int[17];
    private readonly byte[] values;
    private readonly ushort[] lookahead = new ushort[1 << LookaheadBits]; // (length << 8) | value, 0 = slow path

    public JpegHuffmanTable(ReadOnlySpan<byte> counts, ReadOnlySpan<byte> symbols)
    {
        values = symbols.ToArray();
        int code = 0, k = 0;
        for (int length = 1; length <= 16; length++)
        {
            int n = counts[length - 1];
            valueOffset[length] = k - code;
            if (n > 0)
            {
                if (code + n > 1 << length) throw new JpegFallbackException("bad Huffman table (too many codes)");
                for (int i = 0; i < n; i++, k++, code++)
                {
                    if (length <= LookaheadBits)
                    {
                        int shift = LookaheadBits - length;
                        for (int fill = 0; fill < 1 << shift; fill++)
                            lookahead[(code << shift) | fill] = (ushort)((length << 8) | values[k]);
                    }
                }
                maxCode[length] = code - 1;
            }
            else maxCode[length] = -1;
            code <<= 1;
        }
        maxCode[17] = int.MaxValue; // sentinel: a code longer than 16 bits is an error
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Decode(ref JpegBitReader bits)
    {
        int peek = bits.Peek(LookaheadBits);
        int entry = lookahead[peek];
        if (entry != 0)
        {
            bits.Skip(entry >> 8);
            return entry & 0xFF;
        }
        return DecodeSlow(ref bits);
    }

    private int DecodeSlow(ref JpegBitReader bits)
    {
        int code = bits.Bits(1);
        int length = 1;
        while (code > maxCode[length])
        {
            if (++length > 16) throw new JpegFallbackException("corrupt entropy data (no Huffman code matches)");
            code = (code << 1) | bits.Bits(1);
        }
        int index = code + valueOffset[length];
        if ((uint)index >= (uint)values.Length) throw new JpegFallbackException("corrupt entropy data (Huffman index)");
        return values[index];
    }
}

/// <summary>
/// Reads entropy-coded bits: 0xFF 0x00 is a data 0xFF; at any other marker the reader stops consuming and
/// feeds zero bits, as libjpeg does, leaving the marker for the segment parser.
/// </summary>
internal ref struct JpegBitReader
{
    private readonly ReadOnlySpan<byte> data;
    private ulong buffer;
    private int count;

    public JpegBitReader(ReadOnlySpan<byte> data, int position)
    {
        this.data = data;
        Position = position;
    }

    /// <summary>Next unread byte (a marker's 0xFF once one is reached).</summary>
    public int Position { get; private set; }

    /// <summary>The marker code that stopped the reader, or 0.</summary>
    public int Marker { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Fill()
    {
        while (count <= 56)
        {
            int b = 0;
            if (Marker == 0 && Position < data.Length)
            {
                b = data[Position];
                if (b == 0xFF)
                {
                    int next = Position + 1 < data.Length ? data[Position + 1] : -1;
                    if (next == 0x00) Position += 2;
                    else if (next == 0xFF) { Position++; continue; } // fill byte before a marker
                    else { Marker = next < 0 ? 0xD9 : next; b = 0; }
                }
                else Position++;
            }
            buffer |= (ulong)(uint)b << (56 - count);
            count += 8;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Peek(int n)
    {
        if (count < n) Fill();
        return (int)(buffer >> (64 - n));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Skip(int n)
    {
        buffer <<= n;
        count -= n;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Bits(int n)
    {
        if (n == 0) return 0;
        int v = Peek(n);
        Skip(n);
        return v;
    }

    /// <summary>n bits as a signed DCT value (JPEG's EXTEND: codes below 2^(n−1) are negative).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Receive(int n)
    {
        if (n == 0) return 0;
        if (n > 16) throw new JpegFallbackException("corrupt entropy data (magnitude category above 16)");
        int v = Bits(n);
        return v < 1 << (n - 1) ? v - (1 << n) + 1 : v;
    }

    /// <summary>At a restart interval: drop the partial byte and consume the RSTn marker.</summary>
    public void Restart()
    {
        buffer = 0;
        count = 0;
        if (Marker == 0)
        {
            // The marker was not reached through the bits (the byte boundary fell just before it).
            while (Position < data.Length && data[Position] != 0xFF) Position++;
            while (Position + 1 < data.Length && data[Position + 1] == 0xFF) Position++;
            if (Position + 1 >= data.Length) throw new JpegFallbackException("restart marker missing");
            Marker = data[Position + 1];
        }
        if (Marker is < 0xD0 or > 0xD7) throw new JpegFallbackException($"expected a restart marker, found 0x{Marker:X2}");
        Position += 2;
        Marker = 0;
    }
}
