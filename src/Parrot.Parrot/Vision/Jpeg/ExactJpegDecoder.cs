using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Parrot.Parrot.Vision.Jpeg;

/// <summary>
/// A JPEG decoder that produces libjpeg-turbo's pixels exactly (the library under PIL, with PIL's settings:
/// accurate integer IDCT, "fancy" triangle-filter chroma upsampling, the fixed-point YCbCr→RGB of jdcolor.c).
/// ImageSharp's decoder upsamples chroma by repetition and differs by up to tens of levels at colour edges;
/// the reference model saw libjpeg's pixels.
/// <para>Handles 8-bit Huffman-coded baseline, extended and progressive JPEGs with one (grey) or three
/// components, any integral sampling factors, restart intervals. Everything else (arithmetic coding, lossless,
/// 12-bit, CMYK/YCCK) raises <see cref="JpegFallbackException"/> and is left to ImageSharp.</para>
/// <para>Written from the JPEG specification (ITU T.81) and the behaviour of libjpeg's decoder; the
/// structure check (<see cref="ImageIntegrity.CheckJpeg"/>) has already rejected truncated data.</para>
/// </summary>
internal sealed class ExactJpegDecoder
{
    /// <summary>Zig-zag position → natural (row-major) position.</summary>
    private static readonly byte[] Natural =
    [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
        28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
        54, 47, 55, 62, 63,
    ];

    private readonly ushort[][] quant = new ushort[4][];
    private readonly JpegHuffmanTable?[] dcTables = new JpegHuffmanTable?[4];
    private readonly JpegHuffmanTable?[] acTables = new JpegHuffmanTable?[4];
    private JpegComponent[] components = [];
    private int width, height, maxH, maxV, mcusPerLine, mcusPerColumn, restartInterval, eobRun;
    private bool progressive, frameSeen, sawJfif, sawAdobe;
    private int adobeTransform = -1;

    private long maxPixels = long.MaxValue;

    /// <summary>Decodes <paramref name="data"/>, refusing (before allocating) a frame of more than
    /// <paramref name="maxPixels"/> pixels.</summary>
    public static RgbImage Decode(ReadOnlySpan<byte> data, long maxPixels) => new ExactJpegDecoder { maxPixels = maxPixels }.Run(data);

    private RgbImage Run(ReadOnlySpan<byte> d)
    {
        if (d.Length < 4 || d[0] != 0xFF || d[1] != 0xD8) throw new JpegFallbackException("no SOI");
        int p = 2;
        while (true)
        {
            p = NextMarker(d, p, out int marker);
            if (marker == 0xD9) break;
            if (marker is 0xD8 or 0x01 || marker is >= 0xD0 and <= 0xD7) continue;
            if (p + 2 > d.Length) throw new JpegFallbackException("truncated segment");
            int length = BinaryPrimitives.ReadUInt16BigEndian(d[p..]);
            if (length < 2 || p + length > d.Length) throw new JpegFallbackException("bad segment length");
            var body = d.Slice(p + 2, length - 2);
            p += length;
            switch (marker)
            {
                case 0xC0 or 0xC1 or 0xC2: ReadFrame(body, marker == 0xC2); break;
                case 0xC4: ReadHuffmanTables(body); break;
                case 0xDB: ReadQuantTables(body); break;
                case 0xDD:
                    if (body.Length < 2) throw new JpegFallbackException("bad DRI");
                    restartInterval = BinaryPrimitives.ReadUInt16BigEndian(body);
                    break;
                case 0xDA: p = ReadScan(d, body, p); break;
                case 0xE0:
                    if (body.Length >= 5 && body[..5].SequenceEqual("JFIF\0"u8)) sawJfif = true;
                    break;
                case 0xEE:
                    if (body.Length >= 12 && body[..5].SequenceEqual("Adobe"u8)) { sawAdobe = true; adobeTransform = body[11]; }
                    break;
                case 0xC3 or >= 0xC5 and <= 0xCF and not 0xC8 and not 0xCC:
                    throw new JpegFallbackException($"SOF{marker - 0xC0} (lossless, hierarchical or arithmetic coding)");
                case 0xCC: throw new JpegFallbackException("arithmetic coding");
            }
        }
        if (!frameSeen) throw new JpegFallbackException("no frame");
        return Output();
    }

    private static int NextMarker(ReadOnlySpan<byte> d, int p, out int marker)
    {
        // Skip anything up to the next 0xFF that starts a marker (libjpeg tolerates garbage here too).
        while (true)
        {
            while (p < d.Length && d[p] != 0xFF) p++;
            while (p + 1 < d.Length && d[p + 1] == 0xFF) p++;
            if (p + 1 >= d.Length) throw new JpegFallbackException("no EOI");
            if (d[p + 1] != 0) { marker = d[p + 1]; return p + 2; }
            p += 2;
        }
    }

