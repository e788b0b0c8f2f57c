namespace Parrot.Parrot.Data.World;

/// <summary>
/// Simplified Chinese. Colours are "X色", attributive with 的 ("红色的圆形"); size is a bare 大/小 bound to the
/// noun ("红色的大圆形", never "大红", which would mean crimson); every shape takes the measure word 个, and
/// two is 两 before it; full-width punctuation.
/// </summary>
internal sealed class ChineseLanguage : WorldLanguage
{
    public override string Code => "zh";
    public override string ChoiceInstruction => "请直接用给定选项中的选项字母回答。";
    public override string ShortAnswerInstruction => "请用一个词或短语回答。";

    private static string Color(WorldColor c) => c switch
    {
        WorldColor.Red => "红色",
        WorldColor.Green => "绿色",
        WorldColor.Blue => "蓝色",
        WorldColor.Yellow => "黄色",
        WorldColor.Orange => "橙色",
        WorldColor.Purple => "紫色",
        WorldColor.White => "白色",
        WorldColor.Black => "黑色",
        _ => "灰色",
    };

    private static string Shape(ShapeKind s) => s switch
    {
        ShapeKind.Circle => "圆形",
        ShapeKind.Square => "正方形",
        ShapeKind.Triangle => "三角形",
        ShapeKind.Star => "五角星",
        _ => "心形",
    };

    private static string Size(SizeClass s) => s == SizeClass.Large ? "大" : "小";

    private static string Where(Slot s) => s switch
    {
        Slot.Left => "左边",
        Slot.Right => "右边",
        Slot.Top => "上方",
        Slot.Bottom => "下方",
        _ => "中间",
    };

    /// <summary>Numbers before a measure word: 两 for two.</summary>
    private static string Count(int n) => n switch { 1 => "一", 2 => "两", 3 => "三", 4 => "四", _ => n.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    private static string Thing(SceneObject o) => $"一个{Color(o.Color)}的{Size(o.Size)}{Shape(o.Shape)}";

    public override string Caption(Scene scene, int variant)
    {
        string bg = Color(scene.Background);
        var objects = scene.Objects;
        return (variant % 2) switch
        {
            0 => $"{bg}背景上，{string.Join("，", objects.Select(o => $"{Where(o.Slot)}有{Thing(o)}"))}。",
            _ => $"图中有{Count(objects.Count)}个图形：{string.Join("，", objects.Select(o => $"{Where(o.Slot)}是{Thing(o)}"))}。背景是{bg}的。",
        };
    }

    public override string Ask(Question q, int variant)
    {
        bool alt = variant % 2 == 1;
        return q.Form switch
        {
            QuestionForm.ColorOfShape => alt ? $"图中的{Shape(q.Shape!.Value)}是什么颜色？" : $"{Shape(q.Shape!.Value)}是什么颜色的？",
            QuestionForm.ColorAt => alt ? $"位于{Where(q.Slot!.Value)}的图形是什么颜色？" : $"{Where(q.Slot!.Value)}的图形是什么颜色的？",
            QuestionForm.ShapeAt => alt ? $"位于{Where(q.Slot!.Value)}的是什么图形？" : $"{Where(q.Slot!.Value)}是什么图形？",
            QuestionForm.ShapeOfColor => alt ? $"哪个图形是{Color(q.Color!.Value)}的？" : $"{Color(q.Color!.Value)}的图形是什么形状？",
            QuestionForm.CountAll => alt ? "图中一共有多少个图形？" : "图中有几个图形？",
            QuestionForm.CountShape => alt ? $"图中一共有多少个{Shape(q.Shape!.Value)}？" : $"图中有几个{Shape(q.Shape!.Value)}？",
            QuestionForm.CountColor => alt ? $"图中一共有多少个{Color(q.Color!.Value)}的图形？" : $"图中有几个{Color(q.Color!.Value)}的图形？",
            QuestionForm.PositionOf => alt
                ? $"{Color(q.Color!.Value)}的{Shape(q.Shape!.Value)}位于图中什么位置？"
                : $"{Color(q.Color!.Value)}的{Shape(q.Shape!.Value)}在哪里？",
            QuestionForm.Exists => alt
                ? $"图中是否有{Color(q.Color!.Value)}的{Shape(q.Shape!.Value)}？"
                : $"图中有{Color(q.Color!.Value)}的{Shape(q.Shape!.Value)}吗？",
            QuestionForm.SizeOf => alt
                ? $"{Color(q.Color!.Value)}的{Shape(q.Shape!.Value)}是大的还是小的？"
                : $"{Color(q.Color!.Value)}的{Shape(q.Shape!.Value)}是大还是小？",
            QuestionForm.SizeAt => alt ? $"{Where(q.Slot!.Value)}的图形是大的还是小的？" : $"{Where(q.Slot!.Value)}的图形是大还是小？",
            QuestionForm.Background => alt ? "图片的背景是什么颜色的？" : "背景是什么颜色？",
            _ => throw Unexpected(q.Form),
        };
    }

    public override string Answer(Question q, AnswerValue a) => a.Kind switch
    {
        AnswerKind.Color => Color((WorldColor)a.Value),
        AnswerKind.Shape => Shape((ShapeKind)a.Value),
        AnswerKind.Number => a.Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
        AnswerKind.Position => Where((Slot)a.Value),
        // A 有…吗 question is answered with 有 / 没有, not 是 / 否.
        AnswerKind.YesNo => a.Value != 0 ? "有" : "没有",
        AnswerKind.Size => Size((SizeClass)a.Value),
        _ => throw Unexpected(a),
    };
}
