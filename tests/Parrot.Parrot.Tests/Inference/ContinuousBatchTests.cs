using Parrot.Parrot.Inference;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>Continuous batching: sequences joining and leaving at token boundaries give what each gives alone.</summary>
public class ContinuousBatchTests() : TinyModelSetFixture("parrot-batch-tests")
{
    private static ChatTurn[] Ask(string q, bool image = false) => [new ChatTurn(ChatRole.User, q, image)];

    [Test]
    public void SequencesJoiningAtDifferentStepsGenerateWhatTheyWouldAlone([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = ParrotModel.Load(ParrotDir);
        var red = ImageLoader.Load(Red);
        var greedy = new GenerationOptions { IgnoreEos = true };
        var sampled = new GenerationOptions { Temperature = 0.9, TopP = 0.95, TopK = 40, Seed = 77, IgnoreEos = true };
        var cases = new (ChatTurn[] Conversation, RgbImage? Image, GenerationOptions Options, int Max, int JoinAt)[]
        {
            (Ask("first question"), null, greedy, 20, 0),
            (Ask("what colour is it?", image: true), red, greedy, 9, 2),
            (Ask("a sampled answer, please"), null, sampled, 15, 3),
            (Ask("late"), null, greedy, 6, 8),
        };
        var expected = cases.Select(c => model.Generate(c.Conversation, c.Image, c.Options with { MaxNewTokens = c.Max })).ToArray();

        using var batch = model.StartContinuousBatch(mode);
        var sequences = new BatchSequence?[cases.Length];
        var tokens = cases.Select(_ => new List<int>()).ToArray();
        var text = cases.Select(_ => new System.Text.StringBuilder()).ToArray();
        int largest = 0;
        for (int step = 0; step < 100 && (step <= cases.Max(c => c.JoinAt) || batch.Count > 0); step++)
        {
            for (int i = 0; i < cases.Length; i++)
                if (cases[i].JoinAt == step) sequences[i] = batch.Join(cases[i].Conversation, cases[i].Image, cases[i].Options, cases[i].Max);
            largest = Math.Max(largest, batch.Count);
            foreach (var e in batch.Step())
            {
                int i = Array.IndexOf(sequences, e.Sequence);
                tokens[i].Add(e.Token);
                text[i].Append(e.Text);
                if (e.Finished is not null) Assert.That(e.Finished, Is.EqualTo(FinishReason.MaxTokens));
            }
        }
        Assert.That(largest, Is.EqualTo(4), "all four were in the batch at once");
        for (int i = 0; i < cases.Length; i++)
        {
            Assert.That(tokens[i], Is.EqualTo(expected[i].Tokens), $"sequence {i}");
            Assert.That(text[i].ToString(), Is.EqualTo(expected[i].Text), $"sequence {i}");
            Assert.That(sequences[i]!.Left, Is.True);
        }
        // The tiny tower: 28×28 images in 7×7 patches, 16 patch tokens (+ CLS unless the feature is "patch").
        var config = global::Parrot.Parrot.Model.ParrotConfig.Load(Path.Combine(ParrotDir, "config.json"));
        int visual = 16 + (config.MmVisionSelectFeature == "patch" ? 0 : 1);
        Assert.That(sequences[1]!.PromptTokens, Is.EqualTo(model.Chat.BuildPrompt(cases[1].Conversation).Length - 1 + visual));
    }

    /// <summary>A mode outside the enum used to run as Auto for the static step but as a forced mode for the slots.</summary>
    [Test]
    public void AnUndefinedDecodeStepModeIsRefused()
    {
        using var model = ParrotModel.Load(QwenDir);
        var bad = (DecodeStepMode)99;
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => model.StartContinuousBatch(bad))!.ParamName, Is.EqualTo("mode"));
        using var lm = global::Parrot.Nn.Models.Qwen2.Qwen2Loader.Load(QwenDir);
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => Generator.Wrap(lm, bad))!.ParamName, Is.EqualTo("mode"));
        using var parrot = global::Parrot.Parrot.Model.ParrotLoader.Load(ParrotDir);
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => Generator.Wrap(parrot, null, bad))!.ParamName, Is.EqualTo("mode"));
        foreach (var mode in Enum.GetValues<DecodeStepMode>())
        {
            using var batch = model.StartContinuousBatch(mode);
            Assert.That(batch.DecodePath, Is.Not.Empty);
        }
    }

    /// <summary>
    /// Removing a sequence through another batch used to free its cache while its own batch still stepped it (and free
    /// the other batch's slot of the same number); now it is refused and the sequence goes on where it is.
    /// </summary>
    [Test]
    public void ASequenceCannotBeRemovedThroughAnotherBatch()
    {
        using var model = ParrotModel.Load(QwenDir);
        var options = new GenerationOptions { IgnoreEos = true };
        var expected = model.Generate(Ask("whose am I?"), null, options with { MaxNewTokens = 5 }).Tokens;
        using var mine = model.StartContinuousBatch(DecodeStepMode.Eager);
        using var other = model.StartContinuousBatch(DecodeStepMode.Eager);
        var s = mine.Join(Ask("whose am I?"), null, options, 5);
        var e = Assert.Throws<ArgumentException>(() => other.Remove(s));
        Assert.That(e!.ParamName, Is.EqualTo("sequence"));
        Assert.That(s.Left, Is.False);
        var tokens = new List<int>();
        for (int step = 0; step < 10 && mine.Count > 0; step++) tokens.AddRange(mine.Step().Select(x => x.Token));
        Assert.That(tokens, Is.EqualTo(expected));
    }

    [Test]
    public void RemovedSequencesLeaveAndTheOthersGoOn([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = ParrotModel.Load(ParrotDir);
        var options = new GenerationOptions { IgnoreEos = true };
        var alone = model.Generate(Ask("keep me"), null, options with { MaxNewTokens = 10 });
        using var batch = model.StartContinuousBatch(mode);
        var keep = batch.Join(Ask("keep me"), null, options, 10);
        var drop = batch.Join(Ask("drop me"), null, options, 50);
        var got = new List<int>();
        for (int step = 0; step < 10; step++)
        {
            if (step == 3)
            {
                batch.Remove(drop);
                Assert.That((drop.Left, batch.Count), Is.EqualTo((true, 1)));
            }
            foreach (var e in batch.Step())
            {
                Assert.That(e.Sequence, step < 3 ? Is.AnyOf(keep, drop) : Is.SameAs(keep));
                if (e.Sequence == keep) got.Add(e.Token);
            }
        }
        Assert.That(got, Is.EqualTo(alone.Tokens));
        Assert.That(batch.Count, Is.Zero);
        Assert.That(batch.Step(), Is.Empty);
    }

    [Test]
    public void APromptThatDoesNotFitTheContextIsRefusedBeforeItRuns([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = ParrotModel.Load(ParrotDir);
        using var batch = model.StartContinuousBatch(mode);
        Assert.That(batch.ContextLength, Is.EqualTo(1024));
        Assert.Throws<PromptTooLongException>(() => batch.Join(Ask(new string('x', 1100)), null, new GenerationOptions(), null));
        Assert.Throws<PromptTooLongException>(() => batch.Join(Ask("short"), null, new GenerationOptions(), 1020));
        var fits = batch.Join(Ask("short"), null, new GenerationOptions(), null);
        Assert.That(fits.Options.MaxNewTokens, Is.EqualTo(1024 - fits.PromptTokens), "null: as many as the context leaves");
        Assert.That(batch.Count, Is.EqualTo(1));
    }

    [Test]
    public void ZeroNewTokensIsRefusedAndLeavesTheBatchEmpty([Values(DecodeStepMode.Eager, DecodeStepMode.Static)] DecodeStepMode mode)
    {
        using var model = ParrotModel.Load(ParrotDir);
        using var batch = model.StartContinuousBatch(mode);
        var e = Assert.Throws<ArgumentException>(() => batch.Join(Ask("short"), null, new GenerationOptions(), 0));
        Assert.That(e!.Message, Does.Contain("at least 1"));
        Assert.That(batch.Count, Is.EqualTo(0));
        Assert.That(batch.Step(), Is.Empty);
    }

    [Test]
    public void ABadOptionIsRefusedBeforeThePromptIsEncodedOrPrefilled()
    {
        // A prompt too long for the context would fail at its encoding; the option's error comes first, so nothing ran.
        using var model = ParrotModel.Load(ParrotDir);
        using var batch = model.StartContinuousBatch(DecodeStepMode.Eager);
        var e = Assert.Throws<ArgumentException>(() => batch.Join(Ask(new string('x', 1100)), null, new GenerationOptions { TopP = 0 }, null));
        Assert.That(e!.Message, Does.Contain("top-p"));
        e = Assert.Throws<ArgumentException>(() => batch.Join(Ask("short"), null, new GenerationOptions { Temperature = 0.7, RepetitionPenalty = -1 }, 4));
        Assert.That(e!.Message, Does.Contain("repetition penalty"));
        Assert.That(batch.Count, Is.EqualTo(0));
        // MaxNewTokens of the options is ignored by Join (its own argument decides), so a negative one is no error.
        var seq = batch.Join(Ask("short"), null, new GenerationOptions { MaxNewTokens = -5 }, 2);
        Assert.That(seq.Options.MaxNewTokens, Is.EqualTo(2));
    }
}
