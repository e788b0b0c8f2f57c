using System.Buffers.Binary;
using System.IO.Compression;

namespace Parrot.Parrot.Tests;

/// <summary>Writes small PNGs by hand, to craft what encoders will not write (16-bit colour, lying headers, bombs).</summary>
internal static class TestPng
{
    /// <summary>A PNG whose sample (x, y, channel) is <paramref name="sample"/>; colour type 0 (grey) or 2 (RGB).</summary>
    public static byte[] Encode(int width, int height, int colorType, int bitDepth, Func<int, int, int, ushort> sample,
        IEnumerable<(string Type, byte[] Data)>? extraChunks = null)
    {
        int channels = colorType == 2 ? 3 : 1, bytesPerSample = bitDepth / 8;
        using var raw = new MemoryStream();
        for (int y = 0; y < height; y++)
        {
            raw.WriteByte(0); // filter: none
            for (int x = 0; x < width; x++)
            for (int c = 0; c < channels; c++)
            {
                ushort v = sample(x, y, c);
                if (bytesPerSample == 2) { raw.WriteByte((byte)(v >> 8)); raw.WriteByte((byte)v); }
                else raw.WriteByte((byte)v);
            }
        }
        var chunks = new List<(string, byte[])> { ("IHDR", Header(width, height, bitDepth, colorType)) };
        if (extraChunks != null) chunks.AddRange(extraChunks);
        chunks.Add(("IDAT", Zlib(raw.ToArray())));
        chunks.Add(("IEND", []));
        return Assemble(chunks);
    }

    public static byte[] Header(int width, int height, int bitDepth, int colorType)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), (uint)height);
        ihdr[8] = (byte)bitDepth;
        ihdr[9] = (byte)colorType;
        return ihdr;
    }

    public static byte[] Zlib(byte[] data)
    {
        using var output = new MemoryStream();
        using (var z = new ZLibStream(output, CompressionLevel.Fastest, leaveOpen: true)) z.Write(data);
        return output.ToArray();
    }

    public static byte[] Assemble(IEnumerable<(string Type, byte[] Data)> chunks)
    {
        using var png = new MemoryStream();
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        foreach (var (type, data) in chunks)
        {
            var head = new byte[8];
            BinaryPrimitives.WriteUInt32BigEndian(head, (uint)data.Length);
            System.Text.Encoding.ASCII.GetBytes(type, head.AsSpan(4));
            png.Write(head);
            png.Write(data);
            var sum = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(sum, Crc32([.. head.AsSpan(4).ToArray(), .. data]));
            png.Write(sum);
        }
        return png.ToArray();
    }

    /// <summary>The CRC-32 of PNG chunks (polynomial 0xEDB88320, reflected).</summary>
    public static uint Crc32(ReadOnlySpan<byte> bytes)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in bytes)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }
}
