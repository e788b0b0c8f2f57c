using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Data;
using Parrot.Parrot.Evaluation;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Training;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
// args: variant (stage2 | s2x2 | s1x4 | lmcap | lmcap2); trains from $DEMO_OUT/models/stage1, evaluates en (+ zh) and swapped images
string variant = args[0], root = Environment.GetEnvironmentVariable("DEMO_OUT") ?? "demo-out", assets = Environment.GetEnvironmentVariable("ASSETS") ?? "assets/tiny";
var world = Path.Combine(root, "world");
var tok = BpeTokenizer.Load(Path.Combine(assets, "lm/tokenizer.json"));
var chat = new ChatMl(tok);
using var tower = ClipVisionLoader.Load(Path.Combine(assets, "vision"), DType.F32);
var tf = ParrotVision.Features(tower, -1);
var pre = ImagePreprocessor.FromDirectory(Path.Combine(assets, "vision"));
using var feats = new LlavaImageFeatures(tf, pre, padToSquare: true);
var opts = new LlavaOptions { MaxLength = 2048, ImageTokens = 10 };
var s1 = LlavaDataset.Load(Path.Combine(world, "stage1.json"), world, chat, opts);
string s2World = Environment.GetEnvironmentVariable("STAGE2_WORLD") ?? world;
var s2 = LlavaDataset.Load(Path.Combine(s2World, "stage2.json"), s2World, chat, opts);
using var model = ParrotLoader.Load(Path.Combine(root, "models/stage1"), DType.F32);
var sw = System.Diagnostics.Stopwatch.StartNew();
double cpu0 = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
void Train(LlavaDataset d, int stage, int epochs, double lr, string name, int? steps = null)
{
    var o = new ParrotTrainingOptions { Stage = stage, UseMoe = false, LearningRate = lr, GlobalBatch = 32, MicroBatch = 16, Epochs = epochs, Seed = 42, Steps = steps };
    using var tr = new ParrotTrainer(model, d, feats, o);
    tr.Train(m => { if (m.Step % 25 == 0 || m.Step == m.TotalSteps) Console.WriteLine($"{name} step {m.Step}/{m.TotalSteps} loss {m.Loss:F3} {sw.Elapsed.TotalSeconds:F0}s"); });
}
if (variant == "lmcap2") { Train(s1, 2, 2, 2e-3, "stage1+LM x2"); Train(s2, 2, 1, 1e-3, "stage2"); }
else if (variant == "lmcap") { Train(s1, 2, 1, 1e-3, "stage1+LM"); Train(s2, 2, 1, 1e-3, "stage2"); }
else if (variant == "s1x4") { Train(s1, 1, 4, 1e-3, "stage1x4"); Train(s2, 2, 1, 1e-3, "stage2"); }
else if (variant == "long") Train(s2, 2, 1, double.Parse(Environment.GetEnvironmentVariable("LR") ?? "1e-3"), "stage2-long", int.Parse(Environment.GetEnvironmentVariable("STEPS") ?? "1000"));
else if (variant == "s2x2") Train(s2, 2, 2, 1e-3, "stage2x2");
else Train(s2, 2, 1, 1e-3, "stage2");
double cpu = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - cpu0;
Console.WriteLine($"train wall {sw.Elapsed.TotalSeconds:F0}s cpu {cpu:F0}s");
// Evaluated with the `parrot eval` harness on the saved model (as the demo does).
var probeDir = Path.Combine(root, "models", $"probe-{variant}");
ParrotLoader.Save(model, probeDir, config: model.Config);
File.Copy(Path.Combine(assets, "lm/tokenizer.json"), Path.Combine(probeDir, "tokenizer.json"), overwrite: true);
using var ev = ParrotAnswerGenerator.Load(probeDir, Path.Combine(assets, "vision"));
foreach (var (lang, code) in new[] { ("en", "en"), ("zh", "cn"), ("ar", "ar") })
{
    var file = BenchmarkFile.Load(Path.Combine(world, $"benchmark/mmmb_{code}.tsv"), lang);
    var a = Evaluator.Run([file], ev, new EvaluationOptions { MaxNewTokens = 8 })[0].Rows;
    var b = Evaluator.Run([file], ev, new EvaluationOptions { MaxNewTokens = 8, SwapImages = true })[0].Rows;
    int changed = a.Zip(b).Count(p => p.First.Extracted != p.Second.Extracted);
    Console.WriteLine($"{variant} {lang}: acc {a.Count(x => x.Hit) * 100.0 / a.Count:F1}%  swapped {b.Count(x => x.Hit) * 100.0 / b.Count:F1}%  changed {changed * 100.0 / a.Count:F1}%");
}
Console.WriteLine($"total wall {sw.Elapsed.TotalSeconds:F0}s");
