using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Parrot.Parrot.Data.World;
using Parrot.Parrot.Vision;

namespace Parrot.Parrot.Tests;

/// <summary>
/// The synthetic multilingual world: determinism to the byte, pixels that agree with the scene descriptions,
/// answers that are true of their scenes, the language imbalance, scripts and spelling per language, grammar
/// pinned on hand-built scenes, the benchmark TSVs, LLaVA JSON round trips, and generation speed.
/// </summary>
public class WorldTests
{
    private static readonly WorldOptions Small = new()
    {
        Seed = 7, ImageSize = 48, Stage1Count = 40, Stage2Count = 300, BenchmarkCount = 35, TextScenes = 30,
    };

    private static string TempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "parrot-world-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }

    private static Dictionary<string, byte[]> ReadTree(string root) =>
        Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .ToDictionary(f => Path.GetRelativePath(root, f).Replace('\\', '/'), File.ReadAllBytes);

    // ---------------------------------------------------------------- determinism

    [Test]
    public void SameSeedGivesByteIdenticalFiles_OtherSeedDiffers()
    {
        string a = TempDir(), b = TempDir(), c = TempDir();
        try
        {
            WorldGenerator.Generate(a, Small);
            WorldGenerator.Generate(b, Small);
            WorldGenerator.Generate(c, Small with { Seed = 8 });
            var ta = ReadTree(a);
            var tb = ReadTree(b);
            Assert.That(tb.Keys.Order(), Is.EqualTo(ta.Keys.Order()));
            Assert.That(ta, Has.Count.EqualTo(40 + 300 + 6 + 5)); // images, 6 TSVs, stage1/2, labels, text, manifest
            foreach (var (path, bytes) in ta) Assert.That(tb[path], Is.EqualTo(bytes), path);

            var tc = ReadTree(c);
            Assert.That(tc["stage2.json"], Is.Not.EqualTo(ta["stage2.json"]));
            Assert.That(tc["images/stage1/000000.png"], Is.Not.EqualTo(ta["images/stage1/000000.png"]));
        }
        finally
        {
            foreach (var d in new[] { a, b, c }) Directory.Delete(d, true);
        }
    }

    [Test]
    public void PartsDoNotShiftWhenOtherCountsChange()
    {
        var w1 = WorldBuilder.Build(Small);
        var w2 = WorldBuilder.Build(Small with { Stage1Count = 5, BenchmarkCount = 70, TextScenes = 3 });
        Assert.That(w2.Stage1, Is.EqualTo(w1.Stage1.Take(5)).Using<LlavaSample>(SameSample));
        Assert.That(w2.Stage2, Is.EqualTo(w1.Stage2).Using<LlavaSample>(SameSample));
        for (int i = 0; i < 35; i++) Assert.That(w2.Benchmark[i].QuestionText(WorldLanguage.Get("ru")), Is.EqualTo(w1.Benchmark[i].QuestionText(WorldLanguage.Get("ru"))));
    }

    private static bool SameSample(LlavaSample x, LlavaSample y) =>
        x.Id == y.Id && x.Image == y.Image && x.Language == y.Language && x.Conversations.SequenceEqual(y.Conversations);

    // ---------------------------------------------------------------- pixels

    [TestCase(64)]
    [TestCase(56)]
    [TestCase(32)]
    public void RenderedPixelsAgreeWithTheScene(int size)
    {
        int scenes = size == 64 ? 1000 : 300;
        for (int i = 0; i < scenes; i++)
        {
            var scene = SceneSampler.Sample(WorldRandom.For(99, WorldStream.Stage1Scene, i));
            var png = SceneRenderer.RenderPng(scene, size);
            var image = ImageLoader.Load(png); // decode the file, as a trainer will
            Assert.That((image.Width, image.Height), Is.EqualTo((size, size)));
            var owner = new int[size * size];
            Array.Fill(owner, -1);
            for (int k = 0; k < scene.Objects.Count; k++)
            {
                var o = scene.Objects[k];
                var mask = SceneRenderer.Mask(o, size);
                int area = 0;
                for (int p = 0; p < mask.Length; p++)
                {
                    if (!mask[p]) continue;
                    area++;
                    if (owner[p] != -1) Assert.Fail($"scene {i}: objects {owner[p]} and {k} overlap at pixel {p}");
                    owner[p] = k;
                    // Nothing may touch the border: the object lies wholly inside the image.
                    int x = p % size, y = p / size;
                    if (x == 0 || y == 0 || x == size - 1 || y == size - 1) Assert.Fail($"scene {i}: object {k} touches the border");
                }
                Assert.That(area, Is.GreaterThan(size >= 56 ? 20 : 5), $"scene {i}: object {k} ({o.Shape}, {o.Size}) is too small");
                var (cx, cy) = SceneRenderer.CenterPixel(o, size);
                Assert.That(image[cx, cy], Is.EqualTo(WorldPalette.Rgb(o.Color)), $"scene {i}: centre of object {k} ({o.Color} {o.Shape})");
            }
            for (int p = 0; p < owner.Length; p++)
            {
                var expected = owner[p] < 0 ? WorldPalette.Rgb(scene.Background) : WorldPalette.Rgb(scene.Objects[owner[p]].Color);
                if (image[p % size, p / size] != expected) Assert.Fail($"scene {i}: pixel {p} is {image[p % size, p / size]}, expected {expected}");
            }
            // Objects never touch, so the non-background pixels fall apart into exactly one blob per object.
            Assert.That(CountBlobs(image, WorldPalette.Rgb(scene.Background)), Is.EqualTo(scene.Objects.Count), $"scene {i}");
        }
    }

