using System.Buffers.Binary;

namespace Parrot.Parrot.Vision;

/// <summary>
/// Structural checks on encoded images, made before the decoder sees them. ImageSharp 2.1 decodes a
/// truncated baseline JPEG, GIF, lossy WebP or BMP without complaint, filling the missing part with grey or
/// black; PIL (the reference) raises "image file is truncated". Walking the container structure finds the
/// truncation cheaply and exactly. The walks also pick up what the pixel conversion needs (the GIF
/// transparency colour) and strip PNG chunks whose decompression the decoder would not bound.
/// </summary>
internal static class ImageIntegrity
{
    /// <summary>A failure found by a check, before it is given the source name.</summary>
    internal sealed class Problem(ImageLoadFailure failure, string message) : Exception(message)
    {
        public ImageLoadFailure Failure { get; } = failure;
    }

    private static Problem Truncated(string what) => new(ImageLoadFailure.Truncated, $"truncated: {what}");

    private static Problem Corrupt(string what) => new(ImageLoadFailure.Corrupt, what);

    // ---- JPEG ----------------------------------------------------------------------------------------

    /// <summary>
    /// Walks the marker segments up to the first scan, then the entropy-coded data (where FF is followed by
    /// 00 stuffing or a restart marker) and any later segments of a progressive file, until the end-of-image
    /// marker. An EXIF thumbnail's own end marker sits inside an APP1 segment and is skipped with it.
    /// </summary>
    public static void CheckJpeg(ReadOnlySpan<byte> d)
    {
        if (d.Length < 4 || d[0] != 0xFF || d[1] != 0xD8) throw Corrupt("not a JPEG stream (no start-of-image marker)");
        int p = 2;
        bool inScan = false;
        while (true)
        {
            if (inScan)
            {
                // Entropy-coded data: stop at the first FF that starts a real marker.
                while (true)
                {
                    int ff = d[p..].IndexOf((byte)0xFF);
                    if (ff < 0) throw Truncated("the JPEG data ends inside a scan, before the end-of-image marker");
                    p += ff;
                    if (p + 1 >= d.Length) throw Truncated("the JPEG data ends inside a scan, before the end-of-image marker");
                    byte next = d[p + 1];
                    if (next == 0x00 || next is >= 0xD0 and <= 0xD7 || next == 0xFF) { p += next == 0xFF ? 1 : 2; continue; }
                    break;
                }
                inScan = false;
            }
            if (p + 1 >= d.Length) throw Truncated("the JPEG data ends before the end-of-image marker");
            if (d[p] != 0xFF) throw Corrupt($"JPEG marker expected at byte {p}, found 0x{d[p]:X2}");
            byte marker = d[p + 1];
            if (marker == 0xFF) { p++; continue; } // fill byte
            p += 2;
            if (marker == 0xD9)
            {
                return;
            }
            if (marker is 0x01 or 0xD8 || marker is >= 0xD0 and <= 0xD7) continue; // no length
            if (p + 2 > d.Length) throw Truncated($"the JPEG data ends inside the header of marker 0x{marker:X2}");
            int length = BinaryPrimitives.ReadUInt16BigEndian(d[p..]);
            if (length < 2) throw Corrupt($"JPEG marker 0x{marker:X2} at byte {p - 2} has an invalid length {length}");
            if (p + length > d.Length) throw Truncated($"JPEG marker 0x{marker:X2} at byte {p - 2} declares {length} bytes but the data ends first");
            p += length;
            if (marker == 0xDA) inScan = true;
        }
    }

    // ---- PNG -----------------------------------------------------------------------------------------

