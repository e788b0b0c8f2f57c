using System.Text.Json.Nodes;
using Parrot.Parrot.Model;

namespace Parrot.Parrot.Tests;

/// <summary>
/// Parrot's own keys of config.json read through the reader shared with the Qwen2 and CLIP configs: a value of the wrong
/// kind is refused in that reader's words, naming the file and key; a null is the key left out.
/// </summary>
public class ParrotConfigKeyTypeTests
{
    private static string With(string key, string rawJson)
    {
        var o = JsonNode.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", "f32-separate", "config.json")))!.AsObject();
        o[key] = JsonNode.Parse(rawJson);
        return o.ToJsonString();
    }

    [TestCase("num_experts", "2.5", "'num_experts' must be an integer, got 2.5")]
    [TestCase("mm_hidden_size", "3000000000", "'mm_hidden_size' must be an integer, got 3000000000")]
    [TestCase("mm_vision_select_layer", "\"-2\"", "'mm_vision_select_layer' must be an integer, got \"-2\"")]
    [TestCase("moe_weight", "\"0.1\"", "'moe_weight' must be a number, got \"0.1\"")]
    [TestCase("use_moe", "1", "'use_moe' must be true or false, got 1")]
    [TestCase("mm_projector_type", "[\"mlp2x_gelu\"]", "'mm_projector_type' must be a string, got [\"mlp2x_gelu\"]")]
    [TestCase("moe_hidden_size", "true", "'moe_hidden_size' must be an integer, got true")]
    public void AValueOfTheWrongKindIsRefused(string key, string value, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => ParrotConfig.Parse(With(key, value), "the/config.json"))!;
        Assert.That(e.Message, Is.EqualTo($"the/config.json: {expected}"));
    }

    [Test]
    public void NullIsTheDefault()
    {
        var c = ParrotConfig.Parse(With("mm_vision_tower", "null"), "c");
        Assert.That(c.MmVisionTower, Is.Null, "the fixture has ../tower");
        c = ParrotConfig.Parse(With("num_experts", "null"), "c");
        Assert.That(c.NumExperts, Is.EqualTo(6), "the fixture has 3; left out, Parrot's 6");
    }
}
