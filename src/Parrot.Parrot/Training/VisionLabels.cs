using System.Text.Json;
using Parrot.Parrot.Data.World;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Training;

/// <summary>One training image of a world with its scene, as <c>labels.json</c> describes it.</summary>
/// <param name="Image">The image path relative to the world directory.</param>
/// <param name="Scene">The scene (background and objects; centres rounded to 4 decimals as in the file).</param>
public sealed record VisionLabel(string Image, Scene Scene);

/// <summary>
/// Reads a world's <c>labels.json</c> (written by <see cref="WorldGenerator"/>): every entry is checked, and a
/// bad one is reported with the file, the entry's index and the field.
/// </summary>
public static class VisionLabels
{
    private static readonly Dictionary<string, WorldColor> Colors = Enum.GetValues<WorldColor>().ToDictionary(WorldPalette.Id, c => c);
    private static readonly Dictionary<string, ShapeKind> Shapes = Enum.GetValues<ShapeKind>().ToDictionary(WorldPalette.Id, s => s);
    private static readonly Dictionary<string, SizeClass> Sizes = Enum.GetValues<SizeClass>().ToDictionary(WorldPalette.Id, s => s);
    private static readonly Dictionary<string, Slot> Slots = Enum.GetValues<Slot>().ToDictionary(WorldPalette.Id, s => s);

    /// <summary>The labels of the world in <paramref name="worldDir"/>.</summary>
    /// <exception cref="InvalidDataException">The file is missing, not JSON, or an entry is malformed (named).</exception>
    public static List<VisionLabel> Load(string worldDir)
    {
        ArgumentNullException.ThrowIfNull(worldDir);
        var path = Path.Combine(worldDir, "labels.json");
        if (!File.Exists(path))
            throw new InvalidDataException($"{path}: not found; a world made by `parrot make-world` has labels.json next to world.json");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{path}: expected a JSON array of image labels");
            var labels = new List<VisionLabel>(doc.RootElement.GetArrayLength());
            int i = 0;
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                labels.Add(Parse(e, $"{path}: entry {i}"));
                i++;
            }
            if (labels.Count == 0) throw new InvalidDataException($"{path}: no labelled images");
            return labels;
        }
    }

    private static VisionLabel Parse(JsonElement e, string where)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: expected an object");
        string image = Str(e, "image", where);
        if (image.Length == 0 || Path.IsPathRooted(image) || image.Split('/', '\\').Contains(".."))
            throw new InvalidDataException($"{where}: 'image' must be a relative path inside the world, got '{image}'");
        var background = Lookup(Colors, Str(e, "background", where), "background", where);
        if (!WorldPalette.BackgroundColors.Contains(background)) throw new InvalidDataException($"{where}: '{WorldPalette.Id(background)}' is not a background colour");
        if (!e.TryGetProperty("objects", out var objs) || objs.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{where}: 'objects' must be an array");
        var objects = new List<SceneObject>();
        int k = 0;
        foreach (var o in objs.EnumerateArray())
        {
            string w = $"{where}, object {k++}";
            if (o.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{w}: expected an object");
            var shape = Lookup(Shapes, Str(o, "shape", w), "shape", w);
            var color = Lookup(Colors, Str(o, "color", w), "color", w);
            if (!WorldPalette.ObjectColors.Contains(color)) throw new InvalidDataException($"{w}: '{WorldPalette.Id(color)}' is not an object colour");
            var size = Lookup(Sizes, Str(o, "size", w), "size", w);
            var slot = Lookup(Slots, Str(o, "position", w), "position", w);
            double x = Num(o, "x", w), y = Num(o, "y", w);
            if (objects.Any(p => p.Slot == slot)) throw new InvalidDataException($"{w}: two objects at '{WorldPalette.Id(slot)}'");
            objects.Add(new SceneObject(shape, color, size, slot, x, y));
        }
        if (objects.Count is < 1 or > 4) throw new InvalidDataException($"{where}: a scene has 1–4 objects, got {objects.Count}");
        if (e.TryGetProperty("count", out var count) && (count.ValueKind != JsonValueKind.Number || !count.TryGetInt32(out int n) || n != objects.Count))
            throw new InvalidDataException($"{where}: 'count' {count} disagrees with the {objects.Count} objects listed");
        return new VisionLabel(image, new Scene(background, objects));
    }

    private static string Str(JsonElement e, string key, string where) =>
        e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String
            ? JsonText.TryGetString(v) ?? throw new InvalidDataException($"{where}: '{key}' {JsonText.NotText}")
            : throw new InvalidDataException($"{where}: '{key}' must be a string");

    private static double Num(JsonElement e, string key, string where)
    {
        if (!e.TryGetProperty(key, out var v) || v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !(d >= 0 && d <= 1))
            throw new InvalidDataException($"{where}: '{key}' must be a number in [0, 1]");
        return d;
    }

    private static T Lookup<T>(Dictionary<string, T> table, string value, string key, string where) =>
        table.TryGetValue(value, out var t) ? t : throw new InvalidDataException($"{where}: unknown {key} '{value}' (one of {string.Join(", ", table.Keys)})");
}

