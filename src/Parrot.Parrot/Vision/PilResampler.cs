using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Parrot.Parrot.Vision;

/// <summary>
/// Resizes 8-bit RGB images exactly as PIL's <c>Image.resize(size, resample)</c> does (Pillow 9.x, no box,
/// no reducing_gap), byte for byte: Hugging Face's CLIPImageProcessor resizes through PIL, so a model trained
/// on its output is fed the same pixels.
/// <para>The convolution filters run PIL's two separable passes on 8-bit data: horizontal first, over only
/// the rows the vertical pass will read, then vertical; each pass sums pixel × fixed-point weight (2^22 =
/// 1.0, see <see cref="ResampleWeights"/>) in 32-bit integers starting from 2^21, shifts right by 22 and
/// clamps to 0..255, so the intermediate image is rounded to bytes as PIL rounds it. A pass is skipped when
/// its axis keeps its size, and a resize to the same size returns a copy. Nearest neighbour follows PIL's
/// affine scaling: source positions accumulated in double from half a step, out-of-range ones left black.</para>
/// </summary>
public static class PilResampler
{
    /// <summary>Resizes <paramref name="image"/> to <paramref name="width"/> × <paramref name="height"/>.</summary>
    /// <exception cref="ArgumentException">A size is not positive or the filter is unknown.</exception>
    public static RgbImage Resize(RgbImage image, int width, int height, ResampleFilter filter = ResampleFilter.Bicubic)
    {
        ArgumentNullException.ThrowIfNull(image);
        return Resize(new ImageRows(image), width, height, filter);
    }

