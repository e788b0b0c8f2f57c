namespace Parrot.Parrot.Data.World;

/// <summary>The benchmark categories (the TSV's <c>category</c> column uses <see cref="QuestionCatalog.CategoryId"/>).</summary>
public enum QuestionCategory
{
    /// <summary>The colour of an object.</summary>
    Color,
    /// <summary>The shape of an object.</summary>
    Shape,
    /// <summary>How many objects (in all, of a shape, of a colour).</summary>
    Count,
    /// <summary>Where an object is.</summary>
    Position,
    /// <summary>Whether an object of a colour and shape is present.</summary>
    Existence,
    /// <summary>Whether an object is large or small.</summary>
    Size,
    /// <summary>The colour of the background.</summary>
    Background,
}

/// <summary>The question forms; every language phrases each one, so all languages ask the same things.</summary>
public enum QuestionForm
{
    /// <summary>"What color is the circle?" (the shape occurs once).</summary>
    ColorOfShape,
    /// <summary>"What color is the shape on the left?"</summary>
    ColorAt,
    /// <summary>"What shape is on the left?"</summary>
    ShapeAt,
    /// <summary>"Which shape is red?" (the colour occurs once).</summary>
    ShapeOfColor,
    /// <summary>"How many shapes are there in the image?"</summary>
    CountAll,
    /// <summary>"How many circles are there in the image?" (0–4).</summary>
    CountShape,
    /// <summary>"How many red shapes are there in the image?" (0–4).</summary>
    CountColor,
    /// <summary>"Where is the red circle?" (that colour and shape occur together once).</summary>
    PositionOf,
    /// <summary>"Is there a red circle in the image?"</summary>
    Exists,
    /// <summary>"Is the red circle large or small?" (that colour and shape occur together once).</summary>
    SizeOf,
    /// <summary>"Is the shape on the left large or small?"</summary>
    SizeAt,
    /// <summary>"What color is the background?"</summary>
    Background,
}

/// <summary>What an answer names.</summary>
public enum AnswerKind
{
    /// <summary>A <see cref="WorldColor"/>.</summary>
    Color,
    /// <summary>A <see cref="ShapeKind"/>.</summary>
    Shape,
    /// <summary>A count, written as digits in every language.</summary>
    Number,
    /// <summary>A <see cref="Slot"/>.</summary>
    Position,
    /// <summary>1 = yes, 0 = no.</summary>
    YesNo,
    /// <summary>A <see cref="SizeClass"/>.</summary>
    Size,
}

/// <summary>A language-independent answer; each language renders it in its own words.</summary>
/// <param name="Kind">What it names.</param>
/// <param name="Value">The enum value, count, or 1/0 for yes/no.</param>
public readonly record struct AnswerValue(AnswerKind Kind, int Value)
{
    /// <summary>A colour answer.</summary>
    public static AnswerValue Of(WorldColor c) => new(AnswerKind.Color, (int)c);
    /// <summary>A shape answer.</summary>
    public static AnswerValue Of(ShapeKind s) => new(AnswerKind.Shape, (int)s);
    /// <summary>A position answer.</summary>
    public static AnswerValue Of(Slot s) => new(AnswerKind.Position, (int)s);
    /// <summary>A size answer.</summary>
    public static AnswerValue Of(SizeClass s) => new(AnswerKind.Size, (int)s);
    /// <summary>A count answer.</summary>
    public static AnswerValue Number(int n) => new(AnswerKind.Number, n);
    /// <summary>A yes/no answer.</summary>
    public static AnswerValue YesNo(bool yes) => new(AnswerKind.YesNo, yes ? 1 : 0);

    /// <summary>The English identifier of the answer ("red", "circle", "3", "left", "yes", "large"), as in manifests.</summary>
    public override string ToString() => Kind switch
    {
        AnswerKind.Color => WorldPalette.Id((WorldColor)Value),
        AnswerKind.Shape => WorldPalette.Id((ShapeKind)Value),
        AnswerKind.Number => Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
        AnswerKind.Position => WorldPalette.Id((Slot)Value),
        AnswerKind.YesNo => Value != 0 ? "yes" : "no",
        AnswerKind.Size => WorldPalette.Id((SizeClass)Value),
        _ => "?",
    };
}

/// <summary>A question about a scene, independent of language: its form, the object it refers to, its answer.</summary>
/// <param name="Form">The form.</param>
/// <param name="Shape">The shape the question names, if any.</param>
/// <param name="Color">The colour the question names, if any.</param>
/// <param name="Slot">The slot the question names, if any.</param>
/// <param name="Answer">The correct answer.</param>
public sealed record Question(QuestionForm Form, ShapeKind? Shape, WorldColor? Color, Slot? Slot, AnswerValue Answer)
{
    /// <summary>The benchmark category of the form.</summary>
    public QuestionCategory Category => QuestionCatalog.CategoryOf(Form);
}

