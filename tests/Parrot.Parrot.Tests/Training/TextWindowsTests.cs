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

    [Test]
    public void ChatMlDocumentsKeepTheirControlTokensWhenAsked()
    {
        var world = WorldBuilder.Build(new WorldOptions { Seed = 5, Stage1Count = 0, Stage2Count = 0, BenchmarkCount = 0, TextScenes = 6, TextFormat = WorldTextFormat.ChatMl });
        var trainer = new BpeTrainer(new BpeTrainerOptions { VocabSize = 400 });
        foreach (var d in world.Text) trainer.AddText(d.Text);
        var dir = Path.Combine(Path.GetTempPath(), "parrot-textwindows-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            trainer.Train().Save(Path.Combine(dir, "tokenizer.json"));
            var tok = BpeTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
            var path = Path.Combine(dir, "lm.jsonl");
            File.WriteAllLines(path, world.Text.Select(d => new JsonObject { ["text"] = d.Text }.ToJsonString()));
            int imStart = tok.TokenToId("<|im_start|>")!.Value, imEnd = tok.TokenToId("<|im_end|>")!.Value;
            // Every turn opens with one <|im_start|> and closes with one <|im_end|>: count the turns in the text.
            int turns = world.Text.Sum(d => d.Text.Split("<|im_start|>").Length - 1);
            var parsed = TextWindows.Read(path, tok, 8, out _, parseSpecialTokens: true).SelectMany(w => w).ToList();
            var literal = TextWindows.Read(path, tok, 8, out _).SelectMany(w => w).ToList();
            // Windows drop the tail, so at most one window's worth of turns may be missing.
            Assert.That(parsed.Count(t => t == imStart), Is.InRange(turns - 8, turns));
            Assert.That(parsed.Count(t => t == imEnd), Is.InRange(turns - 8, turns));
            Assert.That(literal, Does.Not.Contain(imStart).And.Not.Contain(imEnd));
            Assert.That(parsed.Count, Is.LessThan(literal.Count));
        }
        finally { Directory.Delete(dir, true); }
    }
}
