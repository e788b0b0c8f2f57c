using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

public class ParrotModelApiTests() : TinyModelSetFixture("parrot-inference-tests")
{
    private static readonly GenerationOptions Short = new() { MaxNewTokens = 12 };

    /// <summary>The tiny tower by hand: CLIP preprocessing at 28×28, padded to a square, layer −2.</summary>
    private ClipImageEncoder TowerEncoder(ParrotConfig config) => new(
        global::Parrot.Nn.Models.Clip.ClipVisionLoader.Load(Path.Combine(ParrotDir, "vision")),
        new ImagePreprocessor(PreprocessorConfig.Clip336 with { ShortestEdge = 28, CropHeight = 28, CropWidth = 28 }),
        config.MmVisionSelectLayer, padToSquare: true);

    [Test]
    public void AskAboutAnImageEqualsTheGeneratorOnTheChatMlPromptAndTheTowerFeatures()
    {
        using var model = ParrotModel.Load(ParrotDir);
        Assert.That(model.IsMultimodal && model.SupportsImages, Is.True);
        string answer = model.Ask("Какого цвета квадрат?", Red, Short);

        // The same thing assembled by hand from the parts.
        using var lm = ParrotLoader.Load(ParrotDir);
        using var encoder = TowerEncoder(lm.Config);
        using var features = encoder.Encode(ImageLoader.Load(Red));
        Assert.That(features.Shape.ToArray(), Is.EqualTo(new[] { 17, 32 }));
        var tokenizer = BpeTokenizer.Load(Path.Combine(ParrotDir, "tokenizer.json"));
        var ids = new ChatMl(tokenizer).BuildQuery("Какого цвета квадрат?", withImage: true);
        var expected = new Generator(Generator.Wrap(lm), tokenizer).Generate(new GenerationPrompt(ids, features), Short);
        Assert.That(answer, Is.EqualTo(expected.Text));
        Assert.That(answer.Length, Is.GreaterThan(0));

        // Another image, another answer; no image, another still.
        Assert.That(model.Ask("Какого цвета квадрат?", Blue, Short), Is.Not.EqualTo(answer));
        Assert.That(model.Ask("Какого цвета квадрат?", (string?)null, Short), Is.Not.EqualTo(answer));
    }

