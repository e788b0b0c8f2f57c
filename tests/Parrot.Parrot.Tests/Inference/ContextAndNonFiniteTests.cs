using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Text;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// The context rule (<see cref="ContextWindow"/>, serve's) at every generating entry point over the KV cache — the
/// <see cref="ParrotModel"/> API, chats, batches, <see cref="GreedyDecoder"/> — and the refusal of rows of logits that hold
/// no number (a checkpoint with NaN weights), which every path used to turn into id 0 step after step.
/// </summary>
public class ContextAndNonFiniteTests() : TinyModelSetFixture("parrot-context-tests")
{
    private const string NoNumber = "are all NaN or −∞, so no token can be chosen — the checkpoint or the inputs hold non-finite values";

    [Test]
    public void TheModelApiRefusesWhatServeRefuses()
    {
        using var model = ParrotModel.Load(QwenDir);
        Assert.That(model.ContextLength, Is.EqualTo(1024));
        var e = Assert.Throws<PromptTooLongException>(() => model.Ask(new string('x', 1100), (string?)null, new GenerationOptions { MaxNewTokens = 4 }));
        Assert.That(e!.Message, Does.Contain("maximum context length is 1024 tokens; the prompt has").And.Contain("4 more were asked for (max new tokens)"));
        e = Assert.Throws<PromptTooLongException>(() => model.Ask("short", (string?)null, new GenerationOptions { MaxNewTokens = 1020 }));
        Assert.That(e!.Message, Does.Contain("1020 more were asked for"));
        Assert.Throws<PromptTooLongException>(() => model.AskStreaming(new string('x', 1100), (string?)null).ToList());

        // Exactly the context: the prompt and the answer fill it.
        string question = new('x', 940);
        int length = model.Chat.BuildPrompt([new ChatTurn(ChatRole.User, question)]).Length;
        var fits = new GenerationOptions { MaxNewTokens = 1024 - length, IgnoreEos = true };
        var result = model.Generate([new ChatTurn(ChatRole.User, question)], null, fits);
        Assert.That(result.Tokens, Has.Length.EqualTo(1024 - length));
        e = Assert.Throws<PromptTooLongException>(() => model.Generate([new ChatTurn(ChatRole.User, question)], null, fits with { MaxNewTokens = 1025 - length }));
        Assert.That(e!.Message, Does.Contain($"the prompt has {length} tokens and {1025 - length} more were asked for (max new tokens), 1025 in all"));

        // A batch names the prompt that does not fit.
        e = Assert.Throws<PromptTooLongException>(() => model.Ask([new ParrotQuestion("short"), new ParrotQuestion(new string('y', 1100))], new GenerationOptions { MaxNewTokens = 4 }));
        Assert.That(e!.Message, Does.StartWith("prompt 1: this model's maximum context length is 1024 tokens"));

        // A chat refuses the turn and keeps its history as it was.
        var chat = model.StartChat();
        chat.Send("hi", (string?)null, new GenerationOptions { MaxNewTokens = 3 });
        int turns = chat.History.Count;
        Assert.Throws<PromptTooLongException>(() => chat.Send(new string('z', 1100), (string?)null, new GenerationOptions { MaxNewTokens = 3 }));
        Assert.That(chat.History, Has.Count.EqualTo(turns));
    }

    [Test]
    public void VisualTokensCountTowardsTheContext()
    {
        using var model = ParrotModel.Load(ParrotDir);
        string question = new('x', 930);
        int length = model.Chat.BuildPrompt([new ChatTurn(ChatRole.User, question)]).Length;
        var options = new GenerationOptions { MaxNewTokens = 1024 - length, IgnoreEos = true };
        Assert.That(model.Generate([new ChatTurn(ChatRole.User, question)], null, options).Tokens, Has.Length.EqualTo(1024 - length));
        // With the image the prompt is 17 visual tokens and a newline longer (the marker becomes the tokens).
        var e = Assert.Throws<PromptTooLongException>(() => model.Ask(question, Red, options));
        Assert.That(e!.Message, Does.Contain("maximum context length is 1024 tokens"));
    }

    [Test]
    public void GreedyDecoderRefusesTooAndFillsTheContextExactly()
    {
        using var lm = new Qwen2ForCausalLM(TinyModels.TextConfig() with { MaxPositionEmbeddings = 16 }, 3);
        int[] prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        var e = Assert.Throws<PromptTooLongException>(() => GreedyDecoder.Generate(lm, prompt, 7, [], ignoreEos: true));
        Assert.That(e!.Message, Does.Contain("maximum context length is 16 tokens; the prompt has 10 tokens and 7 more were asked for"));
        Assert.That(GreedyDecoder.Generate(lm, prompt, 6, [], ignoreEos: true), Has.Count.EqualTo(6));
        // The logits path (every row read back) refuses the same.
        var generator = new Generator(Generator.LogitsOnly(Generator.Wrap(lm)));
        Assert.Throws<PromptTooLongException>(() => generator.Generate(new GenerationPrompt(prompt), new GenerationOptions { MaxNewTokens = 7 }));
    }

