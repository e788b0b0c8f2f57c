namespace Parrot.Parrot.Data.World;

/// <summary>
/// Brazilian Portuguese. Nouns carry gender (estrela and figura are feminine, the other shapes masculine);
/// articles, contractions (do/da, no/na), colour and size adjectives and "quantos/quantas" agree with them.
/// Laranja and cinza are invariable as colour adjectives. A colour answer names the colour itself, which is
/// masculine ("Qual é a cor da estrela? — Amarelo").
/// </summary>
internal sealed class PortugueseLanguage : WorldLanguage
{
    public override string Code => "pt";
    public override string ChoiceInstruction => "Responda diretamente com a letra da opção das escolhas dadas.";
    public override string ShortAnswerInstruction => "Responda com uma única palavra ou frase curta.";

    private static bool Feminine(ShapeKind s) => s == ShapeKind.Star;

    private static string Shape(ShapeKind s) => s switch
    {
        ShapeKind.Circle => "círculo",
        ShapeKind.Square => "quadrado",
        ShapeKind.Triangle => "triângulo",
        ShapeKind.Star => "estrela",
        _ => "coração",
    };

    private static string Shapes(ShapeKind s) => s switch
    {
        ShapeKind.Circle => "círculos",
        ShapeKind.Square => "quadrados",
        ShapeKind.Triangle => "triângulos",
        ShapeKind.Star => "estrelas",
        _ => "corações",
    };

    /// <summary>The colour adjective agreeing in gender and number.</summary>
    private static string Color(WorldColor c, bool feminine, bool plural = false)
    {
        string stem(string m, string f) => (feminine ? f : m) + (plural ? "s" : "");
        return c switch
        {
            WorldColor.Red => stem("vermelho", "vermelha"),
            WorldColor.Green => plural ? "verdes" : "verde",
            WorldColor.Blue => plural ? "azuis" : "azul",
            WorldColor.Yellow => stem("amarelo", "amarela"),
            WorldColor.Orange => "laranja",
            WorldColor.Purple => stem("roxo", "roxa"),
            WorldColor.White => stem("branco", "branca"),
            WorldColor.Black => stem("preto", "preta"),
            _ => "cinza",
        };
    }

    private static string Size(SizeClass s, bool feminine) => s == SizeClass.Large ? "grande" : feminine ? "pequena" : "pequeno";

    /// <summary>Where something is, as an adverbial ("está à esquerda").</summary>
    private static string Where(Slot s) => s switch
    {
        Slot.Left => "à esquerda",
        Slot.Right => "à direita",
        Slot.Top => "em cima",
        Slot.Bottom => "embaixo",
        _ => "no centro",
    };

    /// <summary>Which one, after a noun ("a figura da esquerda", "a figura de cima").</summary>
    private static string Which(Slot s) => s switch
    {
        Slot.Left => "da esquerda",
        Slot.Right => "da direita",
        Slot.Top => "de cima",
        Slot.Bottom => "de baixo",
        _ => "do centro",
    };

    private static string Indefinite(ShapeKind s) => Feminine(s) ? "uma" : "um";
    private static string Definite(ShapeKind s) => Feminine(s) ? "a" : "o";
    private static string Of(ShapeKind s) => Feminine(s) ? "da" : "do";

    private static string ObjectPhrase(SceneObject o) =>
        $"{Indefinite(o.Shape)} {Shape(o.Shape)} {Color(o.Color, Feminine(o.Shape))} {Size(o.Size, Feminine(o.Shape))} {Where(o.Slot)}";

    /// <summary>"uma figura", "duas figuras": um/dois agree with the feminine figura.</summary>
    private static string Figures(int n) => n switch
    {
        1 => "uma figura",
        2 => "duas figuras",
        3 => "três figuras",
        4 => "quatro figuras",
        _ => $"{n} figuras",
    };

