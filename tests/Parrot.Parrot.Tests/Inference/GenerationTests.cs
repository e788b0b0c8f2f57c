using Parrot.Autograd;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>A model that ignores its input and puts all mass on the next id of a script (one script per prompt).</summary>
internal sealed class ScriptedModel(int vocab, params int[][] scripts) : IAutoregressiveModel
{
    public int VocabSize => vocab;
    public List<int[]> Fed { get; } = new();

    public IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens) => new Session(this, prompts.Count);

    private sealed class Session(ScriptedModel m, int rows) : IDecodingSession
    {
        private int _step;
        public float[][] Prefill() => Logits();
        public float[][] Step(int[] tokens) { m.Fed.Add(tokens.ToArray()); _step++; return Logits(); }
        private float[][] Logits() => Enumerable.Range(0, rows).Select(r =>
        {
            var l = new float[m.VocabSize];
            var script = m._scripts[r % m._scripts.Length];
            l[script[Math.Min(_step, script.Length - 1)]] = 10;
            return l;
        }).ToArray();
        public void Dispose() { }
    }

    private readonly int[][] _scripts = scripts;
}

/// <summary>A model whose next-token logits are always the same.</summary>
internal sealed class FixedLogitsModel(float[] logits) : IAutoregressiveModel
{
    public int VocabSize => logits.Length;
    public IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens) => new Session(logits, prompts.Count);
    private sealed class Session(float[] l, int rows) : IDecodingSession
    {
        public float[][] Prefill() => Enumerable.Range(0, rows).Select(_ => (float[])l.Clone()).ToArray();
        public float[][] Step(int[] tokens) => Prefill();
        public void Dispose() { }
    }
}

public class GenerationTests
{
    private static readonly BpeTokenizer Tokenizer = BpeTokenizer.FromJson(System.Text.Encoding.UTF8.GetBytes(TinyModels.TokenizerJson().ToJsonString()));

    private static int[] Bytes(string s) => System.Text.Encoding.UTF8.GetBytes(s).Select(b => (int)b).ToArray();

    private static int ArgMax(float[] l)
    {
        int best = 0;
        for (int i = 1; i < l.Length; i++) if (l[i] > l[best]) best = i;
        return best;
    }

    private static ParrotForCausalLM TinyParrot(ulong seed = 5)
    {
        var model = new ParrotForCausalLM(TinyModels.ParrotConfig(), seed);
        using var scope = TensorScope.Begin();
        foreach (var (name, p) in model.NamedParameters())
            if (name.EndsWith(".weight", StringComparison.Ordinal) && p.Shape.Length == 2)
                p.Value.CopyFrom(global::Parrot.Nn.Init.Normal(p.Shape.ToArray(), 0.3, global::Parrot.Nn.Init.SeedFor(seed, name)));
        return model;
    }

    private static Tensor Features(ulong seed) => TensorScope.Detach(Tensor.Normal([17, 32], seed));

    [Test]
    public void CachedGreedyEqualsRecomputingTheWholeSequence_TextOnly()
    {
        using var model = new Qwen2ForCausalLM(TinyModels.TextConfig(), seed: 3);
        var prompt = Bytes("Hello, parrot! 你好");
        var generator = new Generator(Generator.Wrap(model), endOfSequenceIds: []);
        var cached = generator.Generate(new GenerationPrompt(prompt), new GenerationOptions { MaxNewTokens = 16 }).Tokens;

        var reference = new List<int>();
        using var ng = Graph.NoGrad();
        for (int step = 0; step < 16; step++)
        {
            using var scope = TensorScope.Begin();
            var seq = prompt.Concat(reference).Select(i => (long)i).ToArray();
            var logits = model.Forward(Tensor.FromArray(seq, 1, seq.Length)).Value.Select(1, seq.Length - 1).ToFloatArray();
            reference.Add(ArgMax(logits));
        }
        Assert.That(cached, Is.EqualTo(reference));
        Assert.That(reference.Distinct().Count(), Is.GreaterThan(3), "the tiny model should not just repeat one token");
    }

