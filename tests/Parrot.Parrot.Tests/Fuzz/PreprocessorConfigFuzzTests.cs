using Parrot.Parrot.Vision;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Fuzz;

/// <summary>
/// Seeded mutations of the tower fixture's preprocessor_config.json, read as Load reads it: it loads, with finite means
/// and finite non-zero stds, and makes a preprocessor, or is refused with an InvalidDataException naming the file.
/// </summary>
public class PreprocessorConfigFuzzTests
{
    [Test]
    public void PreprocessorConfigJson()
    {
        var valid = File.ReadAllBytes(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", "tower", "preprocessor_config.json"));
        FuzzHarness.Run(valid, 61, bytes =>
        {
            var c = PreprocessorConfig.Parse(FuzzHarness.AsFileText(bytes), "fuzzed/preprocessor_config.json");
            FuzzHarness.Require(c.ImageMean.All(double.IsFinite) && c.ImageStd.All(s => double.IsFinite(s) && s != 0) && double.IsFinite(c.RescaleFactor),
                $"mean [{string.Join(", ", c.ImageMean)}], std [{string.Join(", ", c.ImageStd)}], rescale {c.RescaleFactor}");
            _ = new ImagePreprocessor(c);
        }, "fuzzed/preprocessor_config.json: ", typeof(InvalidDataException));
    }
}
