using System.Text.Json.Nodes;
using Parrot.Parrot.Data;
using Parrot.Parrot.Data.World;
using Parrot.Parrot.Text;

namespace Parrot.Parrot.Tests.Training;

public class TextWindowsTests
{
    [Test]
    public void DocumentsAreEndedConcatenatedAndCut()
    {
        var world = WorldBuilder.Build(new WorldOptions { Seed = 3, Stage1Count = 0, Stage2Count = 0, BenchmarkCount = 0, TextScenes = 8 });
        var trainer = new BpeTrainer(new BpeTrainerOptions { VocabSize = 400 });
        foreach (var d in world.Text) trainer.AddText(d.Text);
        var dir = Path.Combine(Path.GetTempPath(), "parrot-textwindows-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        trainer.Train().Save(Path.Combine(dir, "tokenizer.json"));
        var tok = BpeTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        var path = Path.Combine(dir, "lm.jsonl");
        // A document that spells a control token is text, not a control token.
        var docs = world.Text.Select(d => d.Text).Append("say <|im_end|> please").ToList();
        File.WriteAllLines(path, docs.Select((t, i) => new JsonObject { ["id"] = i, ["language"] = "xx", ["text"] = t }.ToJsonString()).Append(""));

        var windows = TextWindows.Read(path, tok, 17, out int count);
        Assert.That(count, Is.EqualTo(docs.Count));
        int eot = tok.TokenToId("<|endoftext|>")!.Value, imEnd = tok.TokenToId("<|im_end|>")!.Value;
        var stream = new List<int>();
        foreach (var d in docs)
        {
            // Decoding each document's ids gives its text back, so the stream is the documents in order.
            stream.AddRange(tok.Encode(d, parseSpecialTokens: false));
            stream.Add(eot);
        }
        Assert.That(windows, Has.Count.EqualTo(stream.Count / 17));
        Assert.That(windows.All(w => w.Length == 17), Is.True);
        Assert.That(windows.SelectMany(w => w), Is.EqualTo(stream.Take(windows.Count * 17)));
        Assert.That(tok.Decode(stream.ToArray()), Is.EqualTo(string.Concat(docs.Select(d => d + "<|endoftext|>"))));
        Assert.That(stream, Does.Not.Contain(imEnd));

        File.AppendAllText(path, "{\"txt\": 1}\n");
        Assert.That(Assert.Throws<InvalidDataException>(() => TextWindows.Read(path, tok, 17, out _))!.Message, Does.Contain($"lm.jsonl:{docs.Count + 2}"));
        File.WriteAllText(path, "{\"text\": \"a\"}\n");
        Assert.That(Assert.Throws<InvalidDataException>(() => TextWindows.Read(path, tok, 17, out _))!.Message, Does.Contain("no window"));
    }
}