    public override string Caption(Scene scene, int variant)
    {
        string bg = Color(scene.Background, feminine: false), list = JoinList(scene.Objects.Select(ObjectPhrase).ToList(), ", ", " e ");
        return (variant % 3) switch
        {
            0 => $"Sobre um fundo {bg}, há {list}.",
            1 => $"{Capitalize(list)}, sobre um fundo {bg}.",
            _ => $"A imagem mostra {Figures(scene.Objects.Count)} sobre um fundo {bg}: {list}.",
        };
    }

    public override string Ask(Question q, int variant)
    {
        bool alt = variant % 2 == 1;
        switch (q.Form)
        {
            case QuestionForm.ColorOfShape:
            {
                var s = q.Shape!.Value;
                return alt ? $"Que cor tem {Definite(s)} {Shape(s)}?" : $"Qual é a cor {Of(s)} {Shape(s)}?";
            }
            case QuestionForm.ColorAt:
                return alt ? $"Que cor tem a figura {Which(q.Slot!.Value)}?" : $"Qual é a cor da figura {Which(q.Slot!.Value)}?";
            case QuestionForm.ShapeAt:
                return alt ? $"Que figura aparece {Where(q.Slot!.Value)}?" : $"Qual figura está {Where(q.Slot!.Value)}?";
            case QuestionForm.ShapeOfColor:
                return alt ? $"Que figura é {Color(q.Color!.Value, true)}?" : $"Qual é a figura {Color(q.Color!.Value, true)}?";
            case QuestionForm.CountAll:
                return alt ? "Quantas figuras aparecem na imagem?" : "Quantas figuras há na imagem?";
            case QuestionForm.CountShape:
            {
                var s = q.Shape!.Value;
                string how = Feminine(s) ? "Quantas" : "Quantos";
                return alt ? $"{how} {Shapes(s)} aparecem na imagem?" : $"{how} {Shapes(s)} há na imagem?";
            }
            case QuestionForm.CountColor:
            {
                string c = Color(q.Color!.Value, feminine: true, plural: true);
                return alt ? $"Quantas figuras {c} aparecem na imagem?" : $"Quantas figuras {c} há na imagem?";
            }
            case QuestionForm.PositionOf:
            {
                var s = q.Shape!.Value;
                string thing = $"{Shape(s)} {Color(q.Color!.Value, Feminine(s))}";
                return alt ? $"Em que parte da imagem está {Definite(s)} {thing}?" : $"Onde está {Definite(s)} {thing}?";
            }
            case QuestionForm.Exists:
            {
                var s = q.Shape!.Value;
                string thing = $"{Indefinite(s)} {Shape(s)} {Color(q.Color!.Value, Feminine(s))}";
                return alt ? $"A imagem tem {thing}?" : $"Há {thing} na imagem?";
            }
            case QuestionForm.SizeOf:
            {
                var s = q.Shape!.Value;
                return $"{Capitalize(Definite(s))} {Shape(s)} {Color(q.Color!.Value, Feminine(s))} é grande ou {Size(SizeClass.Small, Feminine(s))}?";
            }
            case QuestionForm.SizeAt:
                return $"A figura {Which(q.Slot!.Value)} é grande ou pequena?";
            case QuestionForm.Background:
                return alt ? "De que cor é o fundo?" : "Qual é a cor do fundo?";
            default:
                throw Unexpected(q.Form);
        }
    }

    public override string Answer(Question q, AnswerValue a) => a.Kind switch
    {
        AnswerKind.Color => Capitalize(Color((WorldColor)a.Value, feminine: false)),
        AnswerKind.Shape => Capitalize(Shape((ShapeKind)a.Value)),
        AnswerKind.Number => a.Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
        AnswerKind.Position => Capitalize(Where((Slot)a.Value)),
        AnswerKind.YesNo => a.Value != 0 ? "Sim" : "Não",
        // The size agrees with what it describes: the named shape, or "a figura" (feminine).
        AnswerKind.Size => Capitalize(Size((SizeClass)a.Value, q.Form == QuestionForm.SizeOf ? Feminine(q.Shape!.Value) : true)),
        _ => throw Unexpected(a),
    };
}