    internal static RgbImage Resize(PixelRows source, int width, int height, ResampleFilter filter)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"Resize: target size {width}x{height} must be positive");
        if (!Enum.IsDefined(filter)) throw new ArgumentException($"Resize: unknown filter {(int)filter}");
        if ((long)width * height * 3 > Array.MaxLength) throw new ArgumentException($"Resize: target size {width}x{height} is too large");
        if (width == source.Width && height == source.Height) return Copy(source);
        if (filter == ResampleFilter.Nearest) return Nearest(source, width, height);

        var vertical = ResampleWeights.Compute(source.Height, height, filter);
        bool needHorizontal = width != source.Width;
        bool needVertical = height != source.Height;
        // Rows the vertical pass reads: from the first output's first input to the last output's last input.
        int firstRow = vertical.First[0];
        int lastRow = vertical.First[height - 1] + vertical.Count[height - 1];
        if (!needHorizontal && source is ImageRows stored)
            return Vertical(stored.Image, 0, vertical, height); // read the stored rows in place
        RgbImage rows = needHorizontal
            ? Horizontal(source, firstRow, lastRow, ResampleWeights.Compute(source.Width, width, filter))
            : CopyRows(source, firstRow, lastRow);
        return needVertical ? Vertical(rows, firstRow, vertical, height) : rows;
    }

    private static RgbImage Copy(PixelRows source) => CopyRows(source, 0, source.Height);

    private static RgbImage CopyRows(PixelRows source, int first, int last)
    {
        int rowBytes = source.Width * 3;
        var pixels = new byte[(long)rowBytes * (last - first)];
        var scratch = new byte[rowBytes];
        for (int y = first; y < last; y++)
            source.GetRow(y, scratch).CopyTo(pixels.AsSpan((y - first) * rowBytes, rowBytes));
        return new RgbImage(source.Width, last - first, pixels);
    }

    /// <summary>The horizontal pass over source rows [first, last): a temporary image of that many rows.</summary>
    private static RgbImage Horizontal(PixelRows source, int first, int last, ResampleWeights weights)
    {
        int outWidth = weights.First.Length;
        int outRowBytes = outWidth * 3;
        int rows = last - first;
        var pixels = new byte[(long)outRowBytes * rows];
        byte[]? fillRow = null;
        for (int y = first; y < last; y++)
        {
            if (!source.IsFillRow(y)) continue;
            // Every fill row has the same input, so the same output: compute it once.
            fillRow = new byte[outRowBytes];
            HorizontalRow(source.GetRow(y, new byte[source.Width * 3]), fillRow, weights);
            break;
        }
        long work = (long)rows * outWidth * weights.Taps;
        int chunks = work < 1 << 18 ? 1 : Math.Min(rows, Environment.ProcessorCount * 4);
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = Math.Min(chunks, Environment.ProcessorCount) }, chunk =>
        {
            var scratch = new byte[source.Width * 3];
            int begin = first + (int)((long)rows * chunk / chunks), end = first + (int)((long)rows * (chunk + 1) / chunks);
            for (int y = begin; y < end; y++)
            {
                var output = pixels.AsSpan((y - first) * outRowBytes, outRowBytes);
                if (fillRow != null && source.IsFillRow(y)) fillRow.CopyTo(output);
                else HorizontalRow(source.GetRow(y, scratch), output, weights);
            }
        });
        return new RgbImage(outWidth, rows, pixels);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void HorizontalRow(ReadOnlySpan<byte> input, Span<byte> output, ResampleWeights weights)
    {
        int taps = weights.Taps;
        int inWidth = input.Length / 3;
        ref byte src = ref MemoryMarshal.GetReference(input);
        ref int w = ref MemoryMarshal.GetArrayDataReference(weights.Weights);
        int[] firstOf = weights.First, countOf = weights.Count;
        for (int o = 0; o < firstOf.Length; o++)
        {
            ref byte p = ref Unsafe.Add(ref src, firstOf[o] * 3);
            ref int k = ref Unsafe.Add(ref w, o * taps);
            int n = countOf[o];
            // One pixel per step: its 3 bytes and the next pixel's first byte widened to 4 int lanes, the
            // fourth lane ignored. Reading that extra byte needs a pixel after the last tap.
            if (Sse41.IsSupported && firstOf[o] + n < inWidth)
            {
                var sum = Vector128.Create(ResampleWeights.Half);
                for (int j = 0; j < n; j++)
                {
                    var pixel = Sse41.ConvertToVector128Int32(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref p, 3 * j))).AsByte());
                    sum += pixel * Vector128.Create(Unsafe.Add(ref k, j));
                }
                var clipped = Vector128.Min(Vector128.Max(Vector128.ShiftRightArithmetic(sum, ResampleWeights.PrecisionBits), Vector128<int>.Zero), Vector128.Create(255));
                output[3 * o] = (byte)clipped.GetElement(0);
                output[3 * o + 1] = (byte)clipped.GetElement(1);
                output[3 * o + 2] = (byte)clipped.GetElement(2);
                continue;
            }
            int s0 = ResampleWeights.Half, s1 = s0, s2 = s0;
            for (int j = 0; j < n; j++)
            {
                int c = Unsafe.Add(ref k, j);
                s0 += Unsafe.Add(ref p, 3 * j) * c;
                s1 += Unsafe.Add(ref p, 3 * j + 1) * c;
                s2 += Unsafe.Add(ref p, 3 * j + 2) * c;
            }
            output[3 * o] = Clip(s0);
            output[3 * o + 1] = Clip(s1);
            output[3 * o + 2] = Clip(s2);
        }
    }

    /// <summary>The vertical pass: <paramref name="rows"/> holds source rows from <paramref name="firstRow"/> on.</summary>
    private static RgbImage Vertical(RgbImage rows, int firstRow, ResampleWeights weights, int outHeight)
    {
        int rowBytes = rows.Width * 3;
        var pixels = new byte[(long)rowBytes * outHeight];
        long work = (long)outHeight * rowBytes * weights.Taps;
        int chunks = work < 1 << 19 ? 1 : Math.Min(outHeight, Environment.ProcessorCount * 4);
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = Math.Min(chunks, Environment.ProcessorCount) }, chunk =>
        {
            int begin = (int)((long)outHeight * chunk / chunks), end = (int)((long)outHeight * (chunk + 1) / chunks);
            for (int o = begin; o < end; o++)
            {
                VerticalRow(rows.Pixels, rowBytes, weights.First[o] - firstRow, weights.Count[o],
                    weights.Weights.AsSpan(o * weights.Taps, weights.Count[o]), pixels.AsSpan(o * rowBytes, rowBytes));
            }
        });
        return new RgbImage(rows.Width, outHeight, pixels);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void VerticalRow(byte[] rows, int rowBytes, int first, int count, ReadOnlySpan<int> k, Span<byte> output)
    {
        ref byte top = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(rows), (nint)first * rowBytes);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            // Sums are exact integers whatever the order, so lanes of 4 × Vector<int> columns at a time give
            // PIL's result: widen the bytes, multiply by the tap, accumulate, shift, clamp, narrow.
            int step = Vector<byte>.Count;
            var half = new Vector<int>(ResampleWeights.Half);
            var max = new Vector<int>(255);
            for (; i + step <= rowBytes; i += step)
            {
                Vector<int> a0 = half, a1 = half, a2 = half, a3 = half;
                for (int j = 0; j < count; j++)
                {
                    var bytes = Unsafe.ReadUnaligned<Vector<byte>>(ref Unsafe.Add(ref top, (nint)j * rowBytes + i));
                    Vector.Widen(bytes, out Vector<ushort> lo, out Vector<ushort> hi);
                    Vector.Widen(lo, out Vector<uint> w0, out Vector<uint> w1);
                    Vector.Widen(hi, out Vector<uint> w2, out Vector<uint> w3);
                    var c = new Vector<int>(k[j]);
                    a0 += Vector.AsVectorInt32(w0) * c;
                    a1 += Vector.AsVectorInt32(w1) * c;
                    a2 += Vector.AsVectorInt32(w2) * c;
                    a3 += Vector.AsVectorInt32(w3) * c;
                }
                var n01 = Vector.Narrow(ClipLanes(a0, max), ClipLanes(a1, max));
                var n23 = Vector.Narrow(ClipLanes(a2, max), ClipLanes(a3, max));
                Unsafe.WriteUnaligned(ref MemoryMarshal.GetReference(output.Slice(i)), Vector.Narrow(n01, n23));
            }
        }
        for (; i < rowBytes; i++)
        {
            int s = ResampleWeights.Half;
            for (int j = 0; j < count; j++) s += Unsafe.Add(ref top, (nint)j * rowBytes + i) * k[j];
            output[i] = Clip(s);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<uint> ClipLanes(Vector<int> sum, Vector<int> max) =>
        Vector.AsVectorUInt32(Vector.Min(Vector.Max(Vector.ShiftRightArithmetic(sum, ResampleWeights.PrecisionBits), Vector<int>.Zero), max));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte Clip(int sum)
    {
        int v = sum >> ResampleWeights.PrecisionBits;
        return (byte)(v < 0 ? 0 : v > 255 ? 255 : v);
    }

    /// <summary>PIL's nearest-neighbour scaling (ImagingScaleAffine): positions start half a step in and
    /// are accumulated in double, and an output whose source position falls outside stays black.</summary>
    private static RgbImage Nearest(PixelRows source, int width, int height)
    {
        float inWidth = source.Width, inHeight = source.Height;
        double stepX = (double)(inWidth - 0f) / width, stepY = (double)(inHeight - 0f) / height;
        var columns = new int[width];
        double xo = 0.0 + stepX * 0.5;
        for (int x = 0; x < width; x++, xo += stepX)
            columns[x] = xo < 0.0 ? -1 : xo >= source.Width ? -1 : (int)xo;
        var pixels = new byte[(long)width * height * 3];
        var scratch = new byte[source.Width * 3];
        double yo = 0.0 + stepY * 0.5;
        for (int y = 0; y < height; y++, yo += stepY)
        {
            int yi = yo < 0.0 ? -1 : yo >= source.Height ? -1 : (int)yo;
            if (yi < 0) continue;
            var input = source.GetRow(yi, scratch);
            var output = pixels.AsSpan(y * width * 3, width * 3);
            for (int x = 0; x < width; x++)
            {
                int xi = columns[x];
                if (xi < 0) continue;
                output[3 * x] = input[3 * xi];
                output[3 * x + 1] = input[3 * xi + 1];
                output[3 * x + 2] = input[3 * xi + 2];
            }
        }
        return new RgbImage(width, height, pixels);
    }
}