    [Test]
    public async Task StreamsConcatenateToTheAnswer()
    {
        using var model = ParrotModel.Load(ParrotDir);
        string answer = model.Ask("What is this?", Red, Short);
        var pieces = model.AskStreaming("What is this?", Red, Short).ToList();
        Assert.That(string.Concat(pieces), Is.EqualTo(answer));
        Assert.That(pieces.Count, Is.GreaterThan(1));
        var asyncPieces = new List<string>();
        await foreach (var p in model.AskStreamingAsync("What is this?", Red, Short)) asyncPieces.Add(p);
        Assert.That(string.Concat(asyncPieces), Is.EqualTo(answer));

        // Cancelling an async stream stops it early and frees the model for the next caller.
        using var cts = new CancellationTokenSource();
        int seen = 0;
        Assert.ThrowsAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in model.AskStreamingAsync("What is this?", Red, new GenerationOptions { MaxNewTokens = 200, IgnoreEos = true }, cts.Token))
                if (++seen == 2) cts.Cancel();
        });
        Assert.That(model.Ask("What is this?", Red, Short), Is.EqualTo(answer));
    }

    [Test]
    public void BatchOfQuestionsEqualsAskingOneByOne()
    {
        using var model = ParrotModel.Load(ParrotDir);
        var red = ImageLoader.Load(Red);
        var blue = ImageLoader.Load(Blue);
        var questions = new[] { new ParrotQuestion("What colour?", red), new ParrotQuestion("Hello!"), new ParrotQuestion("这是什么颜色?", blue) };
        var batch = model.Ask(questions, Short);
        for (int i = 0; i < questions.Length; i++)
            Assert.That(batch[i], Is.EqualTo(model.Ask(questions[i].Text, questions[i].Image, Short)), $"question {i}");
    }

    /// <summary>A null question in a batch used to throw a NullReferenceException from inside the prompt building.</summary>
    [Test]
    public void ANullQuestionInABatchIsAnArgumentError()
    {
        using var model = ParrotModel.Load(QwenDir);
        var e = Assert.Throws<ArgumentException>(() => model.Ask(new[] { new ParrotQuestion("Hello!"), null! }, Short));
        Assert.That(e!.ParamName, Is.EqualTo("questions"));
        Assert.That(e.Message, Does.Contain("question 1 of 2 is null"));
    }

    [Test]
    public void ConcurrentCallersGetTheSameAnswersAsSequentialOnes()
    {
        using var model = ParrotModel.Load(ParrotDir);
        var questions = new[] { "One?", "Two?", "Três?", "Dört?" };
        var sequential = questions.Select(q => model.Ask(q, Red, Short)).ToArray();
        var parallel = new string[questions.Length];
        Parallel.For(0, questions.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
            parallel[i] = i % 2 == 0 ? model.Ask(questions[i], Red, Short) : string.Concat(model.AskStreaming(questions[i], Red, Short)));
        Assert.That(parallel, Is.EqualTo(sequential));
    }

    /// <summary>
    /// A chat answers one message at a time. A second message while an answer still streams used to wait for the model's
    /// turn, which the stream holds: on the same thread (a Send inside a SendStreaming loop) for ever, on another until the
    /// stream ended (here never: the first thread waits for it), then raced it into the history. Now it throws at once,
    /// the first answer and its turns are untouched, and the chat goes on.
    /// </summary>
    [Test]
    public void AChatRefusesASecondMessageWhileOneIsAnswered()
    {
        using var model = ParrotModel.Load(QwenDir);
        var options = new GenerationOptions { MaxNewTokens = 8, IgnoreEos = true };
        string alone = model.StartChat().Send("first", (string?)null, options);
        var chat = model.StartChat();
        var pieces = new List<string>();
        var inner = Task.Run(() =>
        {
            foreach (var piece in chat.SendStreaming("first", (string?)null, options))
            {
                pieces.Add(piece);
                if (pieces.Count == 1)
                {
                    var e = Assert.Throws<InvalidOperationException>(() => chat.Send("inside the loop", (string?)null, options));
                    Assert.That(e!.Message, Does.Contain("a message is still being answered"));
                    Assert.Throws<InvalidOperationException>(() => chat.Reset());
                    var other = Task.Run(() => chat.Send("from another thread", (string?)null, options));
                    Assert.That(Task.WhenAny(other, Task.Delay(TimeSpan.FromSeconds(30))).Result, Is.SameAs(other), "another thread's message waited for the stream");
                    Assert.That(other.Exception?.InnerException, Is.TypeOf<InvalidOperationException>());
                }
            }
        });
        Assert.That(inner.Wait(TimeSpan.FromSeconds(60)), Is.True, "a message sent inside the stream's loop waited for itself");
        Assert.That(string.Concat(pieces), Is.EqualTo(alone));
        Assert.That(chat.History.Select(t => (t.Role, t.Text)), Is.EqualTo(new[] { (ChatRole.User, "first"), (ChatRole.Assistant, alone) }));
        Assert.That(chat.Send("second", (string?)null, options), Is.Not.Null);
        Assert.That(chat.History, Has.Count.EqualTo(4));
    }

    /// <summary>
    /// The chat is busy only while a stream runs: one left early (its enumerator disposed, as a foreach with break does)
    /// or one that throws (options refused on its first item) frees it at once, and neither adds turns. Were the flag
    /// left set, every later message would throw "still being answered" for the chat's life.
    /// </summary>
    [Test]
    public void AChatIsFreeAgainAfterAStreamLeftEarlyOrFailed()
    {
        using var model = ParrotModel.Load(QwenDir);
        var options = new GenerationOptions { MaxNewTokens = 8, IgnoreEos = true };
        string alone = model.StartChat().Send("first", (string?)null, options);
        var chat = model.StartChat();

        foreach (var piece in chat.SendStreaming("abandoned", (string?)null, options)) break;
        Assert.That(chat.History, Is.Empty, "a stream left early adds no turns");

        var bad = options with { TopP = 2 };
        Assert.Throws<ArgumentException>(() => chat.Send("refused", (string?)null, bad));
        Assert.That(chat.History, Is.Empty);

        using (var e = chat.SendStreaming("disposed before its first item", (string?)null, options).GetEnumerator()) { }
        Assert.That(chat.Send("first", (string?)null, options), Is.EqualTo(alone));
        chat.Reset();
        Assert.That(chat.History, Is.Empty);
    }

    [Test]
    public void ChatKeepsTheHistoryAndMovesTheImageToTheLatestTurn()
    {
        using var model = ParrotModel.Load(ParrotDir);
        var chat = model.StartChat();
        string a1 = chat.Send("What is in the picture?", Red, Short);
        Assert.That(chat.History.Select(t => t.Role), Is.EqualTo(new[] { ChatRole.User, ChatRole.Assistant }));
        Assert.That(chat.History[1].Text, Is.EqualTo(a1));
        Assert.That(a1, Is.EqualTo(model.Ask("What is in the picture?", Red, Short)));

        // Turn 2 continues the ChatML of the whole conversation, image on turn 1.
        string a2 = string.Concat(chat.SendStreaming("And in Portuguese?", (string?)null, Short));
        var conversation = new List<ChatTurn>
        {
            new(ChatRole.User, "What is in the picture?", HasImage: true), new(ChatRole.Assistant, a1), new(ChatRole.User, "And in Portuguese?"),
        };
        var red = ImageLoader.Load(Red);
        Assert.That(a2, Is.EqualTo(model.Generate(conversation, red, Short).Text));
        Assert.That(chat.History, Has.Count.EqualTo(4));
        Assert.That(chat.History[0].HasImage, Is.True);

        // A new image moves the marker to the new turn.
        string a3 = chat.Send("And this one?", Blue, Short);
        conversation[0] = conversation[0] with { HasImage = false };
        conversation.Add(new(ChatRole.Assistant, a2));
        conversation.Add(new(ChatRole.User, "And this one?", HasImage: true));
        Assert.That(a3, Is.EqualTo(model.Generate(conversation, ImageLoader.Load(Blue), Short).Text));
        Assert.That(chat.History.Count(t => t.HasImage), Is.EqualTo(1));
        Assert.That(chat.History[4].HasImage, Is.True);

        chat.Reset();
        Assert.That(chat.History, Is.Empty);
        Assert.That(chat.Image, Is.Null);
        Assert.That(chat.Send("What is in the picture?", Red, Short), Is.EqualTo(a1));

        var withSystem = model.StartChat("You answer in Turkish.");
        withSystem.Send("Merhaba", (string?)null, Short);
        Assert.That(withSystem.History[0], Is.EqualTo(new ChatTurn(ChatRole.System, "You answer in Turkish.")));
    }

    [Test]
    public void TextOnlyQwen2ModelsAnswerButRejectImages()
    {
        using var model = ParrotModel.Load(QwenDir);
        Assert.That(model.IsMultimodal, Is.False);
        Assert.That(model.SupportsImages, Is.False);
        Assert.That(model.EndOfSequenceIds, Is.SupersetOf(new[] { TinyModels.ImEnd, TinyModels.EndOfText }));
        var answer = model.Ask("Hello", (string?)null, Short);
        Assert.That(string.Concat(model.AskStreaming("Hello", (string?)null, Short)), Is.EqualTo(answer));
        var e = Assert.Throws<ArgumentException>(() => model.Ask("What is this?", Red, Short));
        Assert.That(e!.Message, Does.Contain("text-only"));
        Assert.Throws<InvalidOperationException>(() => model.StartChat().Send("x", Red, Short));
    }

    [Test]
    public void StopStringsAndEosFromGenerationConfig()
    {
        var dir = Path.Combine(Root, "qwen-gen");
        TinyModels.WriteQwen2(dir, seed: 1);
        string free;
        int[] tokens;
        using (var model = ParrotModel.Load(dir))
        {
            var result = model.Generate([new ChatTurn(ChatRole.User, "Hello")], null, new GenerationOptions { MaxNewTokens = 20, IgnoreEos = true });
            free = result.Text;
            tokens = result.Tokens;
            string stop = free.Substring(free.Length / 2, 2);
            Assert.That(model.Ask("Hello", (string?)null, new GenerationOptions { MaxNewTokens = 20, StopStrings = [stop] }), Is.EqualTo(free[..free.IndexOf(stop, StringComparison.Ordinal)]));
        }
        // generation_config.json's eos ids end answers too.
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), $"{{\"eos_token_id\": [{tokens[5]}]}}");
        using (var model = ParrotModel.Load(dir))
        {
            Assert.That(model.EndOfSequenceIds, Does.Contain(tokens[5]));
            var r = model.Generate([new ChatTurn(ChatRole.User, "Hello")], null, new GenerationOptions { MaxNewTokens = 20 });
            Assert.That(r.Reason, Is.EqualTo(FinishReason.EndOfSequence));
            Assert.That(r.Tokens, Is.EqualTo(tokens[..(Array.IndexOf(tokens, tokens[5]) + 1)]));
        }
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), "{\"eos_token_id\": \"x\"}");
        var bad = Assert.Throws<InvalidDataException>(() => ParrotModel.Load(dir));
        Assert.That(bad!.Message, Does.Contain("generation_config.json").And.Contain("eos_token_id"));
    }

    [Test]
    public void LoadingErrorsNameTheProblem()
    {
        Assert.Throws<DirectoryNotFoundException>(() => ParrotModel.Load(Path.Combine(Root, "nope")));
        var dir = Path.Combine(Root, "no-tokenizer");
        TinyModels.WriteQwen2(dir);
        File.Delete(Path.Combine(dir, "tokenizer.json"));
        Assert.That(Assert.Throws<InvalidDataException>(() => ParrotModel.Load(dir))!.Message, Does.Contain("tokenizer.json"));

        // A Parrot without a tower answers text but says why it cannot take images.
        var noTower = Path.Combine(Root, "no-tower");
        TinyModels.WriteParrot(noTower, withTower: false);
        using var model = ParrotModel.Load(noTower);
        Assert.That(model.SupportsImages, Is.False);
        Assert.That(model.Ask("Hi", (string?)null, Short), Is.Not.Null);
        Assert.That(Assert.Throws<InvalidOperationException>(() => model.Ask("What?", Red, Short))!.Message, Does.Contain("vision tower"));

        // The seam: a supplied encoder is used.
        using var custom = ParrotModel.Load(noTower, new ParrotModelOptions
        {
            ImageEncoder = (d, m) => TowerEncoder(m.Config),
        });
        Assert.That(custom.SupportsImages, Is.True);
        Assert.That(custom.Ask("What?", Red, Short), Is.Not.Empty);
    }

    /// <summary>
    /// An integer dtype used to be reported as the checkpoint's fault ("'model.embed_tokens.weight' is F32; the weights
    /// must be floating-point"), and an empty tower folder as Path's "The value cannot be an empty string".
    /// </summary>
    [Test]
    public void BadLoadingOptionsAreArgumentErrorsNamingTheOption()
    {
        foreach (var dtype in new[] { global::Parrot.Tensors.DType.I32, global::Parrot.Tensors.DType.I64, global::Parrot.Tensors.DType.U8, (global::Parrot.Tensors.DType)99 })
        {
            var e = Assert.Throws<ArgumentException>(() => ParrotModel.Load(QwenDir, new ParrotModelOptions { DType = dtype }), $"{dtype}");
            Assert.That(e!.Message, Does.Contain($"ParrotModelOptions.DType must be floating-point (F32, BF16, F16 or F64), got {dtype}"));
            Assert.That(Assert.Throws<ArgumentException>(() => global::Parrot.Nn.Models.Qwen2.Qwen2Loader.Load(QwenDir, dtype))!.ParamName, Is.EqualTo("dtype"));
            Assert.That(Assert.Throws<ArgumentException>(() => ParrotLoader.Load(ParrotDir, dtype))!.ParamName, Is.EqualTo("dtype"));
        }
        var empty = Assert.Throws<ArgumentException>(() => ParrotModel.Load(ParrotDir, new ParrotModelOptions { VisionTower = "" }));
        Assert.That(empty!.Message, Does.Contain("ParrotModelOptions.VisionTower is empty"));
        using var bf16 = ParrotModel.Load(QwenDir, new ParrotModelOptions { DType = global::Parrot.Tensors.DType.BF16 });
        Assert.That(bf16.Ask("Hello", (string?)null, Short), Is.Not.Null);
    }

    /// <summary>
    /// ParrotModelOptions.VisionTower is the caller's path, from the current directory (as the CLI's --vision that feeds
    /// it): from elsewhere, "vision" is no folder, though the model directory has its tower in a folder of that name.
    /// </summary>
    [Test]
    [NonParallelizable] // changes the current directory
    public void ARelativeVisionTowerIsFromTheCurrentDirectory()
    {
        string elsewhere = Path.Combine(Root, "elsewhere");
        Directory.CreateDirectory(elsewhere);
        string saved = Directory.GetCurrentDirectory();
        try
        {
            Directory.SetCurrentDirectory(ParrotDir);
            using (var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { VisionTower = "vision" }))
                Assert.That(model.SupportsImages, Is.True);
            Directory.SetCurrentDirectory(elsewhere);
            var e = Assert.Throws<DirectoryNotFoundException>(() => ParrotModel.Load(ParrotDir, new ParrotModelOptions { VisionTower = "vision" }))!;
            Assert.That(e.Message, Does.Contain("'vision'").And.Contain($"the folder {Path.Combine(elsewhere, "vision")} does not exist"));
        }
        finally { Directory.SetCurrentDirectory(saved); }
    }

    [Test]
    public void DisposedModelsRefuseCalls()
    {
        var model = ParrotModel.Load(QwenDir);
        var stream = model.AskStreaming("Hello", (string?)null, new GenerationOptions { MaxNewTokens = 50, IgnoreEos = true }).GetEnumerator();
        Assert.That(stream.MoveNext(), Is.True);
        model.Dispose(); // while a stream runs: freed when it ends
        while (stream.MoveNext()) { }
        stream.Dispose();
        Assert.Throws<ObjectDisposedException>(() => model.Ask("Hello", (string?)null, Short));
        Assert.Throws<ObjectDisposedException>(() => model.StartChat());
    }
}