    private void ReadQuantTables(ReadOnlySpan<byte> b)
    {
        int p = 0;
        while (p < b.Length)
        {
            int precision = b[p] >> 4, id = b[p] & 15;
            if (id > 3 || precision > 1) throw new JpegFallbackException("bad DQT");
            int size = precision == 0 ? 64 : 128;
            if (p + 1 + size > b.Length) throw new JpegFallbackException("short DQT");
            var table = new ushort[64];
            for (int k = 0; k < 64; k++)
                table[Natural[k]] = precision == 0 ? b[p + 1 + k] : BinaryPrimitives.ReadUInt16BigEndian(b[(p + 1 + 2 * k)..]);
            quant[id] = table;
            p += 1 + size;
        }
    }

    private void ReadHuffmanTables(ReadOnlySpan<byte> b)
    {
        int p = 0;
        while (p < b.Length)
        {
            if (p + 17 > b.Length) throw new JpegFallbackException("short DHT");
            int cls = b[p] >> 4, id = b[p] & 15;
            if (cls > 1 || id > 3) throw new JpegFallbackException("bad DHT");
            var counts = b.Slice(p + 1, 16);
            int total = 0;
            foreach (byte c in counts) total += c;
            if (total > 256 || p + 17 + total > b.Length) throw new JpegFallbackException("bad DHT counts");
            var table = new JpegHuffmanTable(counts, b.Slice(p + 17, total));
            if (cls == 0) dcTables[id] = table; else acTables[id] = table;
            p += 17 + total;
        }
    }

    private void ReadFrame(ReadOnlySpan<byte> b, bool isProgressive)
    {
        if (frameSeen) throw new JpegFallbackException("two frames");
        if (b.Length < 6 || b[0] != 8) throw new JpegFallbackException(b.Length < 1 ? "bad SOF" : $"{b[0]}-bit samples");
        height = BinaryPrimitives.ReadUInt16BigEndian(b[1..]);
        width = BinaryPrimitives.ReadUInt16BigEndian(b[3..]);
        int n = b[5];
        if (width == 0 || height == 0) throw new JpegFallbackException("zero size or DNL height");
        if ((long)width * height > maxPixels) throw new JpegFallbackException("frame larger than the pixel limit");
        if (n is not (1 or 3)) throw new JpegFallbackException($"{n} components");
        if (b.Length < 6 + 3 * n) throw new JpegFallbackException("short SOF");
        components = new JpegComponent[n];
        for (int i = 0; i < n; i++)
        {
            int h = b[7 + 3 * i] >> 4, v = b[7 + 3 * i] & 15, q = b[8 + 3 * i];
            if (h is < 1 or > 4 || v is < 1 or > 4 || q > 3) throw new JpegFallbackException("bad sampling factors");
            components[i] = new JpegComponent { Id = b[6 + 3 * i], H = h, V = v, QuantTable = q };
        }
        maxH = components.Max(c => c.H);
        maxV = components.Max(c => c.V);
        mcusPerLine = (width + 8 * maxH - 1) / (8 * maxH);
        mcusPerColumn = (height + 8 * maxV - 1) / (8 * maxV);
        foreach (var c in components)
        {
            if (maxH % c.H != 0 || maxV % c.V != 0) throw new JpegFallbackException("non-integral sampling ratio");
            c.DownsampledWidth = (int)(((long)width * c.H + maxH - 1) / maxH);
            c.DownsampledHeight = (int)(((long)height * c.V + maxV - 1) / maxV);
            c.BlocksPerLine = (c.DownsampledWidth + 7) / 8;
            c.BlocksPerColumn = (c.DownsampledHeight + 7) / 8;
            c.PaddedBlocksPerLine = mcusPerLine * c.H;
            c.PaddedBlocksPerColumn = mcusPerColumn * c.V;
            long coefficients = (long)c.PaddedBlocksPerLine * c.PaddedBlocksPerColumn * 64;
            if (coefficients > Array.MaxLength) throw new JpegFallbackException("too large");
            c.Coefficients = new short[coefficients];
        }
        progressive = isProgressive;
        frameSeen = true;
    }

