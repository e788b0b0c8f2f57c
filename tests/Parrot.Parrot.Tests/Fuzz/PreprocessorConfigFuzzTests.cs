using Parrot.Parrot.Vision;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Fuzz;

/// <summary>
/// Seeded mutations of the tower fixture's preprocessor_config.json, read as Load reads it: it loads, with finite means
/// and finite non-zero stds, and makes a preprocessor, or is refused with an InvalidDataException naming the file.
/// </summary>
public class PreprocessorConfigFuzzTests
{
    private const string Source = "fuzzed/preprocessor_config.json";

    [Test]
    public void PreprocessorConfigJson() =>
        FuzzHarness.RunConfigText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", "tower", "preprocessor_config.json"), 61, Source, text =>
        {
            var c = PreprocessorConfig.Parse(text, Source);
            FuzzHarness.Require(c.ImageMean.All(double.IsFinite) && c.ImageStd.All(s => double.IsFinite(s) && s != 0) && double.IsFinite(c.RescaleFactor),
                $"mean [{string.Join(", ", c.ImageMean)}], std [{string.Join(", ", c.ImageStd)}], rescale {c.RescaleFactor}");
            _ = new ImagePreprocessor(c);
        });
}
