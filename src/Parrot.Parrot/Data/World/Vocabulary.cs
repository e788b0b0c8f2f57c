namespace Parrot.Parrot.Data.World;

/// <summary>The shapes a scene object can have.</summary>
public enum ShapeKind
{
    /// <summary>A filled disc.</summary>
    Circle,
    /// <summary>An axis-aligned filled square.</summary>
    Square,
    /// <summary>An upright equilateral triangle.</summary>
    Triangle,
    /// <summary>An upright five-pointed star.</summary>
    Star,
    /// <summary>An upright heart.</summary>
    Heart,
}

/// <summary>The named colours of the world: the first eight are object colours, the backgrounds are white, grey and black.</summary>
public enum WorldColor
{
    /// <summary>Red.</summary>
    Red,
    /// <summary>Green.</summary>
    Green,
    /// <summary>Blue.</summary>
    Blue,
    /// <summary>Yellow.</summary>
    Yellow,
    /// <summary>Orange.</summary>
    Orange,
    /// <summary>Purple.</summary>
    Purple,
    /// <summary>White (object or background).</summary>
    White,
    /// <summary>Black (object or background).</summary>
    Black,
    /// <summary>Grey (background only).</summary>
    Gray,
}

/// <summary>The two object sizes.</summary>
public enum SizeClass
{
    /// <summary>Small.</summary>
    Small,
    /// <summary>Large.</summary>
    Large,
}

/// <summary>The coarse grid of positions: at most one object per slot, so "where" questions have one answer.</summary>
public enum Slot
{
    /// <summary>Middle of the left side.</summary>
    Left,
    /// <summary>Middle of the right side.</summary>
    Right,
    /// <summary>Middle of the top side.</summary>
    Top,
    /// <summary>Middle of the bottom side.</summary>
    Bottom,
    /// <summary>The centre of the image.</summary>
    Center,
}

/// <summary>The fixed colour values and the English identifiers used in labels and manifests.</summary>
public static class WorldPalette
{
    /// <summary>Colours an object may have (never the background's).</summary>
    public static readonly WorldColor[] ObjectColors =
        [WorldColor.Red, WorldColor.Green, WorldColor.Blue, WorldColor.Yellow, WorldColor.Orange, WorldColor.Purple, WorldColor.White, WorldColor.Black];

    /// <summary>Colours a background may have: neutral, so every object colour but one stands out on each.</summary>
    public static readonly WorldColor[] BackgroundColors = [WorldColor.White, WorldColor.Gray, WorldColor.Black];

    /// <summary>All shapes.</summary>
    public static readonly ShapeKind[] Shapes = Enum.GetValues<ShapeKind>();

    /// <summary>All slots.</summary>
    public static readonly Slot[] Slots = Enum.GetValues<Slot>();

    /// <summary>The 8-bit RGB value drawn for <paramref name="color"/>; the values are far apart so a pixel names its colour unambiguously.</summary>
    public static (byte R, byte G, byte B) Rgb(WorldColor color) => color switch
    {
        WorldColor.Red => (220, 30, 30),
        WorldColor.Green => (40, 170, 60),
        WorldColor.Blue => (40, 80, 220),
        WorldColor.Yellow => (250, 220, 30),
        WorldColor.Orange => (250, 140, 20),
        WorldColor.Purple => (140, 60, 190),
        WorldColor.White => (255, 255, 255),
        WorldColor.Black => (20, 20, 20),
        WorldColor.Gray => (128, 128, 128),
        _ => throw new ArgumentOutOfRangeException(nameof(color), color, "not a world colour"),
    };

    /// <summary>The lower-case English identifier of a colour ("red", "gray"), as in labels.json.</summary>
    public static string Id(WorldColor color) => color.ToString().ToLowerInvariant();

    /// <summary>The lower-case English identifier of a shape.</summary>
    public static string Id(ShapeKind shape) => shape.ToString().ToLowerInvariant();

    /// <summary>The lower-case English identifier of a size.</summary>
    public static string Id(SizeClass size) => size.ToString().ToLowerInvariant();

    /// <summary>The lower-case English identifier of a slot.</summary>
    public static string Id(Slot slot) => slot.ToString().ToLowerInvariant();
}
