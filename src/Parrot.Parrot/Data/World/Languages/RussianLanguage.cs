namespace Parrot.Parrot.Data.World;

/// <summary>
/// Russian, with ё. Shapes have three genders (круг m, звезда f, сердце n; фигура and the generic answers
/// are feminine, фон masculine); colour and size adjectives agree in gender, number and case: nominative
/// ("красная звезда"), genitive plural after сколько ("сколько красных фигур", "сколько звёзд"), genitive
/// singular in "красного цвета", prepositional in "на белом фоне"; numerals govern their noun ("две
/// фигуры"); the past participle agrees with the subject ("изображена звезда", "изображены круг и квадрат").
/// A colour or size answer agrees with the noun the question asks about ("Какого цвета звезда? — Жёлтая").
/// </summary>
internal sealed class RussianLanguage : WorldLanguage
{
    public override string Code => "ru";
    public override string ChoiceInstruction => "Ответьте буквой варианта из предложенных вариантов напрямую.";
    public override string ShortAnswerInstruction => "Ответьте одним словом или короткой фразой.";

    private enum Gender { Masculine, Feminine, Neuter }

    private static Gender GenderOf(ShapeKind s) => s switch
    {
        ShapeKind.Star => Gender.Feminine,
        ShapeKind.Heart => Gender.Neuter,
        _ => Gender.Masculine,
    };

    private static string Shape(ShapeKind s) => s switch
    {
        ShapeKind.Circle => "круг",
        ShapeKind.Square => "квадрат",
        ShapeKind.Triangle => "треугольник",
        ShapeKind.Star => "звезда",
        _ => "сердце",
    };

    private static string ShapesGenitivePlural(ShapeKind s) => s switch
    {
        ShapeKind.Circle => "кругов",
        ShapeKind.Square => "квадратов",
        ShapeKind.Triangle => "треугольников",
        ShapeKind.Star => "звёзд",
        _ => "сердец",
    };

    /// <summary>The adjective stem and whether it is soft (синий) rather than hard (красный).</summary>
    private static (string Stem, bool Soft) ColorStem(WorldColor c) => c switch
    {
        WorldColor.Red => ("красн", false),
        WorldColor.Green => ("зелён", false),
        WorldColor.Blue => ("син", true),
        WorldColor.Yellow => ("жёлт", false),
        WorldColor.Orange => ("оранжев", false),
        WorldColor.Purple => ("фиолетов", false),
        WorldColor.White => ("бел", false),
        WorldColor.Black => ("чёрн", false),
        _ => ("сер", false),
    };

    private static string ColorNominative(WorldColor c, Gender g)
    {
        var (stem, soft) = ColorStem(c);
        return stem + (g, soft) switch
        {
            (Gender.Masculine, false) => "ый",
            (Gender.Masculine, true) => "ий",
            (Gender.Feminine, false) => "ая",
            (Gender.Feminine, true) => "яя",
            (Gender.Neuter, false) => "ое",
            _ => "ее",
        };
    }

    private static string ColorGenitivePlural(WorldColor c)
    {
        var (stem, soft) = ColorStem(c);
        return stem + (soft ? "их" : "ых");
    }

    private static string ColorGenitiveMasculine(WorldColor c)
    {
        var (stem, soft) = ColorStem(c);
        return stem + (soft ? "его" : "ого");
    }

    private static string ColorPrepositionalMasculine(WorldColor c)
    {
        var (stem, soft) = ColorStem(c);
        return stem + (soft ? "ем" : "ом");
    }

    /// <summary>большой / маленький in the nominative, agreeing in gender.</summary>
    private static string Size(SizeClass s, Gender g) => (s, g) switch
    {
        (SizeClass.Large, Gender.Masculine) => "большой",
        (SizeClass.Large, Gender.Feminine) => "большая",
        (SizeClass.Large, Gender.Neuter) => "большое",
        (SizeClass.Small, Gender.Masculine) => "маленький",
        (SizeClass.Small, Gender.Feminine) => "маленькая",
        _ => "маленькое",
    };

    private static string Where(Slot s) => s switch
    {
        Slot.Left => "слева",
        Slot.Right => "справа",
        Slot.Top => "сверху",
        Slot.Bottom => "снизу",
        _ => "в центре",
    };

    private static string Thing(ShapeKind s, WorldColor c) => $"{ColorNominative(c, GenderOf(s))} {Shape(s)}";

    private static string ObjectPhrase(SceneObject o) =>
        $"{Size(o.Size, GenderOf(o.Shape))} {Thing(o.Shape, o.Color)} {Where(o.Slot)}";

    /// <summary>"одна фигура", "две фигуры", "три фигуры": numeral agreement with the feminine фигура.</summary>
    private static string Figures(int n) => n switch
    {
        1 => "одна фигура",
        2 => "две фигуры",
        3 => "три фигуры",
        4 => "четыре фигуры",
        _ => $"{n} фигур",
    };