/// <summary>
/// The classification targets of vision pre-training, all given for free by the world generator. On the
/// class token, a summary of the scene that does not depend on where things are: the background, the number of
/// objects, how many objects have each shape and how many have each colour (0–4 each). On every patch token:
/// the shape, colour and size of the object that covers most of the patch's pixels (class 0: no object), which
/// is where the "where" lives.
/// </summary>
public static class VisionTargets
{
    /// <summary>Classes of the heads on the class token, in order: background, count, one count (0–4) per shape, one per object colour.</summary>
    public static readonly int[] ClsHeads =
        [WorldPalette.BackgroundColors.Length, 4, .. WorldPalette.Shapes.Select(_ => 5), .. WorldPalette.ObjectColors.Select(_ => 5)];

    /// <summary>The names of the class-token heads.</summary>
    public static readonly string[] ClsHeadNames =
        ["background", "count", .. WorldPalette.Shapes.Select(s => "shape_" + WorldPalette.Id(s)), .. WorldPalette.ObjectColors.Select(c => "color_" + WorldPalette.Id(c))];

    /// <summary>Classes of the heads on each patch token: shape, colour, size (class 0 = no object).</summary>
    public static readonly int[] PatchHeads = [1 + WorldPalette.Shapes.Length, 1 + WorldPalette.ObjectColors.Length, 1 + 2];

    /// <summary>The class-token targets of <paramref name="scene"/> (one per <see cref="ClsHeads"/> entry).</summary>
    public static long[] Cls(Scene scene)
    {
        ArgumentNullException.ThrowIfNull(scene);
        return [Array.IndexOf(WorldPalette.BackgroundColors, scene.Background), scene.Objects.Count - 1,
            .. WorldPalette.Shapes.Select(s => (long)scene.CountShape(s)), .. WorldPalette.ObjectColors.Select(c => (long)scene.CountColor(c))];
    }

    /// <summary>
    /// The patch targets [grid·grid, 3] of <paramref name="scene"/> drawn at <paramref name="imageSize"/> pixels in
    /// patches of <paramref name="patchSize"/> (row-major, as the tower lays out its patches).
    /// </summary>
    public static long[] Patches(Scene scene, int imageSize, int patchSize)
    {
        ArgumentNullException.ThrowIfNull(scene);
        int grid = imageSize / patchSize;
        var masks = scene.Objects.Select(o => SceneRenderer.Mask(o, imageSize)).ToArray();
        var t = new long[grid * grid * 3];
        for (int py = 0; py < grid; py++)
        for (int px = 0; px < grid; px++)
        {
            int best = -1, bestCount = 0;
            for (int k = 0; k < masks.Length; k++)
            {
                int c = 0;
                for (int y = py * patchSize; y < (py + 1) * patchSize; y++)
                for (int x = px * patchSize; x < (px + 1) * patchSize; x++)
                    if (masks[k][y * imageSize + x]) c++;
                if (c > bestCount) { bestCount = c; best = k; }
            }
            if (best < 0) continue;
            var o = scene.Objects[best];
            int at = (py * grid + px) * 3;
            t[at] = 1 + Array.IndexOf(WorldPalette.Shapes, o.Shape);
            t[at + 1] = 1 + Array.IndexOf(WorldPalette.ObjectColors, o.Color);
            t[at + 2] = 1 + (int)o.Size;
        }
        return t;
    }
}
