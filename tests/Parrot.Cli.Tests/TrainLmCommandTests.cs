using System.Globalization;
using System.Text;
using System.Text.Json;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli.Tests;

public class TrainLmCommandTests
{
    private static string Fixture(params string[] parts) => Path.Combine([TestContext.CurrentContext.TestDirectory, "Fixtures", "tiny-lm", .. parts]);

    /// <summary>The tiny PyTorch fixture as a model directory and a tokens file, the way a user would hand them over.</summary>
    private static (string ModelDir, string Tokens, double[] Losses, JsonElement Train) Prepare()
    {
        var root = JsonDocument.Parse(File.ReadAllText(Fixture("config.json"))).RootElement;
        var dir = CliRunner.TempDir();
        var modelDir = Path.Combine(dir, "model");
        Directory.CreateDirectory(modelDir);
        var cfg = root.GetProperty("model").Clone();
        var json = cfg.ToString().Replace("{", "{\"model_type\": \"qwen2\", ", StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(modelDir, "config.json"), json);
        using (var scope = TensorScope.Begin())
        {
            var tensors = Directory.GetFiles(Fixture("init"), "*.npy").ToDictionary(f => Path.GetFileNameWithoutExtension(f)!, f => Npy.Read(f));
            Safetensors.Save(Path.Combine(modelDir, "model.safetensors"), tensors);
        }
        using var ids = Npy.Read(Fixture("ids.npy"));
        var flat = ids.ToArray<long>();
        int len = ids.Dim(1);
        var sb = new StringBuilder();
        for (int r = 0; r < ids.Dim(0); r++) sb.Append("{\"ids\": [").Append(string.Join(", ", flat.Skip(r * len).Take(len))).Append("]}\n");
        var tokens = Path.Combine(dir, "tokens.jsonl");
        File.WriteAllText(tokens, sb.ToString());
        using var losses = Npy.Read(Fixture("losses.npy"));
        return (modelDir, tokens, losses.ToArray<double>(), root.GetProperty("train"));
    }

    [Test]
    public void TrainLmReproducesPyTorchsLossesAndWritesACheckpoint()
    {
        var (modelDir, tokens, expected, train) = Prepare();
        var log = Path.Combine(Path.GetDirectoryName(tokens)!, "log.jsonl");
        var outDir = Path.Combine(Path.GetDirectoryName(tokens)!, "trained");
        var (code, stdout, stderr) = CliRunner.Run(null, "train-lm", "--model", modelDir, "--tokens", tokens, "--steps", "10",
            "--batch", train.GetProperty("batch").GetInt32().ToString(CultureInfo.InvariantCulture),
            "--lr", train.GetProperty("lr").GetDouble().ToString("R", CultureInfo.InvariantCulture),
            "--weight-decay", train.GetProperty("weight_decay").GetDouble().ToString("R", CultureInfo.InvariantCulture),
            "--log", log, "--out", outDir);
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        var lines = File.ReadAllLines(log);
        Assert.That(lines, Has.Length.EqualTo(10));
        for (int k = 0; k < 10; k++)
        {
            var e = JsonDocument.Parse(lines[k]).RootElement;
            Assert.That(e.GetProperty("step").GetInt32(), Is.EqualTo(k + 1));
            double loss = e.GetProperty("loss").GetDouble();
            Assert.That(Math.Abs(loss - expected[k]) / expected[k], Is.LessThanOrEqualTo(k == 0 ? 1e-6 : 5e-5), $"step {k + 1}");
            Assert.That(e.GetProperty("lr").GetDouble(), Is.EqualTo(train.GetProperty("lr").GetDouble()));
            Assert.That(e.GetProperty("grad_norm").GetDouble(), Is.GreaterThan(0));
        }
        // The written checkpoint loads back and differs from the initial weights.
        using var trained = Qwen2Loader.Load(outDir);
        using var initial = Qwen2Loader.Load(modelDir);
        var a = trained.NamedParameters().First(p => p.Name == "lm_head.weight").Parameter.Value.ToFloatArray();
        var b = initial.NamedParameters().First(p => p.Name == "lm_head.weight").Parameter.Value.ToFloatArray();
        Assert.That(a, Is.Not.EqualTo(b));
    }

