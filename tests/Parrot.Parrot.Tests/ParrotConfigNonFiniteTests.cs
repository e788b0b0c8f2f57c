using System.Text.Json.Nodes;
using Parrot.Parrot.Model;

namespace Parrot.Parrot.Tests;

/// <summary>A float of config.json past double's range (1e400) read as ±Infinity and was accepted; it is refused, naming the file and key.</summary>
public class ParrotConfigNonFiniteTests
{
    private static string FixtureConfig =>
        File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", "f32-separate", "config.json"));

    private static string WithNumber(string key, string number)
    {
        var o = JsonNode.Parse(FixtureConfig)!.AsObject();
        o.Remove(key);
        return o.ToJsonString().TrimEnd('}') + $", \"{key}\": {number}}}";
    }

    [TestCase("moe_weight", "1e400")]
    [TestCase("moe_weight", "-1e400")]
    [TestCase("rope_theta", "1e400")]
    public void AnOverflowingFloatIsRefused(string key, string number)
    {
        var e = Assert.Throws<InvalidDataException>(() => ParrotConfig.Parse(WithNumber(key, number), "the/config.json"))!;
        Assert.That(e.Message, Is.EqualTo($"the/config.json: '{key}' must be a finite number, got {number}"));
    }

    [Test]
    public void ExtremeButFiniteFloatsStillParse()
    {
        // 1e-400 underflows to 0 and -0 is zero: finite, so they are the config's to give (moe_weight 0 turns the residual off).
        Assert.That(ParrotConfig.Parse(WithNumber("moe_weight", "1e-400"), "c").MoeWeight, Is.EqualTo(0));
        Assert.That(ParrotConfig.Parse(WithNumber("moe_weight", "-0"), "c").MoeWeight, Is.EqualTo(0));
    }
}
