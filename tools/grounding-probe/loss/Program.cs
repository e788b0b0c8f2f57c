using Parrot.Autograd;
using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Data;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

string root = args[0], modelDir = args[1], assets = Environment.GetEnvironmentVariable("ASSETS") ?? "assets/tiny";
var world = Path.Combine(root, "world");
var tok = BpeTokenizer.Load(Path.Combine(assets, "lm/tokenizer.json"));
var chat = new ChatMl(tok);
using var tower = ClipVisionLoader.Load(Path.Combine(assets, "vision"), DType.F32);
var tf = ParrotVision.Features(tower, -1);
var pre = ImagePreprocessor.FromDirectory(Path.Combine(assets, "vision"));
string mode = Environment.GetEnvironmentVariable("MODE") ?? "eval";
bool norm = Environment.GetEnvironmentVariable("NORM") == "1";
Func<Tensor, Tensor> tfn = norm ? (p => { var x = tf(p); using var sc = TensorScope.Begin(); return sc.Keep(x.LayerNorm(null, null)); }) : tf;
using var feats = new LlavaImageFeatures(tfn, pre, padToSquare: true);
var data = LlavaDataset.Load(Path.Combine(world, args.Length > 2 ? args[2] : "stage1.json"), world, chat, new LlavaOptions { MaxLength = 2048, ImageTokens = 10 });
using var model = ParrotLoader.Load(modelDir, DType.F32);
Console.WriteLine($"moe {model.MoeEnabled} select {model.Config.MmVisionSelectLayer} feature {model.Config.MmVisionSelectFeature} aspect {model.Config.ImageAspectRatio}");
model.MoeEnabled = model.Config.UseMoe;
if (mode == "train") {
  using var freshP = new MmProjector(96, model.Config.Text.HiddenSize, 42);
  model.Model.Projector.LoadStateDict(freshP.StateDict());
  int steps = int.Parse(Environment.GetEnvironmentVariable("STEPS") ?? "40");
  double lr = double.Parse(Environment.GetEnvironmentVariable("LR") ?? "1e-3");
  var sub = Environment.GetEnvironmentVariable("TRAINJSON") is string tj ? LlavaDataset.Load(Path.Combine(world, tj), world, chat, new LlavaOptions { MaxLength = 2048, ImageTokens = 10 }) : data;
  var opt = new Parrot.Parrot.Training.ParrotTrainingOptions { Stage = int.Parse(Environment.GetEnvironmentVariable("STAGE") ?? "1"), UseMoe = false, LearningRate = lr, GlobalBatch = 16, MicroBatch = 16, Steps = steps, Seed = 1 };
  using var tr = new Parrot.Parrot.Training.ParrotTrainer(model, sub, feats, opt);
  var sw = System.Diagnostics.Stopwatch.StartNew();
  tr.Train(m => { if (m.Step % 10 == 0 || m.Step == 1) Console.WriteLine($"step {m.Step} loss {m.Loss:F3} gn {m.GradNorm:F3} {sw.Elapsed.TotalSeconds:F0}s"); });
}
model.Eval();
int n = Math.Min(48, data.Examples.Count);
var ex = data.Examples.Take(n).ToList();
var f = feats.Batch(ex.Select(e => e.ImagePath).ToList(), ex.Select(e => e.Id).ToList());
Console.WriteLine($"features {f.ShapeString()} mean|x| {f.Abs().Mean().Item():F3} std {Std(f):F3}");
// feature diversity across images: mean abs diff between image 0 and 1
Console.WriteLine($"img0-img1 mean|diff| {(f.Select(0,0) - f.Select(0,1)).Abs().Mean().Item():F4}");
using (Graph.NoGrad())
{
    var proj = model.Model.Projector.Forward(new Variable(f)).Value;
    var emb = model.Model.EmbedTokens.Weight.Value;
    Console.WriteLine($"projected rms {Rms(proj):F4}  text-embedding rms {Rms(emb):F4}; proj img0-img1 rms diff {Rms(proj.Select(0,0)-proj.Select(0,1)):F4}");
    if (Environment.GetEnvironmentVariable("PADCHECK") == "1") {
      int longest = Enumerable.Range(0, n).OrderByDescending(i => ex[i].Ids.Length).First();
      double[] Loss0(List<ParrotSample> ss) { var o = model.Forward(ss, f); int len = o.Labels.Dim(1);
        var sh = o.Logits.Narrow(1, 0, len - 1).Reshape(-1, o.Logits.Shape[^1]); var tg = o.Labels.Narrow(1, 1, len - 1).Contiguous().Reshape(-1);
        var l = Variable.CrossEntropy(sh, tg, -100, LossReduction.None).Value.ToDoubleArray(); var t = tg.ToLongArray();
        return Enumerable.Range(0, len - 1).Where(k => t[k] != -100).Select(k => l[k]).ToArray(); }
      int shortest = Enumerable.Range(0, n).OrderBy(i => ex[i].Ids.Length).First();
      var alone = Loss0([new ParrotSample(ex[shortest].Ids, ex[shortest].Labels, shortest)]);
      var inb = Loss0([new ParrotSample(ex[shortest].Ids, ex[shortest].Labels, shortest), new ParrotSample(ex[longest].Ids, ex[longest].Labels, longest)]);
      Console.WriteLine($"pad check: shortest {ex[shortest].Ids.Length} longest {ex[longest].Ids.Length} ids; max |alone - in padded batch| = {alone.Zip(inb).Max(p => Math.Abs(p.First - p.Second)):E2}");
    }
    if (Environment.GetEnvironmentVariable("TOKENS") == "1") {
      var per = new List<double[]>(); long[] tgt = null;
      foreach (int shift in new[] { 0, 1, 2 }) {
        var o = model.Forward([new ParrotSample(ex[0].Ids, ex[0].Labels, shift)], f);
        int len = o.Labels.Dim(1);
        var sh = o.Logits.Narrow(1, 0, len - 1).Reshape(-1, o.Logits.Shape[^1]);
        tgt = o.Labels.Narrow(1, 1, len - 1).Contiguous().Reshape(-1).ToLongArray();
        per.Add(Variable.CrossEntropy(sh, o.Labels.Narrow(1, 1, len - 1).Contiguous().Reshape(-1), -100, LossReduction.None).Value.ToDoubleArray());
      }
      for (int k = 0; k < tgt.Length; k++) if (tgt[k] != -100) Console.WriteLine($"{tok.Decode(new[]{(int)tgt[k]}),-12} {per[0][k]:F3} {per[1][k]:F3} {per[2][k]:F3}");
    }
    foreach (int shift in new[] { 0, 1, 7 })
    {
        double sum = 0; long cnt = 0;
        for (int s = 0; s + 8 <= n; s += 8)
        {
            using var scope = TensorScope.Begin();
            var samples = Enumerable.Range(s, 8).Select(i => new ParrotSample(ex[i].Ids, ex[i].Labels, (i + shift) % n)).ToList();
            var o = model.Forward(samples, f);
            int len = o.Labels.Dim(1);
            var sh = o.Logits.Narrow(1, 0, len - 1).Reshape(-1, o.Logits.Shape[^1]);
            var tg = o.Labels.Narrow(1, 1, len - 1).Contiguous().Reshape(-1);
            var l = Variable.CrossEntropy(sh, tg, -100, LossReduction.None).Value.ToDoubleArray();
            var t = tg.ToLongArray();
            for (int k = 0; k < l.Length; k++) if (t[k] != -100) { sum += l[k]; cnt++; }
        }
        Console.WriteLine($"image shift {shift}: loss {sum / cnt:F4} over {cnt} tokens");
    }
}
static double Rms(Tensor t) { var a = t.ToDoubleArray(); return Math.Sqrt(a.Sum(x => x * x) / a.Length); }
static double Std(Tensor t) { var a = t.ToDoubleArray(); double m = a.Average(); return Math.Sqrt(a.Sum(x => (x - m) * (x - m)) / a.Length); }
