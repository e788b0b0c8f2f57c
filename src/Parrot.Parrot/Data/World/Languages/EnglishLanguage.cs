namespace Parrot.Parrot.Data.World;

/// <summary>English (American spelling, as LLaVA's data).</summary>
internal sealed class EnglishLanguage : WorldLanguage
{
    public override string Code => "en";
    public override string ChoiceInstruction => "Answer with the option's letter from the given choices directly.";
    public override string ShortAnswerInstruction => "Answer the question using a single word or phrase.";

    private static string Color(WorldColor c) => WorldPalette.Id(c);
    private static string Shape(ShapeKind s) => WorldPalette.Id(s);
    private static string Shapes(ShapeKind s) => WorldPalette.Id(s) + "s";
    private static string Size(SizeClass s) => s == SizeClass.Large ? "large" : "small";

    private static string Where(Slot s) => s switch
    {
        Slot.Left => "on the left",
        Slot.Right => "on the right",
        Slot.Top => "at the top",
        Slot.Bottom => "at the bottom",
        _ => "in the center",
    };

    /// <summary>"a" or "an" by the sound of the next word (all our words are spelt as they sound).</summary>
    private static string Article(string next) => "aeiou".Contains(next[0]) ? "an" : "a";

    private static string ObjectPhrase(SceneObject o) => $"a {Size(o.Size)} {Color(o.Color)} {Shape(o.Shape)} {Where(o.Slot)}";

    private static string ObjectList(Scene scene)
    {
        var items = scene.Objects.Select(ObjectPhrase).ToList();
        // Serial comma for three or more, the common American style.
        return items.Count >= 3 ? string.Join(", ", items.Take(items.Count - 1)) + ", and " + items[^1] : JoinList(items, ", ", " and ");
    }

    public override string Caption(Scene scene, int variant)
    {
        string bg = Color(scene.Background), list = ObjectList(scene);
        return (variant % 3) switch
        {
            // With several objects the comma keeps "on a … background" from reading as part of the last one.
            0 => Capitalize($"{list}{(scene.Objects.Count > 1 ? "," : "")} on {Article(bg)} {bg} background."),
            1 => $"{Capitalize(Article(bg))} {bg} background with {list}.",
            _ => scene.Objects.Count == 1
                ? $"A single shape on {Article(bg)} {bg} background: {list}."
                : $"{Capitalize(CountWord(scene.Objects.Count))} shapes on {Article(bg)} {bg} background: {list}.",
        };
    }

    private static string CountWord(int n) => n switch { 1 => "one", 2 => "two", 3 => "three", 4 => "four", _ => n.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    public override string Ask(Question q, int variant)
    {
        bool alt = variant % 2 == 1;
        return q.Form switch
        {
            QuestionForm.ColorOfShape => alt ? $"What is the color of the {Shape(q.Shape!.Value)}?" : $"What color is the {Shape(q.Shape!.Value)}?",
            QuestionForm.ColorAt => alt ? $"What is the color of the shape {Where(q.Slot!.Value)}?" : $"What color is the shape {Where(q.Slot!.Value)}?",
            QuestionForm.ShapeAt => alt ? $"Which shape can be seen {Where(q.Slot!.Value)}?" : $"What shape is {Where(q.Slot!.Value)}?",
            QuestionForm.ShapeOfColor => alt ? $"What is the {Color(q.Color!.Value)} shape?" : $"Which shape is {Color(q.Color!.Value)}?",
            QuestionForm.CountAll => alt ? "How many shapes can you see in the image?" : "How many shapes are there in the image?",
            QuestionForm.CountShape => alt ? $"How many {Shapes(q.Shape!.Value)} can you see in the image?" : $"How many {Shapes(q.Shape!.Value)} are there in the image?",
            QuestionForm.CountColor => alt ? $"How many {Color(q.Color!.Value)} shapes can you see in the image?" : $"How many {Color(q.Color!.Value)} shapes are there in the image?",
            QuestionForm.PositionOf => alt ? $"Where is the {Color(q.Color!.Value)} {Shape(q.Shape!.Value)} located?" : $"Where is the {Color(q.Color!.Value)} {Shape(q.Shape!.Value)}?",
            QuestionForm.Exists => alt
                ? $"Does the image contain {Article(Color(q.Color!.Value))} {Color(q.Color!.Value)} {Shape(q.Shape!.Value)}?"
                : $"Is there {Article(Color(q.Color!.Value))} {Color(q.Color!.Value)} {Shape(q.Shape!.Value)} in the image?",
            QuestionForm.SizeOf => $"Is the {Color(q.Color!.Value)} {Shape(q.Shape!.Value)} large or small?",
            QuestionForm.SizeAt => $"Is the shape {Where(q.Slot!.Value)} large or small?",
            QuestionForm.Background => alt ? "What is the background color?" : "What color is the background?",
            _ => throw Unexpected(q.Form),
        };
    }

    public override string Answer(Question q, AnswerValue a) => a.Kind switch
    {
        AnswerKind.Color => Capitalize(Color((WorldColor)a.Value)),
        AnswerKind.Shape => Capitalize(Shape((ShapeKind)a.Value)),
        AnswerKind.Number => a.Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
        AnswerKind.Position => Capitalize(Where((Slot)a.Value)),
        AnswerKind.YesNo => a.Value != 0 ? "Yes" : "No",
        AnswerKind.Size => Capitalize(Size((SizeClass)a.Value)),
        _ => throw Unexpected(a),
    };
}
