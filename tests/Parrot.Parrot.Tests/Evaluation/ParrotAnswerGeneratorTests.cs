using System.Text.Json.Nodes;
using Parrot.Autograd;
using Parrot.Nn;
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
        var tower = Path.Combine(root, "tower");
        Directory.CreateDirectory(tower);
        File.WriteAllText(Path.Combine(tower, "config.json"), new JsonObject
        {
            ["model_type"] = "clip_vision_model", ["hidden_size"] = 12, ["intermediate_size"] = 24, ["num_hidden_layers"] = 2,
            ["num_attention_heads"] = 2, ["num_channels"] = 3, ["image_size"] = 16, ["patch_size"] = 8, ["hidden_act"] = "gelu", ["layer_norm_eps"] = 1e-5,
        }.ToJsonString());
        File.WriteAllText(Path.Combine(tower, "preprocessor_config.json"), "{\"size\": {\"shortest_edge\": 16}, \"crop_size\": {\"height\": 16, \"width\": 16}}");
        var clip = new ClipVisionConfig { HiddenSize = 12, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 2, ImageSize = 16, PatchSize = 8, HiddenAct = "gelu" };
        using (var clipModel = new ClipVisionModel(clip, seed: 1)) ModelLoading.Save(clipModel, tower);
        var model = Path.Combine(root, "model");
        using (var m = new ParrotForCausalLM(TrainingFixtures.Config(useMoe: true) with { MmVisionTower = "../tower" }, seed: 5)) ParrotLoader.Save(m, model);
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), TrainingFixtures.TokenizerJson().ToJsonString());
        return model;
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
        var (ids, generated) = generator.Generate(request);

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
        Assert.That(generator.Answer(request), Is.EqualTo(ParrotAnswerGenerator.PythonStrip(tokenizer.Decode(reference.ToArray(), skipSpecialTokens: true))));

        // Without an image the prompt has no placeholder; the token limit holds.
        var (textIds, textOut) = generator.Generate(request with { Image = null, MaxNewTokens = 3 });
        Assert.That(textIds, Does.Not.Contain(ParrotSample.ImageToken));
        Assert.That(textOut, Has.Count.LessThanOrEqualTo(3));
        Assert.That(() => generator.Answer(request with { Image = [1, 2, 3] }), Throws.InstanceOf<ImageLoadException>());
        Directory.Delete(root, true);
    }
}
