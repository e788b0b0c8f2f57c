using System.Runtime.CompilerServices;

namespace Parrot.Parrot.Vision.Jpeg;

/// <summary>libjpeg's YCbCr→RGB (jdcolor.c): 16-bit fixed-point tables, results clamped to 0..255.</summary>
internal static class JpegColor
{
    private const int ScaleBits = 16;
    private const long OneHalf = 1L << (ScaleBits - 1);
    private static readonly int[] CrR = new int[256], CbB = new int[256];
    private static readonly long[] CrG = new long[256], CbG = new long[256];

    static JpegColor()
    {
        static long Fix(double x) => (long)(x * (1L << ScaleBits) + 0.5);
        for (int i = 0; i < 256; i++)
        {
            long x = i - 128;
            CrR[i] = (int)((Fix(1.40200) * x + OneHalf) >> ScaleBits);
            CbB[i] = (int)((Fix(1.77200) * x + OneHalf) >> ScaleBits);
            CrG[i] = -Fix(0.71414) * x;
            CbG[i] = -Fix(0.34414) * x + OneHalf;
        }
    }

    private static byte Clamp(int v) => (byte)(v < 0 ? 0 : v > 255 ? 255 : v);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gray(byte[] y, Span<byte> rgb)
    {
        for (int x = 0; x < y.Length; x++) rgb[3 * x] = rgb[3 * x + 1] = rgb[3 * x + 2] = y[x];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Convert(byte[] y, byte[] cb, byte[] cr, Span<byte> rgb, bool isRgb)
    {
        if (isRgb)
        {
            for (int x = 0; x < y.Length; x++) { rgb[3 * x] = y[x]; rgb[3 * x + 1] = cb[x]; rgb[3 * x + 2] = cr[x]; }
            return;
        }
        for (int x = 0; x < y.Length; x++)
        {
            int l = y[x], b = cb[x], r = cr[x];
            rgb[3 * x] = Clamp(l + CrR[r]);
            rgb[3 * x + 1] = Clamp(l + (int)((CbG[b] + CrG[r]) >> ScaleBits));
            rgb[3 * x + 2] = Clamp(l + CbB[b]);
        }
    }
}
