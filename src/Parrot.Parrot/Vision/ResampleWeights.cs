namespace Parrot.Parrot.Vision;

/// <summary>
/// The fixed-point filter taps of one axis of a PIL convolution resize (libImaging/Resample.c), computed
/// with the same double-precision expressions in the same order, so the integers come out identical:
/// <list type="bullet">
/// <item>scale = in / out; when shrinking the filter is stretched by the scale (antialiasing), so its support
/// is filter support × max(scale, 1) and every output sees up to ceil(support) × 2 + 1 inputs;</item>
/// <item>output i is centred at (i + 0.5) × scale; its inputs run from (int)(centre − support + 0.5) to
/// (int)(centre + support + 0.5), clipped to the image, and input j weighs
/// filter((j − centre + 0.5) / max(scale, 1));</item>
/// <item>the weights are divided by their sum, then scaled by 2^22 and rounded half away from zero to int.</item>
/// </list>
/// </summary>
internal sealed class ResampleWeights
{
    /// <summary>PIL's PRECISION_BITS: 32 − 8 bits of result − 2 bits of headroom for negative lobes.</summary>
    public const int PrecisionBits = 32 - 8 - 2;

    /// <summary>Added before the final shift so that it rounds to nearest.</summary>
    public const int Half = 1 << (PrecisionBits - 1);

    private ResampleWeights(int taps, int[] first, int[] count, int[] weights)
    {
        Taps = taps;
        First = first;
        Count = count;
        Weights = weights;
    }

    /// <summary>Stride of <see cref="Weights"/> per output (the most taps any output may have).</summary>
    public int Taps { get; }

    /// <summary>First input index of each output.</summary>
    public int[] First { get; }

    /// <summary>Number of inputs of each output.</summary>
    public int[] Count { get; }

    /// <summary>Fixed-point weights, output o's at [o × Taps, o × Taps + Count[o]).</summary>
    public int[] Weights { get; }

    public static ResampleWeights Compute(int inSize, int outSize, ResampleFilter filter)
    {
        double filterSupport = Support(filter);
        // PIL passes the box edges as C floats; the difference is computed in float before widening.
        float in0 = 0f, in1 = inSize;
        double scale = (double)(in1 - in0) / outSize;
        double filterScale = scale < 1.0 ? 1.0 : scale;
        double support = filterSupport * filterScale;
        long taps = (long)Math.Ceiling(support) * 2 + 1;
        if (taps * outSize > Array.MaxLength)
            throw new ArgumentException($"Resize: {inSize} -> {outSize} needs too many filter taps");

        var first = new int[outSize];
        var count = new int[outSize];
        var weights = new int[taps * outSize];
        var k = new double[taps];
        double inverse = 1.0 / filterScale;
        for (int o = 0; o < outSize; o++)
        {
            double center = in0 + (o + 0.5) * scale;
            int lo = (int)(center - support + 0.5);
            if (lo < 0) lo = 0;
            int hi = (int)(center + support + 0.5);
            if (hi > inSize) hi = inSize;
            int n = hi - lo;
            double sum = 0.0;
            for (int j = 0; j < n; j++)
            {
                // (j + lo) is an int in C before it meets the double centre: keep that order.
                int index = j + lo;
                double w = Evaluate(filter, (index - center + 0.5) * inverse);
                k[j] = w;
                sum += w;
            }
            int row = o * (int)taps;
            for (int j = 0; j < n; j++)
            {
                double w = sum != 0.0 ? k[j] / sum : k[j];
                weights[row + j] = w < 0
                    ? (int)(-0.5 + w * (1 << PrecisionBits))
                    : (int)(0.5 + w * (1 << PrecisionBits));
            }
            first[o] = lo;
            count[o] = Math.Max(n, 0);
        }
        return new ResampleWeights((int)taps, first, count, weights);
    }

    public static double Support(ResampleFilter filter) => filter switch
    {
        ResampleFilter.Box => 0.5,
        ResampleFilter.Bilinear => 1.0,
        ResampleFilter.Hamming => 1.0,
        ResampleFilter.Bicubic => 2.0,
        ResampleFilter.Lanczos => 3.0,
        _ => throw new ArgumentException($"Resize: {filter} is not a convolution filter"),
    };

    /// <summary>The filter kernels, written as PIL writes them (same operations, same order).</summary>
    public static double Evaluate(ResampleFilter filter, double x)
    {
        switch (filter)
        {
            case ResampleFilter.Box:
                return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
            case ResampleFilter.Bilinear:
                if (x < 0.0) x = -x;
                return x < 1.0 ? 1.0 - x : 0.0;
            case ResampleFilter.Hamming:
                if (x < 0.0) x = -x;
                if (x == 0.0) return 1.0;
                if (x >= 1.0) return 0.0;
                x *= Math.PI;
                // PIL writes the window constants as C floats (0.54f, 0.46f).
                return Math.Sin(x) / x * ((double)0.54f + (double)0.46f * Math.Cos(x));
            case ResampleFilter.Bicubic:
                const double a = -0.5;
                if (x < 0.0) x = -x;
                if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
                if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
                return 0.0;
            case ResampleFilter.Lanczos:
                return -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0;
            default:
                throw new ArgumentException($"Resize: {filter} is not a convolution filter");
        }
    }

    private static double Sinc(double x)
    {
        if (x == 0.0) return 1.0;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }
}
