using Parrot.Parrot.Inference;
using Parrot.Parrot.Text;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// serve now passes each request's repetition_penalty to the continuous batch (9ab639b), so one batch holds rows with
/// different penalties, the same prompt among them. Each row must get what the ParrotModel API gives for its own options
/// alone: the other batch tests compare the batch's paths with each other (candidates against whole rows, slots against
/// eager), which a penalty or seen ids shared between rows would pass alike.
/// </summary>
public class MixedPenaltyBatchTests() : TinyModelSetFixture("parrot-mixed-penalty-tests")
{
    private static ChatTurn[] Ask(string q) => [new ChatTurn(ChatRole.User, q)];

    [Test]
    public void RowsWithDifferentPenaltiesEachGenerateWhatTheyWouldAlone(
        [Values(false, true)] bool onTestDevice, [Values(DecodeStepMode.Eager, DecodeStepMode.Auto)] DecodeStepMode mode)
    {
        using var model = ParrotModel.Load(ParrotDir, new ParrotModelOptions { Device = onTestDevice ? TestDevice.Get() : Tensors.Device.Cpu });
        var greedy = new GenerationOptions { IgnoreEos = true };
        var sampled = new GenerationOptions { Temperature = 0.8, Seed = 7, IgnoreEos = true };
        var topK = new GenerationOptions { Temperature = 0.9, TopK = 5, Seed = 9, IgnoreEos = true };
        // The same question under penalties 5, 1 and 0.7, greedy (on the device when unpenalised), plain sampling and top-k
        // (candidates on the test device), joining at different steps.
        var cases = new (string Question, GenerationOptions Options, int JoinAt)[]
        {
            ("Hello there", greedy with { RepetitionPenalty = 5 }, 0),
            ("Hello there", greedy, 0),
            ("Hello there", greedy with { RepetitionPenalty = 0.7 }, 1),
            ("Hello there", sampled with { RepetitionPenalty = 5 }, 0),
            ("Hello there", sampled, 2),
            ("Hello there", topK with { RepetitionPenalty = 1.3 }, 1),
            ("Hello there", topK, 0),
        };
        const int max = 20;
        var expected = cases.Select(c => model.Generate(Ask(c.Question), null, c.Options with { MaxNewTokens = max }).Tokens.ToList()).ToArray();
        Assert.That(expected[0], Is.Not.EqualTo(expected[1]), "precondition: the penalty changes the greedy answer");
        Assert.That(expected[2], Is.Not.EqualTo(expected[1]), "precondition: a penalty below 1 changes it too");
        Assert.That(expected[3], Is.Not.EqualTo(expected[4]), "precondition: the penalty changes the sampled answer");
        Assert.That(expected[5], Is.Not.EqualTo(expected[6]), "precondition: the penalty changes the top-k answer");

        using var batch = model.StartContinuousBatch(mode);
        var sequences = new BatchSequence?[cases.Length];
        var tokens = cases.Select(_ => new List<int>()).ToArray();
        int largest = 0;
        for (int step = 0; step < 100 && (step <= cases.Max(c => c.JoinAt) || batch.Count > 0); step++)
        {
            for (int i = 0; i < cases.Length; i++)
                if (cases[i].JoinAt == step) sequences[i] = batch.Join(Ask(cases[i].Question), null, cases[i].Options, max);
            largest = Math.Max(largest, batch.Count);
            foreach (var e in batch.Step()) tokens[Array.IndexOf(sequences, e.Sequence)].Add(e.Token);
        }
        Assert.That(largest, Is.EqualTo(cases.Length), "all were in the batch at once");
        Assert.That(batch.DecodePath, onTestDevice && mode == DecodeStepMode.Auto ? Does.StartWith("static slots") : Is.EqualTo("eager"));
        for (int i = 0; i < cases.Length; i++) Assert.That(tokens[i], Is.EqualTo(expected[i]), $"sequence {i}: {cases[i].Options}");
    }
}