    private static ReadOnlySpan<byte> PngSignature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>
    /// Walks the chunks to IEND and returns the PNG with only the chunks that decide pixels or orientation
    /// (IHDR, PLTE, tRNS, IDAT, eXIf, IEND): compressed text (zTXt, iTXt) and ICC profiles (iCCP) would be
    /// inflated by the decoder without a size bound, a decompression bomb that the pixel limit does not see,
    /// and PIL does not apply them to the pixels anyway.
    /// </summary>
    public static byte[] CheckAndStripPng(byte[] data)
    {
        var d = data.AsSpan();
        if (d.Length < 8 || !d[..8].SequenceEqual(PngSignature)) throw Corrupt("not a PNG stream (bad signature)");
        int p = 8;
        bool dropped = false, sawIend = false;
        var keep = new List<(int Start, int Length)>();
        while (!sawIend)
        {
            if (p == d.Length) throw Truncated($"the PNG data ends after {p} bytes, before the IEND chunk");
            if (p + 8 > d.Length) throw Truncated($"the PNG data ends inside a chunk header at byte {p}");
            uint length = BinaryPrimitives.ReadUInt32BigEndian(d[p..]);
            if (length > int.MaxValue) throw Corrupt($"PNG chunk at byte {p} declares an invalid length {length}");
            string type = System.Text.Encoding.ASCII.GetString(d.Slice(p + 4, 4));
            long end = (long)p + 12 + length;
            if (end > d.Length) throw Truncated($"PNG chunk {type} at byte {p} declares {length} bytes but the data ends first");
            if (type == "IHDR" && length >= 8)
            {
                // A zero size is named here: the decoder's complaint for it is "PNG Image does not contain a header chunk".
                uint width = BinaryPrimitives.ReadUInt32BigEndian(d[(p + 8)..]), height = BinaryPrimitives.ReadUInt32BigEndian(d[(p + 12)..]);
                if (width == 0 || height == 0) throw Corrupt($"the PNG header (IHDR) declares a size of {width}x{height}; an image has at least one pixel");
            }
            if (type is "IHDR" or "PLTE" or "tRNS" or "IDAT" or "eXIf" or "IEND") keep.Add((p, (int)(end - p)));
            else dropped = true;
            sawIend = type == "IEND";
            p = (int)end;
        }
        if (!dropped) return data;
        var stripped = new byte[8 + keep.Sum(c => c.Length)];
        PngSignature.CopyTo(stripped);
        int q = 8;
        foreach (var (start, len) in keep)
        {
            data.AsSpan(start, len).CopyTo(stripped.AsSpan(q));
            q += len;
        }
        return stripped;
    }

    // ---- GIF -----------------------------------------------------------------------------------------

    /// <summary>
    /// The colour PIL shows where ImageSharp leaves a GIF's first frame empty (transparent black): PIL's
    /// <c>convert('RGB')</c> shows the palette entry of the transparent index on transparent pixels and, where the
    /// frame does not cover the screen, that entry too when there is a transparent index, else entry 0.
    /// </summary>
    public readonly record struct GifBackfill(bool Present, byte R, byte G, byte B, bool Transparent, int Left, int Top, int Width, int Height)
    {
        /// <summary>Whether pixel (x, y) of the decoded screen takes the backfill colour, given its alpha.</summary>
        public bool Applies(int x, int y, byte alpha) =>
            x < Left || y < Top || x >= Left + Width || y >= Top + Height || (Transparent && alpha == 0);
    }

    /// <summary>Walks the blocks up to the end of the first image's data (the frame the loader decodes).</summary>
    public static GifBackfill CheckGif(ReadOnlySpan<byte> d)
    {
        if (d.Length < 13 || !(d[..6].SequenceEqual("GIF87a"u8) || d[..6].SequenceEqual("GIF89a"u8)))
            throw Corrupt("not a GIF stream (bad signature)");
        int p = 13;
        byte screenFlags = d[10];
        ReadOnlySpan<byte> globalTable = default;
        if ((screenFlags & 0x80) != 0)
        {
            int size = 3 << ((screenFlags & 7) + 1);
            if (p + size > d.Length) throw Truncated("the GIF data ends inside the global colour table");
            globalTable = d.Slice(p, size);
            p += size;
        }
        int transparentIndex = -1;
        while (true)
        {
            if (p >= d.Length) throw Truncated("the GIF data ends before the first image");
            byte block = d[p++];
            if (block == 0x21)
            {
                if (p >= d.Length) throw Truncated("the GIF data ends inside an extension");
                byte label = d[p++];
                int start = p;
                p = SkipSubBlocks(d, p, "an extension");
                // Graphic control extension: one 4-byte sub-block, bit 0 of its flags = has transparency.
                if (label == 0xF9 && d[start] >= 4)
                    transparentIndex = (d[start + 1] & 1) != 0 ? d[start + 4] : -1;
                continue;
            }
            if (block == 0x2C)
            {
                if (p + 9 > d.Length) throw Truncated("the GIF data ends inside the image descriptor");
                int left = BinaryPrimitives.ReadUInt16LittleEndian(d[p..]);
                int top = BinaryPrimitives.ReadUInt16LittleEndian(d[(p + 2)..]);
                int width = BinaryPrimitives.ReadUInt16LittleEndian(d[(p + 4)..]);
                int height = BinaryPrimitives.ReadUInt16LittleEndian(d[(p + 6)..]);
                if (width == 0 || height == 0) throw Corrupt($"the first GIF frame has a zero size ({width}x{height})");
                byte flags = d[p + 8];
                p += 9;
                ReadOnlySpan<byte> table = globalTable;
                if ((flags & 0x80) != 0)
                {
                    int size = 3 << ((flags & 7) + 1);
                    if (p + size > d.Length) throw Truncated("the GIF data ends inside the local colour table");
                    table = d.Slice(p, size);
                    p += size;
                }
                if (p >= d.Length) throw Truncated("the GIF data ends before the first image's pixel data");
                p = SkipSubBlocks(d, p + 1, "the first image's pixel data"); // after the LZW minimum code size
                int t = 3 * Math.Max(transparentIndex, 0);
                if (t + 3 > table.Length) return default;
                return new GifBackfill(true, table[t], table[t + 1], table[t + 2], transparentIndex >= 0, left, top, width, height);
            }
            if (block == 0x3B) throw Corrupt("the GIF has no image (trailer before any frame)");
            throw Corrupt($"unknown GIF block 0x{block:X2} at byte {p - 1}");
        }
    }

