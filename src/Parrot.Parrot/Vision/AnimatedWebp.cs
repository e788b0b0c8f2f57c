using System.Buffers.Binary;

namespace Parrot.Parrot.Vision;

/// <summary>
/// The first frame of an animated WebP, which ImageSharp 2.1 cannot decode: the frame's own bitstream (an
/// ANMF chunk's ALPH + VP8, or VP8L) is rewrapped as a still WebP for ImageSharp, then placed on the canvas
/// as libwebp's animation decoder (under PIL) does for the first frame: a key frame, decoded onto a canvas of
/// transparent black, no blending. After <c>convert('RGB')</c>, uncovered canvas is black.
/// </summary>
internal static class AnimatedWebp
{
    /// <summary>Canvas size, first frame placement, and the frame as a standalone WebP file.</summary>
    public sealed record FirstFrame(int CanvasWidth, int CanvasHeight, int X, int Y, int Width, int Height, byte[] StillWebp);

    private static ImageIntegrity.Problem Corrupt(string what) => new(ImageLoadFailure.Corrupt, what);

    /// <summary>Reads the container (already checked by <see cref="ImageIntegrity.CheckWebp"/>).</summary>
    public static FirstFrame Extract(ReadOnlySpan<byte> d)
    {
        long riffEnd = 8L + BinaryPrimitives.ReadUInt32LittleEndian(d[4..]);
        int canvasWidth = 0, canvasHeight = 0;
        long p = 12;
        while (p + 8 <= riffEnd)
        {
            var fourcc = d.Slice((int)p, 4);
            int size = (int)BinaryPrimitives.ReadUInt32LittleEndian(d[(int)(p + 4)..]);
            var body = d.Slice((int)p + 8, size);
            if (fourcc.SequenceEqual("VP8X"u8))
            {
                if (size < 10) throw Corrupt("the WebP VP8X chunk is too short");
                canvasWidth = Read24(body[4..]) + 1;
                canvasHeight = Read24(body[7..]) + 1;
            }
            else if (fourcc.SequenceEqual("ANMF"u8))
            {
                if (canvasWidth == 0) throw Corrupt("animated WebP without a VP8X canvas");
                if (size < 16) throw Corrupt("the WebP ANMF chunk is too short");
                int x = 2 * Read24(body), y = 2 * Read24(body[3..]);
                int w = Read24(body[6..]) + 1, h = Read24(body[9..]) + 1;
                if ((long)x + w > canvasWidth || (long)y + h > canvasHeight)
                    throw Corrupt($"the first WebP frame ({w}x{h} at {x},{y}) lies outside the {canvasWidth}x{canvasHeight} canvas");
                return new FirstFrame(canvasWidth, canvasHeight, x, y, w, h, Rewrap(body[16..], w, h));
            }
            p += 8 + size + (size & 1);
        }
        throw Corrupt("animated WebP without a frame");
    }

    /// <summary>A still WebP from a frame's chunks: VP8L alone, VP8 alone, or VP8X + ALPH + VP8.</summary>
    private static byte[] Rewrap(ReadOnlySpan<byte> frame, int width, int height)
    {
        ReadOnlySpan<byte> alpha = default, image = default;
        int p = 0;
        while (p + 8 <= frame.Length)
        {
            int size = (int)BinaryPrimitives.ReadUInt32LittleEndian(frame[(p + 4)..]);
            int end = p + 8 + size + (size & 1);
            if (p + 8 + size > frame.Length) throw Corrupt("a WebP frame chunk runs past its ANMF chunk");
            var chunk = frame[p..Math.Min(end, frame.Length)];
            var fourcc = frame.Slice(p, 4);
            if (fourcc.SequenceEqual("ALPH"u8)) alpha = chunk;
            else if (fourcc.SequenceEqual("VP8 "u8) || fourcc.SequenceEqual("VP8L"u8)) { image = chunk; break; }
            p = end;
        }
        if (image.IsEmpty) throw Corrupt("the first WebP frame has no VP8 or VP8L bitstream");
        bool withAlpha = !alpha.IsEmpty && image[..4].SequenceEqual("VP8 "u8);
        int length = 4 + (withAlpha ? 18 + alpha.Length : 0) + image.Length;
        var file = new byte[8 + length];
        "RIFF"u8.CopyTo(file);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(4), (uint)length);
        "WEBP"u8.CopyTo(file.AsSpan(8));
        int q = 12;
        if (withAlpha)
        {
            "VP8X"u8.CopyTo(file.AsSpan(q));
            BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(q + 4), 10);
            file[q + 8] = 0x10; // has alpha
            Write24(file.AsSpan(q + 12), width - 1);
            Write24(file.AsSpan(q + 15), height - 1);
            q += 18;
            alpha.CopyTo(file.AsSpan(q));
            q += alpha.Length;
        }
        image.CopyTo(file.AsSpan(q));
        return file;
    }

    private static int Read24(ReadOnlySpan<byte> b) => b[0] | b[1] << 8 | b[2] << 16;

    private static void Write24(Span<byte> b, int v)
    {
        b[0] = (byte)v;
        b[1] = (byte)(v >> 8);
        b[2] = (byte)(v >> 16);
    }
}