    /// <summary>The short participle "изображён" agreeing with the subject: one object by its gender, several in the plural.</summary>
    private static string Depicted(Scene scene) => scene.Objects.Count > 1 ? "изображены" : GenderOf(scene.Objects[0].Shape) switch
    {
        Gender.Masculine => "изображён",
        Gender.Feminine => "изображена",
        _ => "изображено",
    };

    public override string Caption(Scene scene, int variant)
    {
        string list = JoinList(scene.Objects.Select(ObjectPhrase).ToList(), ", ", " и ");
        string onBackground = $"на {ColorPrepositionalMasculine(scene.Background)} фоне";
        return (variant % 3) switch
        {
            0 => $"{Capitalize(onBackground)} {Depicted(scene)} {list}.",
            1 => $"На изображении {Figures(scene.Objects.Count)} {onBackground}: {list}.",
            _ => $"{Capitalize(ColorNominative(scene.Background, Gender.Masculine))} фон, на нём {list}.",
        };
    }

    public override string Ask(Question q, int variant)
    {
        bool alt = variant % 2 == 1;
        return q.Form switch
        {
            QuestionForm.ColorOfShape => alt ? $"Какого цвета {Shape(q.Shape!.Value)} на изображении?" : $"Какого цвета {Shape(q.Shape!.Value)}?",
            QuestionForm.ColorAt => alt ? $"Какого цвета фигура, расположенная {Where(q.Slot!.Value)}?" : $"Какого цвета фигура {Where(q.Slot!.Value)}?",
            QuestionForm.ShapeAt => alt ? $"Какая фигура изображена {Where(q.Slot!.Value)}?" : $"Какая фигура находится {Where(q.Slot!.Value)}?",
            QuestionForm.ShapeOfColor => alt
                ? $"Какая фигура на изображении {ColorNominative(q.Color!.Value, Gender.Feminine)}?"
                : $"Какая фигура {ColorGenitiveMasculine(q.Color!.Value)} цвета?",
            QuestionForm.CountAll => alt ? "Сколько всего фигур на изображении?" : "Сколько фигур на изображении?",
            QuestionForm.CountShape => alt
                ? $"Сколько всего {ShapesGenitivePlural(q.Shape!.Value)} на изображении?"
                : $"Сколько {ShapesGenitivePlural(q.Shape!.Value)} на изображении?",
            QuestionForm.CountColor => alt
                ? $"Сколько всего {ColorGenitivePlural(q.Color!.Value)} фигур на изображении?"
                : $"Сколько {ColorGenitivePlural(q.Color!.Value)} фигур на изображении?",
            QuestionForm.PositionOf => alt
                ? $"Где на изображении {Thing(q.Shape!.Value, q.Color!.Value)}?"
                : $"Где находится {Thing(q.Shape!.Value, q.Color!.Value)}?",
            QuestionForm.Exists => alt
                ? $"Есть ли на картинке {Thing(q.Shape!.Value, q.Color!.Value)}?"
                : $"Есть ли на изображении {Thing(q.Shape!.Value, q.Color!.Value)}?",
            QuestionForm.SizeOf => SizeQuestion(Thing(q.Shape!.Value, q.Color!.Value), GenderOf(q.Shape!.Value), alt),
            QuestionForm.SizeAt => SizeQuestion($"фигура {Where(q.Slot!.Value)}", Gender.Feminine, alt),
            QuestionForm.Background => alt ? "Какого цвета фон изображения?" : "Какого цвета фон?",
            _ => throw Unexpected(q.Form),
        };
    }

    private string SizeQuestion(string subject, Gender g, bool alt)
    {
        string large = Size(SizeClass.Large, g), small = Size(SizeClass.Small, g);
        return alt ? $"Какого размера {subject}: {large} или {small}?" : $"{Capitalize(subject)} {large} или {small}?";
    }

    public override string Answer(Question q, AnswerValue a) => a.Kind switch
    {
        AnswerKind.Color => Capitalize(ColorNominative((WorldColor)a.Value, AgreementOf(q))),
        AnswerKind.Shape => Capitalize(Shape((ShapeKind)a.Value)),
        AnswerKind.Number => a.Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
        AnswerKind.Position => Capitalize(Where((Slot)a.Value)),
        AnswerKind.YesNo => a.Value != 0 ? "Да" : "Нет",
        AnswerKind.Size => Capitalize(Size((SizeClass)a.Value, AgreementOf(q))),
        _ => throw Unexpected(a),
    };

    /// <summary>The gender an adjectival answer takes: that of the noun the question asks about.</summary>
    private static Gender AgreementOf(Question q) => q.Form switch
    {
        QuestionForm.ColorOfShape or QuestionForm.SizeOf => GenderOf(q.Shape!.Value),
        QuestionForm.Background => Gender.Masculine, // фон
        _ => Gender.Feminine, // фигура
    };
}
