using Parrot.Parrot.Data;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Tensors.Formats;
using static Parrot.Parrot.Tests.Text.TokenizerFixtures;

namespace Parrot.Parrot.Tests;

/// <summary>
/// A JSON string that parses but is not text (the escape \ud800, an unpaired surrogate) made these readers throw
/// System.Text.Json's InvalidOperationException, which named neither the file nor the key; each now names both.
/// </summary>
public class UnreadableJsonTextTests
{
    /// <summary>The JSON escape (six characters), not a C# surrogate.</summary>
    private const string Lone = "\\ud800";

    private string _dir = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "parrot-jsontext-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { }
    }

    private static string ParrotFixtureConfig =>
        File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", "f32-separate", "config.json"));

    private void WriteTokenizer() =>
        File.WriteAllText(Path.Combine(_dir, "tokenizer.json"), TinyJson(added: [Added(256, TextWindows.EndOfText)]).ToJsonString());

    [Test]
    public void TextWindowsNameTheFileAndLine()
    {
        WriteTokenizer();
        var tok = BpeTokenizer.Load(Path.Combine(_dir, "tokenizer.json"));
        var path = Path.Combine(_dir, "lm.jsonl");
        File.WriteAllText(path, "{\"text\": \"ok\"}\n{\"text\": \"a" + Lone + "b\"}\n");
        Assert.That(Assert.Throws<InvalidDataException>(() => TextWindows.Read(path, tok, 2, out _))!.Message,
            Is.EqualTo($"{path}:2: \"text\" {JsonText.NotText}"));
    }

    [Test]
    public void AParrotConfigNamesTheFileAndKey()
    {
        string good = ParrotFixtureConfig;
        string bad = good.Replace("\"mlp2x_gelu\"", "\"mlp2x_gelu" + Lone + "\"", StringComparison.Ordinal);
        Assert.That(bad, Is.Not.EqualTo(good));
        Assert.That(Assert.Throws<InvalidDataException>(() => ParrotConfig.Parse(bad, "c.json"))!.Message,
            Is.EqualTo($"c.json: the string at $.mm_projector_type {JsonText.NotText}"));
    }

    [Test]
    public void AVisionTowerPathWithANulIsNamed()
    {
        // Loading the tower threw Path's "Null character in path" ArgumentException, naming neither the file nor the key.
        var o = System.Text.Json.Nodes.JsonNode.Parse(ParrotFixtureConfig)!.AsObject();
        o["mm_vision_tower"] = "tow\0er";
        File.WriteAllText(Path.Combine(_dir, "config.json"), o.ToJsonString());
        File.Copy(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "parrot", "f32-separate", "model.safetensors"), Path.Combine(_dir, "model.safetensors"));
        Assert.That(Assert.Throws<InvalidDataException>(() => ParrotModelDirectory.Load(_dir))!.Message,
            Is.EqualTo($"{Path.Combine(_dir, "config.json")}: mm_vision_tower holds a NUL character, so it is no folder path"));
    }

    [Test]
    public void AnUnreadableModelTypeIsNamed()
    {
        // IsParrotDirectory threw instead of answering; the loaders then name the file and the key.
        string config = Path.Combine(_dir, "config.json");
        File.WriteAllText(config, ParrotFixtureConfig.Replace("\"parrot_qwen2\"", "\"parrot_qwen2" + Lone + "\"", StringComparison.Ordinal));
        Assert.That(ParrotModelDirectory.IsParrotDirectory(_dir), Is.False);
        Assert.That(Assert.Throws<InvalidDataException>(() => ParrotModelDirectory.Load(_dir))!.Message,
            Is.EqualTo($"{config}: the string at $.model_type {JsonText.NotText}"));
        WriteTokenizer();
        Assert.That(Assert.Throws<InvalidDataException>(() => ParrotModel.Load(_dir))!.Message,
            Is.EqualTo($"{config}: 'model_type' {JsonText.NotText}"));
    }
}
