using System.Runtime.CompilerServices;

namespace Parrot.Parrot.Vision.Jpeg;

/// <summary>
/// libjpeg-turbo's upsampling (jdsample.c with do_fancy_upsampling, PIL's setting), one output row at a time.
/// 2:1 horizontally (chroma wider than 2 samples) and 2:1 vertically use the triangle filter: 3/4 of the
/// nearer sample and 1/4 of the further, with libjpeg's alternating rounding biases; at the image edges the
/// missing neighbour is the edge sample itself (libjpeg replicates the first and last rows and columns).
/// Other integral ratios, and 2:1 of a chroma only 1–2 samples wide, repeat samples.
/// </summary>
internal static class JpegUpsampler
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Row(byte[] plane, int stride, JpegComponent c, int maxH, int maxV, int y, byte[] output, int[] sums)
    {
        int hx = maxH / c.H, vy = maxV / c.V, width = output.Length;
        int dw = c.DownsampledWidth, dh = c.DownsampledHeight;
        if (vy == 2)
        {
            int i = y >> 1;
            bool upper = (y & 1) == 0;
            var near = plane.AsSpan(i * stride, dw);
            var far = plane.AsSpan((upper ? Math.Max(i - 1, 0) : Math.Min(i + 1, dh - 1)) * stride, dw);
            if (hx == 1)
            {
                int bias = upper ? 1 : 2;
                for (int x = 0; x < width; x++) output[x] = (byte)((near[x] * 3 + far[x] + bias) >> 2);
                return;
            }
            if (hx == 2 && dw > 2)
            {
                for (int j = 0; j < dw; j++) sums[j] = near[j] * 3 + far[j];
                output[0] = (byte)((sums[0] * 4 + 8) >> 4);
                for (int x = 1; x < width; x++)
                {
                    int j = x >> 1;
                    output[x] = (x & 1) == 0
                        ? (byte)((sums[j] * 3 + sums[j - 1] + 8) >> 4)
                        : (byte)((sums[j] * 3 + (j + 1 < dw ? sums[j + 1] : sums[j]) + 7) >> 4);
                }
                return;
            }
        }
        else if (vy == 1 && hx == 2 && dw > 2)
        {
            var src = plane.AsSpan(y * stride, dw);
            output[0] = src[0];
            for (int x = 1; x < width; x++)
            {
                int j = x >> 1;
                int near3 = src[j] * 3;
                output[x] = (x & 1) == 0
                    ? (byte)((near3 + src[j - 1] + 1) >> 2)
                    : (byte)((near3 + (j + 1 < dw ? src[j + 1] : src[j]) + 2) >> 2);
            }
            return;
        }
        var row = plane.AsSpan((y / vy) * stride);
        if (hx == 1) { row[..width].CopyTo(output); return; }
        for (int x = 0; x < width; x++) output[x] = row[x / hx];
    }
}
