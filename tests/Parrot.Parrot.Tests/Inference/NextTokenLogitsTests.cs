using Parrot.Parrot.Inference;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tests.Shared;

using static Parrot.Parrot.Tests.Inference.BatchCase;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// <see cref="ParrotModel.NextTokenLogits"/>, selftest's near-tie judge: one eager forward of a sequence's prompt and
/// answer so far gives the logits its next greedy pick compares: its argmax is the token a continuous batch generated
/// there, for a plain greedy sequence, one with an image and one with a repetition penalty (the pick's logits penalised).
/// </summary>
public class NextTokenLogitsTests() : TinyModelSetFixture("parrot-next-token-logits-tests")
{
    [Test]
    public void TheArgMaxOfThePrefixsLogitsIsTheBatchsToken([Values(DType.F32, DType.BF16)] DType dtype)
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { DType = dtype });
        var red = ImageLoader.Load(Red);
        var greedy = new GenerationOptions { IgnoreEos = true };
        BatchCase[] cases =
        [
            new(Ask("first question"), false, greedy, 10, 0),
            new(Ask("what colour is it?", image: true), true, greedy, 8, 0),
            new(Ask("penalised"), false, greedy with { RepetitionPenalty = 1.3 }, 10, 1),
        ];
        using var batch = model.StartContinuousBatch(DecodeStepMode.Eager);
        var sequences = new BatchSequence?[cases.Length];
        var tokens = cases.Select(_ => new List<int>()).ToArray();
        int checkedTokens = 0, penalisedDiffers = 0;
        for (int step = 0; step < 40 && (step <= 1 || batch.Count > 0); step++)
        {
            for (int i = 0; i < cases.Length; i++)
                if (cases[i].JoinAt == step) sequences[i] = batch.Join(cases[i].Conversation, cases[i].Image ? red : null, cases[i].Options, cases[i].Max);
            foreach (var e in batch.Step())
            {
                int i = Array.IndexOf(sequences, e.Sequence);
                var (raw, pick) = model.NextTokenLogits(cases[i].Conversation, cases[i].Image ? red : null, cases[i].Options, tokens[i]);
                Assert.That(ArgMax(pick), Is.EqualTo(e.Token), $"sequence {i} after {tokens[i].Count} tokens");
                if (cases[i].Options.RepetitionPenalty == 1) Assert.That(pick, Is.EqualTo(raw.Select(v => (double)v).ToArray()), "no penalty: the raw logits");
                else if (ArgMax(raw.Select(v => (double)v).ToArray()) != e.Token) penalisedDiffers++;
                tokens[i].Add(e.Token);
                checkedTokens++;
            }
        }
        Assert.That(checkedTokens, Is.EqualTo(28));
        Assert.That(penalisedDiffers, Is.GreaterThan(0), "the penalty decides some pick (so the judge must apply it)");
    }

    [Test]
    public void ItRefusesSamplingOptionsAndIdsOutsideTheVocabulary()
    {
        using var model = ParrotModel.Load(ParrotDir);
        var greedy = new GenerationOptions();
        Assert.That(() => model.NextTokenLogits(Ask("hi"), null, greedy with { Temperature = 0.5 }, []), Throws.ArgumentException.With.Message.Contains("sample"));
        Assert.That(() => model.NextTokenLogits(Ask("hi"), null, greedy, [-1]), Throws.ArgumentException.With.Message.Contains("outside the vocabulary"));
        Assert.That(() => model.NextTokenLogits(Ask("hi"), null, greedy, [1 << 20]), Throws.ArgumentException.With.Message.Contains("outside the vocabulary"));
    }

    private static int ArgMax(double[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
