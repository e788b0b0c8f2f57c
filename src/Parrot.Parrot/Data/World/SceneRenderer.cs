using System.Runtime.CompilerServices;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace Parrot.Parrot.Data.World;

/// <summary>
/// Rasterises scenes into RGB pixels without anti-aliasing: a pixel takes an object's colour exactly when
/// its centre lies inside the shape, so every pixel is one of the palette's colours and tests can read a
/// colour back from a pixel. Encodes PNG (8-bit RGB) with ImageSharp.
/// </summary>
public static class SceneRenderer
{
    // Shape extents in units of the object's radius; SceneGeometry's spacing was sized for these.
    private const double SquareHalfSide = 0.85;
    private const double TriangleCircumradius = 1.2;
    private const double StarOuter = 1.15;
    private const double StarInner = 0.45 * StarOuter;
    private const double HeartScale = 0.92;
    private const double HeartLift = 0.12;
    private const double MaxExtent = 1.25;

    private static readonly (double X, double Y)[] StarVertices = MakeStar();
    private static readonly PngEncoder Encoder = new()
    {
        ColorType = PngColorType.Rgb,
        BitDepth = PngBitDepth.Bit8,
        // Flat colours compress best unfiltered; level 6 is both smaller and several times faster than 9 here (measured).
        CompressionLevel = PngCompressionLevel.DefaultCompression,
        FilterMethod = PngFilterMethod.None,
        ChunkFilter = PngChunkFilter.ExcludeAll,
    };

    /// <summary>The scene as <paramref name="size"/>×<paramref name="size"/> RGB bytes, row-major, 3 bytes a pixel.</summary>
    public static byte[] Render(Scene scene, int size)
    {
        ArgumentNullException.ThrowIfNull(scene);
        if (size < 16) throw new ArgumentOutOfRangeException(nameof(size), size, "SceneRenderer.Render: the image side must be at least 16 pixels");
        var pixels = new byte[size * size * 3];
        var (br, bg, bb) = WorldPalette.Rgb(scene.Background);
        for (int i = 0; i < pixels.Length; i += 3) { pixels[i] = br; pixels[i + 1] = bg; pixels[i + 2] = bb; }
        foreach (var o in scene.Objects) Fill(pixels, size, o);
        return pixels;
    }

    /// <summary>A mask of the pixels <paramref name="obj"/> covers on a <paramref name="size"/>-pixel image (for tests and labels).</summary>
    public static bool[] Mask(SceneObject obj, int size)
    {
        var mask = new bool[size * size];
        ForEachCovered(obj, size, (x, y) => mask[y * size + x] = true);
        return mask;
    }

    /// <summary>The pixel (column, row) that contains the object's centre; it always shows the object's colour.</summary>
    public static (int X, int Y) CenterPixel(SceneObject obj, int size) =>
        ((int)Math.Floor(obj.CenterX * size), (int)Math.Floor(obj.CenterY * size));

    /// <summary>Encodes RGB bytes as a PNG file image (deterministic: no timestamps or ancillary chunks).</summary>
    public static byte[] EncodePng(byte[] rgb, int size)
    {
        using var image = Image.LoadPixelData<Rgb24>(rgb, size, size);
        using var stream = new MemoryStream(1024);
        image.SaveAsPng(stream, Encoder);
        return stream.ToArray();
    }

    /// <summary>Renders and encodes in one step.</summary>
    public static byte[] RenderPng(Scene scene, int size) => EncodePng(Render(scene, size), size);

    private static void Fill(byte[] pixels, int size, SceneObject o)
    {
        var (r, g, b) = WorldPalette.Rgb(o.Color);
        ForEachCovered(o, size, (x, y) =>
        {
            int i = (y * size + x) * 3;
            pixels[i] = r; pixels[i + 1] = g; pixels[i + 2] = b;
        });
    }

    private static void ForEachCovered(SceneObject o, int size, Action<int, int> visit)
    {
        double cx = o.CenterX * size, cy = o.CenterY * size, radius = o.Radius * size;
        int x0 = Math.Max(0, (int)Math.Floor(cx - MaxExtent * radius)), x1 = Math.Min(size - 1, (int)Math.Ceiling(cx + MaxExtent * radius));
        int y0 = Math.Max(0, (int)Math.Floor(cy - MaxExtent * radius)), y1 = Math.Min(size - 1, (int)Math.Ceiling(cy + MaxExtent * radius));
        for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
        {
            // Sample at the pixel centre, in units of the radius, y pointing down.
            double u = (x + 0.5 - cx) / radius, v = (y + 0.5 - cy) / radius;
            if (Inside(o.Shape, u, v)) visit(x, y);
        }
    }

    /// <summary>Whether the point (u, v), in radius units around the object centre with v pointing down, is inside the shape.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool Inside(ShapeKind shape, double u, double v) => shape switch
    {
        ShapeKind.Circle => u * u + v * v <= 1.0,
        ShapeKind.Square => Math.Abs(u) <= SquareHalfSide && Math.Abs(v) <= SquareHalfSide,
        ShapeKind.Triangle => InsideTriangle(u, v),
        ShapeKind.Star => InsidePolygon(StarVertices, u, v),
        ShapeKind.Heart => InsideHeart(u, v),
        _ => false,
    };

    private static bool InsideTriangle(double u, double v)
    {
        // Upright equilateral triangle centred on its centroid: apex at (0, -R), base at v = R/2.
        const double r = TriangleCircumradius;
        if (v > r / 2) return false;
        // The two slanted sides: |u| grows linearly from 0 at the apex to r·√3/2 at the base.
        double halfWidth = (v + r) / (1.5 * r) * (r * Math.Sqrt(3) / 2);
        return Math.Abs(u) <= halfWidth;
    }

    private static bool InsideHeart(double u, double v)
    {
        // The classic implicit heart (x² + y² − 1)³ − x²·y³ ≤ 0, y up, lifted so the centre pixel is well inside.
        double x = u / HeartScale, y = -v / HeartScale + HeartLift;
        double q = x * x + y * y - 1;
        return q * q * q - x * x * y * y * y <= 0;
    }

    private static bool InsidePolygon((double X, double Y)[] poly, double u, double v)
    {
        bool inside = false;
        for (int i = 0, j = poly.Length - 1; i < poly.Length; j = i++)
        {
            var (xi, yi) = poly[i];
            var (xj, yj) = poly[j];
            if ((yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi) inside = !inside;
        }
        return inside;
    }

    private static (double X, double Y)[] MakeStar()
    {
        var points = new (double X, double Y)[10];
        for (int k = 0; k < 10; k++)
        {
            double angle = k * Math.PI / 5, radius = k % 2 == 0 ? StarOuter : StarInner;
            points[k] = (radius * Math.Sin(angle), -radius * Math.Cos(angle));
        }
        return points;
    }
}
