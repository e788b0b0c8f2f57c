using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// A batch is checked whole before any of it runs: every prompt's ids, image and length against the context. The sessions
/// used to check each prompt as its prefill came, so a batch whose prompt 1 did not fit prefilled prompt 0 first (its image
/// encoded, its MoE routed) and threw that work away; the errors of a batch name the prompt.
/// </summary>
public class BatchUpFrontChecksTests() : TinyModelSetFixture("parrot-upfront-tests")
{
    /// <summary>A tiny Parrot (MoE on, cls_patch: an image of k feature rows is k positions) with a 64-position context.</summary>
    private static ParrotForCausalLM SmallContextParrot() =>
        new(TinyModels.ParrotConfig() with { Text = TinyModels.TextConfig() with { MaxPositionEmbeddings = 64 } }, 3);

    private static Tensor Features(int rows) => Tensor.Full([rows, 32], 0.1);

    [Test]
    public void TheGeneratorChecksEveryPromptBeforeItPrefillsAny([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var lm = SmallContextParrot();
        var routed = new List<double[]>();
        var generator = new Generator(Generator.Wrap(lm, routed.Add, mode));
        using var small = Features(5);
        using var big = Features(20);
        var first = new GenerationPrompt([1, 2, ChatMl.ImageTokenIndex, 3], small); // 3 + 5 positions: fits
        var options = new GenerationOptions { MaxNewTokens = 10, IgnoreEos = true };

        // Prompt 1 is 40 ids − 1 + 20 visual tokens = 59 positions: with 10 new tokens past the 64 of the context.
        var tooLong = new GenerationPrompt([.. Enumerable.Range(1, 39), ChatMl.ImageTokenIndex], big);
        var e = Assert.Throws<PromptTooLongException>(() => generator.Generate([first, tooLong], options));
        Assert.That(e!.Message, Does.StartWith("prompt 1: this model's maximum context length is 64 tokens; the prompt has 59 tokens and 10 more"));
        Assert.That(routed, Is.Empty, "prompt 0 was not prefilled (its image not routed) before prompt 1 was refused");

        // A bad prompt 1 (a marker without features, an id outside the vocabulary): refused before prompt 0 runs, and named.
        var bad = Assert.Throws<ArgumentException>(() => generator.Generate([first, new GenerationPrompt([1, ChatMl.ImageTokenIndex])], options));
        Assert.That(bad!.Message, Is.EqualTo("generate: prompt 1: the prompt has an image marker but no image features"));
        bad = Assert.Throws<ArgumentException>(() => generator.Generate([first, new GenerationPrompt([1, 999])], options));
        Assert.That(bad!.Message, Does.StartWith("generate: prompt 1: token id 999 (position 1) is outside the vocabulary"));
        Assert.That(routed, Is.Empty);

        // Exactly the context fits, and both then run (the batch's check counts what the prefill counts).
        var fills = new GenerationPrompt([.. Enumerable.Range(1, 34), ChatMl.ImageTokenIndex], big); // 34 + 20 = 54, + 10 = 64
        var results = generator.Generate([first, fills], options);
        Assert.That(results.Select(r => r.Tokens.Length), Is.EqualTo(new[] { 10, 10 }));
        Assert.That(routed, Has.Count.EqualTo(2));
    }

    /// <summary>
    /// mm_vision_select_feature "patch": the CLS row is dropped where the image is spliced in, so 1+N feature rows are N
    /// positions, the marker's one replaced. The batch check counts as the prefill does: the exact fill runs, one more
    /// token is refused naming the length.
    /// </summary>
    [Test]
    public void APatchModelCountsAnImageWithoutItsClsRow()
    {
        using var lm = new ParrotForCausalLM(TinyModels.ParrotConfig() with
        {
            UseMoe = false, MmVisionSelectFeature = "patch", Text = TinyModels.TextConfig() with { MaxPositionEmbeddings = 64 },
        }, 3);
        var generator = new Generator(Generator.Wrap(lm));
        using var features = Features(21); // 20 visual tokens
        var options = new GenerationOptions { MaxNewTokens = 10, IgnoreEos = true };
        var fills = new GenerationPrompt([.. Enumerable.Range(1, 34), ChatMl.ImageTokenIndex], features); // 34 + 20 + 10 = 64
        Assert.That(generator.Generate([fills, fills], options).Select(r => r.Tokens.Length), Is.EqualTo(new[] { 10, 10 }));
        var over = new GenerationPrompt([.. Enumerable.Range(1, 35), ChatMl.ImageTokenIndex], features);
        var e = Assert.Throws<PromptTooLongException>(() => generator.Generate([fills, over], options));
        Assert.That(e!.Message, Does.StartWith("prompt 1: this model's maximum context length is 64 tokens; the prompt has 55 tokens and 10 more"));
    }

    [Test]
    public void AQwenBatchNamesTheBadPrompt()
    {
        using var lm = new Qwen2ForCausalLM(TinyModels.TextConfig() with { MaxPositionEmbeddings = 16 }, 3);
        var generator = new Generator(Generator.Wrap(lm));
        var options = new GenerationOptions { MaxNewTokens = 4 };
        var e = Assert.Throws<ArgumentException>(() => generator.Generate([new GenerationPrompt([1, 2]), new GenerationPrompt([3, 400])], options));
        Assert.That(e!.Message, Is.EqualTo("generate: prompt 1: token id 400 is outside the vocabulary [0, 259)"));
        // One prompt alone: the message it always had.
        e = Assert.Throws<ArgumentException>(() => generator.Generate([new GenerationPrompt([3, 400])], options));
        Assert.That(e!.Message, Is.EqualTo("generate: token id 400 is outside the vocabulary [0, 259)"));
        var tooLong = Assert.Throws<PromptTooLongException>(() => generator.Generate([new GenerationPrompt([1, 2]), new GenerationPrompt([.. Enumerable.Range(1, 13)])], options));
        Assert.That(tooLong!.Message, Does.StartWith("prompt 1: this model's maximum context length is 16 tokens; the prompt has 13 tokens"));
    }

    /// <summary>An encoder that counts its images (the tower's own, which says its feature rows).</summary>
    private sealed class CountingEncoder(ClipImageEncoder inner) : IImageEncoder
    {
        public int Encoded;
        public Tensor Encode(RgbImage image) { Encoded++; return inner.Encode(image); }
        public int? FeatureRows => inner.FeatureRows;
        public void Dispose() => inner.Dispose();
    }

    [Test]
    public void TheModelApiEncodesNoImageOfABatchThatDoesNotFit()
    {
        CountingEncoder? counting = null;
        var routed = new List<double[]>();
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions
        {
            OnRouting = routed.Add,
            ImageEncoder = (d, m) => counting = new CountingEncoder(new ClipImageEncoder(
                global::Parrot.Nn.Models.Clip.ClipVisionLoader.Load(Path.Combine(ParrotDir, "vision")),
                new ImagePreprocessor(PreprocessorConfig.Clip336 with { ShortestEdge = 28, CropHeight = 28, CropWidth = 28 }),
                m.Config.MmVisionSelectLayer, padToSquare: true)),
        });
        Assert.That(model.VisualTokens, Is.EqualTo(17));
        var red = ImageLoader.Load(Red);
        var blue = ImageLoader.Load(Blue);
        var options = new GenerationOptions { MaxNewTokens = 4 };
        // Prompt 1's text fits with 4 new tokens; its 17 visual tokens do not.
        string question = new('x', 955);
        int text = model.Chat.BuildPrompt([new ChatTurn(ChatRole.User, question)]).Length;
        int length = model.Chat.BuildPrompt([new ChatTurn(ChatRole.User, question, HasImage: true)]).Length - 1 + 17; // the marker becomes the visual tokens
        Assert.That(text + 4, Is.LessThanOrEqualTo(1024));
        Assert.That(length + 4, Is.GreaterThan(1024));
        var e = Assert.Throws<PromptTooLongException>(() => model.Ask([new ParrotQuestion("short", red), new ParrotQuestion(question, blue)], options));
        Assert.That(e!.Message, Does.StartWith($"prompt 1: this model's maximum context length is 1024 tokens; the prompt has {length} tokens"));
        Assert.That(counting!.Encoded, Is.Zero, "no image was encoded");
        Assert.That(routed, Is.Empty, "no prompt was prefilled");

        // A bad conversation is named too, before any image is encoded.
        var bad = Assert.Throws<ArgumentException>(() => model.Generate(
            [[new ChatTurn(ChatRole.User, "a", HasImage: true)], [new ChatTurn(ChatRole.User, "b", HasImage: true)]], [red, null], options));
        Assert.That(bad!.Message, Is.EqualTo("prompt 1: the conversation has an <image> marker but no image was given"));
        Assert.That(counting.Encoded, Is.Zero);

        // What fits runs as before.
        Assert.That(model.Ask([new ParrotQuestion("short", red), new ParrotQuestion("other", blue)], options), Has.Count.EqualTo(2));
        Assert.That(counting.Encoded, Is.EqualTo(2));
        Assert.That(routed, Has.Count.EqualTo(2));
    }

    [Test]
    public void TheDirectoryTowerSaysItsVisualTokens()
    {
        using var model = ParrotModel.Load(ParrotDir);
        Assert.That(model.VisualTokens, Is.EqualTo(17), "tiny tower: 28×28 images, 7×7 patches, CLS kept (cls_patch)");
        using var qwen = ParrotModel.Load(QwenDir);
        Assert.That(qwen.VisualTokens, Is.Null);
    }
}