/// <summary>A multiple-choice version of a question: the options in display order (A, B, …) and the correct one.</summary>
/// <param name="Question">The question.</param>
/// <param name="Options">Two to four options, in the order they are lettered.</param>
/// <param name="CorrectIndex">Index of the correct option (0 = A).</param>
public sealed record ChoiceQuestion(Question Question, IReadOnlyList<AnswerValue> Options, int CorrectIndex)
{
    /// <summary>The correct option's letter.</summary>
    public char CorrectLetter => (char)('A' + CorrectIndex);
}

/// <summary>Categories, their benchmark identifiers, and the drawing of valid questions and options for a scene.</summary>
public static class QuestionCatalog
{
    /// <summary>All categories, in the benchmark's round-robin order.</summary>
    public static readonly QuestionCategory[] Categories = Enum.GetValues<QuestionCategory>();

    /// <summary>The category of a form.</summary>
    public static QuestionCategory CategoryOf(QuestionForm form) => form switch
    {
        QuestionForm.ColorOfShape or QuestionForm.ColorAt => QuestionCategory.Color,
        QuestionForm.ShapeAt or QuestionForm.ShapeOfColor => QuestionCategory.Shape,
        QuestionForm.CountAll or QuestionForm.CountShape or QuestionForm.CountColor => QuestionCategory.Count,
        QuestionForm.PositionOf => QuestionCategory.Position,
        QuestionForm.Exists => QuestionCategory.Existence,
        QuestionForm.SizeOf or QuestionForm.SizeAt => QuestionCategory.Size,
        QuestionForm.Background => QuestionCategory.Background,
        _ => throw new ArgumentOutOfRangeException(nameof(form), form, "not a question form"),
    };

    /// <summary>The TSV <c>category</c> value ("color", "shape", …).</summary>
    public static string CategoryId(QuestionCategory c) => c.ToString().ToLowerInvariant();

    /// <summary>The TSV <c>l2-category</c> value: attributes, counting, spatial or existence.</summary>
    public static string L2CategoryId(QuestionCategory c) => c switch
    {
        QuestionCategory.Color or QuestionCategory.Shape or QuestionCategory.Size or QuestionCategory.Background => "attribute",
        QuestionCategory.Count => "counting",
        QuestionCategory.Position => "spatial",
        QuestionCategory.Existence => "existence",
        _ => throw new ArgumentOutOfRangeException(nameof(c), c, "not a category"),
    };

    /// <summary>How often each category is drawn for the stage-2 instruction data (relative weights).</summary>
    internal static double Weight(QuestionCategory c) => c is QuestionCategory.Size or QuestionCategory.Background ? 1 : 2;

    /// <summary>A random valid question of <paramref name="category"/> for the scene, or null when the scene has none.</summary>
    internal static Question? Draw(Scene scene, QuestionCategory category, WorldRandom rng)
    {
        var objects = scene.Objects;
        switch (category)
        {
            case QuestionCategory.Color:
            {
                var options = new List<Question>();
                foreach (var o in objects)
                {
                    options.Add(new Question(QuestionForm.ColorAt, null, null, o.Slot, AnswerValue.Of(o.Color)));
                    if (scene.CountShape(o.Shape) == 1) options.Add(new Question(QuestionForm.ColorOfShape, o.Shape, null, null, AnswerValue.Of(o.Color)));
                }
                return rng.Pick(options);
            }
            case QuestionCategory.Shape:
            {
                var options = new List<Question>();
                foreach (var o in objects)
                {
                    options.Add(new Question(QuestionForm.ShapeAt, null, null, o.Slot, AnswerValue.Of(o.Shape)));
                    if (scene.CountColor(o.Color) == 1) options.Add(new Question(QuestionForm.ShapeOfColor, null, o.Color, null, AnswerValue.Of(o.Shape)));
                }
                return rng.Pick(options);
            }
            case QuestionCategory.Count:
                switch (rng.Next(3))
                {
                    case 0:
                        return new Question(QuestionForm.CountAll, null, null, null, AnswerValue.Number(objects.Count));
                    case 1:
                    {
                        // Mostly a shape that is there (so counts above one occur), sometimes one that is not (zero).
                        var shape = rng.Chance(0.75) ? rng.Pick(objects).Shape : rng.Pick(WorldPalette.Shapes);
                        return new Question(QuestionForm.CountShape, shape, null, null, AnswerValue.Number(scene.CountShape(shape)));
                    }
                    default:
                    {
                        var color = rng.Chance(0.75) ? rng.Pick(objects).Color : rng.Pick(ColorsOn(scene));
                        return new Question(QuestionForm.CountColor, null, color, null, AnswerValue.Number(scene.CountColor(color)));
                    }
                }
            case QuestionCategory.Position:
            {
                var unique = objects.Where(o => scene.Count(o.Color, o.Shape) == 1).ToList();
                if (unique.Count == 0) return null;
                var o = rng.Pick(unique);
                return new Question(QuestionForm.PositionOf, o.Shape, o.Color, null, AnswerValue.Of(o.Slot));
            }
            case QuestionCategory.Existence:
            {
                if (rng.Chance(0.5))
                {
                    var o = rng.Pick(objects);
                    return new Question(QuestionForm.Exists, o.Shape, o.Color, null, AnswerValue.YesNo(true));
                }
                // Absent combinations, half of them sharing the colour or the shape of an object that is there,
                // so that "no" cannot be answered from one attribute alone.
                var colors = ColorsOn(scene);
                var absent = new List<(WorldColor, ShapeKind)>();
                var near = new List<(WorldColor, ShapeKind)>();
                foreach (var c in colors)
                foreach (var s in WorldPalette.Shapes)
                {
                    if (scene.Count(c, s) != 0) continue;
                    absent.Add((c, s));
                    if (objects.Any(o => o.Color == c || o.Shape == s)) near.Add((c, s));
                }
                var (color, shape) = near.Count > 0 && rng.Chance(0.5) ? rng.Pick(near) : rng.Pick(absent);
                return new Question(QuestionForm.Exists, shape, color, null, AnswerValue.YesNo(false));
            }
            case QuestionCategory.Size:
            {
                var options = new List<Question>();
                foreach (var o in objects)
                {
                    options.Add(new Question(QuestionForm.SizeAt, null, null, o.Slot, AnswerValue.Of(o.Size)));
                    if (scene.Count(o.Color, o.Shape) == 1) options.Add(new Question(QuestionForm.SizeOf, o.Shape, o.Color, null, AnswerValue.Of(o.Size)));
                }
                return rng.Pick(options);
            }
            case QuestionCategory.Background:
                return new Question(QuestionForm.Background, null, null, null, AnswerValue.Of(scene.Background));
            default:
                throw new ArgumentOutOfRangeException(nameof(category), category, "not a category");
        }
    }