    private static int SkipSubBlocks(ReadOnlySpan<byte> d, int p, string what)
    {
        while (true)
        {
            if (p >= d.Length) throw Truncated($"the GIF data ends inside {what}");
            int size = d[p++];
            if (size == 0) return p;
            p += size;
        }
    }

    // ---- WebP ----------------------------------------------------------------------------------------

    /// <summary>Checks the RIFF container: the declared size is present and every chunk fits in it. Returns
    /// whether the file is animated, and in <paramref name="largestPixels"/> the largest width × height declared
    /// anywhere (canvas, or a VP8/VP8L bitstream header, which the decoder sizes its buffers by).</summary>
    public static bool CheckWebp(ReadOnlySpan<byte> d, out long largestPixels)
    {
        if (d.Length < 12 || !d[..4].SequenceEqual("RIFF"u8) || !d.Slice(8, 4).SequenceEqual("WEBP"u8))
            throw Corrupt("not a WebP stream (no RIFF/WEBP header)");
        long riffEnd = 8L + BinaryPrimitives.ReadUInt32LittleEndian(d[4..]);
        if (riffEnd > d.Length) throw Truncated($"the RIFF header declares {riffEnd} bytes but there are {d.Length}");
        bool animated = false, image = false;
        largestPixels = 0;
        WalkWebpChunks(d, 12, riffEnd, ref animated, ref image, ref largestPixels, depth: 0);
        if (!image) throw Corrupt("the WebP has no image chunk (VP8, VP8L or ANMF)");
        return animated;
    }

    private static void WalkWebpChunks(ReadOnlySpan<byte> d, long p, long end, ref bool animated, ref bool image, ref long largest, int depth)
    {
        while (p + 8 <= end)
        {
            var fourcc = d.Slice((int)p, 4);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(d[(int)(p + 4)..]);
            long chunkEnd = p + 8 + size;
            if (chunkEnd > end) throw Truncated($"WebP chunk {System.Text.Encoding.ASCII.GetString(fourcc)} declares {size} bytes but the data ends first");
            var body = d.Slice((int)p + 8, (int)size);
            if (fourcc.SequenceEqual("VP8X"u8) && body.Length >= 10)
                largest = Math.Max(largest, (long)(Read24(body[4..]) + 1) * (Read24(body[7..]) + 1));
            else if (fourcc.SequenceEqual("VP8 "u8))
            {
                image = true;
                // Frame tag (3 bytes), start code 9D 01 2A, then 14-bit width and height.
                if (body.Length >= 10)
                    largest = Math.Max(largest, (long)(BinaryPrimitives.ReadUInt16LittleEndian(body[6..]) & 0x3FFF) * (BinaryPrimitives.ReadUInt16LittleEndian(body[8..]) & 0x3FFF));
            }
            else if (fourcc.SequenceEqual("VP8L"u8))
            {
                image = true;
                // Signature 0x2F, then width − 1 and height − 1 in 14 bits each.
                if (body.Length >= 5)
                {
                    uint bits = BinaryPrimitives.ReadUInt32LittleEndian(body[1..]);
                    largest = Math.Max(largest, (long)((bits & 0x3FFF) + 1) * (((bits >> 14) & 0x3FFF) + 1));
                }
            }
            else if (fourcc.SequenceEqual("ANIM"u8)) animated = true;
            else if (fourcc.SequenceEqual("ANMF"u8))
            {
                animated = image = true;
                if (depth == 0 && size >= 16) WalkWebpChunks(d, p + 8 + 16, chunkEnd, ref animated, ref image, ref largest, depth + 1);
            }
            p = chunkEnd + (size & 1); // chunks are padded to an even length
        }
    }

