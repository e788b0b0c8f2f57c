using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// Single-prompt paths refuse a prompt too long for the context before the vision tower (the costly part) runs: a
/// continuous batch's join (serve's path), the directory's greedy generate (the CLI's), the near-tie judge's logits and the
/// chat. The join and the directory's generate used to encode the image, then refuse the prompt with the same message.
/// </summary>
public class EarlyLengthChecksTests() : TinyModelSetFixture("parrot-early-length-tests")
{
    private static ChatTurn[] Ask(string q, bool image = false) => [new ChatTurn(ChatRole.User, q, image)];

    /// <summary>The tiny tower's encoder, counting its images; it says its feature rows only when <paramref name="says"/>.</summary>
    private sealed class CountingEncoder(ClipImageEncoder inner, bool says) : IImageEncoder
    {
        public int Encoded;
        public Tensor Encode(RgbImage image) { Encoded++; return inner.Encode(image); }
        public int? FeatureRows => says ? inner.FeatureRows : null;
        public void Dispose() => inner.Dispose();
    }

    /// <summary>The tiny Parrot (1024 positions, 17 visual tokens an image) over a <see cref="CountingEncoder"/>.</summary>
    private (ParrotModel Model, CountingEncoder Encoder) Load(bool says, Action<double[]>? onRouting = null)
    {
        CountingEncoder? counting = null;
        var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions
        {
            OnRouting = onRouting,
            ImageEncoder = (d, m) => counting = new CountingEncoder(new ClipImageEncoder(
                global::Parrot.Nn.Models.Clip.ClipVisionLoader.Load(Path.Combine(ParrotDir, "vision")),
                new ImagePreprocessor(PreprocessorConfig.Clip336 with { ShortestEdge = 28, CropHeight = 28, CropWidth = 28 }),
                m.Config.MmVisionSelectLayer, padToSquare: true), says),
        });
        return (model, counting!);
    }

    /// <summary>Positions of a one-question prompt with an image: the marker becomes the 17 visual tokens.</summary>
    private static int WithImage(ParrotModel model, string question) => model.Chat.BuildPrompt(Ask(question, image: true)).Length - 1 + 17;

    private static string TooLong(int length, int asked) =>
        $"this model's maximum context length is 1024 tokens; the prompt has {length} tokens and {asked} more were asked for (max new tokens), {length + asked} in all";

    [Test]
    public void AJoinRefusesALongPromptBeforeItsImageIsEncoded([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        var routed = new List<double[]>();
        var (model, encoder) = Load(says: true, routed.Add);
        using var owned = model;
        Assert.That(model.VisualTokens, Is.EqualTo(17));
        var red = ImageLoader.Load(Red);
        using var batch = model.StartContinuousBatch(mode);
        // The text fits with 4 new tokens; its 17 visual tokens do not.
        string question = new('x', 955);
        int length = WithImage(model, question);
        Assert.That(model.Chat.BuildPrompt(Ask(question)).Length + 4, Is.LessThanOrEqualTo(1024));
        Assert.That(length + 4, Is.GreaterThan(1024));
        var e = Assert.Throws<PromptTooLongException>(() => batch.Join(Ask(question, image: true), red, new GenerationOptions(), 4));
        Assert.That(e!.Message, Is.EqualTo(TooLong(length, 4)));
        // null: as many as the context leaves; a prompt that fills it leaves none.
        string filling = question;
        while (WithImage(model, filling) < 1024) filling += "x y ";
        e = Assert.Throws<PromptTooLongException>(() => batch.Join(Ask(filling, image: true), red, new GenerationOptions(), null));
        Assert.That(e!.Message, Is.EqualTo($"this model's maximum context length is 1024 tokens; the prompt has {WithImage(model, filling)} tokens, which leaves no room for an answer"));
        Assert.That(encoder.Encoded, Is.Zero, "no image was encoded");
        Assert.That(routed, Is.Empty, "no prompt was embedded (its image routed)");
        Assert.That(batch.Count, Is.Zero);

        // What fits joins as before, its image encoded once.
        var seq = batch.Join(Ask("what colour is it?", image: true), red, new GenerationOptions { IgnoreEos = true }, 3);
        Assert.That(seq.PromptTokens, Is.EqualTo(WithImage(model, "what colour is it?")));
        Assert.That(encoder.Encoded, Is.EqualTo(1));
        while (batch.Count > 0) batch.Step();
        Assert.That(seq.GeneratedTokens, Is.EqualTo(3));
    }

    /// <summary>
    /// mm_vision_select_feature "patch": the join's early check counts an image as the prefill does, its 17 feature rows
    /// less the CLS one (16 positions). A prompt and answer that fill the context exactly join (an early count with the
    /// CLS row would refuse it), one token more is refused before the image is encoded, with the prefill's message.
    /// </summary>
    [Test]
    public void APatchModelsJoinCountsItsImageAsThePrefillDoes([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        string dir = Path.Combine(Root, $"parrot-patch-{mode}");
        CopyDirectory(ParrotDir, dir);
        var config = (System.Text.Json.Nodes.JsonObject)System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        config["use_moe"] = false; // the MoE needs the CLS token
        config["mm_vision_select_feature"] = "patch";
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        CountingEncoder? counting = null;
        using var model = ParrotModel.Load(dir, new ParrotModelOptions
        {
            ImageEncoder = (d, m) => counting = new CountingEncoder(new ClipImageEncoder(
                global::Parrot.Nn.Models.Clip.ClipVisionLoader.Load(Path.Combine(dir, "vision")),
                new ImagePreprocessor(PreprocessorConfig.Clip336 with { ShortestEdge = 28, CropHeight = 28, CropWidth = 28 }),
                m.Config.MmVisionSelectLayer, padToSquare: true), says: true),
        });
        Assert.That(model.VisualTokens, Is.EqualTo(16));
        var red = ImageLoader.Load(Red);
        using var batch = model.StartContinuousBatch(mode);
        string question = new('x', 900);
        int length = model.Chat.BuildPrompt(Ask(question, image: true)).Length - 1 + 16;
        int room = 1024 - length;
        var e = Assert.Throws<PromptTooLongException>(() => batch.Join(Ask(question, image: true), red, new GenerationOptions(), room + 1));
        Assert.That(e!.Message, Is.EqualTo(TooLong(length, room + 1)));
        Assert.That(counting!.Encoded, Is.Zero);
        var seq = batch.Join(Ask(question, image: true), red, new GenerationOptions { IgnoreEos = true }, room);
        Assert.That(seq.PromptTokens, Is.EqualTo(length), "the prefill's count");
        Assert.That(counting.Encoded, Is.EqualTo(1));
        batch.Remove(seq);
        // null: as many as the context leaves; the same prompt one position short of the context still has room for one.
        seq = batch.Join(Ask(question, image: true), red, new GenerationOptions { IgnoreEos = true }, null);
        Assert.That(seq.PromptTokens, Is.EqualTo(length));
        batch.Remove(seq);
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(from)) CopyDirectory(d, Path.Combine(to, Path.GetFileName(d)));
    }

    [Test]
    public void AnEncoderThatDoesNotSayItsRowsIsCheckedAfterEncodingWithTheSameMessage()
    {
        var (model, encoder) = Load(says: false);
        using var owned = model;
        Assert.That(model.VisualTokens, Is.Null);
        var red = ImageLoader.Load(Red);
        using var batch = model.StartContinuousBatch(DecodeStepMode.Eager);
        string question = new('x', 955);
        var e = Assert.Throws<PromptTooLongException>(() => batch.Join(Ask(question, image: true), red, new GenerationOptions(), 4));
        Assert.That(e!.Message, Is.EqualTo(TooLong(WithImage(model, question), 4)), "the early check's message is the prefill's");
        Assert.That(encoder.Encoded, Is.EqualTo(1), "the length is only known from the features");
        Assert.That(batch.Count, Is.Zero);
    }

    [Test]
    public void TheDirectorysGenerateRefusesALongPromptBeforeTheTowerRuns()
    {
        using var m = ParrotModelDirectory.Load(ParrotDir);
        Assert.That(m.ImageTokens, Is.EqualTo(17));
        var tower = m.Model.VisionFeatures!;
        int runs = 0;
        m.Model.VisionFeatures = pixels => { runs++; return tower(pixels); };
        var red = ImageLoader.Load(Red);
        // 1001 ids, the placeholder first: T' = 1000 + 17 = 1017 positions.
        int[] ids = [ParrotSample.ImageToken, .. Enumerable.Range(0, 1000).Select(i => 1 + i % 250)];
        var e = Assert.Throws<PromptTooLongException>(() => m.Generate(ids, red, 8, [], ignoreEos: true));
        Assert.That(e!.Message, Is.EqualTo(TooLong(1017, 8)));
        Assert.That(runs, Is.Zero, "the tower did not run");
        // Exactly the context: the tower runs once and the answer fills it.
        Assert.That(m.Generate(ids, red, 7, [], ignoreEos: true), Has.Count.EqualTo(7));
        Assert.That(runs, Is.EqualTo(1));
        // Zero new tokens: nothing is refused (the generator runs nothing), as before.
        Assert.That(m.Generate(ids.Concat(Enumerable.Repeat(5, 20)).ToArray(), red, 0, []), Is.Empty);
    }

    /// <summary>
    /// With no new tokens the model API returns empty answers without encoding any image (the generator ends every prompt
    /// before it runs the model, so the features went unused): Ask, a batch of questions, Generate, the stream and the chat.
    /// The conversation and image are still checked as before, a negative count refused, and a prompt past the context
    /// still not refused (nothing runs). Asked for one token, the image is encoded as before, once.
    /// </summary>
    [Test]
    public void NoNewTokensEncodeNoImageThroughTheModelApi()
    {
        var (model, encoder) = Load(says: true);
        using var owned = model;
        var red = ImageLoader.Load(Red);
        var none = new GenerationOptions { MaxNewTokens = 0 };
        Assert.That(model.Ask("what colour is it?", red, none), Is.Empty);
        Assert.That(model.Ask([new ParrotQuestion("what colour?", red), new ParrotQuestion("no image"), new ParrotQuestion("and this?", red)], none), Is.EqualTo(new[] { "", "", "" }));
        var result = model.Generate(Ask("what colour is it?", image: true), red, none);
        Assert.That(result.Tokens, Is.Empty);
        Assert.That(result.Reason, Is.EqualTo(FinishReason.MaxTokens));
        Assert.That(model.AskStreaming("what colour is it?", red, none).ToList(), Is.Empty);
        var chat = model.StartChat();
        Assert.That(chat.Send("what colour is it?", red, none), Is.Empty);
        Assert.That(chat.History.Select(t => t.Role).TakeLast(2), Is.EqualTo(new[] { ChatRole.User, ChatRole.Assistant }), "the exchange is kept as before");
        // A prompt past the context is not refused with no new tokens (nothing runs), as before.
        Assert.That(model.Ask(new string('x', 2000), red, none), Is.Empty);
        Assert.That(encoder.Encoded, Is.Zero, "no image was encoded");

        // Still checked: the conversation against the image, the token count.
        Assert.That(() => model.Generate(Ask("no marker"), red, none), Throws.ArgumentException.With.Message.Contains("no turn of the conversation carries it"));
        Assert.That(() => model.Ask("what colour is it?", red, new GenerationOptions { MaxNewTokens = -1 }), Throws.ArgumentException.With.Message.Contains("max new tokens must be ≥ 0"));
        Assert.That(encoder.Encoded, Is.Zero);

        Assert.That(model.Generate(Ask("what colour is it?", image: true), red, new GenerationOptions { MaxNewTokens = 1, IgnoreEos = true }).Tokens, Has.Length.EqualTo(1));
        Assert.That(encoder.Encoded, Is.EqualTo(1), "one token: the image is encoded, once");
    }

    [Test]
    public void TheJudgesLogitsAndTheChatRefuseBeforeEncoding()
    {
        var (model, encoder) = Load(says: true);
        using var owned = model;
        var red = ImageLoader.Load(Red);
        // The prompt fits; with the answer so far it does not.
        string question = new('x', 940);
        int length = WithImage(model, question);
        var answer = Enumerable.Repeat(7, 1025 - length).ToArray();
        var e = Assert.Throws<PromptTooLongException>(() => model.NextTokenLogits(Ask(question, image: true), red, new GenerationOptions(), answer));
        Assert.That(e!.Message, Is.EqualTo($"this model's maximum context length is 1024 tokens; the prompt has 1025 tokens"));
        Assert.That(encoder.Encoded, Is.Zero);
        Assert.That(model.NextTokenLogits(Ask(question, image: true), red, new GenerationOptions(), answer[1..]).Raw, Is.Not.Empty, "the prompt and answer fill the context exactly");
        Assert.That(encoder.Encoded, Is.EqualTo(1));

        // The chat (and `parrot chat`) goes through the model's checked prompts: refused, nothing encoded, history kept.
        var chat = model.StartChat();
        var options = new GenerationOptions { MaxNewTokens = 1025 - length };
        Assert.Throws<PromptTooLongException>(() => chat.Send(question, red, options));
        Assert.That(encoder.Encoded, Is.EqualTo(1));
        Assert.That(chat.History, Is.Empty);
        Assert.That(chat.Image, Is.Null);
    }
}