    /// <summary>A question of a category drawn by the stage-2 weights among those the scene supports.</summary>
    internal static Question Draw(Scene scene, WorldRandom rng, ISet<QuestionCategory>? exclude = null)
    {
        while (true)
        {
            var available = Categories.Where(c => exclude is null || !exclude.Contains(c)).ToArray();
            if (available.Length == 0) available = Categories;
            double total = available.Sum(Weight), pick = rng.NextDouble() * total;
            var category = available[^1];
            foreach (var c in available)
            {
                if (pick < Weight(c)) { category = c; break; }
                pick -= Weight(c);
            }
            if (Draw(scene, category, rng) is { } q) return q;
            // Only Position can be unavailable; leave it out and draw again.
            exclude = new HashSet<QuestionCategory>(exclude ?? new HashSet<QuestionCategory>()) { category };
        }
    }

    /// <summary>Multiple-choice options for <paramref name="q"/>: the answer plus distractors, in display order.</summary>
    internal static ChoiceQuestion WithOptions(Question q, WorldRandom rng)
    {
        var answer = q.Answer;
        List<AnswerValue> options;
        switch (answer.Kind)
        {
            case AnswerKind.YesNo:
                options = [AnswerValue.YesNo(true), AnswerValue.YesNo(false)];
                break;
            case AnswerKind.Size:
                options = [AnswerValue.Of(SizeClass.Large), AnswerValue.Of(SizeClass.Small)];
                break;
            case AnswerKind.Number:
            {
                // Counts are listed in ascending order, as a person would write them.
                List<int> pool = q.Form == QuestionForm.CountAll ? [1, 2, 3, 4] : Enumerable.Range(0, 5).Where(n => n != answer.Value).ToList();
                if (q.Form != QuestionForm.CountAll)
                {
                    rng.Shuffle(pool);
                    pool = [answer.Value, .. pool.Take(3)];
                }
                pool.Sort();
                options = pool.Select(AnswerValue.Number).ToList();
                break;
            }
            default:
            {
                var universe = answer.Kind switch
                {
                    AnswerKind.Color => q.Form == QuestionForm.Background
                        ? Enum.GetValues<WorldColor>().Select(AnswerValue.Of)
                        : WorldPalette.ObjectColors.Select(AnswerValue.Of),
                    AnswerKind.Shape => WorldPalette.Shapes.Select(AnswerValue.Of),
                    _ => WorldPalette.Slots.Select(AnswerValue.Of),
                };
                var distractors = universe.Where(a => a != answer).ToList();
                rng.Shuffle(distractors);
                options = [answer, .. distractors.Take(3)];
                rng.Shuffle(options);
                break;
            }
        }
        return new ChoiceQuestion(q, options, options.IndexOf(answer));
    }

    private static WorldColor[] ColorsOn(Scene scene) => WorldPalette.ObjectColors.Where(c => c != scene.Background).ToArray();
}
