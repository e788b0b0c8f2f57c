using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Models.Qwen2;
using Parrot.Nn.Optim;
using Parrot.Parrot.Data.World;
using Parrot.Parrot.Text;
using Parrot.Tensors;

// Can a Qwen2 of the demo's size learn to answer the world's questions from the scene DESCRIBED IN TEXT, when trained
// on exactly that (ChatML, loss on the answer only)? Env: INIT (LM dir to start from; default fresh from CONFIG),
// CONFIG (default tools/tiny-assets/lm-config.json), TOKENIZER (default assets/tiny/lm/tokenizer.json), LANGS (en),
// FORM (open|mc|both), STEPS, LR, BATCH, EVERY, TRAIN (items), SCENE=0 drops the description (blind control).
string Env(string k, string d) => Environment.GetEnvironmentVariable(k) ?? d;
string tokPath = Env("TOKENIZER", Env("INIT", "") != "" ? Path.Combine(Env("INIT", ""), "tokenizer.json") : "assets/tiny/lm/tokenizer.json");
var tok = BpeTokenizer.Load(tokPath);
var chat = new ChatMl(tok);
var langs = Env("LANGS", "en").Split(',').Select(WorldLanguage.Get).ToArray();
string form = Env("FORM", "open");
int steps = int.Parse(Env("STEPS", "1000")), batch = int.Parse(Env("BATCH", "32")), every = int.Parse(Env("EVERY", "100"));
double lr = double.Parse(Env("LR", "1e-3"));
bool scene = Env("SCENE", "1") == "1";
Qwen2ForCausalLM lm;
if (Env("INIT", "") != "") lm = Qwen2Loader.Load(Env("INIT", ""), DType.F32);
else
{
    var o = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Env("CONFIG", "tools/tiny-assets/lm-config.json")))!.AsObject();
    o["vocab_size"] = tok.IdCount;
    foreach (var kv in Env("OVERRIDE", "").Split(',', StringSplitOptions.RemoveEmptyEntries)) { var p = kv.Split('='); o[p[0]] = int.Parse(p[1]); }
    lm = new Qwen2ForCausalLM(Qwen2ConfigJson.Parse(o.ToJsonString(), "config"), 1);
}
Console.WriteLine($"params {lm.ParameterCount():N0}");

(int[] Ids, int[] Labels, int PromptLen, int Target, QuestionForm Form) Encode(BenchmarkItem item, WorldLanguage l, bool mc)
{
    var q = item.Choice.Question;
    string user = (scene ? l.Caption(item.Scene, item.Variant) + "\n" : "") + (mc ? l.ChoicePrompt(item.Choice, item.Variant) : l.OpenPrompt(q, item.Variant));
    string answer = mc ? item.Choice.CorrectLetter.ToString() : l.Answer(q, q.Answer);
    var enc = chat.Format([new ChatTurn(ChatRole.User, user), new ChatTurn(ChatRole.Assistant, answer)]);
    int first = Array.FindIndex(enc.Labels, x => x != ChatMl.IgnoreIndex);
    return (enc.Ids, enc.Labels, first, enc.Ids[first], q.Form);
}
IEnumerable<(int[] Ids, int[] Labels, int PromptLen, int Target, QuestionForm Form)> Items(ulong seed, int n)
{
    var w = WorldBuilder.Build(new WorldOptions { Seed = seed, Stage1Count = 0, Stage2Count = 0, BenchmarkCount = n, TextScenes = 0 });
    int k = 0;
    var only = Env("FORMS", "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(Enum.Parse<QuestionForm>).ToHashSet();
    foreach (var it in w.Benchmark)
    {
        if (only.Count > 0 && !only.Contains(it.Choice.Question.Form)) continue;
        var l = langs[k % langs.Length];
        bool mc = form == "mc" || (form == "both" && (k / langs.Length) % 2 == 0);
        k++;
        yield return Encode(it, l, mc);
    }
}
var sw0 = System.Diagnostics.Stopwatch.StartNew();
var train = Items(1001, int.Parse(Env("TRAIN", "20000"))).ToList();
var eval = Items(42, int.Parse(Env("EVAL", "560")) * langs.Length).ToList();
Console.WriteLine($"data {train.Count} train / {eval.Count} eval in {sw0.Elapsed.TotalSeconds:F1} s; mean len {train.Average(t => t.Ids.Length):F0}");

string Accuracy()
{
    int hit = 0;
    var byForm = new Dictionary<QuestionForm, (int H, int N)>();
    using var ng = Graph.NoGrad();
    for (int s = 0; s < eval.Count; s += 64)
    {
        using var scope = TensorScope.Begin();
        var part = eval.Skip(s).Take(64).ToList();
        int len = part.Max(p => p.PromptLen);
        var ids = new long[part.Count * len];
        for (int b = 0; b < part.Count; b++) for (int t = 0; t < len; t++) ids[b * len + t] = t < part[b].PromptLen ? part[b].Ids[t] : 0;
        var logits = lm.Forward(Tensor.FromArray(ids, part.Count, len)).Value;
        for (int b = 0; b < part.Count; b++)
        {
            var row = logits.Select(0, b).Select(0, part[b].PromptLen - 1).ToFloatArray();
            bool ok = Array.IndexOf(row, row.Max()) == part[b].Target;
            if (ok) hit++;
            var (h, n) = byForm.GetValueOrDefault(part[b].Form);
            byForm[part[b].Form] = (h + (ok ? 1 : 0), n + 1);
        }
    }
    return $"{hit * 100.0 / eval.Count:F1}%  " + string.Join(" ", byForm.OrderBy(k => k.Key).Select(k => $"{k.Key}:{k.Value.H * 100 / k.Value.N}"));
}

var opt = new AdamW(lm.TrainableParameters().ToList(), lr, weightDecay: 0.0);
var rng = new Random(1);
Console.WriteLine($"step 0 acc {Accuracy()}");
double lossSum = 0; int lossN = 0;
var sw = System.Diagnostics.Stopwatch.StartNew();
for (int step = 1; step <= steps; step++)
{
    var part = Enumerable.Range(0, batch).Select(_ => train[rng.Next(train.Count)]).ToList();
    int len = part.Max(p => p.Ids.Length);
    var ids = new long[batch * len]; var labels = new long[batch * len];
    for (int b = 0; b < batch; b++) for (int t = 0; t < len; t++)
    {
        bool inside = t < part[b].Ids.Length;
        ids[b * len + t] = inside ? part[b].Ids[t] : 0;
        labels[b * len + t] = inside ? part[b].Labels[t] : Losses.IgnoreIndex;
    }
    using (var scope = TensorScope.Begin())
    {
        var l = Losses.NextTokenCrossEntropy(lm.Forward(Tensor.FromArray(ids, batch, len)), Tensor.FromArray(labels, batch, len));
        lossSum += l.Value.Item(); lossN++;
        opt.ZeroGrad();
        l.Backward();
        double warm = Math.Min(1.0, step / 50.0);
        opt.LearningRate = lr * warm * 0.5 * (1 + Math.Cos(Math.PI * step / steps));
        opt.Step();
    }
    if (step % every == 0)
    {
        Console.WriteLine($"step {step} loss {lossSum / lossN:F3} acc {Accuracy()}  {sw.Elapsed.TotalSeconds:F0} s");
        lossSum = 0; lossN = 0;
    }
}
if (Env("SAVE", "") != "") Qwen2Loader.Save(lm, Env("SAVE", ""), DType.F32);
