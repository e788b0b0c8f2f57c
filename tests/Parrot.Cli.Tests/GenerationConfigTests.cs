using Parrot.Nn.Models.Qwen2;

namespace Parrot.Cli.Tests;

/// <summary>generation_config.json's eos_token_id, as `parrot generate` reads it: ids, null, or a clear error.</summary>
public class GenerationConfigTests
{
    private static readonly Qwen2Config Config = new() { VocabSize = 100, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 1, NumAttentionHeads = 2, NumKeyValueHeads = 1, RopeTheta = 10000, EosTokenIds = [99] };

    private static HashSet<int> Read(string json)
    {
        var dir = CliRunner.TempDir();
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), json);
        try { return GenerateCommand.EndOfSequenceIds(dir, Config); }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void IdsNullAndAbsent()
    {
        Assert.That(Read("{\"eos_token_id\": [3, 4]}"), Is.EquivalentTo(new[] { 3, 4 }));
        Assert.That(Read("{\"eos_token_id\": 5}"), Is.EquivalentTo(new[] { 5 }));
        Assert.That(Read("{\"eos_token_id\": null}"), Is.Empty);
        Assert.That(Read("{\"do_sample\": false}"), Is.EquivalentTo(new[] { 99 }));
    }

    /// <summary>A string used to be ignored (generation then never stopped at an end id); other shapes threw without naming the file.</summary>
    [TestCase("{\"eos_token_id\": \"</s>\"}", "'eos_token_id' must be a token id in [0, 100), got \"</s>\"")]
    [TestCase("{\"eos_token_id\": [3, \"x\"]}", "'eos_token_id'[1] must be a token id in [0, 100), got \"x\"")]
    [TestCase("{\"eos_token_id\": [1.5]}", "'eos_token_id'[0] must be a token id in [0, 100), got 1.5")]
    [TestCase("{\"eos_token_id\": 100}", "'eos_token_id' must be a token id in [0, 100), got 100")]
    [TestCase("[1]", "expected a JSON object")]
    public void BadValuesNameTheFile(string json, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => Read(json))!;
        Assert.That(e.Message, Does.EndWith("generation_config.json: " + expected));
    }
}
