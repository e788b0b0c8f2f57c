using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// Seeded mutations of the fixtures' config.json files (<see cref="FuzzHarness"/>), read as Load reads them: each is read,
/// with finite floats, or refused with an InvalidDataException naming the file, never another exception or a hang.
/// </summary>
public class ConfigFuzzTests
{
    private const string Source = "fuzzed/config.json";

    private static void Fuzz(string fixture, int seed, Action<string> parse) => FuzzHarness.RunConfigText(fixture, seed, Source, parse);

    [Test]
    public void Qwen2Config() => Fuzz(FixturePaths.Get("qwen2", "f32-gqa-untied", "config.json"), 1, text =>
    {
        var c = Qwen2ConfigJson.Parse(text, Source);
        FuzzHarness.Require(double.IsFinite(c.RopeTheta) && double.IsFinite(c.RmsNormEps) && double.IsFinite(c.InitializerRange), $"{c}");
    });

    [Test]
    public void ClipVisionConfig() => Fuzz(FixturePaths.Get("clip", "f32-standalone", "config.json"), 2, text =>
        FuzzHarness.Require(double.IsFinite(ClipVisionConfigJson.Parse(text, Source).LayerNormEps), "a non-finite layer_norm_eps"));

    [Test]
    public void FullClipConfig() => Fuzz(FixturePaths.Get("clip", "bf16-full-clip", "config.json"), 3, text =>
        FuzzHarness.Require(double.IsFinite(ClipVisionConfigJson.Parse(text, Source).LayerNormEps), "a non-finite layer_norm_eps"));
}
