namespace Parrot.Parrot.Data.World;

/// <summary>One object of a scene: what it is, and where it is drawn in relative image coordinates.</summary>
/// <param name="Shape">Its shape.</param>
/// <param name="Color">Its colour (never the background's).</param>
/// <param name="Size">Small or large.</param>
/// <param name="Slot">Its grid position; no two objects of a scene share one.</param>
/// <param name="CenterX">Centre x as a fraction of the image width (the slot's point plus a small jitter).</param>
/// <param name="CenterY">Centre y as a fraction of the image height.</param>
public sealed record SceneObject(ShapeKind Shape, WorldColor Color, SizeClass Size, Slot Slot, double CenterX, double CenterY)
{
    /// <summary>The nominal radius as a fraction of the image side (<see cref="SceneGeometry"/>).</summary>
    public double Radius => Size == SizeClass.Large ? SceneGeometry.LargeRadius : SceneGeometry.SmallRadius;
}

/// <summary>A synthetic scene: a plain background and one to four objects in distinct slots.</summary>
/// <param name="Background">The background colour (white, grey or black).</param>
/// <param name="Objects">The objects, in drawing order (they never overlap, so the order only matters to captions).</param>
public sealed record Scene(WorldColor Background, IReadOnlyList<SceneObject> Objects)
{
    /// <summary>The object in <paramref name="slot"/>, or null when that slot is empty.</summary>
    public SceneObject? At(Slot slot) => Objects.FirstOrDefault(o => o.Slot == slot);

    /// <summary>How many objects have <paramref name="shape"/>.</summary>
    public int CountShape(ShapeKind shape) => Objects.Count(o => o.Shape == shape);

    /// <summary>How many objects have <paramref name="color"/>.</summary>
    public int CountColor(WorldColor color) => Objects.Count(o => o.Color == color);

    /// <summary>How many objects have both <paramref name="color"/> and <paramref name="shape"/>.</summary>
    public int Count(WorldColor color, ShapeKind shape) => Objects.Count(o => o.Color == color && o.Shape == shape);
}

/// <summary>
/// The layout constants, as fractions of the image side. Slots sit <see cref="SlotOffset"/> from the centre;
/// the radii and jitter are chosen so that two large objects in neighbouring slots never touch and every
/// object stays inside the image (the tests check both on thousands of scenes).
/// </summary>
public static class SceneGeometry
{
    /// <summary>Distance of the side slots from the image centre.</summary>
    public const double SlotOffset = 0.31;

    /// <summary>Nominal radius of a large object.</summary>
    public const double LargeRadius = 0.12;

    /// <summary>Nominal radius of a small object.</summary>
    public const double SmallRadius = 0.07;

    /// <summary>Largest displacement of an object from its slot point, on each axis.</summary>
    public const double Jitter = 0.015;

    /// <summary>The slot's point (x, y) in relative coordinates, y pointing down.</summary>
    public static (double X, double Y) SlotPoint(Slot slot) => slot switch
    {
        Slot.Left => (0.5 - SlotOffset, 0.5),
        Slot.Right => (0.5 + SlotOffset, 0.5),
        Slot.Top => (0.5, 0.5 - SlotOffset),
        Slot.Bottom => (0.5, 0.5 + SlotOffset),
        Slot.Center => (0.5, 0.5),
        _ => throw new ArgumentOutOfRangeException(nameof(slot), slot, "not a slot"),
    };
}

/// <summary>Draws random scenes.</summary>
internal static class SceneSampler
{
    /// <summary>A scene with 1–4 objects (uniform), distinct random slots, shapes, object colours other than the background, sizes.</summary>
    public static Scene Sample(WorldRandom rng)
    {
        var background = rng.Pick(WorldPalette.BackgroundColors);
        int count = 1 + rng.Next(4);
        var slots = WorldPalette.Slots.ToList();
        rng.Shuffle(slots);
        var colors = WorldPalette.ObjectColors.Where(c => c != background).ToArray();
        var objects = new SceneObject[count];
        for (int i = 0; i < count; i++)
        {
            var (x, y) = SceneGeometry.SlotPoint(slots[i]);
            double jx = (rng.NextDouble() * 2 - 1) * SceneGeometry.Jitter, jy = (rng.NextDouble() * 2 - 1) * SceneGeometry.Jitter;
            objects[i] = new SceneObject(rng.Pick(WorldPalette.Shapes), rng.Pick(colors),
                rng.Chance(0.5) ? SizeClass.Large : SizeClass.Small, slots[i], x + jx, y + jy);
        }
        return new Scene(background, objects);
    }
}