    [Test]
    public void CachedGreedyEqualsRecomputingTheWholeSequence_ImagePrompt()
    {
        using var model = TinyParrot();
        using var feats = Features(11);
        var chat = new ChatMl(Tokenizer);
        var prompt = chat.BuildQuery("What is this? Что это?", withImage: true);
        Assert.That(prompt, Does.Contain(ChatMl.ImageTokenIndex));
        var generator = new Generator(Generator.Wrap(model), Tokenizer, endOfSequenceIds: []);
        var cached = generator.Generate(new GenerationPrompt(prompt, feats), new GenerationOptions { MaxNewTokens = 14 }).Tokens;

        // The reference runs the whole sequence without a cache each step. The visual tokens are those of the
        // prompt (the MoE is steered by the prompt, as in the reference implementation, where decode steps skip
        // the splicing), so the prompt's spliced embeddings are computed once and the answer's appended.
        var reference = new List<int>();
        using var ng = Graph.NoGrad();
        using var batch = feats.Unsqueeze(0);
        using var promptScope = TensorScope.Begin();
        var promptEmbeds = model.Assemble([new ParrotSample(prompt, null, 0)], batch, int.MaxValue).Embeds;
        for (int step = 0; step < 14; step++)
        {
            using var scope = TensorScope.Begin();
            var full = reference.Count == 0 ? promptEmbeds
                : Variable.Concat(1, promptEmbeds, model.Model.EmbedTokens.Forward(Tensor.FromArray(reference.Select(i => (long)i).ToArray(), 1, reference.Count)));
            var hidden = model.Model.Forward(full);
            var logits = model.LmHead(hidden).Value.Select(1, full.Shape[1] - 1).ToFloatArray();
            reference.Add(ArgMax(logits));
        }
        Assert.That(cached, Is.EqualTo(reference));
        Assert.That(reference.Distinct().Count(), Is.GreaterThan(3));

        // The image matters: other features give another answer.
        using var other = Features(12);
        var otherTokens = generator.Generate(new GenerationPrompt(prompt, other), new GenerationOptions { MaxNewTokens = 14 }).Tokens;
        Assert.That(otherTokens, Is.Not.EqualTo(cached));
    }

    [Test]
    public void BatchOfDifferentLengthsEqualsOneAtATime_Qwen2()
    {
        using var model = new Qwen2ForCausalLM(TinyModels.TextConfig(), seed: 4);
        var prompts = new[] { "Hi", "A much longer prompt, in English.", "Olá, tudo bem?", "مرحبا" }.Select(s => new GenerationPrompt(Bytes(s))).ToArray();
        var options = new GenerationOptions { MaxNewTokens = 12 };
        // An eos id that one answer produces early, so that rows end at different steps.
        int eos = new Generator(Generator.Wrap(model), Tokenizer, endOfSequenceIds: []).Generate(prompts[1], options).Tokens[3];
        var generator = new Generator(Generator.Wrap(model), Tokenizer, endOfSequenceIds: [eos]);
        var batched = generator.Generate(prompts, options);
        for (int i = 0; i < prompts.Length; i++)
        {
            var alone = generator.Generate(prompts[i], options);
            Assert.That(batched[i].Tokens, Is.EqualTo(alone.Tokens), $"prompt {i}");
            Assert.That(batched[i].Text, Is.EqualTo(alone.Text), $"prompt {i}");
            Assert.That(batched[i].Reason, Is.EqualTo(alone.Reason), $"prompt {i}");
        }
        // Some rows end early (eos), some run to the limit: both kinds occur in the batch.
        Assert.That(batched.Select(r => r.Tokens.Length).Distinct().Count(), Is.GreaterThan(1), "rows should finish at different steps");
    }