    [Test]
    public void BadArgumentsAndFilesGiveClearErrors()
    {
        var (modelDir, tokens, _, _) = Prepare();
        var log = Path.Combine(Path.GetDirectoryName(tokens)!, "log.jsonl");
        var r = CliRunner.Run(null, "train-lm", "--model", modelDir, "--tokens", tokens, "--steps", "0", "--batch", "2", "--lr", "1e-3", "--log", log);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("--steps"));
        r = CliRunner.Run(null, "train-lm", "--model", "/nonexistent/model", "--tokens", tokens, "--steps", "1", "--batch", "2", "--lr", "1e-3", "--log", log);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("/nonexistent/model"));
        var bad = Path.Combine(Path.GetDirectoryName(tokens)!, "bad.jsonl");
        File.WriteAllText(bad, "{\"ids\": [1, 2, 3]}\n{\"ids\": [1, 999]}\n");
        r = CliRunner.Run(null, "train-lm", "--model", modelDir, "--tokens", bad, "--steps", "1", "--batch", "2", "--lr", "1e-3", "--log", log);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("bad.jsonl:2").And.Contain("999"));
        File.WriteAllText(bad, "{\"ids\": [1, 2, 3]}\n{\"ids\": [1, 2]}\n");
        r = CliRunner.Run(null, "train-lm", "--model", modelDir, "--tokens", bad, "--steps", "1", "--batch", "2", "--lr", "1e-3", "--log", log);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("equal"));
        r = CliRunner.Run(null, "train-lm", "--model", modelDir, "--tokens", tokens, "--steps", "1", "--batch", "2", "--lr", "1e-3", "--weight-decay", "-1", "--log", log);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain("--weight-decay must be a non-negative number, got -1"));
        // An --out that cannot be a directory (here an existing file) is refused before training, not after it.
        r = CliRunner.Run(null, "train-lm", "--model", modelDir, "--tokens", tokens, "--steps", "1", "--batch", "2", "--lr", "1e-3", "--log", log, "--out", bad);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.Stderr, Does.Contain($"--out {bad}: cannot create the directory"));
        Assert.That(r.Stdout, Does.Not.Contain("step 1"));
    }

    /// <summary>
    /// An --out that is the --model folder, however spelled (as given, relative with .. and a trailing separator, or
    /// through a symbolic link), is a usage error before any work: the run used to train and then write the fine-tuned
    /// weights over the checkpoint it started from.
    /// </summary>
    [Test]
    public void AnOutThatIsTheModelFolderIsRefusedBeforeTraining()
    {
        var (modelDir, tokens, _, _) = Prepare();
        string dir = Path.GetDirectoryName(tokens)!, log = Path.Combine(dir, "log.jsonl"), link = Path.Combine(dir, "linked");
        Directory.CreateSymbolicLink(link, modelDir);
        Directory.CreateDirectory(Path.Combine(dir, "sub"));
        Directory.CreateSymbolicLink(Path.Combine(dir, "sub", "up"), dir); // a link on the way: sub/up/model is the model
        Directory.CreateDirectory(Path.Combine(modelDir, "inner"));
        Directory.CreateSymbolicLink(Path.Combine(dir, "inner-link"), Path.Combine(modelDir, "inner")); // inner-link/.. is the model, as the file system goes
        var before = Directory.GetFiles(modelDir).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
        foreach (var (workingDirectory, outDir) in new[]
        {
            ((string?)null, modelDir),
            (dir, Path.Combine("linked", "..", "model") + Path.DirectorySeparatorChar),
            (null, link),
            (modelDir, "."),
            (dir, Path.Combine("sub", "up", "model")),
            (dir, Path.Combine("inner-link", "..")),
        })
        {
            var r = CliRunner.RunIn(workingDirectory, null, "train-lm", "--model", modelDir, "--tokens", tokens, "--steps", "1", "--batch", "2", "--lr", "1e-3",
                "--log", log, "--out", outDir);
            Assert.That((r.ExitCode, r.Stdout), Is.EqualTo((2, "")), $"--out {outDir}: {r.Stderr}");
            Assert.That(r.Stderr, Is.EqualTo($"parrot train-lm: --out is the --model folder ({modelDir}); write the fine-tuned model to another folder (the source checkpoint would be overwritten)\n"));
        }
        Assert.That(File.Exists(log), Is.False, "no training started");
        Assert.That(Directory.GetFiles(modelDir).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes), Is.EqualTo(before), "the checkpoint is untouched");

        // A folder inside the model's is another folder.
        var inside = Path.Combine(modelDir, "tuned");
        var ok = CliRunner.Run(null, "train-lm", "--model", modelDir, "--tokens", tokens, "--steps", "1", "--batch", "2", "--lr", "1e-3", "--log", log, "--out", inside);
        Assert.That(ok.ExitCode, Is.EqualTo(0), ok.Stderr);
        Assert.That(File.Exists(Path.Combine(inside, "model.safetensors")), Is.True);
    }

    /// <summary>
    /// Sequences longer than max_position_embeddings used to train without a word, giving a checkpoint whose
    /// config.json says it cannot be used at the length it was trained at.
    /// </summary>
    [Test]
    public void SequencesLongerThanTheModelsContextAreRefused()
    {
        var (modelDir, tokens, _, _) = Prepare();
        int length = System.Text.Json.JsonDocument.Parse(File.ReadLines(tokens).First()).RootElement.GetProperty("ids").GetArrayLength();
        var configPath = Path.Combine(modelDir, "config.json");
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["max_position_embeddings"] = length - 1;
        File.WriteAllText(configPath, config.ToJsonString());
        var log = Path.Combine(Path.GetDirectoryName(tokens)!, "log.jsonl");
        var r = CliRunner.Run(null, "train-lm", "--model", modelDir, "--tokens", tokens, "--steps", "1", "--batch", "2", "--lr", "1e-3", "--log", log);
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr, Does.Contain($"{tokens}: sequences of {length} tokens are longer than max_position_embeddings {length - 1} in {configPath}"));
        Assert.That(r.Stdout, Does.Not.Contain("step 1"));

        config["max_position_embeddings"] = length;
        File.WriteAllText(configPath, config.ToJsonString());
        r = CliRunner.Run(null, "train-lm", "--model", modelDir, "--tokens", tokens, "--steps", "1", "--batch", "2", "--lr", "1e-3", "--log", log);
        Assert.That(r.ExitCode, Is.EqualTo(0), "exactly the context is fine: " + r.Stderr);
    }
}
