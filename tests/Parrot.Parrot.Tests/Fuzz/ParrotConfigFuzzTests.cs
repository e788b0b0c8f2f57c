using Parrot.Parrot.Model;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Fuzz;

/// <summary>Seeded mutations of the fixture's Parrot config.json, read as Load reads it: read with finite floats, or an InvalidDataException naming the file.</summary>
public class ParrotConfigFuzzTests
{
    [Test]
    public void ParrotConfigJson()
    {
        var valid = File.ReadAllBytes(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", "f32-separate", "config.json"));
        FuzzHarness.Run(valid, 11, bytes =>
        {
            var c = ParrotConfig.Parse(FuzzHarness.AsFileText(bytes), "fuzzed/config.json");
            FuzzHarness.Require(double.IsFinite(c.MoeWeight) && double.IsFinite(c.Text.RopeTheta) && double.IsFinite(c.Text.RmsNormEps)
                && double.IsFinite(c.Text.InitializerRange), $"{c}");
        }, "fuzzed/config.json: ", typeof(InvalidDataException));
    }
}
