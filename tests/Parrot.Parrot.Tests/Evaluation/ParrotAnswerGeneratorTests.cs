using Parrot.Autograd;
using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Evaluation;
using Parrot.Parrot.Model;
using Parrot.Parrot.Tests.Text;
using Parrot.Parrot.Tests.Training;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

namespace Parrot.Parrot.Tests.Evaluation;

public class ParrotAnswerGeneratorTests
{
    /// <summary>A model directory with a tiny random Parrot (MoE on), a tiny CLIP tower beside it and the byte-level ChatML tokenizer.</summary>
    private static string WriteModel(string root)
    {
        global::Parrot.Tests.Shared.TinyModels.WriteSmallTower(Path.Combine(root, "tower"));
        var model = Path.Combine(root, "model");
        using (var m = new ParrotForCausalLM(TrainingFixtures.Config(useMoe: true) with { MmVisionTower = "../tower" }, seed: 5)) ParrotLoader.Save(m, model);
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), TrainingFixtures.TokenizerJson().ToJsonString());
        return model;
    }

    [Test]
    public void LoadsTextOnlyQwen2AndBf16ModelsAsParrotModelDoes()
    {
        var root = global::Parrot.Tests.Shared.TinyModels.TempDir("parrot-eval-tests");
        try
        {
            var qwen = global::Parrot.Tests.Shared.TinyModels.WriteQwen2(Path.Combine(root, "qwen2"));
            var request = new AnswerRequest(null, "Q?\nA. red\nB. blue\nAnswer with the option's letter from the given choices directly.", "en", 6);
            using (var generator = ParrotAnswerGenerator.Load(qwen))
            using (var api = global::Parrot.Parrot.ParrotModel.Load(qwen))
            {
                Assert.That(generator.HasVisionTower, Is.False);
                var expected = api.Ask(request.Prompt, (RgbImage?)null, new global::Parrot.Parrot.Inference.GenerationOptions { MaxNewTokens = 6 });
                Assert.That(generator.Answer(request), Is.EqualTo(expected.Trim(' ', '\t', '\n', '\r', '\v', '\f')));
                Assert.That(() => generator.Answer(request with { Image = [1, 2, 3] }), Throws.InvalidOperationException.With.Message.Contain("no vision tower"));
            }

            // A bf16 checkpoint is widened to float32 on load: the same answers as its float32 copy (bf16 values are exact in float32).
            var parrot = global::Parrot.Tests.Shared.TinyModels.WriteParrot(Path.Combine(root, "parrot"));
            var bf16 = Path.Combine(root, "parrot-bf16");
            using (var m = ParrotLoader.Load(parrot, DType.F32)) ParrotLoader.Save(m, bf16, DType.BF16);
            File.Copy(Path.Combine(parrot, "tokenizer.json"), Path.Combine(bf16, "tokenizer.json"));
            var f32 = Path.Combine(root, "parrot-f32");
            using (var m = ParrotLoader.Load(bf16, DType.F32)) ParrotLoader.Save(m, f32, DType.F32);
            File.Copy(Path.Combine(parrot, "tokenizer.json"), Path.Combine(f32, "tokenizer.json"));
            var png = global::Parrot.Tests.Shared.TinyModels.WritePng(Path.Combine(root, "q.png"), 200, 30, 40);
            var vision = Path.Combine(parrot, "vision");
            var withImage = request with { Image = File.ReadAllBytes(png), MaxNewTokens = 8 };
            using var a = ParrotAnswerGenerator.Load(bf16, vision);
            using var b = ParrotAnswerGenerator.Load(f32, vision);
            Assert.That(a.HasVisionTower, Is.True);
            Assert.That(a.Generate([withImage])[0].Tokens, Is.EqualTo(b.Generate([withImage])[0].Tokens));
            Assert.That(a.Generate([withImage])[0].Tokens, Is.Not.Empty);
        }
        finally { Directory.Delete(root, true); }
    }

    [Test]
    public void AnswersWithTheEvaluationPromptAndGreedyTokensEqualToRecomputation()
    {
        var root = TrainingFixtures.TempDir();
        var modelDir = WriteModel(root);
        var png = Path.Combine(root, "q.png");
        TrainingFixtures.WritePng(png, 200, 30, 40);
        const string prompt = "Q?\nA. red\nB. blue\nAnswer with the option's letter from the given choices directly.";
        var request = new AnswerRequest(File.ReadAllBytes(png), prompt, "en", 12);

        using var generator = ParrotAnswerGenerator.Load(modelDir);
        var ids = generator.PromptIds(request);
        var result = generator.Generate([request])[0];
        var generated = result.Tokens.ToList();
        if (result.Reason == global::Parrot.Parrot.Inference.FinishReason.EndOfSequence) generated.RemoveAt(generated.Count - 1);

        // The prompt: ChatML with the default system turn and "<image>\n" before the question (byte-level ids).
        var tokenizer = TokenizerFixtures.Build(TrainingFixtures.TokenizerJson());
        var expectedIds = tokenizer.Encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
            .Append(ParrotSample.ImageToken)
            .Concat(tokenizer.Encode("\n" + prompt + "<|im_end|>\n<|im_start|>assistant\n")).ToArray();
        Assert.That(ids, Is.EqualTo(expectedIds));

        // Reference: recompute the whole sequence for every new token (no cache), features straight from the tower.
        using var model = ParrotLoader.Load(modelDir, DType.F32);
        using var tower = ClipVisionLoader.Load(Path.Combine(root, "tower"), DType.F32);
        var reference = new List<int>();
        using (Graph.NoGrad())
        using (TensorScope.Begin())
        {
            var pre = ImagePreprocessor.FromDirectory(Path.Combine(root, "tower"));
            var pixels = pre.Process(ImageLoader.Load(png), padToSquare: true).Unsqueeze(0);
            var features = tower.HiddenState(new Variable(pixels), tower.HiddenStateIndex(model.Config.MmVisionSelectLayer)).Value;
            while (reference.Count < request.MaxNewTokens)
            {
                using var step = TensorScope.Begin();
                var logits = model.Forward([new ParrotSample([.. ids, .. reference], null, 0)], features).Logits.Value;
                var last = logits.Select(1, logits.Dim(1) - 1).Reshape(-1).ToFloatArray();
                int next = Array.IndexOf(last, last.Max());
                if (next is 256 or 258) break;
                reference.Add(next);
            }
        }
        Assert.That(generated, Is.EqualTo(reference));
        Assert.That(generated, Has.Count.GreaterThan(0));
        // Special tokens skipped, then Python's strip(string.whitespace): ASCII whitespace only.
        string expectedText = tokenizer.Decode(reference.ToArray(), skipSpecialTokens: true).Trim(' ', '\t', '\n', '\r', '\v', '\f');
        Assert.That(generator.Answer(request), Is.EqualTo(expectedText));

        // Without an image the prompt has no placeholder; the token limit holds.
        var textOnly = request with { Image = null, MaxNewTokens = 3 };
        Assert.That(generator.PromptIds(textOnly), Does.Not.Contain(ParrotSample.ImageToken));
        Assert.That(generator.Generate([textOnly])[0].Tokens, Has.Length.LessThanOrEqualTo(3));
        Assert.That(() => generator.Answer(request with { Image = [1, 2, 3] }), Throws.InstanceOf<ImageLoadException>());

        // A batch (images, no image, different prompt lengths) answers exactly as one by one.
        var png2 = Path.Combine(root, "q2.png");
        TrainingFixtures.WritePng(png2, 10, 220, 90);
        var batch = new[]
        {
            request, request with { Image = null }, request with { Image = File.ReadAllBytes(png2), Prompt = "Which?\nA. x\nB. y\nC. z\n" + BenchmarkLanguages.Instructions["ru"] },
            request with { Image = null, Prompt = "Hi" },
        };
        Assert.That(generator.Answer(batch), Is.EqualTo(batch.Select(generator.Answer).ToList()));
        Directory.Delete(root, true);
    }

    [Test]
    public void CapturedRoutingIsTheMoeOfEachPromptPerLanguageInBatchesAsOneByOne()
    {
        var root = TrainingFixtures.TempDir();
        var modelDir = WriteModel(root);
        var png1 = Path.Combine(root, "q1.png");
        var png2 = Path.Combine(root, "q2.png");
        TrainingFixtures.WritePng(png1, 200, 30, 40);
        TrainingFixtures.WritePng(png2, 10, 220, 90);
        var requests = new[]
        {
            new AnswerRequest(File.ReadAllBytes(png1), "What colour?\nA. red\nB. blue\n" + BenchmarkLanguages.Instructions["en"], "en", 3),
            new AnswerRequest(null, "Hi", "en", 3),
            new AnswerRequest(File.ReadAllBytes(png2), "Какой цвет?\nA. красный\nB. синий\nC. зелёный\n" + BenchmarkLanguages.Instructions["ru"], "ru", 3),
            new AnswerRequest(File.ReadAllBytes(png2), "What shape?\nA. circle\nB. square\n" + BenchmarkLanguages.Instructions["en"], "en", 3),
        };

        using var batched = ParrotAnswerGenerator.Load(modelDir, captureRouting: true);
        Assert.That(batched.Routing, Is.Null, "nothing routed yet");
        var batchAnswers = batched.Answer(requests);
        using var single = ParrotAnswerGenerator.Load(modelDir, captureRouting: true);
        Assert.That(requests.Select(single.Answer).ToList(), Is.EqualTo(batchAnswers), "capturing changes no answer");
        using (var plain = ParrotAnswerGenerator.Load(modelDir))
        {
            Assert.That(plain.Answer(requests), Is.EqualTo(batchAnswers));
            Assert.That(plain.Routing, Is.Null, "no capture unless asked");
        }

        // Independent reference in float64: w = softmax(G · (softmax(cls · Tᵀ / √H) · T)), cls the projected CLS
        // token of the image's features, T the embeddings of the prompt's text tokens (the image marker left out).
        using var model = ParrotLoader.Load(modelDir, DType.F32);
        using var tower = ClipVisionLoader.Load(Path.Combine(root, "tower"), DType.F32);
        var pre = ImagePreprocessor.FromDirectory(Path.Combine(root, "tower"));
        double[] Reference(AnswerRequest r)
        {
            using var ng = Graph.NoGrad();
            using var scope = TensorScope.Begin();
            var pixels = pre.Process(ImageLoader.Load(r.Image!), padToSquare: true).Unsqueeze(0);
            var features = tower.HiddenState(new Variable(pixels), tower.HiddenStateIndex(model.Config.MmVisionSelectLayer)).Value;
            var cls = model.Model.Projector.Forward(new Variable(features)).Value.Select(0, 0).Select(0, 0).ToDoubleArray();
            int h = cls.Length;
            var table = model.Model.EmbedTokens.Weight.Value;
            var text = batched.PromptIds(r).Where(t => t != ParrotSample.ImageToken).Select(t => table.Select(0, t).ToDoubleArray()).ToArray();
            var a = Softmax(text.Select(row => row.Zip(cls, (x, y) => x * y).Sum() / Math.Sqrt(h)).ToArray());
            var g = Enumerable.Range(0, h).Select(j => Enumerable.Range(0, text.Length).Sum(i => a[i] * text[i][j])).ToArray();
            var gate = model.Model.Moe.Gate.Weight.Value;
            return Softmax(Enumerable.Range(0, gate.Dim(0)).Select(e => gate.Select(0, e).ToDoubleArray().Zip(g, (x, y) => x * y).Sum()).ToArray());
        }
        static double[] Softmax(double[] z)
        {
            double m = z.Max();
            var e = z.Select(v => Math.Exp(v - m)).ToArray();
            return e.Select(v => v / e.Sum()).ToArray();
        }
        var en = new[] { Reference(requests[0]), Reference(requests[3]) };
        var expectedEn = Enumerable.Range(0, en[0].Length).Select(k => (en[0][k] + en[1][k]) / 2).ToArray();
        var expectedRu = Reference(requests[2]);
        Assert.That(expectedEn.Max() - expectedEn.Min(), Is.GreaterThan(1e-4), "the reference routing is not uniform");
        foreach (var g in new[] { batched, single })
        {
            var routing = g.Routing!;
            Assert.That(routing, Is.Not.Null);
            Assert.That(routing.Languages, Is.EqualTo(new[] { "en", "ru" }));
            Assert.That(routing.Count("en"), Is.EqualTo(2), "the text-only question is not routed");
            Assert.That(routing.Count("ru"), Is.EqualTo(1));
            Assert.That(routing.Mean("en"), Is.EqualTo(expectedEn).Within(1e-5));
            Assert.That(routing.Mean("ru"), Is.EqualTo(expectedRu).Within(1e-5));
        }

        // With the MoE off (the baseline) nothing is routed.
        var baselineDir = Path.Combine(root, "baseline");
        ParrotLoader.Save(model, baselineDir, config: model.Config with { UseMoe = false });
        File.Copy(Path.Combine(modelDir, "tokenizer.json"), Path.Combine(baselineDir, "tokenizer.json"));
        using var baseline = ParrotAnswerGenerator.Load(baselineDir, Path.Combine(root, "tower"), captureRouting: true);
        baseline.Answer(requests);
        Assert.That(baseline.Routing, Is.Null);
        Directory.Delete(root, true);
    }
}
