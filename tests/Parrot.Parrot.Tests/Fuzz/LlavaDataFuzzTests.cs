using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Parrot.Data;
using Parrot.Tests.Shared;
using static Parrot.Parrot.Tests.Training.TrainingFixtures;

namespace Parrot.Parrot.Tests.Fuzz;

/// <summary>
/// Seeded mutations of LLaVA training data (4 samples in en, zh and pt, 3 with images): as a JSON array and as JSON lines, with and
/// without skipping bad samples, each load succeeds or throws the reader's LlavaDataException naming the file.
/// </summary>
public class LlavaDataFuzzTests
{
    private static readonly JsonSerializerOptions Raw = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static void Fuzz(string name, int seed, Func<JsonArray, string> format)
    {
        using var folder = new FuzzFolder();
        var (json, images) = WriteData(folder.Path, samples: 4);
        // Unescaped, so that the mutations meet raw UTF-8 (the zh and pt questions) too.
        var valid = Encoding.UTF8.GetBytes(format(JsonNode.Parse(File.ReadAllText(json))!.AsArray()));
        FuzzHarness.Run(valid, seed, bytes =>
        {
            string path = folder.Write(name, bytes);
            // Without skipping, the first bad sample is the refusal; with skipping, the case's outcome. The images (never
            // mutated; ImageBadInputTests fuzzes them) count as cached, so their decoding does not take the test's time.
            try { Check(LlavaDataset.Load(path, images, Chat, DataOptions(skipBad: false) with { HasCachedFeatures = Cached, ImageCheckThreads = 1 })); }
            catch (LlavaDataException e) when (e.Message.StartsWith(path, StringComparison.Ordinal)) { }
            Check(LlavaDataset.Load(path, images, Chat, DataOptions(skipBad: true) with { HasCachedFeatures = Cached, ImageCheckThreads = 1 }));
        }, folder.Path, typeof(LlavaDataException));

        static bool Cached(string image) => true;

        static void Check(LlavaDataset data) =>
            FuzzHarness.Require(data.Examples.All(e => e.Ids.Length == e.Labels.Length && e.Ids.Length > 0), "an example whose ids and labels differ in length");
    }

    [Test]
    public void JsonArray() => Fuzz("data.json", 31, a => a.ToJsonString(Raw));

    [Test]
    public void JsonLines() => Fuzz("data.jsonl", 32, a => string.Concat(a.Select(s => s!.ToJsonString(Raw) + "\n")));
}
