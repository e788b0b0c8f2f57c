using System.Text.Json;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Text;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli.Tests;

/// <summary>`parrot pretrain-vision`, and `train-tokenizer` + `train-lm --init --text` as the tiny assets are made.</summary>
public class PretrainCommandsTests
{
    private static string World(string dir, string size, string images, string text)
    {
        var world = Path.Combine(dir, "world");
        var r = CliRunner.Run(null, "make-world", "--out", world, "--seed", "3", "--size", size, "--stage1", images, "--stage2", "0", "--bench", "0", "--text", text);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        return world;
    }

    [Test]
    public void PretrainVisionWritesALoadableClipFolderAndLogs()
    {
        var dir = CliRunner.TempDir();
        var world = World(dir, "48", "40", "0");
        var config = Path.Combine(dir, "tower.json");
        File.WriteAllText(config, """{"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 48, "patch_size": 16}""");
        var outDir = Path.Combine(dir, "vision");
        var r = CliRunner.Run(null, "pretrain-vision", "--world", world, "--out", outDir, "--config", config, "--steps", "6", "--batch", "8", "--valid", "8", "--eval-every", "3");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr + r.Stdout);
        Assert.That(r.Stdout, Does.Contain("32 training images, 8 held out"));

        using var tower = ClipVisionLoader.Load(outDir);
        Assert.That(tower.Config.HiddenSize, Is.EqualTo(32));
        Assert.That(tower.Config.NumHiddenLayers, Is.EqualTo(2));
        Assert.That(tower.Config.NumPatches, Is.EqualTo(9));
        using (var cfg = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "config.json"))))
            Assert.That(cfg.RootElement.GetProperty("model_type").GetString(), Is.EqualTo("clip_vision_model"));
        Assert.That(global::Parrot.Parrot.Vision.ImagePreprocessor.FromDirectory(outDir).FixedOutputShape, Is.EqualTo(new[] { 3, 48, 48 }));

        var lines = File.ReadAllLines(Path.Combine(outDir, "train_log.jsonl"));
        Assert.That(lines, Has.Length.EqualTo(6));
        var rows = lines.Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.That(rows.Select(e => e.GetProperty("step").GetInt32()), Is.EqualTo(new[] { 1, 2, 3, 4, 5, 6 }));
        Assert.That(rows.Select(e => e.TryGetProperty("valid_loss", out _)), Is.EqualTo(new[] { false, false, true, false, false, true }));
        Assert.That(rows[5].GetProperty("valid_acc_patch_color").GetDouble(), Is.InRange(0.0, 1.0));
        Assert.That(File.Exists(Path.Combine(outDir, "loss.png")), Is.True);
        using (var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "pretrain_summary.json"))))
            Assert.That(summary.RootElement.GetProperty("tower_parameters").GetInt64(), Is.EqualTo(tower.ParameterCount()));
        // Only the tower is saved, under CLIPVisionModel's names (the heads stay behind).
        using var ck = SafetensorsCheckpoint.Open(outDir);
        Assert.That(ck.Names.All(n => n.StartsWith("vision_model.", StringComparison.Ordinal)), Is.True);

        // Seeded: a second run writes the same weights, byte for byte.
        var again = Path.Combine(dir, "vision-again");
        r = CliRunner.Run(null, "pretrain-vision", "--world", world, "--out", again, "--config", config, "--steps", "6", "--batch", "8", "--valid", "8", "--eval-every", "3");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(File.ReadAllBytes(Path.Combine(again, "model.safetensors")), Is.EqualTo(File.ReadAllBytes(Path.Combine(outDir, "model.safetensors"))));

        var bad = CliRunner.Run(null, "pretrain-vision", "--world", Path.Combine(dir, "nope"), "--out", outDir);
        Assert.That(bad.ExitCode, Is.Not.EqualTo(0));
        Assert.That(bad.Stderr, Does.Contain("nope"));
        bad = CliRunner.Run(null, "pretrain-vision", "--world", world, "--out", outDir, "--config", config, "--valid", "40");
        Assert.That(bad.ExitCode, Is.Not.EqualTo(0));
        Assert.That(bad.Stderr, Does.Contain("held out"));
    }

    [Test]
    public void TokenizerAndLmPretrainingFromWorldText()
    {
        var dir = CliRunner.TempDir();
        var world = World(dir, "32", "0", "40");
        var text = Path.Combine(world, "text", "lm.jsonl");
        var tokPath = Path.Combine(dir, "tokenizer.json");
        var r = CliRunner.Run(null, "train-tokenizer", "--input", text, "--jsonl-field", "text", "--vocab-size", "500", "--out", tokPath);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        var tok = BpeTokenizer.Load(tokPath);
        Assert.That(tok.IdCount, Is.EqualTo(500));
        // Learnt from the "text" field, not from the JSON around it.
        Assert.That(tok.TokenToId("\"language\""), Is.Null);
        Assert.That(tok.Encode("{\"id\":").Length, Is.GreaterThan(2));

        var config = Path.Combine(dir, "lm.json");
        File.WriteAllText(config, """{"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64, "rope_theta": 10000.0, "tie_word_embeddings": true}""");
        var outDir = Path.Combine(dir, "lm");
        var log = Path.Combine(dir, "lm-log.jsonl");
        r = CliRunner.Run(null, "train-lm", "--init", config, "--tokenizer", tokPath, "--text", text, "--seq-len", "32", "--steps", "60", "--batch", "8",
            "--lr", "1e-2", "--warmup-steps", "3", "--schedule", "cosine", "--shuffle", "--seed", "2", "--valid-windows", "4", "--log", log, "--out", outDir, "--out-dtype", "bf16");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr + r.Stdout);
        Assert.That(r.Stdout, Does.Contain("validation loss after training"));
        var losses = File.ReadAllLines(log).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble()).ToArray();
        var lrs = File.ReadAllLines(log).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("lr").GetDouble()).ToArray();
        Assert.That(losses, Has.Length.EqualTo(60));
        Assert.That(losses.TakeLast(5).Average(), Is.LessThan(0.8 * losses[0]));
        Assert.That(losses[0], Is.EqualTo(Math.Log(500)).Within(0.5), "a fresh model starts near the uniform guess");
        Assert.That(lrs[0], Is.EqualTo(0));
        Assert.That(lrs[3], Is.EqualTo(1e-2).Within(1e-12));
        Assert.That(lrs[59], Is.LessThan(1e-4), "cosine decays to 0");

        using var m = Qwen2Loader.Load(outDir, DType.F32);
        Assert.That(m.Config.VocabSize, Is.EqualTo(tok.IdCount));
        Assert.That(m.Config.TieWordEmbeddings, Is.True);
        Assert.That(m.Config.EosTokenIds, Is.EqualTo(new[] { tok.TokenToId("<|im_end|>")!.Value, tok.TokenToId("<|endoftext|>")!.Value }));
        Assert.That(File.ReadAllBytes(Path.Combine(outDir, "tokenizer.json")), Is.EqualTo(File.ReadAllBytes(tokPath)));
        using (var ck = SafetensorsCheckpoint.Open(outDir))
        {
            Assert.That(ck.TryGetInfo("model.embed_tokens.weight", out var info) && info.DType == DType.BF16, Is.True);
            Assert.That(ck.Contains("lm_head.weight"), Is.False, "tied embeddings are stored once");
        }
        Assert.That(File.Exists(Path.Combine(outDir, "loss.png")), Is.True);

        // The written model continues to train through the old contract (--model + --tokens).
        var tokens = Path.Combine(dir, "tokens.jsonl");
        File.WriteAllText(tokens, "{\"ids\": [1, 2, 3, 4]}\n{\"ids\": [5, 6, 7, 8]}\n");
        r = CliRunner.Run(null, "train-lm", "--model", outDir, "--tokens", tokens, "--steps", "1", "--batch", "2", "--lr", "1e-3", "--log", Path.Combine(dir, "l2.jsonl"));
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
    }

    [Test]
    public void TrainLmSourceErrors()
    {
        var dir = CliRunner.TempDir();
        var log = Path.Combine(dir, "log.jsonl");
        var config = Path.Combine(dir, "lm.json");
        File.WriteAllText(config, """{"vocab_size": 258, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}""");
        var shortContext = Path.Combine(dir, "short.json");
        File.WriteAllText(shortContext, """{"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 8}""");
        // \ud800 (an unpaired surrogate) parses but is not text: with such a key every lookup threw InvalidOperationException, unnamed.
        var unreadable = Path.Combine(dir, "unreadable.json");
        File.WriteAllText(unreadable, """{"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "x\ud800": 1}""");
        var text = Path.Combine(dir, "t.jsonl");
        File.WriteAllText(text, "{\"text\": \"hello world\"}\n");
        var tok = Path.Combine(dir, "tokenizer.json");
        var t = CliRunner.Run(null, "train-tokenizer", "--input", text, "--jsonl-field", "text", "--vocab-size", "400", "--min-frequency", "1", "--out", tok);
        Assert.That(t.ExitCode, Is.EqualTo(0), t.Stderr);

        (string[] Args, string Message)[] cases =
        [
            (["--init", config, "--model", dir, "--text", text, "--seq-len", "4"], "either --model"),
            (["--init", config, "--tokenizer", tok], "either --tokens"),
            (["--init", config, "--tokenizer", tok, "--text", text], "--seq-len"),
            (["--init", config, "--text", text, "--seq-len", "4"], "tokenizer"),
            (["--init", config, "--tokenizer", tok, "--text", text, "--seq-len", "4", "--schedule", "linear"], "--schedule"),
            // 258 ids in the model, at least 256 bytes + 3 special tokens in the tokenizer.
            (["--init", config, "--tokenizer", tok, "--text", text, "--seq-len", "2"], "vocab_size is 258"),
            (["--init", shortContext, "--tokenizer", tok, "--text", text, "--seq-len", "9"], $"--seq-len 9 is longer than max_position_embeddings 8 in {shortContext}"),
            (["--init", unreadable, "--tokenizer", tok, "--text", text, "--seq-len", "4"], $"--init {unreadable}: a key of $ is not valid text"),
        ];
        foreach (var (args, message) in cases)
        {
            var r = CliRunner.Run(null, ["train-lm", .. args, "--steps", "1", "--batch", "1", "--lr", "1e-3", "--log", log]);
            Assert.That(r.ExitCode, Is.Not.EqualTo(0), string.Join(' ', args));
            Assert.That(r.Stderr, Does.Contain(message), string.Join(' ', args));
        }
    }
}