    /// <summary>A Qwen2 with a NaN final-norm weight: every hidden state, so every logit, is NaN.</summary>
    private static Qwen2ForCausalLM NaNModel()
    {
        var lm = new Qwen2ForCausalLM(TinyModels.TextConfig(), 5);
        using var nan = Tensor.Full([lm.Config.HiddenSize], double.NaN);
        lm.Model.Norm.Weight.Value.CopyFrom(nan);
        return lm;
    }

    /// <summary>
    /// Greedy (the pick on the device: the CPU here; eager and static sessions), greedy with every row read, sampled,
    /// penalised: each refuses the prompt's row.
    /// </summary>
    [Test]
    public void ANaNCheckpointIsRefusedAtTheFirstStepOnEveryPath()
    {
        using var lm = NaNModel();
        int[] prompt = [1, 2, 3];
        var e = Assert.Throws<InvalidOperationException>(() => GreedyDecoder.Generate(lm, prompt, 5, [], ignoreEos: true));
        Assert.That(e!.Message, Does.Contain("the logits of step 1 " + NoNumber));
        var options = new GenerationOptions[]
        {
            new() { MaxNewTokens = 5 },
            new() { MaxNewTokens = 5, Temperature = 0.8, Seed = 3 },
            new() { MaxNewTokens = 5, Temperature = 0.8, TopK = 5, TopP = 0.9, Seed = 3 },
            new() { MaxNewTokens = 5, RepetitionPenalty = 1.3 },
        };
        foreach (var model in new[] { Generator.Wrap(lm), Generator.Wrap(lm, DecodeStepMode.Static), Generator.LogitsOnly(Generator.Wrap(lm)) })
            foreach (var o in options)
            {
                e = Assert.Throws<InvalidOperationException>(() => new Generator(model).Generate([new GenerationPrompt(prompt), new GenerationPrompt([4, 5])], o), $"{o}");
                Assert.That(e!.Message, Does.Contain("the logits of step 1 (prompt 0) " + NoNumber), $"{o}");
            }
    }

    /// <summary>
    /// A row with no number first met after the prompt (a step's pick on the device, not the prefill's): an untied head
    /// of zeros makes every prompt logit 0 (a tie: id 0 picked, a number), and id 0's embedding row is NaN, so the first
    /// step's logits are all NaN, one prompt or a batch, eager or static (the captured step's own pick, whose −1 the host
    /// reads before any further step), on the CPU and on the test device (a CUDA device's code paths).
    /// </summary>
    [Test]
    public void ANaNMetAfterThePromptIsRefusedAtThatStep([Values(false, true)] bool onTestDevice)
    {
        using var lm = NaNAfterThePromptModel();
        if (onTestDevice) lm.To(TestDevice.Get());
        if (!onTestDevice)
        {
            var e1 = Assert.Throws<InvalidOperationException>(() => GreedyDecoder.Generate(lm, [1, 2, 3], 5, [], ignoreEos: true));
            Assert.That(e1!.Message, Does.Contain("the logits of step 2 " + NoNumber));
        }
        foreach (var mode in new[] { DecodeStepMode.Eager, DecodeStepMode.Static })
        {
            var e = Assert.Throws<InvalidOperationException>(() => new Generator(Generator.Wrap(lm, mode)).Generate([new GenerationPrompt([1, 2, 3])], new GenerationOptions { MaxNewTokens = 5, IgnoreEos = true }));
            Assert.That(e!.Message, Does.Contain("the logits of step 2 " + NoNumber), $"{mode}");
            e = Assert.Throws<InvalidOperationException>(() => new Generator(Generator.Wrap(lm, mode)).Generate([new GenerationPrompt([1, 2, 3]), new GenerationPrompt([4, 5])], new GenerationOptions { MaxNewTokens = 5, IgnoreEos = true }));
            Assert.That(e!.Message, Does.Contain("the logits of step 2 (prompt 0) " + NoNumber), $"{mode}");
        }
    }