    private static int CountBlobs(RgbImage image, (byte, byte, byte) background)
    {
        int w = image.Width, h = image.Height, blobs = 0;
        var seen = new bool[w * h];
        var stack = new Stack<int>();
        for (int start = 0; start < w * h; start++)
        {
            if (seen[start] || image[start % w, start / w] == background) continue;
            blobs++;
            stack.Push(start);
            seen[start] = true;
            while (stack.Count > 0)
            {
                int p = stack.Pop(), x = p % w, y = p / w;
                // 8-connectivity: two objects that only touch diagonally would still count as one.
                for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++)
                {
                    int nx = x + dx, ny = y + dy;
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    int q = ny * w + nx;
                    if (seen[q] || image[nx, ny] == background) continue;
                    seen[q] = true;
                    stack.Push(q);
                }
            }
        }
        return blobs;
    }

    [Test]
    public void LargeObjectsAreClearlyLargerThanSmallOnes_AndShapesDiffer()
    {
        const int size = 64;
        foreach (var shape in WorldPalette.Shapes)
        {
            int Area(SizeClass s) => SceneRenderer.Mask(new SceneObject(shape, WorldColor.Red, s, Slot.Center, 0.5, 0.5), size).Count(b => b);
            Assert.That(Area(SizeClass.Large), Is.GreaterThan(2 * Area(SizeClass.Small)), shape.ToString());
        }
        var masks = WorldPalette.Shapes.Select(s => SceneRenderer.Mask(new SceneObject(s, WorldColor.Red, SizeClass.Large, Slot.Center, 0.5, 0.5), size)).ToArray();
        for (int i = 0; i < masks.Length; i++)
        for (int j = i + 1; j < masks.Length; j++)
        {
            int differing = masks[i].Zip(masks[j]).Count(p => p.First != p.Second);
            Assert.That(differing, Is.GreaterThan(25), $"{WorldPalette.Shapes[i]} vs {WorldPalette.Shapes[j]}");
        }
    }

    [Test]
    public void ScenesUseDistinctSlotsAndColoursOtherThanTheBackground()
    {
        var counts = new int[5];
        for (int i = 0; i < 2000; i++)
        {
            var scene = SceneSampler.Sample(WorldRandom.For(3, WorldStream.Stage2Scene, i));
            Assert.That(scene.Objects, Has.Count.InRange(1, 4));
            counts[scene.Objects.Count]++;
            Assert.That(scene.Objects.Select(o => o.Slot).Distinct().Count(), Is.EqualTo(scene.Objects.Count));
            Assert.That(scene.Objects.All(o => o.Color != scene.Background && WorldPalette.ObjectColors.Contains(o.Color)));
            Assert.That(WorldPalette.BackgroundColors, Does.Contain(scene.Background));
        }
        for (int n = 1; n <= 4; n++) Assert.That(counts[n], Is.InRange(400, 600), $"scenes with {n} objects");
    }

    // ---------------------------------------------------------------- answers

    /// <summary>The answer to a question, worked out here from the scene independently of the generator.</summary>
    private static AnswerValue Truth(Scene s, Question q)
    {
        SceneObject Only(Func<SceneObject, bool> match)
        {
            var found = s.Objects.Where(match).ToList();
            Assert.That(found, Has.Count.EqualTo(1), $"{q.Form} must refer to exactly one object");
            return found[0];
        }
        return q.Form switch
        {
            QuestionForm.ColorOfShape => AnswerValue.Of(Only(o => o.Shape == q.Shape).Color),
            QuestionForm.ColorAt => AnswerValue.Of(Only(o => o.Slot == q.Slot).Color),
            QuestionForm.ShapeAt => AnswerValue.Of(Only(o => o.Slot == q.Slot).Shape),
            QuestionForm.ShapeOfColor => AnswerValue.Of(Only(o => o.Color == q.Color).Shape),
            QuestionForm.CountAll => AnswerValue.Number(s.Objects.Count),
            QuestionForm.CountShape => AnswerValue.Number(s.Objects.Count(o => o.Shape == q.Shape)),
            QuestionForm.CountColor => AnswerValue.Number(s.Objects.Count(o => o.Color == q.Color)),
            QuestionForm.PositionOf => AnswerValue.Of(Only(o => o.Shape == q.Shape && o.Color == q.Color).Slot),
            QuestionForm.Exists => AnswerValue.YesNo(s.Objects.Any(o => o.Shape == q.Shape && o.Color == q.Color)),
            QuestionForm.SizeOf => AnswerValue.Of(Only(o => o.Shape == q.Shape && o.Color == q.Color).Size),
            QuestionForm.SizeAt => AnswerValue.Of(Only(o => o.Slot == q.Slot).Size),
            QuestionForm.Background => AnswerValue.Of(s.Background),
            _ => throw new InvalidOperationException(q.Form.ToString()),
        };
    }

    [Test]
    public void EveryQuestionIsAnsweredTruly_AndOptionsAreWellFormed()
    {
        var forms = new HashSet<QuestionForm>();
        int yes = 0, no = 0;
        for (int i = 0; i < 3000; i++)
        {
            var rng = WorldRandom.For(5, WorldStream.Stage2Dialogue, i);
            var scene = SceneSampler.Sample(rng);
            var q = QuestionCatalog.Draw(scene, rng);
            forms.Add(q.Form);
            Assert.That(q.Answer, Is.EqualTo(Truth(scene, q)), $"{q}");
            if (q.Form == QuestionForm.Exists) { if (q.Answer.Value == 1) yes++; else no++; }
            var choice = QuestionCatalog.WithOptions(q, rng);
            Assert.That(choice.Options, Has.Count.InRange(2, 4));
            Assert.That(choice.Options.Distinct().Count(), Is.EqualTo(choice.Options.Count), "options repeat");
            Assert.That(choice.Options[choice.CorrectIndex], Is.EqualTo(q.Answer));
            Assert.That(choice.Options.All(o => o.Kind == q.Answer.Kind));
        }
        Assert.That(forms, Is.EquivalentTo(Enum.GetValues<QuestionForm>()), "every form occurs");
        Assert.That(yes, Is.EqualTo(no).Within((yes + no) / 5), "existence answers are balanced");
    }

    [Test]
    public void BenchmarkItemsAreTrue_BalancedOverCategories_AndLetters()
    {
        var world = WorldBuilder.Build(Small with { BenchmarkCount = 700, Stage1Count = 0, Stage2Count = 0, TextScenes = 0 });
        var letters = new int[4];
        foreach (var item in world.Benchmark)
        {
            Assert.That(item.Choice.Question.Answer, Is.EqualTo(Truth(item.Scene, item.Choice.Question)));
            if (item.Choice.Options.Count == 4) letters[item.Choice.CorrectIndex]++;
        }
        foreach (var c in QuestionCatalog.Categories)
            Assert.That(world.Benchmark.Count(b => b.Choice.Question.Category == c), Is.EqualTo(100), c.ToString());
        // Four-option items: the correct letter is spread evenly (counts keep their ascending order, so allow slack).
        foreach (var n in letters) Assert.That(n, Is.InRange(letters.Sum() / 4 * 0.6, letters.Sum() / 4 * 1.4), string.Join(",", letters));
    }

    // ---------------------------------------------------------------- imbalance

    [TestCase(4000)]
    [TestCase(100_000)]
    [TestCase(7)]
    public void Stage2FollowsThePapersImbalance(int total)
    {
        var options = new WorldOptions { Stage2Count = total };
        var counts = options.Stage2CountsPerLanguage();
        Assert.That(counts.Sum(), Is.EqualTo(total));
        double[] paper = [665, 71, 14, 12, 17, 14];
        for (int l = 0; l < 6; l++) Assert.That(counts[l], Is.EqualTo(total * paper[l] / paper.Sum()).Within(1.0), WorldLanguage.All[l].Code);
    }

    [Test]
    public void Stage2SamplesCarryTheirLanguageInThatProportion()
    {
        var world = WorldBuilder.Build(Small with { Stage2Count = 4000, Stage1Count = 0, BenchmarkCount = 0, TextScenes = 0 });
        var byLanguage = world.Stage2.GroupBy(s => s.Language!).ToDictionary(g => g.Key, g => g.Count());
        Assert.That(byLanguage, Is.EquivalentTo(new Dictionary<string, int> { ["en"] = 3354, ["zh"] = 358, ["pt"] = 71, ["ar"] = 60, ["tr"] = 86, ["ru"] = 71 }));
        // Languages are interleaved, not in blocks: each half holds roughly half of every language.
        var firstHalf = world.Stage2.Take(2000).GroupBy(s => s.Language!).ToDictionary(g => g.Key, g => g.Count());
        foreach (var (code, n) in byLanguage) Assert.That(firstHalf[code], Is.InRange(n * 0.3, n * 0.7), code);
    }

    // ---------------------------------------------------------------- scripts and spelling

    private static readonly Regex OptionLine = new(@"(?m)^[A-D]\. ", RegexOptions.Compiled);

    /// <summary>Every text a language produces in a world: conversations, text documents, benchmark questions and options.</summary>
    private static Dictionary<string, List<string>> TextsByLanguage(WorldData world)
    {
        var texts = WorldLanguage.All.ToDictionary(l => l.Code, _ => new List<string>());
        foreach (var s in world.Stage2.Concat(world.Stage1))
        foreach (var t in s.Conversations)
            texts[s.Language!].Add(t.From == "gpt" && Regex.IsMatch(t.Value, "^[A-D]$") ? "" : t.Value.Replace("<image>\n", ""));
        foreach (var d in world.Text) texts[d.Language].Add(Regex.Replace(d.Text, "(?m)^[A-D]$", ""));
        foreach (var b in world.Benchmark)
        foreach (var l in WorldLanguage.All)
        {
            texts[l.Code].Add(b.QuestionText(l));
            for (int i = 0; i < b.Choice.Options.Count; i++) texts[l.Code].Add(b.OptionText(l, i));
        }
        return texts.ToDictionary(kv => kv.Key, kv => kv.Value.Select(t => OptionLine.Replace(t, "")).ToList());
    }

    private static WorldData LanguageWorld() =>
        WorldBuilder.Build(new WorldOptions { Seed = 11, Stage1Count = 50, Stage2Count = 3000, BenchmarkCount = 140, TextScenes = 400, LanguageWeights = [1, 1, 1, 1, 1, 1] });

    [Test]
    public void EachLanguageUsesOnlyItsScript()
    {
        var texts = TextsByLanguage(LanguageWorld());
        var latin = new Regex("[A-Za-z]");
        foreach (var code in new[] { "zh", "ar", "ru" })
        foreach (var t in texts[code])
            Assert.That(latin.IsMatch(t), Is.False, $"{code}: Latin letters left in \"{t}\"");

        bool All(string code, Func<char, bool> allowed, out string bad)
        {
            bad = texts[code].FirstOrDefault(t => !t.All(allowed)) ?? "";
            return bad.Length == 0;
        }
        static bool Common(char c) => char.IsWhiteSpace(c) || char.IsAsciiDigit(c) || c == '.';
        Assert.That(All("en", c => c < 128, out var bad), bad);
        Assert.That(All("zh", c => Common(c) || c is >= '\u4E00' and <= '\u9FFF' || "，。：？".Contains(c), out bad), bad);
        Assert.That(All("ar", c => Common(c) || c is >= '\u0600' and <= '\u06FF' || c == ':', out bad), bad);
        Assert.That(All("ru", c => Common(c) || c is >= '\u0400' and <= '\u04FF' || ",:?—".Contains(c), out bad), bad);
        Assert.That(All("pt", c => Common(c) || char.IsLetter(c) && (c < 128 || "áâãàçéêíóôõú".Contains(char.ToLowerInvariant(c))) || ",:?".Contains(c), out bad), bad);
        Assert.That(All("tr", c => Common(c) || char.IsLetter(c) && (c < 128 && c is not ('q' or 'w' or 'x' or 'Q' or 'W' or 'X') || "çğıöşüİÇĞÖŞÜ".Contains(c)) || ",:?;".Contains(c), out bad), bad);

        // Chinese and Arabic use their own punctuation, not ASCII question marks and commas.
        Assert.That(texts["zh"].Any(t => t.Contains('?') || t.Contains(',')), Is.False);
        Assert.That(texts["ar"].Any(t => t.Contains('?') || t.Contains(',')), Is.False);
        Assert.That(texts["ar"].Any(t => t.Contains('؟')) && texts["ar"].Any(t => t.Contains('،')));
    }

    [Test]
    public void PortugueseAndTurkishKeepTheirDiacritics()
    {
        var texts = TextsByLanguage(LanguageWorld());
        string pt = string.Join("\n", texts["pt"]), tr = string.Join("\n", texts["tr"]);
        foreach (var word in new[] { "círculo", "triângulo", "coração", "corações", "três", "Não", "à esquerda", "À direita", "opção", "única", "Há" })
            Assert.That(pt, Does.Contain(word), $"pt: {word}");
        foreach (var word in new[] { "circulo", "triangulo", "coracao", "tres ", "Nao", "opcao", "unica", " a esquerda", "Ha " })
            Assert.That(pt, Does.Not.Contain(word), $"pt misspelt: {word}");
        foreach (var word in new[] { "kırmızı", "yeşil", "sarı", "üçgen", "yıldız", "küçük", "büyük", "sağda", "üstte", "Hayır", "seçeneğin", "dört", "mı?", "mü?" })
            Assert.That(tr, Does.Contain(word), $"tr: {word}");
        foreach (var word in new[] { "kirmizi", "yesil", "ucgen", "yildiz", "kucuk", "buyuk", "sagda", "ustte", "Hayir", "dort", " mi?" })
            Assert.That(tr, Does.Not.Contain(word), $"tr misspelt: {word}");
        string ru = string.Join("\n", texts["ru"]);
        Assert.That(ru, Does.Contain("жёлт").And.Contain("чёрн").And.Contain("звёзд"), "ru keeps ё");
    }

    [Test]
    public void TheMultipleChoiceInstructionIsPARROTs_Verbatim()
    {
        var expected = new Dictionary<string, string>
        {
            ["en"] = "Answer with the option's letter from the given choices directly.",
            ["zh"] = "请直接用给定选项中的选项字母回答。",
            ["pt"] = "Responda diretamente com a letra da opção das escolhas dadas.",
            ["ar"] = "أجب مباشرةً بحرف الخيار من الاختيارات المعطاة.",
            ["ru"] = "Ответьте буквой варианта из предложенных вариантов напрямую.",
            ["tr"] = "Verilen seçeneklerden doğrudan seçeneğin harfi ile cevap verin.",
        };
        foreach (var l in WorldLanguage.All) Assert.That(l.ChoiceInstruction, Is.EqualTo(expected[l.Code]));
        var q = new Question(QuestionForm.CountAll, null, null, null, AnswerValue.Number(2));
        var choice = new ChoiceQuestion(q, [AnswerValue.Number(1), AnswerValue.Number(2), AnswerValue.Number(3), AnswerValue.Number(4)], 1);
        Assert.That(WorldLanguage.Get("en").ChoicePrompt(choice, 0),
            Is.EqualTo("How many shapes are there in the image?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer with the option's letter from the given choices directly."));
        Assert.That(WorldLanguage.Get("cn"), Is.SameAs(WorldLanguage.Get("zh")));
        Assert.Throws<ArgumentException>(() => WorldLanguage.Get("fr"));
    }

    // ---------------------------------------------------------------- grammar, pinned

    private static SceneObject Obj(ShapeKind s, WorldColor c, SizeClass z, Slot slot)
    {
        var (x, y) = SceneGeometry.SlotPoint(slot);
        return new SceneObject(s, c, z, slot, x, y);
    }

    private static readonly Scene HeartAlone = new(WorldColor.Black, [Obj(ShapeKind.Heart, WorldColor.Yellow, SizeClass.Small, Slot.Center)]);

    private static readonly Scene StarAndCircle = new(WorldColor.White,
        [Obj(ShapeKind.Circle, WorldColor.Red, SizeClass.Large, Slot.Left), Obj(ShapeKind.Star, WorldColor.Blue, SizeClass.Small, Slot.Top)]);

    private static readonly Scene ThreeObjects = new(WorldColor.Gray,
    [
        Obj(ShapeKind.Star, WorldColor.Orange, SizeClass.Large, Slot.Right), Obj(ShapeKind.Square, WorldColor.Purple, SizeClass.Small, Slot.Bottom),
        Obj(ShapeKind.Triangle, WorldColor.White, SizeClass.Large, Slot.Center),
    ]);

    [TestCase("en", 0, "A large red circle on the left and a small blue star at the top, on a white background.", "A small yellow heart in the center on a black background.")]
    [TestCase("en", 1, "A white background with a large red circle on the left and a small blue star at the top.", "A black background with a small yellow heart in the center.")]
    [TestCase("en", 2, "Two shapes on a white background: a large red circle on the left and a small blue star at the top.", "A single shape on a black background: a small yellow heart in the center.")]
    [TestCase("zh", 0, "白色背景上，左边有一个红色的大圆形，上方有一个蓝色的小五角星。", "黑色背景上，中间有一个黄色的小心形。")]
    [TestCase("zh", 1, "图中有两个图形：左边是一个红色的大圆形，上方是一个蓝色的小五角星。背景是白色的。", "图中有一个图形：中间是一个黄色的小心形。背景是黑色的。")]
    [TestCase("pt", 0, "Sobre um fundo branco, há um círculo vermelho grande à esquerda e uma estrela azul pequena em cima.", "Sobre um fundo preto, há um coração amarelo pequeno no centro.")]
    [TestCase("pt", 2, "A imagem mostra duas figuras sobre um fundo branco: um círculo vermelho grande à esquerda e uma estrela azul pequena em cima.", "A imagem mostra uma figura sobre um fundo preto: um coração amarelo pequeno no centro.")]
    [TestCase("ar", 1, "خلفية بيضاء عليها دائرة حمراء كبيرة على اليسار ونجمة زرقاء صغيرة في الأعلى.", "خلفية سوداء عليها قلب أصفر صغير في الوسط.")]
    [TestCase("ar", 2, "تُظهر الصورة شكلين على خلفية بيضاء: دائرة حمراء كبيرة على اليسار ونجمة زرقاء صغيرة في الأعلى.", "تُظهر الصورة شكلًا واحدًا على خلفية سوداء: قلب أصفر صغير في الوسط.")]
    [TestCase("tr", 0, "Beyaz bir arka plan üzerinde solda büyük kırmızı bir daire ve üstte küçük mavi bir yıldız var.", "Siyah bir arka plan üzerinde ortada küçük sarı bir kalp var.")]
    [TestCase("tr", 1, "Resimde beyaz zemin üzerinde iki şekil var: solda büyük kırmızı bir daire ve üstte küçük mavi bir yıldız.", "Resimde siyah zemin üzerinde bir şekil var: ortada küçük sarı bir kalp.")]
    [TestCase("ru", 0, "На белом фоне изображены большой красный круг слева и маленькая синяя звезда сверху.", "На чёрном фоне изображено маленькое жёлтое сердце в центре.")]
    [TestCase("ru", 1, "На изображении две фигуры на белом фоне: большой красный круг слева и маленькая синяя звезда сверху.", "На изображении одна фигура на чёрном фоне: маленькое жёлтое сердце в центре.")]
    public void CaptionsAgreeInGenderNumberAndCase(string code, int variant, string twoObjects, string oneObject)
    {
        var language = WorldLanguage.Get(code);
        Assert.That(language.Caption(StarAndCircle, variant), Is.EqualTo(twoObjects));
        Assert.That(language.Caption(HeartAlone, variant), Is.EqualTo(oneObject));
    }

    [Test]
    public void ThreeObjectListsUseEachLanguagesConjunction()
    {
        Assert.That(WorldLanguage.Get("en").Caption(ThreeObjects, 1),
            Is.EqualTo("A gray background with a large orange star on the right, a small purple square at the bottom, and a large white triangle in the center."));
        Assert.That(WorldLanguage.Get("ar").Caption(ThreeObjects, 0),
            Is.EqualTo("على خلفية رمادية: نجمة برتقالية كبيرة على اليمين، ومربع بنفسجي صغير في الأسفل، ومثلث أبيض كبير في الوسط."));
        Assert.That(WorldLanguage.Get("ru").Caption(ThreeObjects, 2),
            Is.EqualTo("Серый фон, на нём большая оранжевая звезда справа, маленький фиолетовый квадрат снизу и большой белый треугольник в центре."));
        Assert.That(WorldLanguage.Get("pt").Caption(ThreeObjects, 1),
            Is.EqualTo("Uma estrela laranja grande à direita, um quadrado roxo pequeno embaixo e um triângulo branco grande no centro, sobre um fundo cinza."));
        Assert.That(WorldLanguage.Get("tr").Caption(ThreeObjects, 2),
            Is.EqualTo("Arka plan gri; sağda büyük turuncu bir yıldız, altta küçük mor bir kare ve ortada büyük beyaz bir üçgen görülüyor."));
    }

    private static Question Q(QuestionForm form, ShapeKind? shape = null, WorldColor? color = null, Slot? slot = null, AnswerValue answer = default) =>
        new(form, shape, color, slot, answer);

    [Test]
    public void QuestionsAndAnswersAgree_Russian()
    {
        var ru = WorldLanguage.Get("ru");
        var star = Q(QuestionForm.ColorOfShape, ShapeKind.Star, answer: AnswerValue.Of(WorldColor.Yellow));
        Assert.That(ru.Ask(star, 0), Is.EqualTo("Какого цвета звезда?"));
        Assert.That(ru.Answer(star, star.Answer), Is.EqualTo("Жёлтая"));
        var heart = Q(QuestionForm.ColorOfShape, ShapeKind.Heart);
        Assert.That(ru.Answer(heart, AnswerValue.Of(WorldColor.Blue)), Is.EqualTo("Синее"));
        Assert.That(ru.Answer(Q(QuestionForm.ColorAt, slot: Slot.Left), AnswerValue.Of(WorldColor.Blue)), Is.EqualTo("Синяя"));
        Assert.That(ru.Answer(Q(QuestionForm.Background), AnswerValue.Of(WorldColor.Black)), Is.EqualTo("Чёрный"));
        Assert.That(ru.Ask(Q(QuestionForm.CountShape, ShapeKind.Star), 0), Is.EqualTo("Сколько звёзд на изображении?"));
        Assert.That(ru.Ask(Q(QuestionForm.CountShape, ShapeKind.Heart), 1), Is.EqualTo("Сколько всего сердец на изображении?"));
        Assert.That(ru.Ask(Q(QuestionForm.CountColor, color: WorldColor.Blue), 0), Is.EqualTo("Сколько синих фигур на изображении?"));
        Assert.That(ru.Ask(Q(QuestionForm.ShapeOfColor, color: WorldColor.Blue), 0), Is.EqualTo("Какая фигура синего цвета?"));
        Assert.That(ru.Ask(Q(QuestionForm.ShapeOfColor, color: WorldColor.Blue), 1), Is.EqualTo("Какая фигура на изображении синяя?"));
        Assert.That(ru.Ask(Q(QuestionForm.Exists, ShapeKind.Heart, WorldColor.Blue), 0), Is.EqualTo("Есть ли на изображении синее сердце?"));
        var size = Q(QuestionForm.SizeOf, ShapeKind.Heart, WorldColor.White);
        Assert.That(ru.Ask(size, 0), Is.EqualTo("Белое сердце большое или маленькое?"));
        Assert.That(ru.Answer(size, AnswerValue.Of(SizeClass.Small)), Is.EqualTo("Маленькое"));
        Assert.That(ru.Ask(Q(QuestionForm.SizeAt, slot: Slot.Center), 1), Is.EqualTo("Какого размера фигура в центре: большая или маленькая?"));
        Assert.That(ru.Answer(Q(QuestionForm.SizeAt, slot: Slot.Center), AnswerValue.Of(SizeClass.Large)), Is.EqualTo("Большая"));
    }

    [Test]
    public void QuestionsAndAnswersAgree_Portuguese()
    {
        var pt = WorldLanguage.Get("pt");
        Assert.That(pt.Ask(Q(QuestionForm.ColorOfShape, ShapeKind.Star), 0), Is.EqualTo("Qual é a cor da estrela?"));
        Assert.That(pt.Ask(Q(QuestionForm.ColorOfShape, ShapeKind.Heart), 0), Is.EqualTo("Qual é a cor do coração?"));
        Assert.That(pt.Ask(Q(QuestionForm.CountShape, ShapeKind.Star), 0), Is.EqualTo("Quantas estrelas há na imagem?"));
        Assert.That(pt.Ask(Q(QuestionForm.CountShape, ShapeKind.Heart), 0), Is.EqualTo("Quantos corações há na imagem?"));
        Assert.That(pt.Ask(Q(QuestionForm.CountColor, color: WorldColor.Blue), 0), Is.EqualTo("Quantas figuras azuis há na imagem?"));
        Assert.That(pt.Ask(Q(QuestionForm.CountColor, color: WorldColor.Orange), 0), Is.EqualTo("Quantas figuras laranja há na imagem?"));
        Assert.That(pt.Ask(Q(QuestionForm.ShapeOfColor, color: WorldColor.Black), 0), Is.EqualTo("Qual é a figura preta?"));
        Assert.That(pt.Ask(Q(QuestionForm.PositionOf, ShapeKind.Star, WorldColor.Yellow), 0), Is.EqualTo("Onde está a estrela amarela?"));
        Assert.That(pt.Ask(Q(QuestionForm.Exists, ShapeKind.Triangle, WorldColor.White), 0), Is.EqualTo("Há um triângulo branco na imagem?"));
        var size = Q(QuestionForm.SizeOf, ShapeKind.Star, WorldColor.Red);
        Assert.That(pt.Ask(size, 0), Is.EqualTo("A estrela vermelha é grande ou pequena?"));
        Assert.That(pt.Answer(size, AnswerValue.Of(SizeClass.Small)), Is.EqualTo("Pequena"));
        Assert.That(pt.Answer(Q(QuestionForm.SizeOf, ShapeKind.Square, WorldColor.Red), AnswerValue.Of(SizeClass.Small)), Is.EqualTo("Pequeno"));
        Assert.That(pt.Ask(Q(QuestionForm.SizeAt, slot: Slot.Top), 0), Is.EqualTo("A figura de cima é grande ou pequena?"));
        Assert.That(pt.Answer(Q(QuestionForm.Background), AnswerValue.Of(WorldColor.Gray)), Is.EqualTo("Cinza"));
        Assert.That(pt.Answer(Q(QuestionForm.PositionOf), AnswerValue.Of(Slot.Left)), Is.EqualTo("À esquerda"));
    }

    [Test]
    public void QuestionsAndAnswersAgree_Arabic()
    {
        var ar = WorldLanguage.Get("ar");
        Assert.That(ar.Ask(Q(QuestionForm.PositionOf, ShapeKind.Circle, WorldColor.Red), 0), Is.EqualTo("أين تقع الدائرة الحمراء؟"));
        Assert.That(ar.Ask(Q(QuestionForm.PositionOf, ShapeKind.Square, WorldColor.Red), 0), Is.EqualTo("أين يقع المربع الأحمر؟"));
        Assert.That(ar.Ask(Q(QuestionForm.Exists, ShapeKind.Star, WorldColor.White), 0), Is.EqualTo("هل توجد نجمة بيضاء في الصورة؟"));
        Assert.That(ar.Ask(Q(QuestionForm.Exists, ShapeKind.Heart, WorldColor.Purple), 0), Is.EqualTo("هل يوجد قلب بنفسجي في الصورة؟"));
        Assert.That(ar.Ask(Q(QuestionForm.CountShape, ShapeKind.Square), 0), Is.EqualTo("كم مربعًا في الصورة؟"));
        Assert.That(ar.Ask(Q(QuestionForm.CountShape, ShapeKind.Circle), 0), Is.EqualTo("كم دائرة في الصورة؟"));
        Assert.That(ar.Ask(Q(QuestionForm.CountShape, ShapeKind.Star), 1), Is.EqualTo("كم عدد النجوم في الصورة؟"));
        Assert.That(ar.Ask(Q(QuestionForm.CountColor, color: WorldColor.Orange), 0), Is.EqualTo("كم شكلًا برتقاليًا في الصورة؟"));
        Assert.That(ar.Ask(Q(QuestionForm.CountColor, color: WorldColor.Red), 0), Is.EqualTo("كم شكلًا أحمر في الصورة؟"));
        Assert.That(ar.Ask(Q(QuestionForm.CountColor, color: WorldColor.Red), 1), Is.EqualTo("كم عدد الأشكال الحمراء في الصورة؟"));
        var size = Q(QuestionForm.SizeOf, ShapeKind.Circle, WorldColor.Green);
        Assert.That(ar.Ask(size, 0), Is.EqualTo("هل الدائرة الخضراء كبيرة أم صغيرة؟"));
        Assert.That(ar.Answer(size, AnswerValue.Of(SizeClass.Large)), Is.EqualTo("كبيرة"));
        Assert.That(ar.Answer(Q(QuestionForm.SizeAt, slot: Slot.Left), AnswerValue.Of(SizeClass.Large)), Is.EqualTo("كبير"));
        Assert.That(ar.Answer(Q(QuestionForm.ColorOfShape, ShapeKind.Circle), AnswerValue.Of(WorldColor.Red)), Is.EqualTo("أحمر"));
    }

    [Test]
    public void QuestionsAndAnswersAgree_ChineseTurkishEnglish()
    {
        var zh = WorldLanguage.Get("zh");
        Assert.That(zh.Ask(Q(QuestionForm.Exists, ShapeKind.Star, WorldColor.Red), 0), Is.EqualTo("图中有红色的五角星吗？"));
        Assert.That(zh.Answer(Q(QuestionForm.Exists), AnswerValue.YesNo(false)), Is.EqualTo("没有"));
        Assert.That(zh.Ask(Q(QuestionForm.CountShape, ShapeKind.Circle), 0), Is.EqualTo("图中有几个圆形？"));
        var tr = WorldLanguage.Get("tr");
        Assert.That(tr.Ask(Q(QuestionForm.Exists, ShapeKind.Star, WorldColor.Red), 0), Is.EqualTo("Resimde kırmızı bir yıldız var mı?"));
        Assert.That(tr.Ask(Q(QuestionForm.SizeOf, ShapeKind.Circle, WorldColor.Yellow), 0), Is.EqualTo("Sarı daire büyük mü, küçük mü?"));
        Assert.That(tr.Ask(Q(QuestionForm.ColorAt, slot: Slot.Top), 0), Is.EqualTo("Üstteki şekil ne renk?"));
        Assert.That(tr.Ask(Q(QuestionForm.ColorOfShape, ShapeKind.Star), 1), Is.EqualTo("Yıldız hangi renkte?"));
        var en = WorldLanguage.Get("en");
        Assert.That(en.Ask(Q(QuestionForm.Exists, ShapeKind.Star, WorldColor.Orange), 0), Is.EqualTo("Is there an orange star in the image?"));
        Assert.That(en.Ask(Q(QuestionForm.Exists, ShapeKind.Star, WorldColor.Red), 0), Is.EqualTo("Is there a red star in the image?"));
        Assert.That(en.OpenPrompt(Q(QuestionForm.ShapeAt, slot: Slot.Bottom), 0), Is.EqualTo("What shape is at the bottom?\nAnswer the question using a single word or phrase."));
    }

    [Test]
    public void TurkishCapitalisesDottedI()
    {
        // "iki" at a sentence start must become "İki", never "Iki" (the invariant culture does not know this).
        var tr = WorldLanguage.Get("tr");
        var capitalize = typeof(WorldLanguage).GetMethod("Capitalize", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!;
        Assert.That(capitalize.Invoke(tr, ["iki"]), Is.EqualTo("İki"));
        Assert.That(capitalize.Invoke(tr, ["ışık"]), Is.EqualTo("Işık"));
        Assert.That(capitalize.Invoke(tr, ["üstte"]), Is.EqualTo("Üstte"));
    }

    // ---------------------------------------------------------------- files

    [Test]
    public void BenchmarkTsvsHoldTheSameItemsInEveryLanguage()
    {
        var dir = TempDir();
        try
        {
            var world = WorldBuilder.Build(Small);
            WorldGenerator.Generate(dir, Small);
            var files = WorldLanguage.All.ToDictionary(l => l.Code, l => ReadTsv(Path.Combine(dir, WorldGenerator.BenchmarkFile(l))));
            Assert.That(File.Exists(Path.Combine(dir, "benchmark", "mmmb_cn.tsv")));
            var en = files["en"];
            Assert.That(en, Has.Count.EqualTo(Small.BenchmarkCount));
            foreach (var (code, rows) in files)
            {
                var language = WorldLanguage.Get(code);
                Assert.That(rows, Has.Count.EqualTo(en.Count), code);
                for (int i = 0; i < rows.Count; i++)
                {
                    var row = rows[i];
                    Assert.That(row.Keys, Is.EqualTo(WorldGenerator.BenchmarkColumns), code);
                    foreach (var column in new[] { "index", "image", "answer", "category", "l2-category", "split" })
                        Assert.That(row[column], Is.EqualTo(en[i][column]), $"{code} row {i} {column}");
                    var options = new[] { "A", "B", "C", "D" }.Where(k => row[k].Length > 0).ToList();
                    Assert.That(options.Count, Is.EqualTo(new[] { "A", "B", "C", "D" }.Count(k => en[i][k].Length > 0)), $"{code} row {i}");
                    Assert.That(options, Does.Contain(row["answer"]));
                    Assert.That(row["question"], Is.Not.Empty);
                    // The letter's text is the answer to the question about that scene, in this language.
                    var item = world.Benchmark[i];
                    Assert.That(row[row["answer"]], Is.EqualTo(language.Answer(item.Choice.Question, item.Choice.Question.Answer)));
                    Assert.That(row["question"], Is.EqualTo(item.QuestionText(language)));
                }
            }
            // The image column is a full base64 PNG of the item's scene in every row (VLMEvalKit treats ≤ 64 characters as a reference).
            for (int i = 0; i < en.Count; i++)
            {
                Assert.That(en[i]["image"].Length, Is.GreaterThan(64));
                var image = ImageLoader.Load(Convert.FromBase64String(en[i]["image"]));
                Assert.That(image.Pixels, Is.EqualTo(SceneRenderer.Render(world.Benchmark[i].Scene, Small.ImageSize)));
            }
            Assert.That(en.Select(r => r["category"]).Distinct().Count(), Is.EqualTo(7).And.LessThanOrEqualTo(15));
            Assert.That(en.Select(r => r["split"]).Distinct(), Is.EqualTo(new[] { "dev" }));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>A plain TSV reader: the generator promises no tabs, newlines or quotes inside fields.</summary>
    private static List<Dictionary<string, string>> ReadTsv(string path)
    {
        var lines = File.ReadAllText(path).Split('\n');
        Assert.That(lines[^1], Is.Empty, "the file ends with a newline");
        var header = lines[0].Split('\t');
        var rows = new List<Dictionary<string, string>>();
        foreach (var line in lines.Skip(1).Where(l => l.Length > 0))
        {
            var fields = line.Split('\t');
            Assert.That(fields, Has.Length.EqualTo(header.Length), line[..Math.Min(line.Length, 80)]);
            var row = new Dictionary<string, string>();
            for (int k = 0; k < header.Length; k++) row[header[k]] = fields[k];
            rows.Add(row);
        }
        return rows;
    }

    [Test]
    public void LlavaJsonRoundTrips_AndPointsAtItsImages()
    {
        var dir = TempDir();
        try
        {
            var world = WorldBuilder.Build(Small);
            WorldGenerator.Generate(dir, Small);
            foreach (var (file, expected) in new[] { ("stage1.json", world.Stage1), ("stage2.json", world.Stage2) })
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, file)));
                var records = doc.RootElement.EnumerateArray().ToList();
                Assert.That(records, Has.Count.EqualTo(expected.Count), file);
                for (int i = 0; i < records.Count; i++)
                {
                    var r = records[i];
                    var sample = new LlavaSample(r.GetProperty("id").GetString()!, r.GetProperty("image").GetString(), r.GetProperty("language").GetString(),
                        r.GetProperty("conversations").EnumerateArray().Select(t => new LlavaTurn(t.GetProperty("from").GetString()!, t.GetProperty("value").GetString()!)).ToList());
                    Assert.That(SameSample(sample, expected[i]), $"{file}[{i}]");
                    Assert.That(File.Exists(Path.Combine(dir, sample.Image!)), sample.Image);
                    var turns = sample.Conversations;
                    Assert.That(turns.Count % 2, Is.EqualTo(0));
                    for (int t = 0; t < turns.Count; t++)
                    {
                        Assert.That(turns[t].From, Is.EqualTo(t % 2 == 0 ? "human" : "gpt"));
                        Assert.That(turns[t].Value.StartsWith("<image>\n"), Is.EqualTo(t == 0), "only the first turn carries the image");
                        Assert.That(turns[t].Value.Count(ch => ch == '<'), Is.EqualTo(t == 0 ? 1 : 0));
                    }
                }
            }
            Assert.That(world.Stage1.All(s => s.Language == "en" && s.Conversations.Count == 2));
            Assert.That(world.Stage1.Select(s => s.Conversations[0].Value).Distinct().Count(), Is.GreaterThan(3), "several caption prompts");

            using var labels = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "labels.json")));
            var first = labels.RootElement[0];
            Assert.That(labels.RootElement.GetArrayLength(), Is.EqualTo(world.Images.Count));
            Assert.That(first.GetProperty("image").GetString(), Is.EqualTo("images/stage1/000000.png"));
            Assert.That(first.GetProperty("objects").GetArrayLength(), Is.EqualTo(world.Images[0].Scene.Objects.Count));
            Assert.That(first.GetProperty("objects")[0].GetProperty("shape").GetString(), Is.EqualTo(WorldPalette.Id(world.Images[0].Scene.Objects[0].Shape)));

            var text = File.ReadAllLines(Path.Combine(dir, "text", "lm.jsonl"));
            Assert.That(text, Has.Length.EqualTo(Small.TextScenes * 6));
            var languages = text.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("language").GetString()).ToList();
            Assert.That(languages.Take(6), Is.EqualTo(new[] { "en", "zh", "pt", "ar", "tr", "ru" }));

            using var manifest = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "world.json")));
            Assert.That(manifest.RootElement.GetProperty("seed").GetUInt64(), Is.EqualTo(Small.Seed));
            Assert.That(manifest.RootElement.GetProperty("counts").GetProperty("stage2_per_language").GetProperty("zh").GetInt32(),
                Is.EqualTo(world.Stage2.Count(s => s.Language == "zh")));
            Assert.That(File.Exists(Path.Combine(dir, WorldGenerator.PartialMarker)), Is.False);
            Assert.That(Directory.EnumerateFiles(dir, "*.tmp-*", SearchOption.AllDirectories), Is.Empty);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void RegeneratingIntoAWorldReplacesIt_ButOtherDirectoriesAreRefused()
    {
        var dir = TempDir();
        try
        {
            WorldGenerator.Generate(dir, Small);
            var smaller = Small with { Stage1Count = 3, Stage2Count = 4, Seed = 1 };
            WorldGenerator.Generate(dir, smaller);
            Assert.That(Directory.GetFiles(Path.Combine(dir, "images", "stage1")), Has.Length.EqualTo(3));
            Assert.That(Directory.GetFiles(Path.Combine(dir, "images", "stage2")), Has.Length.EqualTo(4));
            var fresh = TempDir();
            try
            {
                WorldGenerator.Generate(fresh, smaller);
                var a = ReadTree(dir);
                Assert.That(a, Is.EqualTo(ReadTree(fresh)), "a regenerated world equals a fresh one");
            }
            finally { Directory.Delete(fresh, true); }

            var other = TempDir();
            File.WriteAllText(Path.Combine(other, "notes.txt"), "mine");
            try
            {
                var e = Assert.Throws<IOException>(() => WorldGenerator.Generate(other, Small));
                Assert.That(e!.Message, Does.Contain("not empty"));
                Assert.That(File.ReadAllText(Path.Combine(other, "notes.txt")), Is.EqualTo("mine"));
            }
            finally { Directory.Delete(other, true); }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void ChatMlTextDocumentsAreConversationsAboutTheirScene()
    {
        var plain = WorldBuilder.Build(Small with { Stage1Count = 0, Stage2Count = 0, BenchmarkCount = 0 });
        var chat = WorldBuilder.Build(Small with { Stage1Count = 0, Stage2Count = 0, BenchmarkCount = 0, TextFormat = WorldTextFormat.ChatMl });
        Assert.That(chat.Text.Select(d => (d.Id, d.Language)), Is.EqualTo(plain.Text.Select(d => (d.Id, d.Language))));
        var turn = new Regex(@"<\|im_start\|>(system|user|assistant)\n(.*?)<\|im_end\|>(\n|$)", RegexOptions.Singleline);
        int captionTasks = 0;
        foreach (var doc in chat.Text)
        {
            var turns = turn.Matches(doc.Text).Select(m => (Role: m.Groups[1].Value, Text: m.Groups[2].Value)).ToList();
            Assert.That(string.Concat(turn.Matches(doc.Text).Select(m => m.Value)), Is.EqualTo(doc.Text), doc.Id);
            Assert.That(turns[0], Is.EqualTo(("system", "You are a helpful assistant.")), doc.Id);
            Assert.That(turns.Count, Is.InRange(3, 7).And.Matches<int>(n => n % 2 == 1), doc.Id);
            for (int t = 1; t < turns.Count; t++) Assert.That(turns[t].Role, Is.EqualTo(t % 2 == 1 ? "user" : "assistant"), doc.Id);
            // The first user turn opens with a description of the scene in the document's language, where an image would be.
            var lines = turns[1].Text.Split('\n');
            Assert.That(lines.Length, Is.GreaterThanOrEqualTo(2), doc.Id);
            var plainDoc = plain.Text.Single(d => d.Id == doc.Id);
            if (doc.Language is "zh" or "ar" or "ru")
                Assert.That(lines[0].Any(c => c > 0x2FF), Is.True, $"{doc.Id}: the description is in its own script");
            if (WorldBuilder.CaptionPrompts.Contains(lines[^1]))
            {
                captionTasks++;
                Assert.That(lines, Has.Length.EqualTo(2), doc.Id);
                Assert.That(turns[2].Text.All(c => c < 0x80), Is.True, $"{doc.Id}: the caption asked for is English");
                Assert.That(turns[2].Text, Does.EndWith("."), doc.Id);
            }
            // Each answer is a letter or a short phrase.
            for (int t = 2; t < turns.Count; t += 2)
                Assert.That(turns[t].Text, Is.Not.Empty.And.Not.Contains("\n"), doc.Id);
            Assert.That(plainDoc.Text, Is.Not.EqualTo(doc.Text));
        }
        Assert.That(captionTasks / (double)chat.Text.Count, Is.InRange(0.2, 0.47), "about a third of the documents ask for a caption");
    }

    [Test]
    public void BadOptionsAreRejectedWithTheirName()
    {
        var bad = new (WorldOptions Options, string Word)[]
        {
            (new WorldOptions { ImageSize = 8 }, "image size"),
            (new WorldOptions { Stage2Count = -1 }, "stage-2"),
            (new WorldOptions { LanguageWeights = [1, 2, 3] }, "language weights"),
            (new WorldOptions { LanguageWeights = [0, 0, 0, 0, 0, 0] }, "language weights"),
            (new WorldOptions { LanguageWeights = [1, double.NaN, 1, 1, 1, 1] }, "language weights"),
            (new WorldOptions { MultipleChoiceFraction = 1.5 }, "multiple-choice"),
            (new WorldOptions { MaxTurns = 0 }, "max turns"),
        };
        foreach (var (options, word) in bad)
        {
            var e = Assert.Throws<ArgumentException>(() => WorldBuilder.Build(options));
            // The value in words; no class name (make-world showed "WorldOptions: …" to its users).
            Assert.That(e!.Message, Does.Contain(word).And.Not.Contain("WorldOptions"));
        }
    }

    [Test]
    public void EmptyWorldIsValid()
    {
        var dir = TempDir();
        try
        {
            var summary = WorldGenerator.Generate(dir, new WorldOptions { Stage1Count = 0, Stage2Count = 0, BenchmarkCount = 0, TextScenes = 0 });
            Assert.That(summary.Images, Is.Zero);
            Assert.That(File.ReadAllText(Path.Combine(dir, "stage2.json")).Trim(), Is.EqualTo("[]"));
            Assert.That(File.ReadAllLines(Path.Combine(dir, "benchmark", "mmmb_ru.tsv")), Has.Length.EqualTo(1));
        }
        finally { Directory.Delete(dir, true); }
    }

    // ---------------------------------------------------------------- speed

    [Test]
    public void GenerationIsFast()
    {
        var dir = TempDir();
        try
        {
            var options = new WorldOptions { Stage1Count = 1000, Stage2Count = 1000, BenchmarkCount = 140, TextScenes = 200 };
            WorldGenerator.Generate(dir, options with { Stage1Count = 10, Stage2Count = 10 }); // warm the JIT
            var clock = Stopwatch.StartNew();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var summary = WorldGenerator.Generate(dir, options);
            double wall = clock.Elapsed.TotalSeconds, cpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds;
            long bytes = Directory.EnumerateFiles(Path.Combine(dir, "images"), "*.png", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            TestContext.Out.WriteLine($"{summary.Images} images of {options.ImageSize}² + {options.BenchmarkCount}×6 benchmark rows + {summary.TextDocuments} text documents: "
                + $"{wall:F2} s wall, {cpuSeconds:F2} s CPU; PNGs average {bytes / summary.Images} bytes");
            // Generous: the machine is shared; unloaded it takes about a second.
            Assert.That(wall, Is.LessThan(60));
            Assert.That(bytes / summary.Images, Is.LessThan(1500));
        }
        finally { Directory.Delete(dir, true); }
    }
}
