using System.Runtime.CompilerServices;

namespace Parrot.Parrot.Vision.Jpeg;

/// <summary>
/// The accurate integer inverse DCT of the IJG/libjpeg-turbo decoder ("islow", the default that PIL gets):
/// Loeffler–Ligtenberg–Moschytz with 13-bit constants, a first (column) pass that keeps 2 extra bits, and a
/// final range limit that wraps out-of-range values through a 1024-entry table rather than clamping them.
/// Written from the algorithm's description so that every intermediate rounds as the reference does.
/// </summary>
internal static class JpegIdct
{
    private const int ConstBits = 13, Pass1Bits = 2;
    private const long Fix0298631336 = 2446, Fix0390180644 = 3196, Fix0541196100 = 4433, Fix0765366865 = 6270,
        Fix0899976223 = 7373, Fix1175875602 = 9633, Fix1501321110 = 12299, Fix1847759065 = 15137,
        Fix1961570560 = 16069, Fix2053119869 = 16819, Fix2562915447 = 20995, Fix3072711026 = 25172;

    /// <summary>The post-IDCT range limit: centred samples −128..127 map to 0..255, larger ones saturate, and
    /// values beyond ±512 wrap (the table is indexed with <c>&amp; 1023</c>).</summary>
    private static readonly byte[] RangeLimit = BuildRangeLimit();

    private static byte[] BuildRangeLimit()
    {
        var t = new byte[1024];
        for (int v = 0; v < 1024; v++)
            t[v] = (byte)(v < 128 ? v + 128 : v < 512 ? 255 : v < 896 ? 0 : v - 896);
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Descale(long x, int n) => (x + (1L << (n - 1))) >> n;

    /// <summary>Dequantises <paramref name="coef"/> (natural order) with <paramref name="quant"/> and writes the
    /// 8×8 samples at <paramref name="output"/>[offset + row × stride + column].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transform(ReadOnlySpan<short> coef, ReadOnlySpan<ushort> quant, Span<byte> output, int offset, int stride)
    {
        Span<int> ws = stackalloc int[64];
        for (int c = 0; c < 8; c++)
        {
            if (coef[8 + c] == 0 && coef[16 + c] == 0 && coef[24 + c] == 0 && coef[32 + c] == 0 &&
                coef[40 + c] == 0 && coef[48 + c] == 0 && coef[56 + c] == 0)
            {
                int dc = (int)((long)coef[c] * (short)quant[c] << Pass1Bits);
                for (int r = 0; r < 8; r++) ws[8 * r + c] = dc;
                continue;
            }
            long z2 = (long)coef[16 + c] * (short)quant[16 + c];
            long z3 = (long)coef[48 + c] * (short)quant[48 + c];
            long z1 = (z2 + z3) * Fix0541196100;
            long tmp2 = z1 + z3 * -Fix1847759065;
            long tmp3 = z1 + z2 * Fix0765366865;
            z2 = (long)coef[c] * (short)quant[c];
            z3 = (long)coef[32 + c] * (short)quant[32 + c];
            long tmp0 = (z2 + z3) << ConstBits;
            long tmp1 = (z2 - z3) << ConstBits;
            long tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
            tmp3 = (long)coef[8 + c] * (short)quant[8 + c];
            tmp2 = (long)coef[24 + c] * (short)quant[24 + c];
            tmp1 = (long)coef[40 + c] * (short)quant[40 + c];
            tmp0 = (long)coef[56 + c] * (short)quant[56 + c];
            Odd(ref tmp0, ref tmp1, ref tmp2, ref tmp3);
            ws[c] = (int)Descale(tmp10 + tmp3, ConstBits - Pass1Bits);
            ws[56 + c] = (int)Descale(tmp10 - tmp3, ConstBits - Pass1Bits);
            ws[8 + c] = (int)Descale(tmp11 + tmp2, ConstBits - Pass1Bits);
            ws[48 + c] = (int)Descale(tmp11 - tmp2, ConstBits - Pass1Bits);
            ws[16 + c] = (int)Descale(tmp12 + tmp1, ConstBits - Pass1Bits);
            ws[40 + c] = (int)Descale(tmp12 - tmp1, ConstBits - Pass1Bits);
            ws[24 + c] = (int)Descale(tmp13 + tmp0, ConstBits - Pass1Bits);
            ws[32 + c] = (int)Descale(tmp13 - tmp0, ConstBits - Pass1Bits);
        }
        const int final = ConstBits + Pass1Bits + 3;
        for (int r = 0; r < 8; r++)
        {
            var row = ws.Slice(8 * r, 8);
            var o = output.Slice(offset + r * stride, 8);
            if (row[1] == 0 && row[2] == 0 && row[3] == 0 && row[4] == 0 && row[5] == 0 && row[6] == 0 && row[7] == 0)
            {
                o.Fill(RangeLimit[(int)Descale(row[0], Pass1Bits + 3) & 1023]);
                continue;
            }
            long z2 = row[2], z3 = row[6];
            long z1 = (z2 + z3) * Fix0541196100;
            long tmp0 = ((long)row[0] + row[4]) << ConstBits;
            long tmp3 = z1 + z2 * Fix0765366865;
            long tmp1 = ((long)row[0] - row[4]) << ConstBits;
            long tmp2 = z1 + z3 * -Fix1847759065;
            long tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
            tmp3 = row[1]; tmp2 = row[3]; tmp1 = row[5]; tmp0 = row[7];
            Odd(ref tmp0, ref tmp1, ref tmp2, ref tmp3);
            o[0] = RangeLimit[(int)Descale(tmp10 + tmp3, final) & 1023];
            o[7] = RangeLimit[(int)Descale(tmp10 - tmp3, final) & 1023];
            o[1] = RangeLimit[(int)Descale(tmp11 + tmp2, final) & 1023];
            o[6] = RangeLimit[(int)Descale(tmp11 - tmp2, final) & 1023];
            o[2] = RangeLimit[(int)Descale(tmp12 + tmp1, final) & 1023];
            o[5] = RangeLimit[(int)Descale(tmp12 - tmp1, final) & 1023];
            o[3] = RangeLimit[(int)Descale(tmp13 + tmp0, final) & 1023];
            o[4] = RangeLimit[(int)Descale(tmp13 - tmp0, final) & 1023];
        }
    }

    /// <summary>The odd part: inputs tmp0..tmp3 = coefficients 7, 5, 3, 1; outputs the four odd terms.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Odd(ref long tmp0, ref long tmp1, ref long tmp2, ref long tmp3)
    {
        long z4 = tmp1 + tmp3, z3 = tmp0 + tmp2, z2 = tmp1 + tmp2, z1 = tmp0 + tmp3;
        long z5 = (z3 + z4) * Fix1175875602;
        tmp3 *= Fix1501321110;
        tmp2 *= Fix3072711026;
        tmp1 *= Fix2053119869;
        tmp0 *= Fix0298631336;
        z4 = z4 * -Fix0390180644 + z5;
        z3 = z3 * -Fix1961570560 + z5;
        z1 *= -Fix0899976223;
        z2 *= -Fix2562915447;
        tmp3 += z1 + z4;
        tmp2 += z2 + z3;
        tmp1 += z2 + z4;
        tmp0 += z1 + z3;
    }
}