    /// <summary>The model of <see cref="ANaNMetAfterThePromptIsRefusedAtThatStep"/>: the prompt picks id 0, whose embedding is NaN.</summary>
    private static Qwen2ForCausalLM NaNAfterThePromptModel()
    {
        var lm = new Qwen2ForCausalLM(TinyModels.TextConfig() with { TieWordEmbeddings = false }, 5);
        var p = lm.NamedParameters().ToDictionary(x => x.Name, x => x.Parameter);
        using (var zeros = Tensor.Zeros(p["lm_head.weight"].Shape)) p["lm_head.weight"].Value.CopyFrom(zeros);
        using (var nan = Tensor.Full([lm.Config.HiddenSize], double.NaN)) p["model.embed_tokens.weight"].Value.Narrow(0, 0, 1).Reshape(lm.Config.HiddenSize).CopyFrom(nan);
        return lm;
    }

    /// <summary>
    /// The continuous batch, eager rows and static slots (whose step writes every slot's pick into the ids buffer, an
    /// idle slot's −1 included): a row with no number first met after the prompt fails its sequence at that step, with a
    /// second sequence joined just before it, which goes on.
    /// </summary>
    [Test]
    public void ANaNMetAfterThePromptFailsItsSequenceBesideAJoiningOne([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode, [Values(false, true)] bool onTestDevice)
    {
        string dir = Path.Combine(Root, "nan-after-prompt-qwen2");
        lock (typeof(ContextAndNonFiniteTests))
            if (!File.Exists(Path.Combine(dir, "config.json")))
            {
                Directory.CreateDirectory(dir);
                using (var lm = NaNAfterThePromptModel()) Qwen2Loader.Save(lm, dir);
                TinyModels.WriteTokenizer(dir);
            }
        using var model = ParrotModel.Load(dir, onTestDevice ? new ParrotModelOptions { Device = TestDevice.Get() } : null);
        using var batch = model.StartContinuousBatch(mode);
        Assert.That(batch.Slots is not null, Is.EqualTo(mode == DecodeStepMode.Static));
        var greedy = new GenerationOptions { IgnoreEos = true };
        batch.Join([new ChatTurn(ChatRole.User, "hi")], null, greedy, 4);
        Assert.That(batch.Step().Select(x => x.Token), Is.EqualTo(new[] { 0 }), "the prompt's logits are all 0: id 0, a number");
        batch.Join([new ChatTurn(ChatRole.User, "ho")], null, greedy, 4); // slots: a second slot, idle until its first step
        // The first sequence's row holds no number: it alone fails (its event says why); the one that joined gets its first token.
        var events = batch.Step();
        var failed = events.Where(x => x.Finished == FinishReason.Error).ToArray();
        Assert.That(failed, Has.Length.EqualTo(1));
        Assert.That(failed[0].Error, Does.Contain("the logits of step 2 " + NoNumber));
        Assert.That(events.Where(x => x.Finished != FinishReason.Error).Select(x => x.Token), Is.EqualTo(new[] { 0 }), "the joined sequence's prompt: every logit 0, id 0");
        Assert.That(batch.Count, Is.EqualTo(1));
    }

    /// <summary>
    /// A finished row's own NaN does not stop the others: in a greedy batch the device still picks for a row that ended
    /// (its output dropped) and the generator feeds that pick back; a row of NaN there is <see cref="Generator.NoNumber"/>,
    /// which must not be fed as a token (the session refuses −1 as outside the vocabulary). Built on the real model: an
    /// untied head of zeros but for the end-of-sequence id e, whose row is prompt A's final hidden state (A picks e, the
    /// others' logits 0), and a prompt B whose hidden states point away from it (B picks id 0, twice); e's embedding is
    /// NaN, so A's row after its end is all NaN while B goes on.
    /// </summary>
    [Test]
    public void AFinishedRowsNaNDoesNotStopTheOthers()
    {
        using var lm = new Qwen2ForCausalLM(TinyModels.TextConfig() with { TieWordEmbeddings = false }, 5);
        var p = lm.NamedParameters().ToDictionary(x => x.Name, x => x.Parameter);
        var head = p["lm_head.weight"].Value;
        int vocab = lm.Config.VocabSize, hidden = lm.Config.HiddenSize, e = vocab - 1;
        // The final hidden states through the head: the identity on the first ids.
        var eye = new float[vocab * hidden];
        for (int i = 0; i < hidden; i++) eye[i * hidden + i] = 1;
        using (var t = Tensor.FromArray(eye, vocab, hidden)) head.CopyFrom(t);
        double[] Hidden(int[] ids)
        {
            using var scope = TensorScope.Begin();
            using var x = Tensor.FromArray(ids.Select(i => (long)i).ToArray(), 1, ids.Length);
            var logits = lm.Forward(x).Value.ToFloatArray();
            return Enumerable.Range(0, hidden).Select(j => (double)logits[(ids.Length - 1) * vocab + j]).ToArray();
        }
        static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();
        int[] a = [1, 2, 3];
        var u = Hidden(a);
        int[]? b = Enumerable.Range(1, 50).Select(k => new[] { k, (k * 7) % 50 + 1 })
            .FirstOrDefault(c => Dot(Hidden(c), u) < -0.1 * Dot(u, u) && Dot(Hidden([.. c, 0]), u) < -0.1 * Dot(u, u));
        Assert.That(b, Is.Not.Null, "a prompt whose hidden states point away from A's");
        var row = new float[vocab * hidden];
        for (int j = 0; j < hidden; j++) row[e * hidden + j] = (float)u[j];
        using (var t = Tensor.FromArray(row, vocab, hidden)) head.CopyFrom(t);
        using (var nan = Tensor.Full([hidden], double.NaN)) p["model.embed_tokens.weight"].Value.Narrow(0, e, 1).Reshape(hidden).CopyFrom(nan);

        var result = new Generator(Generator.Wrap(lm), endOfSequenceIds: [e]).Generate([new GenerationPrompt(a), new GenerationPrompt(b!)], new GenerationOptions { MaxNewTokens = 4 });
        Assert.That(result[0].Tokens, Is.EqualTo(new[] { e }));
        Assert.That(result[0].Reason, Is.EqualTo(FinishReason.EndOfSequence));
        Assert.That(result[1].Tokens.Take(2), Is.EqualTo(new[] { 0, 0 }));
        Assert.That(result[1].Tokens, Has.Length.GreaterThanOrEqualTo(3), "B went on after A's row of NaN");
    }

    [Test]
    public void TheContinuousBatchRefusesANaNCheckpointsRows()
    {
        string dir = Path.Combine(Root, "nan-qwen2");
        Directory.CreateDirectory(dir);
        using (var lm = NaNModel()) Qwen2Loader.Save(lm, dir);
        TinyModels.WriteTokenizer(dir);
        using var model = ParrotModel.Load(dir);
        Assert.That(Assert.Throws<InvalidOperationException>(() => model.Ask("hi", (string?)null, new GenerationOptions { MaxNewTokens = 3 }))!.Message, Does.Contain(NoNumber));
        foreach (var options in new[] { new GenerationOptions(), new GenerationOptions { Temperature = 1, Seed = 2 } })
        {
            using var batch = model.StartContinuousBatch();
            var seq = batch.Join([new ChatTurn(ChatRole.User, "hi")], null, options, 3);
            // The sequence fails alone (its event says why), not the step.
            var e = batch.Step().Single();
            Assert.That(e.Finished, Is.EqualTo(FinishReason.Error), $"{options}");
            Assert.That(e.Error, Does.Contain("the logits of step 1 " + NoNumber), $"{options}");
            Assert.That(seq.Left && batch.Count == 0, Is.True, $"{options}");
        }
    }

    /// <summary>
    /// A greedy sequence's row with no number met after the prompt, in the continuous batch (serve's path) eagerly and
    /// with slots (the static step, its greedy ids picked inside the step): refused at that step (each sequence ends with
    /// <see cref="FinishReason.Error"/>), not id 0 from then on.
    /// The model of <see cref="ANaNMetAfterThePromptIsRefusedAtThatStep"/> (every prompt logit 0, id 0's embedding NaN).
    /// </summary>
    [Test]
    public void TheContinuousBatchRefusesANaNMetAfterThePrompt([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        string dir = Path.Combine(Root, $"nan-after-prompt-{mode}");
        Directory.CreateDirectory(dir);
        using (var lm = new Qwen2ForCausalLM(TinyModels.TextConfig() with { TieWordEmbeddings = false }, 5))
        {
            var p = lm.NamedParameters().ToDictionary(x => x.Name, x => x.Parameter);
            using (var zeros = Tensor.Zeros(p["lm_head.weight"].Shape)) p["lm_head.weight"].Value.CopyFrom(zeros);
            using (var nan = Tensor.Full([lm.Config.HiddenSize], double.NaN)) p["model.embed_tokens.weight"].Value.Narrow(0, 0, 1).Reshape(lm.Config.HiddenSize).CopyFrom(nan);
            Qwen2Loader.Save(lm, dir);
        }
        TinyModels.WriteTokenizer(dir);
        using var model = ParrotModel.Load(dir, new ParrotModelOptions { Device = TestDevice.Get() });
        using var batch = model.StartContinuousBatch(mode);
        var options = new GenerationOptions { IgnoreEos = true };
        batch.Join([new ChatTurn(ChatRole.User, "hi")], null, options, 5);
        batch.Join([new ChatTurn(ChatRole.User, "a second one")], null, options, 5);
        Assert.That(batch.Step().Select(e => e.Token), Is.EqualTo(new[] { 0, 0 }), "every prompt logit 0: id 0");
        // Both rows hold no number: each sequence fails (its event says why) and leaves.
        var events = batch.Step();
        Assert.That(events.Select(e => e.Finished), Is.EqualTo(new FinishReason?[] { FinishReason.Error, FinishReason.Error }));
        Assert.That(events.Select(e => e.Error), Has.All.Contains("the logits of step 2 " + NoNumber));
        Assert.That(batch.Count, Is.EqualTo(0));
        Assert.That(batch.DecodePath, mode == DecodeStepMode.Eager ? Is.EqualTo("eager") : Does.StartWith("static slots"));
    }

    /// <summary>
    /// One sequence of a continuous batch (serve's path) meets a row with no number after its prompt: it alone ends, with
    /// <see cref="FinishReason.Error"/> and the message naming its step, and leaves (its cache or slot freed); the others —
    /// greedy and sampled, ahead of it and behind it in the batch — get every event they get in a batch without it (same
    /// steps, tokens and text, which are what each generates alone), and one joining after it (with slots: into its freed slot)
    /// generates what it does alone. Eagerly and with slots; greedy picks on the device and every pick on the host.
    /// Built on the real tiny model, untied: the bad question's greedy answer has a token t, first met at its step k + 1,
    /// that no other question meets (prompt or answer); t's embedding row is NaN (the head keeps picking it), so the bad
    /// sequence's row at step k + 2 is all NaN and nobody else's computation changes.
    /// </summary>
    [Test]
    public void OneSequencesNaNFailsItAloneInTheContinuousBatch([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode, [Values] bool hostPicks)
    {
        string clean = Path.Combine(Root, $"one-nan-clean-{mode}-{hostPicks}"), dir = Path.Combine(Root, $"one-nan-{mode}-{hostPicks}");
        Directory.CreateDirectory(clean);
        Directory.CreateDirectory(dir);
        using var lm = new Qwen2ForCausalLM(TinyModels.TextConfig() with { TieWordEmbeddings = false }, 5);
        Qwen2Loader.Save(lm, clean);
        TinyModels.WriteTokenizer(clean);
        var greedy = new GenerationOptions { IgnoreEos = true };
        var sampled = new GenerationOptions { Temperature = 0.9, TopK = 40, Seed = 11, IgnoreEos = true };
        ChatTurn[] Ask(string q) => [new ChatTurn(ChatRole.User, q)];
        // The others: two ahead of the bad one in the batch, one behind, one joining after it failed.
        var others = new (ChatTurn[] Conversation, GenerationOptions Options, int Max, int JoinAt)[]
        {
            (Ask("first question"), greedy, 14, 0),
            (Ask("a sampled answer, please"), sampled, 12, 0),
            (Ask("another one"), greedy, 16, 1),
            (Ask("late"), greedy, 8, 9),
        };
        var badAsk = Ask("the bad one");
        int badAt = 2; // it joins at step 0 after the first two, before "another one" joins at step 1

        int t, k;
        using (var model = ParrotModel.Load(clean))
        {
            var met = new HashSet<int>(model.Chat.BuildPrompt(badAsk));
            foreach (var o in others)
            {
                met.UnionWith(model.Chat.BuildPrompt(o.Conversation));
                met.UnionWith(model.Generate(o.Conversation, null, o.Options with { MaxNewTokens = o.Max }).Tokens);
            }
            var bad = model.Generate(badAsk, null, greedy with { MaxNewTokens = 10 }).Tokens;
            k = Enumerable.Range(1, bad.Length - 2).FirstOrDefault(i => !met.Contains(bad[i]) && !bad.Take(i).Contains(bad[i]), -1);
            Assert.That(k, Is.GreaterThan(0), $"a token of the bad answer ({string.Join(", ", bad)}) that nobody else meets");
            TestContext.Out.WriteLine($"bad answer {string.Join(", ", bad)}; t = {bad[k]} at k = {k}");
            t = bad[k]; // fed at step k + 2, before the bad one's 10 tokens are done
        }
        var p = lm.NamedParameters().ToDictionary(x => x.Name, x => x.Parameter);
        using (var nan = Tensor.Full([lm.Config.HiddenSize], double.NaN)) p["model.embed_tokens.weight"].Value.Narrow(0, t, 1).Reshape(lm.Config.HiddenSize).CopyFrom(nan);
        Qwen2Loader.Save(lm, dir);
        TinyModels.WriteTokenizer(dir);

        using var nanModel = ParrotModel.Load(dir, new ParrotModelOptions { Device = TestDevice.Get() });
        var alone = others.Select(o => nanModel.Generate(o.Conversation, null, o.Options with { MaxNewTokens = o.Max })).ToArray();

        // Every event of the others, by step, with and without the bad one.
        List<string> Run(bool withBad, out BatchEvent? failed, out string path)
        {
            using var batch = nanModel.StartContinuousBatch(mode);
            batch.HostPicksOnly = hostPicks;
            var sequences = new BatchSequence?[others.Length];
            BatchSequence? badSeq = null;
            int badSlot = -1;
            failed = null;
            var lines = new List<string>();
            var tokens = others.Select(_ => new List<int>()).ToArray();
            for (int step = 0; step < 100 && (step <= others.Max(o => o.JoinAt) || batch.Count > 0); step++)
            {
                for (int i = 0; i < others.Length; i++)
                {
                    if (others[i].JoinAt == step) sequences[i] = batch.Join(others[i].Conversation, null, others[i].Options, others[i].Max);
                    if (withBad && i == badAt && step == 0) badSlot = (badSeq = batch.Join(badAsk, null, greedy, 10)).Slot;
                }
                if (badSeq is not null && step == others[^1].JoinAt)
                {
                    Assert.That(badSeq.Left, Is.True, "the bad one failed before the late one joins");
                    if (mode == DecodeStepMode.Static) Assert.That(sequences[^1]!.Slot, Is.EqualTo(badSlot), "the late one took the bad one's freed slot");
                }
                foreach (var e in batch.Step())
                {
                    if (e.Sequence == badSeq)
                    {
                        if (e.Finished is not null) failed = e;
                        continue;
                    }
                    int i = Array.IndexOf(sequences, e.Sequence);
                    Assert.That(e.Finished, Is.Null.Or.EqualTo(FinishReason.MaxTokens), $"sequence {i}");
                    Assert.That(e.Error, Is.Null);
                    tokens[i].Add(e.Token);
                    lines.Add($"step {step}: sequence {i} token {e.Token} '{e.Text}' {e.Finished}");
                }
            }
            for (int i = 0; i < others.Length; i++)
                Assert.That(tokens[i], Is.EqualTo(alone[i].Tokens), $"sequence {i}, {(withBad ? "with" : "without")} the bad one: what it generates alone");
            if (badSeq is not null)
            {
                Assert.That(badSeq.Left, Is.True);
                Assert.That(badSeq.Finished, Is.EqualTo(FinishReason.Error));
                Assert.That(badSeq.GeneratedTokens, Is.EqualTo(k + 1), "its tokens up to t, none for the failed step");
            }
            path = batch.DecodePath;
            return lines;
        }

        var alongside = Run(false, out _, out _);
        var besideBad = Run(true, out var failure, out var decodePath);
        Assert.That(besideBad, Is.EqualTo(alongside), "the others' events are the same with the bad one in the batch");
        Assert.That(failure, Is.Not.Null, "the bad one ended");
        Assert.That(failure!.Finished, Is.EqualTo(FinishReason.Error));
        Assert.That(failure.Token, Is.EqualTo(-1));
        Assert.That(failure.Text, Is.Empty);
        Assert.That(failure.Error, Does.Contain($"the logits of step {k + 2} " + NoNumber));
        Assert.That(failure.Sequence.Error, Is.EqualTo(failure.Error));
        Assert.That(decodePath, mode == DecodeStepMode.Eager ? Is.EqualTo("eager") : Does.StartWith("static slots"));
    }

    /// <summary>
    /// A sequence whose sampler cannot pick from its row fails alone as well, not only one whose row holds no number: a
    /// +∞ logit in a sampled row (∞ − ∞ leaves no probability; the sampler throws), under top-p and under plain
    /// temperature. Every row of this model holds a +∞ (the final norm keeps one huge hidden unit, and two head rows of
    /// ±1e30 on it overflow to +∞ and −∞), which greedy picks take as the largest logit; the top-p sequence, joined between
    /// two greedy ones, and the plain-temperature one after them each end with an error event at their first step and
    /// leave, and the greedy ones generate what they generate alone. Before, the sampler's exception left Step, the greedy
    /// sequence ahead of it had advanced with its event lost, and serve failed every request in the batch; and the plain
    /// temperature sequence was not refused at all (it drew the last id of the vocabulary at every step).
    /// </summary>
    [Test]
    public void ASequenceWhoseSamplerCannotPickFailsAloneInTheContinuousBatch([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        string dir = Path.Combine(Root, $"plus-inf-{mode}");
        Directory.CreateDirectory(dir);
        using (var lm = new Qwen2ForCausalLM(TinyModels.TextConfig() with { TieWordEmbeddings = false }, 5))
        {
            var p = lm.NamedParameters().ToDictionary(x => x.Name, x => x.Parameter.Value);
            int hidden = lm.Config.HiddenSize;
            using (var norm = Tensor.FromArray(Enumerable.Range(0, hidden).Select(i => i == 0 ? 1e30 : 0.0).ToArray(), hidden))
                p["model.norm.weight"].CopyFrom(norm);
            p["lm_head.weight"].Narrow(0, 7, 1).Narrow(1, 0, 1).Fill(1e30);
            p["lm_head.weight"].Narrow(0, 9, 1).Narrow(1, 0, 1).Fill(-1e30);
            Qwen2Loader.Save(lm, dir);
        }
        TinyModels.WriteTokenizer(dir);
        using var model = ParrotModel.Load(dir, new ParrotModelOptions { Device = TestDevice.Get() });
        ChatTurn[] Ask(string q) => [new ChatTurn(ChatRole.User, q)];
        var greedy = new GenerationOptions { IgnoreEos = true, MaxNewTokens = 5 };
        var topP = new GenerationOptions { IgnoreEos = true, Temperature = 1, TopP = 0.9, Seed = 3 };
        var plain = new GenerationOptions { IgnoreEos = true, Temperature = 0.7, Seed = 3 };
        const string Refusal = "the logits leave no probability to sample from (a +∞ logit) — the checkpoint or the inputs hold non-finite values";
        var alone = new[] { model.Generate(Ask("first"), null, greedy).Tokens, model.Generate(Ask("third"), null, greedy).Tokens };
        Assert.That(alone.SelectMany(x => x), Is.All.EqualTo(7).Or.EqualTo(9), "greedy takes the +∞ logit");
        foreach (var sampled in new[] { topP, plain })
        {
            var e = Assert.Throws<InvalidOperationException>(() => model.Generate(Ask("second"), null, sampled with { MaxNewTokens = 5 }));
            Assert.That(e!.Message, Does.Contain(Refusal), $"the sampler alone throws on this row: {sampled}");
        }

        using var batch = model.StartContinuousBatch(mode);
        var first = batch.Join(Ask("first"), null, greedy, 5);
        var bad = batch.Join(Ask("second"), null, topP, 5);
        var third = batch.Join(Ask("third"), null, greedy, 5);
        var badPlain = batch.Join(Ask("fourth"), null, plain, 5);
        var tokens = new[] { new List<int>(), new List<int>() };
        var failed = new Dictionary<BatchSequence, BatchEvent>();
        for (int step = 0; step < 20 && batch.Count > 0; step++)
            foreach (var ev in batch.Step())
            {
                if (ev.Sequence == bad || ev.Sequence == badPlain)
                {
                    Assert.That(failed.ContainsKey(ev.Sequence), Is.False, "one event ends it");
                    failed[ev.Sequence] = ev;
                    continue;
                }
                tokens[ev.Sequence == first ? 0 : 1].Add(ev.Token);
            }
        Assert.That(tokens[0], Is.EqualTo(alone[0]));
        Assert.That(tokens[1], Is.EqualTo(alone[1]));
        foreach (var (sequence, what) in new[] { (bad, "top-p"), (badPlain, "plain temperature") })
        {
            Assert.That(failed.TryGetValue(sequence, out var ev), what);
            Assert.That(ev!.Finished, Is.EqualTo(FinishReason.Error), what);
            Assert.That(ev.Token, Is.EqualTo(-1), what);
            Assert.That(ev.Error, Does.Contain(Refusal), what);
            Assert.That(sequence.Left, Is.True, what);
            Assert.That(sequence.GeneratedTokens, Is.Zero, what);
        }
        Assert.That(batch.Count, Is.Zero);
    }

    /// <summary>The step named is the one whose row held no number: a scripted model's third row (the logits path), a greedy session's second id.</summary>
    [Test]
    public void TheErrorNamesTheStep()
    {
        var e = Assert.Throws<InvalidOperationException>(() => new Generator(new NaNAtStep(6, 2)).Generate(new GenerationPrompt([1]), new GenerationOptions { MaxNewTokens = 5, IgnoreEos = true }));
        Assert.That(e!.Message, Does.Contain("the logits of step 3 " + NoNumber));
        e = Assert.Throws<InvalidOperationException>(() => new Generator(new NaNAtStep(6, 1, greedy: true)).Generate(new GenerationPrompt([1]), new GenerationOptions { MaxNewTokens = 5, IgnoreEos = true }));
        Assert.That(e!.Message, Does.Contain("the logits of step 2 " + NoNumber));
    }

    /// <summary>
    /// Only rows with no number are refused: a row of −∞ alone is (its pick would be id 0), one with some NaN among numbers
    /// keeps the sampler's rule (NaN below every number), greedy and sampled alike.
    /// </summary>
    [Test]
    public void RowsWithANumberKeepTheirPick()
    {
        float nan = float.NaN, inf = float.NegativeInfinity;
        var greedy = new GenerationOptions { MaxNewTokens = 2, IgnoreEos = true };
        var sampled = greedy with { Temperature = 1, Seed = 4 };
        Assert.That(new Generator(new FixedLogitsModel([nan, 1, 3, nan, 2])).Generate(new GenerationPrompt([1]), greedy).Tokens, Is.EqualTo(new[] { 2, 2 }));
        Assert.That(new Generator(new FixedLogitsModel([nan, inf, 5, nan])).Generate(new GenerationPrompt([1]), sampled).Tokens, Is.EqualTo(new[] { 2, 2 }));
        foreach (var o in new[] { greedy, sampled })
        {
            var e = Assert.Throws<InvalidOperationException>(() => new Generator(new FixedLogitsModel([inf, inf, inf])).Generate(new GenerationPrompt([1]), o));
            Assert.That(e!.Message, Does.Contain("the logits of step 1 " + NoNumber));
            Assert.Throws<InvalidOperationException>(() => new Generator(new FixedLogitsModel([nan, nan, inf])).Generate(new GenerationPrompt([1]), o));
        }
    }

    /// <summary>
    /// A finished row is fed what the device picked for it (no copy), but never a −1: a row that ended (id 3, the end of
    /// sequence) and then holds no number is fed its last token, while the other row generates on unrefused.
    /// </summary>
    [Test]
    public void AFinishedRowsNoNumberIsNotFedOn()
    {
        var model = new FinishedThenNaN();
        var result = new Generator(model, endOfSequenceIds: [3]).Generate([new GenerationPrompt([1]), new GenerationPrompt([2])], new GenerationOptions { MaxNewTokens = 4 });
        Assert.That(result.Select(r => r.Tokens), Is.EqualTo(new[] { new[] { 3 }, new[] { 1, 1, 1, 1 } }));
        Assert.That(model.Fed, Is.EqualTo(new[] { new[] { 3, 1 }, new[] { 3, 1 }, new[] { 3, 1 } }), "row 0 is fed its end token, not −1");
    }

    /// <summary>Two rows, greedy: row 0 ends at once (id 3) and holds no number after (−1); row 1 picks id 1 every time.</summary>
    private sealed class FinishedThenNaN : IAutoregressiveModel, IDecodingSession, IGreedyDecodingSession
    {
        public readonly List<int[]> Fed = [];
        public int VocabSize => 6;
        public IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens) => this;
        public int[] PrefillGreedy() => [3, 1];
        public int[] StepGreedy(int[] tokens)
        {
            foreach (int t in tokens) if ((uint)t >= (uint)VocabSize) throw new ArgumentException($"token id {t} is outside the vocabulary");
            Fed.Add((int[])tokens.Clone());
            return [Generator.NoNumber, 1];
        }
        public float[][] Prefill() => throw new NotSupportedException();
        public float[][] Step(int[] tokens) => throw new NotSupportedException();
        public void Dispose() { }
    }

    /// <summary>Rows of logits peaked at id 1 until step <c>bad</c> (0: the prompt's), which is all NaN; greedy: ids, <see cref="Generator.NoNumber"/> at that step.</summary>
    private sealed class NaNAtStep(int vocab, int bad, bool greedy = false) : IAutoregressiveModel
    {
        public int VocabSize => vocab;

        public IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens) => greedy ? new Greedy(this) : new Session(this);

        private class Session(NaNAtStep m) : IDecodingSession
        {
            protected readonly NaNAtStep Model = m;
            protected int StepIndex;
            public float[][] Prefill() => [Row()];
            public float[][] Step(int[] tokens) { StepIndex++; return [Row()]; }
            private float[] Row()
            {
                var l = new float[Model.VocabSize];
                l[1] = 5;
                if (StepIndex == Model._bad) Array.Fill(l, float.NaN);
                return l;
            }
            public void Dispose() { }
        }

        private sealed class Greedy(NaNAtStep m) : Session(m), IGreedyDecodingSession
        {
            public int[] PrefillGreedy() => [Id()];
            public int[] StepGreedy(int[] tokens) { StepIndex++; return [Id()]; }
            private int Id() => StepIndex == Model._bad ? Generator.NoNumber : 1;
        }

        private readonly int _bad = bad;
    }
}