    [Test]
    public void BatchOfImageAndTextPromptsEqualsOneAtATime_Parrot()
    {
        using var model = TinyParrot(6);
        using var f1 = Features(21);
        using var f2 = Features(22);
        var chat = new ChatMl(Tokenizer);
        var prompts = new[]
        {
            new GenerationPrompt(chat.BuildQuery("Describe the picture.", true), f1),
            new GenerationPrompt(chat.BuildQuery("Hi", false)),
            new GenerationPrompt(chat.BuildQuery("这张图片里有什么颜色?", true), f2),
        };
        var generator = new Generator(Generator.Wrap(model), Tokenizer, endOfSequenceIds: []);
        var options = new GenerationOptions { MaxNewTokens = 10 };
        var batched = generator.Generate(prompts, options);
        for (int i = 0; i < prompts.Length; i++)
            Assert.That(batched[i].Tokens, Is.EqualTo(generator.Generate(prompts[i], options).Tokens), $"prompt {i}");
    }

    [Test]
    public void SameSeedSameSample_OtherSeedsDiffer()
    {
        using var model = new Qwen2ForCausalLM(TinyModels.TextConfig(), seed: 7);
        var generator = new Generator(Generator.Wrap(model), Tokenizer, endOfSequenceIds: []);
        var prompt = new GenerationPrompt(Bytes("Once upon a time"));
        GenerationOptions With(ulong seed) => new() { MaxNewTokens = 12, Temperature = 1.5, TopK = 100, TopP = 0.95, RepetitionPenalty = 1.1, Seed = seed };
        var a = generator.Generate(prompt, With(42)).Tokens;
        var b = generator.Generate(prompt, With(42)).Tokens;
        Assert.That(b, Is.EqualTo(a));
        var others = Enumerable.Range(0, 5).Select(s => string.Join(",", generator.Generate(prompt, With((ulong)s)).Tokens)).ToHashSet();
        Assert.That(others.Count, Is.GreaterThan(2));
        var greedy = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = 12 }).Tokens;
        Assert.That(others, Does.Not.Contain(string.Join(",", greedy)).Or.Count.GreaterThan(1));
    }

    [Test]
    public void SamplingFollowsTemperatureTopKAndTopP()
    {
        // Probabilities 0.5, 0.3, 0.15, 0.05 as logits.
        var p = new[] { 0.5, 0.3, 0.15, 0.05 };
        var logits = p.Select(x => (float)Math.Log(x)).ToArray();
        double[] Frequencies(GenerationOptions o, int n = 6000)
        {
            var g = new Generator(new FixedLogitsModel(logits), endOfSequenceIds: []);
            var counts = new double[4];
            foreach (var t in g.Generate(new GenerationPrompt([0]), o with { MaxNewTokens = n }).Tokens) counts[t]++;
            return counts.Select(c => c / n).ToArray();
        }
        static void Near(double[] got, double[] want, string what)
        {
            for (int i = 0; i < want.Length; i++) Assert.That(got[i], Is.EqualTo(want[i]).Within(0.025), $"{what}: token {i}");
        }
        Near(Frequencies(new GenerationOptions { Temperature = 1, Seed = 1 }), p, "T=1");
        var t2 = p.Select(x => Math.Sqrt(x)).ToArray(); // T = 2: p^(1/2), renormalised
        Near(Frequencies(new GenerationOptions { Temperature = 2, Seed = 2 }), t2.Select(x => x / t2.Sum()).ToArray(), "T=2");
        Near(Frequencies(new GenerationOptions { Temperature = 1, TopK = 2, Seed = 3 }), [0.5 / 0.8, 0.3 / 0.8, 0, 0], "top-k 2");
        // top-p 0.9: 0.5 + 0.3 < 0.9 ≤ 0.5 + 0.3 + 0.15, so three tokens stay.
        Near(Frequencies(new GenerationOptions { Temperature = 1, TopP = 0.9, Seed = 4 }), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], "top-p 0.9");
        Near(Frequencies(new GenerationOptions { Temperature = 1, TopP = 0.5, Seed = 5 }), [1, 0, 0, 0], "top-p 0.5");
    }

    [Test]
    public void TopPAndTopKKeepExactlyTheBruteForceSetsOnALargeVocabulary()
    {
        // 5000 tokens: a few likely ones over a long flat tail, so the nucleus is small but not trivial.
        var rnd = new Random(5);
        var logits = Enumerable.Range(0, 5000).Select(i => (float)(i % 997 == 3 ? 6 + rnd.NextDouble() * 2 : rnd.NextDouble())).ToArray();
        var probs = logits.Select(x => Math.Exp(x)).ToArray();
        double z = probs.Sum();
        var order = Enumerable.Range(0, probs.Length).OrderByDescending(i => probs[i]).ToArray();
        foreach (var topP in new[] { 0.3, 0.6, 0.95 })
        {
            var nucleus = new HashSet<int>();
            double mass = 0;
            foreach (var i in order) { nucleus.Add(i); mass += probs[i] / z; if (mass >= topP) break; }
            var g = new Generator(new FixedLogitsModel(logits), endOfSequenceIds: []);
            var drawn = g.Generate(new GenerationPrompt([0]), new GenerationOptions { MaxNewTokens = 3000, Temperature = 1, TopP = topP, Seed = 9 }).Tokens.ToHashSet();
            Assert.That(drawn.IsSubsetOf(nucleus), $"top-p {topP}: drew outside the nucleus");
            if (nucleus.Count <= 6) Assert.That(drawn, Is.EquivalentTo(nucleus), $"top-p {topP}");
        }
        var top7 = order.Take(7).ToHashSet();
        var k = new Generator(new FixedLogitsModel(logits), endOfSequenceIds: []);
        var fromK = k.Generate(new GenerationPrompt([0]), new GenerationOptions { MaxNewTokens = 3000, Temperature = 3, TopK = 7, Seed = 10 }).Tokens.ToHashSet();
        Assert.That(fromK, Is.EquivalentTo(top7));
    }

    [Test]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOfSeenTokens()
    {
        // Token 0 (in the prompt) 2.0, token 1 1.5, token 2 -0.1 (seen), token 3 -0.3.
        var logits = new[] { 2.0f, 1.5f, -0.1f, -0.3f };
        var g = new Generator(new FixedLogitsModel(logits), endOfSequenceIds: []);
        // Penalty 1.5: 2/1.5 = 1.33 < 1.5, so token 1 wins; then token 1 is seen too: 1.5/1.5 = 1 < 1.33, so token 0.
        var tokens = g.Generate(new GenerationPrompt([0, 2]), new GenerationOptions { MaxNewTokens = 3, RepetitionPenalty = 1.5 }).Tokens;
        Assert.That(tokens, Is.EqualTo(new[] { 1, 0, 0 }));
        // Penalty 4 on negatives: -0.1·4 = -0.4 < -0.3. With token 0 and 1 masked by the script below, 3 wins over 2.
        var neg = new Generator(new FixedLogitsModel([-5f, -5f, -0.1f, -0.3f]), endOfSequenceIds: []);
        Assert.That(neg.Generate(new GenerationPrompt([2]), new GenerationOptions { MaxNewTokens = 1, RepetitionPenalty = 4 }).Tokens, Is.EqualTo(new[] { 3 }));
        Assert.That(neg.Generate(new GenerationPrompt([0]), new GenerationOptions { MaxNewTokens = 1, RepetitionPenalty = 4 }).Tokens, Is.EqualTo(new[] { 2 }));
    }

    [Test]
    public void StopsAtEndOfSequenceStopStringAndMaxTokens()
    {
        var script = Bytes("你好 world! STOP here").Append(TinyModels.ImEnd).ToArray();
        var model = new ScriptedModel(TinyModels.Vocab, script);
        var g = new Generator(model, Tokenizer); // eos: <|im_end|>, <|endoftext|>
        Assert.That(g.EndOfSequenceIds, Is.EquivalentTo(new[] { TinyModels.ImEnd, TinyModels.EndOfText }));

        var eos = g.Generate(new GenerationPrompt([1]), new GenerationOptions { MaxNewTokens = 100 });
        Assert.That(eos.Reason, Is.EqualTo(FinishReason.EndOfSequence));
        Assert.That(eos.Text, Is.EqualTo("你好 world! STOP here"));
        Assert.That(eos.Tokens, Is.EqualTo(script));
        // Each fed token is the one chosen before it; the last choice (eos) is never fed.
        Assert.That(model.Fed.Select(f => f[0]), Is.EqualTo(script[..^1]));

        var max = g.Generate(new GenerationPrompt([1]), new GenerationOptions { MaxNewTokens = 8 });
        Assert.That(max.Reason, Is.EqualTo(FinishReason.MaxTokens));
        Assert.That(max.Tokens, Is.EqualTo(script[..8]));
        Assert.That(max.Text, Is.EqualTo("你好 w"));

        var ignore = g.Generate(new GenerationPrompt([1]), new GenerationOptions { MaxNewTokens = script.Length + 3, IgnoreEos = true });
        Assert.That(ignore.Tokens.Length, Is.EqualTo(script.Length + 3));

        // A stop string spanning several tokens (and a partial match "wo" that fails first at "wor" ≠ "wox").
        var stop = g.Generate(new GenerationPrompt([1]), new GenerationOptions { StopStrings = ["! ST", "wox"] });
        Assert.That(stop.Reason, Is.EqualTo(FinishReason.StopString));
        Assert.That(stop.Text, Is.EqualTo("你好 world"));
        Assert.That(Tokenizer.Decode(stop.Tokens), Is.EqualTo("你好 world! ST"));

        // The earliest of several matches wins; a stop string that never completes releases its held text at the end.
        Assert.That(g.Generate(new GenerationPrompt([1]), new GenerationOptions { StopStrings = ["here", "好 w"] }).Text, Is.EqualTo("你"));
        Assert.That(g.Generate(new GenerationPrompt([1]), new GenerationOptions { StopStrings = ["here!"] }).Text, Is.EqualTo("你好 world! STOP here"));
    }

    [Test]
    public void StreamedPiecesAreWholeCharactersAndNeverShowAStopString()
    {
        var text = "Olá 你好 🦜 world — STOP now";
        var model = new ScriptedModel(TinyModels.Vocab, Bytes(text).Append(TinyModels.ImEnd).ToArray());
        var g = new Generator(model, Tokenizer);
        var events = g.Stream([new GenerationPrompt([1])], new GenerationOptions { StopStrings = ["STOP"] }).ToList();
        var pieces = events.Select(e => e.Text).ToList();
        Assert.That(string.Concat(pieces), Is.EqualTo("Olá 你好 🦜 world — "));
        foreach (var piece in pieces)
        {
            Assert.That(piece, Does.Not.Contain("\uFFFD"));
            for (int i = 0; i < piece.Length; i++)
                if (char.IsSurrogate(piece[i]))
                {
                    Assert.That(char.IsHighSurrogate(piece[i]) && i + 1 < piece.Length && char.IsLowSurrogate(piece[i + 1]), $"split surrogate pair in '{piece}'");
                    i++;
                }
        }
        // "你" is three byte tokens: the first two release nothing, the third the whole character.
        int at = Bytes("Olá ").Length;
        Assert.That(pieces.Skip(at).Take(3), Is.EqualTo(new[] { "", "", "你" }));
        // Nothing of "STOP" is ever released, not even "S" before "T" arrives.
        Assert.That(pieces.Any(p => p.Contains('S')), Is.False);
        Assert.That(events[^1].Finished, Is.EqualTo(FinishReason.StopString));
        Assert.That(events.Count(e => e.Finished is not null), Is.EqualTo(1));
    }

    [Test]
    public void StopStringCutsARealModelsAnswerWhereItFirstOccurs()
    {
        using var model = new Qwen2ForCausalLM(TinyModels.TextConfig(), seed: 9);
        var g = new Generator(Generator.Wrap(model), Tokenizer, endOfSequenceIds: []);
        var prompt = new GenerationPrompt(Bytes("The answer is"));
        var full = g.Generate(prompt, new GenerationOptions { MaxNewTokens = 30 });
        Assert.That(full.Text.Length, Is.GreaterThan(10));
        // A stop string taken from the middle of the answer (several tokens long).
        int start = full.Text.Length / 3;
        string stopString = full.Text.Substring(start, 3);
        var cut = g.Generate(prompt, new GenerationOptions { MaxNewTokens = 30, StopStrings = [stopString] });
        Assert.That(cut.Reason, Is.EqualTo(FinishReason.StopString));
        Assert.That(cut.Text, Is.EqualTo(full.Text[..full.Text.IndexOf(stopString, StringComparison.Ordinal)]));
        Assert.That(cut.Tokens, Is.EqualTo(full.Tokens[..cut.Tokens.Length]));
    }

    [Test]
    public void GreedyDecoderIsTheGeneratorsGreedyPath()
    {
        using var model = new Qwen2ForCausalLM(TinyModels.TextConfig(), seed: 3);
        var prompt = Bytes("abc");
        var all = GreedyDecoder.Generate(model, prompt, 10, [], ignoreEos: true);
        Assert.That(all.Count, Is.EqualTo(10));
        // With an eos id taken from the output: stops right after its first occurrence, eos included.
        int eos = all[4];
        var stopped = GreedyDecoder.Generate(model, prompt, 10, [eos]);
        Assert.That(stopped, Is.EqualTo(all.Take(all.IndexOf(eos) + 1)));
    }

    /// <summary>
    /// A temperature so small that finite logits divided by it overflow used to pass validation and fail the first draw
    /// with "a +∞ logit — the checkpoint or the inputs hold non-finite values"; it is an option error now. At the least
    /// temperature allowed even the largest float32 logit stays finite: sampling there is the argmax.
    /// </summary>
    [Test]
    public void TemperaturesTooSmallToDivideByAreRejected()
    {
        var g = new Generator(new FixedLogitsModel([0f, float.MaxValue, -float.MaxValue, 1e30f]));
        var least = new GenerationOptions { MaxNewTokens = 3, Temperature = 1 / GenerationOptions.MaxLogitScale, Seed = 5 };
        Assert.That(g.Generate(new GenerationPrompt([0]), least).Tokens, Is.EqualTo(new[] { 1, 1, 1 }));
        foreach (double t in new[] { double.Epsilon, 1e-300, 0.5e-269 })
        {
            var e = Assert.Throws<ArgumentException>(() => g.Generate(new GenerationPrompt([0]), least with { Temperature = t }), $"temperature {t}");
            Assert.That(e!.Message, Does.Contain($"temperature {t} is too small to sample with"));
        }
        // A repetition penalty scales logits too: P or 1/P over T is bounded, and P alone when greedy.
        Assert.That(Assert.Throws<ArgumentException>(() => (least with { RepetitionPenalty = 10 }).Validate())!.Message, Does.Contain("under the repetition penalty 10"));
        Assert.DoesNotThrow(() => (least with { Temperature = 1e-268, RepetitionPenalty = 10 }).Validate());
        Assert.DoesNotThrow(() => (least with { Temperature = 1e-268, RepetitionPenalty = 0.1 }).Validate());
        Assert.That(Assert.Throws<ArgumentException>(() => new GenerationOptions { RepetitionPenalty = 1e300 }.Validate())!.Message, Does.Contain("the repetition penalty 1E+300 is too extreme"));
        Assert.That(Assert.Throws<ArgumentException>(() => new GenerationOptions { RepetitionPenalty = 1e-300 }.Validate())!.Message, Does.Contain("is too extreme"));
    }

    /// <summary>
    /// At the extreme penalties the bound allows (1e-269 and 1e269: max(P, 1/P) = 1e269, the whole budget) float32's
    /// extremes stay finite in float64, so greedy decoding with them picks as exact arithmetic would, and sampling at
    /// P and T whose max(P, 1/P) / T is exactly 1e269 draws without a +∞ logit. Review of 219a35f: the bound is a round
    /// number under the exact one (float64 max / float32 max ≈ 5.28e269), so the edge is safe with room to spare.
    /// </summary>
    [Test]
    public void PenaltiesAtTheBoundStayFiniteGreedyAndSampled()
    {
        var g = new Generator(new FixedLogitsModel([0f, float.MaxValue, -float.MaxValue, 1e30f]));
        var greedy = new GenerationOptions { MaxNewTokens = 3 };
        // P = 1e-269 raises seen id 3 (1e30 → 1e299) over the unseen float32 maximum; seen id 1 (max → 3.4e307) finite.
        Assert.That(g.Generate(new GenerationPrompt([3]), greedy with { RepetitionPenalty = 1e-269 }).Tokens, Is.EqualTo(new[] { 3, 3, 3 }));
        Assert.That(g.Generate(new GenerationPrompt([1, 3]), greedy with { RepetitionPenalty = 1e-269 }).Tokens, Is.EqualTo(new[] { 1, 1, 1 }));
        // P = 1e269 lowers seen id 1 (max → 3.4e-231) under unseen id 3; once 3 is seen too (1e-239) id 1 is the larger again.
        Assert.That(g.Generate(new GenerationPrompt([1]), greedy with { RepetitionPenalty = 1e269 }).Tokens, Is.EqualTo(new[] { 3, 1, 1 }));
        // Sampled at the bound: the seen float32 extremes scaled by exactly 1e269 stay finite (no "+∞ logit" refusal).
        var sampled = greedy with { Temperature = 1, Seed = 3 };
        Assert.That(g.Generate(new GenerationPrompt([1]), sampled with { RepetitionPenalty = 1e-269 }).Tokens, Is.EqualTo(new[] { 1, 1, 1 }));
        Assert.That(g.Generate(new GenerationPrompt([2]), sampled with { Temperature = 1e-268, RepetitionPenalty = 10 }).Tokens, Is.EqualTo(new[] { 1, 1, 1 }));
        Assert.That(g.Generate(new GenerationPrompt([2]), sampled with { Temperature = 1e-269 }).Tokens, Is.EqualTo(new[] { 1, 1, 1 }));
    }

    [Test]
    public void BadOptionsAndPromptsAreRejected()
    {
        var g = new Generator(new FixedLogitsModel([1f, 2f]));
        Assert.Throws<ArgumentException>(() => g.Generate(new GenerationPrompt([0]), new GenerationOptions { TopP = 0 }));
        Assert.Throws<ArgumentException>(() => g.Generate(new GenerationPrompt([0]), new GenerationOptions { Temperature = -1 }));
        Assert.Throws<ArgumentException>(() => g.Generate(new GenerationPrompt([0]), new GenerationOptions { MaxNewTokens = -1 }));
        Assert.Throws<ArgumentException>(() => g.Generate(new GenerationPrompt([0]), new GenerationOptions { StopStrings = ["x"] }), "stop strings need a tokenizer");
        Assert.Throws<ArgumentException>(() => g.Generate(new GenerationPrompt([])));
        using var model = new Qwen2ForCausalLM(TinyModels.TextConfig(), seed: 3);
        var text = new Generator(Generator.Wrap(model));
        var e = Assert.Throws<ArgumentException>(() => text.Generate(new GenerationPrompt([1, ChatMl.ImageTokenIndex, 2])));
        Assert.That(e!.Message, Does.Contain("text-only"));
        Assert.Throws<ArgumentException>(() => text.Generate(new GenerationPrompt([1, 999])));
    }
}
