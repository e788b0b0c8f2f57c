using Parrot.Autograd;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Data.World;
using Parrot.Parrot.Text;
using Parrot.Tensors;

// The upper bound of the demo's benchmark for its LM: every item asked with the scene DESCRIBED IN TEXT where the
// image would stand (ChatML, greedy first token = the option letter). args: LM dir [seed=42] [items=280]
string lmDir = args[0];
ulong seed = args.Length > 1 ? ulong.Parse(args[1]) : 42;
int count = args.Length > 2 ? int.Parse(args[2]) : 280;
var tok = BpeTokenizer.Load(Path.Combine(lmDir, "tokenizer.json"));
var chat = new ChatMl(tok);
using var lm = Qwen2Loader.Load(lmDir, DType.F32);
var world = WorldBuilder.Build(new WorldOptions { Seed = seed, Stage1Count = 0, Stage2Count = 0, BenchmarkCount = count, TextScenes = 0 });
foreach (bool described in new[] { true, false })
foreach (var language in WorldLanguage.All)
{
    var byCat = new Dictionary<QuestionCategory, (int Hit, int N)>();
    int hits = 0;
    foreach (var item in world.Benchmark)
    {
        string user = (described ? language.Caption(item.Scene, item.Variant) + "\n" : "") + language.ChoicePrompt(item.Choice, item.Variant);
        int[] ids = chat.BuildPrompt([new ChatTurn(ChatRole.User, user)]);
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var logits = lm.Forward(Tensor.FromArray(ids.Select(i => (long)i).ToArray(), 1, ids.Length)).Value;
        var last = logits.Select(1, ids.Length - 1).Select(0, 0).ToFloatArray();
        int best = Array.IndexOf(last, last.Max());
        string said = tok.Decode([best]).Trim();
        bool hit = said == item.Choice.CorrectLetter.ToString();
        if (hit) hits++;
        var c = item.Choice.Question.Category;
        var (h, n) = byCat.GetValueOrDefault(c);
        byCat[c] = (h + (hit ? 1 : 0), n + 1);
    }
    Console.WriteLine($"{(described ? "described" : "no scene ")} {language.Code}: {hits * 100.0 / world.Benchmark.Count:F1}%  "
        + string.Join(" ", byCat.Select(kv => $"{kv.Key} {kv.Value.Hit * 100.0 / kv.Value.N:F0}")));
}
