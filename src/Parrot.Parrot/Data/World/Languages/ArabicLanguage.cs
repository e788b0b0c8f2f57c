namespace Parrot.Parrot.Data.World;

/// <summary>
/// Modern Standard Arabic, unvocalised. Adjectives follow the noun and agree with it in gender and
/// definiteness (دائرة حمراء، الدائرة الحمراء؛ مربع أحمر، المربع الأحمر); verbs agree in gender (توجد/يوجد،
/// تقع/يقع); after كم the counted noun is a singular accusative (كم مربعًا، كم دائرة), with adjectives in the
/// same case (شكلًا برتقاليًا; diptote colours such as أحمر take no alif); a non-human plural takes a
/// feminine singular adjective (الأشكال الحمراء). The numerals in captions follow the counted-noun rules
/// (شكلين، ثلاثة أشكال). A colour answer names the colour (اللون), so it is masculine.
/// Counts are written in Western digits.
/// </summary>
internal sealed class ArabicLanguage : WorldLanguage
{
    public override string Code => "ar";
    public override string ChoiceInstruction => "أجب مباشرةً بحرف الخيار من الاختيارات المعطاة.";
    public override string ShortAnswerInstruction => "أجب بكلمة واحدة أو عبارة قصيرة.";

    private static bool Feminine(ShapeKind s) => s is ShapeKind.Circle or ShapeKind.Star;

    private static string Shape(ShapeKind s) => s switch
    {
        ShapeKind.Circle => "دائرة",
        ShapeKind.Square => "مربع",
        ShapeKind.Triangle => "مثلث",
        ShapeKind.Star => "نجمة",
        _ => "قلب",
    };

    /// <summary>The counted noun after كم: singular, accusative indefinite.</summary>
    private static string ShapeCounted(ShapeKind s) => s switch
    {
        ShapeKind.Circle => "دائرة",
        ShapeKind.Square => "مربعًا",
        ShapeKind.Triangle => "مثلثًا",
        ShapeKind.Star => "نجمة",
        _ => "قلبًا",
    };

    private static string Definite(string word) => "ال" + word;

    /// <summary>The colour adjective, indefinite, agreeing in gender.</summary>
    private static string Color(WorldColor c, bool feminine) => c switch
    {
        WorldColor.Red => feminine ? "حمراء" : "أحمر",
        WorldColor.Green => feminine ? "خضراء" : "أخضر",
        WorldColor.Blue => feminine ? "زرقاء" : "أزرق",
        WorldColor.Yellow => feminine ? "صفراء" : "أصفر",
        WorldColor.Orange => feminine ? "برتقالية" : "برتقالي",
        WorldColor.Purple => feminine ? "بنفسجية" : "بنفسجي",
        WorldColor.White => feminine ? "بيضاء" : "أبيض",
        WorldColor.Black => feminine ? "سوداء" : "أسود",
        _ => feminine ? "رمادية" : "رمادي",
    };

    /// <summary>A masculine colour adjective in the accusative indefinite (after كم شكلًا): nisba adjectives take tanwin alif, diptotes do not.</summary>
    private static string ColorAccusative(WorldColor c) => c switch
    {
        WorldColor.Orange => "برتقاليًا",
        WorldColor.Purple => "بنفسجيًا",
        WorldColor.Gray => "رماديًا",
        _ => Color(c, feminine: false),
    };

    private static string Size(SizeClass s, bool feminine) => (s == SizeClass.Large ? "كبير" : "صغير") + (feminine ? "ة" : "");

    private static string Where(Slot s) => s switch
    {
        Slot.Left => "على اليسار",
        Slot.Right => "على اليمين",
        Slot.Top => "في الأعلى",
        Slot.Bottom => "في الأسفل",
        _ => "في الوسط",
    };

    private static string ObjectPhrase(SceneObject o) =>
        $"{Shape(o.Shape)} {Color(o.Color, Feminine(o.Shape))} {Size(o.Size, Feminine(o.Shape))} {Where(o.Slot)}";

    /// <summary>"the red circle": definite noun, definite agreeing adjective.</summary>
    private static string TheThing(ShapeKind s, WorldColor c) => $"{Definite(Shape(s))} {Definite(Color(c, Feminine(s)))}";

    /// <summary>Items joined with و, which attaches to the next word; commas before it for three or more.</summary>
    private static string ArabicList(IReadOnlyList<string> items)
    {
        if (items.Count == 1) return items[0];
        var joined = items[0];
        for (int i = 1; i < items.Count; i++) joined += (items.Count >= 3 ? "، و" : " و") + items[i];
        return joined;
    }

