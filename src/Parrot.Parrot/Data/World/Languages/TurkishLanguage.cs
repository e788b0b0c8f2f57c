namespace Parrot.Parrot.Data.World;

/// <summary>
/// Turkish. The templates keep every variable word in a form that needs no suffix: nouns after numerals and
/// kaç stay singular ("kaç daire"), positions are fixed locatives (solda, üstte) and their -ki adjectives
/// (soldaki, üstteki), the question particle follows a fixed word with its harmony (var mı, büyük mü, küçük mü).
/// Capitals follow Turkish rules (i → İ, ı → I), which the invariant culture does not know.
/// </summary>
internal sealed class TurkishLanguage : WorldLanguage
{
    public override string Code => "tr";
    public override string ChoiceInstruction => "Verilen seçeneklerden doğrudan seçeneğin harfi ile cevap verin.";
    public override string ShortAnswerInstruction => "Tek bir kelime veya kısa bir ifadeyle cevap verin.";

    private static string Color(WorldColor c) => c switch
    {
        WorldColor.Red => "kırmızı",
        WorldColor.Green => "yeşil",
        WorldColor.Blue => "mavi",
        WorldColor.Yellow => "sarı",
        WorldColor.Orange => "turuncu",
        WorldColor.Purple => "mor",
        WorldColor.White => "beyaz",
        WorldColor.Black => "siyah",
        _ => "gri",
    };

    private static string Shape(ShapeKind s) => s switch
    {
        ShapeKind.Circle => "daire",
        ShapeKind.Square => "kare",
        ShapeKind.Triangle => "üçgen",
        ShapeKind.Star => "yıldız",
        _ => "kalp",
    };

    private static string Size(SizeClass s) => s == SizeClass.Large ? "büyük" : "küçük";

    /// <summary>Where something is (locative): "solda".</summary>
    private static string Where(Slot s) => s switch
    {
        Slot.Left => "solda",
        Slot.Right => "sağda",
        Slot.Top => "üstte",
        Slot.Bottom => "altta",
        _ => "ortada",
    };

    /// <summary>Which one (locative + -ki): "soldaki şekil".</summary>
    private static string Which(Slot s) => Where(s) + "ki";

    private static string Number(int n) => n switch { 1 => "bir", 2 => "iki", 3 => "üç", 4 => "dört", _ => n.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    private static string ObjectPhrase(SceneObject o) => $"{Where(o.Slot)} {Size(o.Size)} {Color(o.Color)} bir {Shape(o.Shape)}";

    private protected override string Capitalize(string s) =>
        s.Length == 0 ? s : s[0] switch { 'i' => "İ", 'ı' => "I", _ => char.ToUpperInvariant(s[0]).ToString() } + s[1..];

    public override string Caption(Scene scene, int variant)
    {
        string bg = Color(scene.Background), list = JoinList(scene.Objects.Select(ObjectPhrase).ToList(), ", ", " ve ");
        return (variant % 3) switch
        {
            0 => $"{Capitalize(bg)} bir arka plan üzerinde {list} var.",
            1 => $"Resimde {bg} zemin üzerinde {Number(scene.Objects.Count)} şekil var: {list}.",
            _ => $"Arka plan {bg}; {list} görülüyor.",
        };
    }

    public override string Ask(Question q, int variant)
    {
        bool alt = variant % 2 == 1;
        return q.Form switch
        {
            QuestionForm.ColorOfShape => alt ? $"{Capitalize(Shape(q.Shape!.Value))} hangi renkte?" : $"Resimdeki {Shape(q.Shape!.Value)} ne renk?",
            QuestionForm.ColorAt => alt ? $"{Capitalize(Which(q.Slot!.Value))} şekil hangi renkte?" : $"{Capitalize(Which(q.Slot!.Value))} şekil ne renk?",
            QuestionForm.ShapeAt => alt ? $"{Capitalize(Which(q.Slot!.Value))} şekil nedir?" : $"{Capitalize(Where(q.Slot!.Value))} hangi şekil var?",
            QuestionForm.ShapeOfColor => alt ? $"{Capitalize(Color(q.Color!.Value))} renkli şekil nedir?" : $"Hangi şekil {Color(q.Color!.Value)}?",
            QuestionForm.CountAll => alt ? "Resimde toplam kaç şekil görülüyor?" : "Resimde kaç şekil var?",
            QuestionForm.CountShape => alt ? $"Resimde toplam kaç {Shape(q.Shape!.Value)} görülüyor?" : $"Resimde kaç {Shape(q.Shape!.Value)} var?",
            QuestionForm.CountColor => alt ? $"Resimde toplam kaç {Color(q.Color!.Value)} şekil görülüyor?" : $"Resimde kaç {Color(q.Color!.Value)} şekil var?",
            QuestionForm.PositionOf => alt
                ? $"{Capitalize(Color(q.Color!.Value))} {Shape(q.Shape!.Value)} resmin neresinde?"
                : $"{Capitalize(Color(q.Color!.Value))} {Shape(q.Shape!.Value)} nerede?",
            QuestionForm.Exists => alt
                ? $"Resimde {Color(q.Color!.Value)} renkli bir {Shape(q.Shape!.Value)} bulunuyor mu?"
                : $"Resimde {Color(q.Color!.Value)} bir {Shape(q.Shape!.Value)} var mı?",
            QuestionForm.SizeOf => alt
                ? $"{Capitalize(Color(q.Color!.Value))} {Shape(q.Shape!.Value)} büyük mü yoksa küçük mü?"
                : $"{Capitalize(Color(q.Color!.Value))} {Shape(q.Shape!.Value)} büyük mü, küçük mü?",
            QuestionForm.SizeAt => $"{Capitalize(Which(q.Slot!.Value))} şekil büyük mü, küçük mü?",
            QuestionForm.Background => alt ? "Arka planın rengi nedir?" : "Arka plan ne renk?",
            _ => throw Unexpected(q.Form),
        };
    }

    public override string Answer(Question q, AnswerValue a) => a.Kind switch
    {
        AnswerKind.Color => Capitalize(Color((WorldColor)a.Value)),
        AnswerKind.Shape => Capitalize(Shape((ShapeKind)a.Value)),
        AnswerKind.Number => a.Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
        AnswerKind.Position => Capitalize(Where((Slot)a.Value)),
        AnswerKind.YesNo => a.Value != 0 ? "Evet" : "Hayır",
        AnswerKind.Size => Capitalize(Size((SizeClass)a.Value)),
        _ => throw Unexpected(a),
    };
}
