using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Model;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Parrot.Cli.Tests;

public class TrainCommandTests
{
    /// <summary>A tiny CLIP tower, a tiny Parrot with a byte-level ChatML tokenizer, three PNGs and 8 LLaVA samples in en/zh/pt.</summary>
    internal static (string Root, string Model, string Data, string Images) Prepare(Action<JsonArray>? edit = null)
    {
        var root = CliRunner.TempDir();
        global::Parrot.Tests.Shared.TinyModels.WriteSmallTower(Path.Combine(root, "tower"));

        var model = Path.Combine(root, "model");
        var config = new ParrotConfig
        {
            Text = new Qwen2Config { VocabSize = 259, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, RopeTheta = 10000, MaxPositionEmbeddings = 512 },
            MmHiddenSize = 12, NumExperts = 3, MoeIntermediateSize = 20, UseMoe = false, MmVisionTower = "../tower",
        };
        using (var m = new ParrotForCausalLM(config, seed: 2)) ParrotLoader.Save(m, model);
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), TinyTokenizerJson());

        var images = Path.Combine(root, "images");
        Directory.CreateDirectory(images);
        var colours = new (string Name, Rgb24 C)[] { ("red", new Rgb24(220, 20, 20)), ("green", new Rgb24(20, 200, 40)), ("blue", new Rgb24(10, 30, 230)) };
        foreach (var (name, c) in colours)
        {
            using var img = new Image<Rgb24>(20, 24);
            for (int y = 0; y < 24; y++) for (int x = 0; x < 20; x++) img[x, y] = x > 4 && x < 14 ? c : new Rgb24((byte)(x * 9), (byte)(y * 7), 40);
            img.SaveAsPng(Path.Combine(images, name + ".png"));
        }
        var arr = new JsonArray();
        string[] langs = ["en", "zh", "pt"];
        for (int i = 0; i < 8; i++)
        {
            var o = new JsonObject { ["id"] = $"{langs[i % 3]}_{i}", ["image"] = colours[i % 3].Name + ".png" };
            o["conversations"] = new JsonArray(
                new JsonObject { ["from"] = "human", ["value"] = "<image>\nWhat colour?" },
                new JsonObject { ["from"] = "gpt", ["value"] = colours[i % 3].Name });
            arr.Add(o);
        }
        edit?.Invoke(arr);
        var data = Path.Combine(root, "data.json");
        File.WriteAllText(data, arr.ToJsonString());
        return (root, model, data, images);
    }

    /// <summary>A byte-level BPE tokenizer.json without merges: bytes are ids 0–255, then the three ChatML specials.</summary>
    internal static string TinyTokenizerJson()
    {
        var vocab = new JsonObject();
        int n = 0;
        var map = new char[256];
        for (int b = 0; b < 256; b++)
            if (b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF) map[b] = (char)b;
            else map[b] = (char)(256 + n++);
        for (int b = 0; b < 256; b++) vocab[map[b].ToString()] = b;
        JsonObject Added(int id, string content) => new() { ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true };
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(Added(256, "<|endoftext|>"), Added(257, "<|im_start|>"), Added(258, "<|im_end|>")),
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = @"\s+|[^\s]+" }, ["behavior"] = "Isolated", ["invert"] = false },
                    byteLevel.DeepClone()),
            },
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray() },
        }.ToJsonString();
    }

    private static string[] Train(string model, string data, string images, string outDir, params string[] extra)
    {
        var (code, stdout, stderr) = CliRunner.Run(null, ["train", "--model", model, "--data", data, "--images", images, "--out", outDir, .. extra]);
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        return File.ReadAllLines(Path.Combine(outDir, "train_log.jsonl"));
    }

    private static double Loss(string line) => JsonDocument.Parse(line).RootElement.GetProperty("loss").GetDouble();

    [Test]
    public void StageOneThenStageTwoWriteCheckpointsLogsAndModels()
    {
        var (root, model, data, images) = Prepare();
        var out1 = Path.Combine(root, "stage1");
        var log = Train(model, data, images, out1, "--stage", "1", "--batch", "4", "--micro-batch", "2", "--lr", "0.01", "--save-every", "1");
        Assert.That(log, Has.Length.EqualTo(2), "one epoch of 8 samples in global batches of 4");
        var keys = log.SelectMany(l => JsonDocument.Parse(l).RootElement.EnumerateObject().Select(p => p.Name)).ToHashSet();
        Assert.That(keys, Is.SupersetOf(new[] { "step", "loss", "lr", "grad_norm", "tokens_per_s", "loss_en", "loss_zh", "loss_pt" }));
        Assert.That(Directory.Exists(Path.Combine(out1, "checkpoint-1")) && Directory.Exists(Path.Combine(out1, "checkpoint-2")), Is.True);
        Assert.That(File.Exists(Path.Combine(out1, "tokenizer.json")), Is.True);
        Assert.That(Directory.GetFiles(Path.Combine(out1, "features"), "*.npy"), Has.Length.EqualTo(3), "one cached feature file per distinct image");
        var cfg1 = ParrotConfig.Load(Path.Combine(out1, "config.json"));
        Assert.That(cfg1.UseMoe, Is.False);

        var out2 = Path.Combine(root, "stage2");
        var log2 = Train(out1, data, images, out2, "--stage", "2", "--batch", "8", "--micro-batch", "4", "--lr", "0.001", "--steps", "2");
        Assert.That(log2, Has.Length.EqualTo(2));
        Assert.That(ParrotConfig.Load(Path.Combine(out2, "config.json")).UseMoe, Is.True);
        Assert.That(log2.Select(Loss).All(double.IsFinite), Is.True);
    }

    [Test]
    public void ARunKilledMidStepResumesToTheSameLosses()
    {
        var (root, model, data, images) = Prepare();
        var args = new[] { "--stage", "2", "--batch", "2", "--micro-batch", "1", "--lr", "0.001", "--steps", "12", "--save-every", "3" };
        var full = Train(model, data, images, Path.Combine(root, "straight"), args);

        var killed = Path.Combine(root, "killed");
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Path.Combine(TestContext.CurrentContext.TestDirectory, "parrot.dll"), "train", "--model", model, "--data", data, "--images", images, "--out", killed }.Concat(args))
            psi.ArgumentList.Add(a);
        using (var p = System.Diagnostics.Process.Start(psi)!)
        {
            p.OutputDataReceived += (_, _) => { };
            p.ErrorDataReceived += (_, _) => { };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (!Directory.Exists(Path.Combine(killed, "checkpoint-3")) && !p.HasExited && sw.Elapsed.TotalSeconds < 120) Thread.Sleep(5);
            if (!p.HasExited) p.Kill(); // SIGKILL: no chance to clean up
            p.WaitForExit();
        }
        var latest = global::Parrot.Parrot.Training.ParrotCheckpoint.Latest(killed);
        Assert.That(latest, Is.Not.Null);
        int at = int.Parse(Path.GetFileName(latest!)["checkpoint-".Length..], System.Globalization.CultureInfo.InvariantCulture);
        TestContext.Out.WriteLine($"killed after checkpoint {at}");
        if (at == 12) Assert.Inconclusive("the run finished before it could be killed");

        var log = Train(model, data, images, killed, [.. args, "--resume"]);
        Assert.That(log.Select(Loss), Is.EqualTo(full.Select(Loss)), $"killed after checkpoint {at}: bit for bit");
        Assert.That(File.Exists(Path.Combine(killed, "loss.png")), Is.True);
    }

    /// <summary>
    /// train writes its model into --out: an --out that is the --model folder (as given or through a symbolic link) is a
    /// usage error before any work, instead of a run that ends by writing over the model it started from.
    /// </summary>
    [Test]
    public void AnOutThatIsTheModelFolderIsRefusedBeforeTraining()
    {
        var (root, model, data, images) = Prepare();
        var link = Path.Combine(root, "linked");
        Directory.CreateSymbolicLink(link, model);
        var before = Directory.GetFiles(model).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
        foreach (var outDir in new[] { model, link, Path.Combine(root, ".", "model") + Path.DirectorySeparatorChar })
        {
            var (code, stdout, stderr) = CliRunner.Run(null, "train", "--stage", "1", "--model", model, "--data", data, "--images", images, "--out", outDir, "--steps", "1");
            Assert.That((code, stdout), Is.EqualTo((2, "")), $"--out {outDir}: {stderr}");
            Assert.That(stderr, Is.EqualTo($"parrot train: --out is the --model folder ({model}); write the trained model to another folder (the source checkpoint would be overwritten)\n"));
        }
        Assert.That(Directory.GetDirectories(model), Is.Empty, "no checkpoint-N or features folder");
        Assert.That(Directory.GetFiles(model).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes), Is.EqualTo(before), "the model is untouched");
    }

    /// <summary>
    /// --vision is the user's path, from the current directory (a decoy tower/ in the model folder, with no config, would
    /// fail a resolution from there); a missing one is named as resolved.
    /// </summary>
    [Test]
    public void ARelativeVisionIsFromTheCurrentDirectory()
    {
        var (root, model, data, images) = Prepare();
        Directory.CreateDirectory(Path.Combine(model, "tower"));
        var outDir = Path.Combine(root, "out");
        var (code, stdout, stderr) = CliRunner.RunIn(root, null, "train", "--stage", "1", "--model", model, "--data", data, "--images", images, "--out", outDir,
            "--vision", "tower", "--steps", "1", "--batch", "4");
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(ParrotConfig.Load(Path.Combine(outDir, "config.json")).MmVisionTower, Is.EqualTo(Path.Combine(root, "tower")));

        (code, stdout, stderr) = CliRunner.RunIn(root, null, "train", "--stage", "1", "--model", model, "--data", data, "--images", images, "--out", outDir,
            "--vision", "nowhere", "--steps", "1");
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Is.EqualTo($"parrot train: --vision: {Path.Combine(root, "nowhere")} is not a directory (--vision nowhere, from the current directory)\n"));
    }

    [Test]
    public void BadSamplesStopTheRunOrAreSkipped()
    {
        var (root, model, data, images) = Prepare(arr => ((JsonObject)arr[5]!)["image"] = "missing.png");
        var outDir = Path.Combine(root, "out");
        var (code, _, stderr) = CliRunner.Run(null, "train", "--stage", "1", "--model", model, "--data", data, "--images", images, "--out", outDir, "--batch", "4");
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain(data).And.Contain("'pt_5'").And.Contain("image file not found"));

        var log = Train(model, data, images, outDir, "--stage", "1", "--batch", "4", "--skip-bad");
        Assert.That(log, Has.Length.EqualTo(2), "7 good samples in batches of 4");

        (code, _, stderr) = CliRunner.Run(null, "train", "--stage", "3", "--model", model, "--data", data, "--images", images, "--out", outDir);
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain("--stage must be 1 or 2"));
        (code, var stdout, stderr) = CliRunner.Run(null, "train", "--stage", "1", "--model", model, "--data", data, "--images", images, "--out", Path.Combine(root, "empty"), "--resume", "--skip-bad");
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Is.EqualTo($"parrot train: --resume: no checkpoint-N folder in {Path.Combine(root, "empty")}\n"));
        Assert.That(stdout, Is.Empty, "refused before the model and the samples are read (it printed '7 samples …' first)");
    }
}