    /// <summary>The number of shapes as the object of تُظهر (accusative): one, dual, then 3–10 with the reversed-gender numeral and a genitive plural.</summary>
    private static string ShapesAccusative(int n) => n switch
    {
        1 => "شكلًا واحدًا",
        2 => "شكلين",
        3 => "ثلاثة أشكال",
        4 => "أربعة أشكال",
        _ => $"{n} أشكال",
    };

    public override string Caption(Scene scene, int variant)
    {
        string bg = Color(scene.Background, feminine: true), list = ArabicList(scene.Objects.Select(ObjectPhrase).ToList());
        return (variant % 3) switch
        {
            0 => $"على خلفية {bg}: {list}.",
            1 => $"خلفية {bg} عليها {list}.",
            _ => $"تُظهر الصورة {ShapesAccusative(scene.Objects.Count)} على خلفية {bg}: {list}.",
        };
    }

    public override string Ask(Question q, int variant)
    {
        bool alt = variant % 2 == 1;
        switch (q.Form)
        {
            case QuestionForm.ColorOfShape:
                return alt ? $"ما هو لون {Definite(Shape(q.Shape!.Value))}؟" : $"ما لون {Definite(Shape(q.Shape!.Value))}؟";
            case QuestionForm.ColorAt:
                return alt ? $"ما هو لون الشكل الموجود {Where(q.Slot!.Value)}؟" : $"ما لون الشكل الموجود {Where(q.Slot!.Value)}؟";
            case QuestionForm.ShapeAt:
                return alt ? $"أي شكل يوجد {Where(q.Slot!.Value)}؟" : $"ما الشكل الموجود {Where(q.Slot!.Value)}؟";
            case QuestionForm.ShapeOfColor:
                return alt ? $"أي شكل لونه {Color(q.Color!.Value, feminine: false)}؟" : $"ما هو الشكل {Definite(Color(q.Color!.Value, feminine: false))} في الصورة؟";
            case QuestionForm.CountAll:
                return alt ? "كم عدد الأشكال في الصورة؟" : "كم شكلًا في الصورة؟";
            case QuestionForm.CountShape:
                return alt ? $"كم عدد {ShapePluralDefinite(q.Shape!.Value)} في الصورة؟" : $"كم {ShapeCounted(q.Shape!.Value)} في الصورة؟";
            case QuestionForm.CountColor:
                return alt
                    ? $"كم عدد الأشكال {Definite(Color(q.Color!.Value, feminine: true))} في الصورة؟"
                    : $"كم شكلًا {ColorAccusative(q.Color!.Value)} في الصورة؟";
            case QuestionForm.PositionOf:
            {
                var s = q.Shape!.Value;
                return alt ? $"أين {TheThing(s, q.Color!.Value)}؟" : $"أين {(Feminine(s) ? "تقع" : "يقع")} {TheThing(s, q.Color!.Value)}؟";
            }
            case QuestionForm.Exists:
            {
                var s = q.Shape!.Value;
                string thing = $"{Shape(s)} {Color(q.Color!.Value, Feminine(s))}";
                return alt
                    ? $"هل تحتوي الصورة على {thing}؟"
                    : $"هل {(Feminine(s) ? "توجد" : "يوجد")} {thing} في الصورة؟";
            }
            case QuestionForm.SizeOf:
            {
                var s = q.Shape!.Value;
                bool f = Feminine(s);
                return $"هل {TheThing(s, q.Color!.Value)} {Size(SizeClass.Large, f)} أم {Size(SizeClass.Small, f)}؟";
            }
            case QuestionForm.SizeAt:
                return $"هل الشكل الموجود {Where(q.Slot!.Value)} كبير أم صغير؟";
            case QuestionForm.Background:
                return alt ? "ما هو لون الخلفية؟" : "ما لون الخلفية؟";
            default:
                throw Unexpected(q.Form);
        }
    }

    private static string ShapePluralDefinite(ShapeKind s) => s switch
    {
        ShapeKind.Circle => "الدوائر",
        ShapeKind.Square => "المربعات",
        ShapeKind.Triangle => "المثلثات",
        ShapeKind.Star => "النجوم",
        _ => "القلوب",
    };

    public override string Answer(Question q, AnswerValue a) => a.Kind switch
    {
        AnswerKind.Color => Color((WorldColor)a.Value, feminine: false),
        AnswerKind.Shape => Shape((ShapeKind)a.Value),
        AnswerKind.Number => a.Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
        AnswerKind.Position => Where((Slot)a.Value),
        AnswerKind.YesNo => a.Value != 0 ? "نعم" : "لا",
        // The size agrees with the named shape, or with الشكل (masculine).
        AnswerKind.Size => Size((SizeClass)a.Value, q.Form == QuestionForm.SizeOf && Feminine(q.Shape!.Value)),
        _ => throw Unexpected(a),
    };
}
