using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// Seeded mutations of the fixtures' config.json files (<see cref="FuzzHarness"/>): each is read, with finite floats,
/// or refused with an InvalidDataException naming the file, never another exception or a hang.
/// </summary>
public class ConfigFuzzTests
{
    private string _dir = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "parrot-config-fuzz", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    /// <summary>Writes each input to its own file (a hung case may still hold the last one) and reads it with <paramref name="load"/>.</summary>
    private void Fuzz(string fixture, int seed, Action<string> load)
    {
        int n = 0;
        string config = Path.Combine(_dir, "config.json");
        FuzzHarness.Run(File.ReadAllBytes(fixture), seed, bytes =>
        {
            string path = Path.Combine(_dir, $"{Interlocked.Increment(ref n)}", "config.json");
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllBytes(path, bytes);
            load(path);
        }, _dir, typeof(InvalidDataException));
    }

    [Test]
    public void Qwen2Config() => Fuzz(FixturePaths.Get("qwen2", "f32-gqa-untied", "config.json"), 1, path =>
    {
        var c = Qwen2ConfigJson.Load(path);
        FuzzHarness.Require(double.IsFinite(c.RopeTheta) && double.IsFinite(c.RmsNormEps) && double.IsFinite(c.InitializerRange), $"{c}");
    });

    [Test]
    public void ClipVisionConfig() => Fuzz(FixturePaths.Get("clip", "f32-standalone", "config.json"), 2, path =>
        FuzzHarness.Require(double.IsFinite(ClipVisionConfigJson.Load(path).LayerNormEps), "a non-finite layer_norm_eps"));

    [Test]
    public void FullClipConfig() => Fuzz(FixturePaths.Get("clip", "bf16-full-clip", "config.json"), 3, path =>
        FuzzHarness.Require(double.IsFinite(ClipVisionConfigJson.Load(path).LayerNormEps), "a non-finite layer_norm_eps"));
}
