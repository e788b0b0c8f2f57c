using Parrot.Parrot.Model;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Fuzz;

/// <summary>Seeded mutations of the fixture's Parrot config.json, read as Load reads it: read with finite floats, or an InvalidDataException naming the file.</summary>
public class ParrotConfigFuzzTests
{
    private const string Source = "fuzzed/config.json";

    [Test]
    public void ParrotConfigJson() =>
        FuzzHarness.RunConfigText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", "f32-separate", "config.json"), 11, Source, text =>
        {
            var c = ParrotConfig.Parse(text, Source);
            FuzzHarness.Require(double.IsFinite(c.MoeWeight) && double.IsFinite(c.Text.RopeTheta) && double.IsFinite(c.Text.RmsNormEps)
                && double.IsFinite(c.Text.InitializerRange), $"{c}");
        });
}