    /// <summary>Decodes one scan; returns the position of the marker that follows its entropy-coded data.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int ReadScan(ReadOnlySpan<byte> d, ReadOnlySpan<byte> b, int p)
    {
        if (!frameSeen) throw new JpegFallbackException("scan before frame");
        int n = b[0];
        if (n < 1 || n > 4 || b.Length < 1 + 2 * n + 3) throw new JpegFallbackException("bad SOS");
        var scan = new JpegComponent[n];
        for (int i = 0; i < n; i++)
        {
            int id = b[1 + 2 * i];
            var c = components.FirstOrDefault(x => x.Id == id) ?? throw new JpegFallbackException("scan names an unknown component");
            c.DcTable = b[2 + 2 * i] >> 4;
            c.AcTable = b[2 + 2 * i] & 15;
            if (c.DcTable > 3 || c.AcTable > 3) throw new JpegFallbackException("bad table index");
            scan[i] = c;
        }
        int ss = b[1 + 2 * n], se = b[2 + 2 * n], ah = b[3 + 2 * n] >> 4, al = b[3 + 2 * n] & 15;
        if (!progressive) { ss = 0; se = 63; ah = al = 0; }
        else if (ss > se || se > 63 || (ss == 0 && se != 0) || (ss > 0 && n != 1) || al > 13)
            throw new JpegFallbackException("bad progressive scan parameters");
        foreach (var c in scan)
            if (quant[c.QuantTable] == null) throw new JpegFallbackException("missing quantisation table");

        var bits = new JpegBitReader(d, p);
        foreach (var c in scan) c.DcPredictor = 0;
        eobRun = 0;
        bool single = n == 1;
        int unitsPerLine = single ? scan[0].BlocksPerLine : mcusPerLine;
        int unitRows = single ? scan[0].BlocksPerColumn : mcusPerColumn;
        long total = (long)unitsPerLine * unitRows;
        int untilRestart = restartInterval;
        for (long unit = 0; unit < total; unit++)
        {
            if (restartInterval > 0 && untilRestart == 0)
            {
                bits.Restart();
                foreach (var c in scan) c.DcPredictor = 0;
                eobRun = 0;
                untilRestart = restartInterval;
            }
            int row = (int)(unit / unitsPerLine), col = (int)(unit % unitsPerLine);
            if (single)
            {
                DecodeBlock(ref bits, scan[0], row * scan[0].PaddedBlocksPerLine + col, ss, se, ah, al);
            }
            else
            {
                foreach (var c in scan)
                    for (int v = 0; v < c.V; v++)
                    for (int h = 0; h < c.H; h++)
                        DecodeBlock(ref bits, c, (row * c.V + v) * c.PaddedBlocksPerLine + col * c.H + h, ss, se, ah, al);
            }
            if (restartInterval > 0) untilRestart--;
        }
        // At the marker that ended the data, or past the last bytes read: the segment parser finds the marker.
        return bits.Position;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DecodeBlock(ref JpegBitReader bits, JpegComponent c, int block, int ss, int se, int ah, int al)
    {
        var coef = c.Coefficients.AsSpan(block * 64, 64);
        if (!progressive)
        {
            var dc = dcTables[c.DcTable] ?? throw new JpegFallbackException("missing DC table");
            var ac = acTables[c.AcTable] ?? throw new JpegFallbackException("missing AC table");
            int t = dc.Decode(ref bits);
            c.DcPredictor += bits.Receive(t);
            coef[0] = (short)c.DcPredictor;
            for (int k = 1; k < 64; k++)
            {
                int rs = ac.Decode(ref bits), r = rs >> 4, s = rs & 15;
                if (s != 0)
                {
                    k += r;
                    if (k > 63) throw new JpegFallbackException("corrupt entropy data (coefficient index)");
                    coef[Natural[k]] = (short)bits.Receive(s);
                }
                else if (r == 15) k += 15;
                else break;
            }
            return;
        }
        if (ss == 0)
        {
            if (ah == 0)
            {
                var dc = dcTables[c.DcTable] ?? throw new JpegFallbackException("missing DC table");
                int t = dc.Decode(ref bits);
                c.DcPredictor += bits.Receive(t);
                coef[0] = (short)(c.DcPredictor << al);
            }
            else if (bits.Bits(1) != 0) coef[0] |= (short)(1 << al);
            return;
        }
        var acTable = acTables[c.AcTable] ?? throw new JpegFallbackException("missing AC table");
        if (ah == 0) DecodeAcFirst(ref bits, acTable, coef, ss, se, al);
        else DecodeAcRefine(ref bits, acTable, coef, ss, se, al);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DecodeAcFirst(ref JpegBitReader bits, JpegHuffmanTable table, Span<short> coef, int ss, int se, int al)
    {
        if (eobRun > 0) { eobRun--; return; }
        for (int k = ss; k <= se; k++)
        {
            int rs = table.Decode(ref bits), r = rs >> 4, s = rs & 15;
            if (s != 0)
            {
                k += r;
                if (k > 63) throw new JpegFallbackException("corrupt entropy data (coefficient index)");
                coef[Natural[k]] = (short)(bits.Receive(s) * (1 << al));
            }
            else if (r == 15) k += 15;
            else
            {
                eobRun = (1 << r) - 1;
                if (r > 0) eobRun += bits.Bits(r);
                break;
            }
        }
    }

    /// <summary>Successive-approximation refinement of AC coefficients (T.81 G.1.2.3): one correction bit per
    /// already-nonzero coefficient in the band, new coefficients of magnitude 1 placed after runs of zeros.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DecodeAcRefine(ref JpegBitReader bits, JpegHuffmanTable table, Span<short> coef, int ss, int se, int al)
    {
        int p1 = 1 << al, m1 = -1 * (1 << al);
        int k = ss;
        if (eobRun == 0)
        {
            for (; k <= se; k++)
            {
                int rs = table.Decode(ref bits), r = rs >> 4, s = rs & 15;
                if (s != 0)
                {
                    s = bits.Bits(1) != 0 ? p1 : m1;
                }
                else if (r != 15)
                {
                    eobRun = 1 << r;
                    if (r > 0) eobRun += bits.Bits(r);
                    break;
                }
                while (k <= se)
                {
                    int z = Natural[k];
                    if (coef[z] != 0)
                    {
                        if (bits.Bits(1) != 0 && (coef[z] & p1) == 0)
                            coef[z] = (short)(coef[z] >= 0 ? coef[z] + p1 : coef[z] + m1);
                    }
                    else
                    {
                        if (--r < 0) break;
                    }
                    k++;
                }
                if (s != 0)
                {
                    if (k > 63) throw new JpegFallbackException("corrupt entropy data (coefficient index)");
                    coef[Natural[k]] = (short)s;
                }
            }
        }
        if (eobRun > 0)
        {
            for (; k <= se; k++)
            {
                int z = Natural[k];
                if (coef[z] != 0 && bits.Bits(1) != 0 && (coef[z] & p1) == 0)
                    coef[z] = (short)(coef[z] >= 0 ? coef[z] + p1 : coef[z] + m1);
            }
            eobRun--;
        }
    }

    // ---- output: IDCT, upsampling, colour conversion ------------------------------------------------

    private RgbImage Output()
    {
        var planes = new byte[components.Length][];
        var strides = new int[components.Length];
        for (int i = 0; i < components.Length; i++)
        {
            var c = components[i];
            var q = quant[c.QuantTable] ?? throw new JpegFallbackException("missing quantisation table");
            int stride = c.PaddedBlocksPerLine * 8;
            var plane = new byte[(long)stride * c.PaddedBlocksPerColumn * 8];
            Parallel.For(0, c.BlocksPerColumn, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, by =>
            {
                for (int bx = 0; bx < c.BlocksPerLine; bx++)
                    JpegIdct.Transform(c.Coefficients.AsSpan((by * c.PaddedBlocksPerLine + bx) * 64, 64), q, plane, by * 8 * stride + bx * 8, stride);
            });
            planes[i] = plane;
            strides[i] = stride;
            c.Coefficients = [];
        }
        var pixels = new byte[(long)width * height * 3];
        bool rgb = components.Length == 3 && IsRgb();
        // Row bands in parallel: each output row brings every component to full size (as libjpeg's upsampler
        // does, see JpegUpsampler) and converts it, so no full-size intermediate planes are needed.
        int bands = Math.Min(height, Environment.ProcessorCount * 4);
        Parallel.For(0, bands, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, band =>
        {
            var rows = new byte[components.Length][];
            for (int i = 0; i < rows.Length; i++) rows[i] = new byte[width];
            var sums = new int[width];
            int begin = (int)((long)height * band / bands), end = (int)((long)height * (band + 1) / bands);
            for (int y = begin; y < end; y++)
            {
                for (int i = 0; i < components.Length; i++)
                    JpegUpsampler.Row(planes[i], strides[i], components[i], maxH, maxV, y, rows[i], sums);
                var output = pixels.AsSpan(y * width * 3, width * 3);
                if (components.Length == 1) JpegColor.Gray(rows[0], output);
                else JpegColor.Convert(rows[0], rows[1], rows[2], output, rgb);
            }
        });
        return new RgbImage(width, height, pixels);
    }

    /// <summary>libjpeg's guess of the colour space of a 3-component file (jdapimin.c default_decompress_parms).</summary>
    private bool IsRgb()
    {
        if (sawJfif) return false;
        if (sawAdobe) return adobeTransform == 0;
        return components[0].Id == 'R' && components[1].Id == 'G' && components[2].Id == 'B';
    }
}