    private static int Read24(ReadOnlySpan<byte> b) => b[0] | b[1] << 8 | b[2] << 16;

    // ---- BMP -----------------------------------------------------------------------------------------

    /// <summary>For uncompressed bitmaps, the pixel array must fit between its offset and the end of the
    /// data (run-length-encoded ones have no size to check before decoding).</summary>
    public static void CheckBmp(ReadOnlySpan<byte> d)
    {
        if (d.Length < 26 || d[0] != (byte)'B' || d[1] != (byte)'M') throw Corrupt("not a BMP stream (no BM header)");
        long offset = BinaryPrimitives.ReadUInt32LittleEndian(d[10..]);
        uint headerSize = BinaryPrimitives.ReadUInt32LittleEndian(d[14..]);
        long width, height;
        int bits;
        uint compression = 0;
        if (headerSize == 12)
        {
            width = BinaryPrimitives.ReadUInt16LittleEndian(d[18..]);
            height = BinaryPrimitives.ReadUInt16LittleEndian(d[20..]);
            bits = BinaryPrimitives.ReadUInt16LittleEndian(d[24..]);
        }
        else
        {
            if (d.Length < 34) throw Truncated("the BMP data ends inside the bitmap header");
            width = BinaryPrimitives.ReadInt32LittleEndian(d[18..]);
            height = Math.Abs((long)BinaryPrimitives.ReadInt32LittleEndian(d[22..]));
            bits = BinaryPrimitives.ReadUInt16LittleEndian(d[28..]);
            compression = BinaryPrimitives.ReadUInt32LittleEndian(d[30..]);
        }
        if (width <= 0 || height <= 0) throw Corrupt($"the BMP declares a size of {width}x{height}");
        if (compression is not (0 or 3 or 6)) return; // RLE, JPEG or PNG payloads: sizes not known up front
        if (bits is not (1 or 2 or 4 or 8 or 16 or 24 or 32)) throw Corrupt($"the BMP declares {bits} bits per pixel");
        long rowBytes = (width * bits + 31) / 32 * 4;
        long needed = offset + rowBytes * height;
        if (needed > d.Length) throw Truncated($"the BMP pixel array needs {needed} bytes but there are {d.Length}");
    }

    // ---- formats we do not decode -------------------------------------------------------------------

    /// <summary>The name of a well-known image format we do not decode, from its magic bytes, or null.</summary>
    public static string? OtherFormat(ReadOnlySpan<byte> d)
    {
        if (d.StartsWith("II*\0"u8) || d.StartsWith("MM\0*"u8)) return "TIFF";
        if (d.Length >= 12 && d.Slice(4, 4).SequenceEqual("ftyp"u8))
        {
            var brand = d.Slice(8, 4);
            if (brand.SequenceEqual("avif"u8) || brand.SequenceEqual("avis"u8)) return "AVIF";
            if (brand.SequenceEqual("heic"u8) || brand.SequenceEqual("heix"u8) || brand.SequenceEqual("mif1"u8) || brand.SequenceEqual("msf1"u8)) return "HEIF/HEIC";
        }
        if (d.StartsWith((ReadOnlySpan<byte>)[0xFF, 0x0A]) || d.StartsWith((ReadOnlySpan<byte>)[0, 0, 0, 0x0C, (byte)'J', (byte)'X', (byte)'L', (byte)' '])) return "JPEG XL";
        if (d.StartsWith((ReadOnlySpan<byte>)[0, 0, 0, 0x0C, (byte)'j', (byte)'P', (byte)' ', (byte)' '])) return "JPEG 2000";
        if (d.StartsWith("8BPS"u8)) return "Photoshop (PSD)";
        if (d.StartsWith((ReadOnlySpan<byte>)[0, 0, 1, 0])) return "ICO";
        if (d.StartsWith("%PDF"u8)) return "PDF";
        if (d.Length >= 2 && d[0] == (byte)'P' && d[1] is >= (byte)'1' and <= (byte)'7') return "PNM/PBM";
        var head = d[..Math.Min(d.Length, 256)];
        if (head.IndexOf("<svg"u8) >= 0) return "SVG";
        return null;
    }
}
