using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Nn;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot;
using Parrot.Parrot.Inference;
using SixLabors.ImageSharp;

namespace Parrot.Cli.Tests;

public class DemoCommandTests
{
    private static readonly string[] Languages = ["en", "zh", "pt", "ar", "tr", "ru"];

    /// <summary>Tiny starting weights in ROOT/assets/tiny: a random CLIP tower (16 px, patch 8) and a random Qwen2 with a byte-level tokenizer.</summary>
    private static string MakeAssets(string root)
    {
        var assets = Path.Combine(root, "assets", "tiny");
        var vision = Path.Combine(assets, "vision");
        var lm = Path.Combine(assets, "lm");
        Directory.CreateDirectory(vision);
        File.WriteAllText(Path.Combine(vision, "config.json"), new JsonObject
        {
            ["model_type"] = "clip_vision_model", ["hidden_size"] = 12, ["intermediate_size"] = 24, ["num_hidden_layers"] = 2,
            ["num_attention_heads"] = 2, ["num_channels"] = 3, ["image_size"] = 16, ["patch_size"] = 8, ["hidden_act"] = "quick_gelu", ["layer_norm_eps"] = 1e-5,
        }.ToJsonString());
        File.WriteAllText(Path.Combine(vision, "preprocessor_config.json"), "{\"size\": {\"shortest_edge\": 16}, \"crop_size\": {\"height\": 16, \"width\": 16}}");
        var clip = new ClipVisionConfig { HiddenSize = 12, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 2, ImageSize = 16, PatchSize = 8 };
        using (var tower = new ClipVisionModel(clip, seed: 1)) ModelLoading.Save(tower, vision);
        var cfg = new Qwen2Config { VocabSize = 259, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, RopeTheta = 10000, MaxPositionEmbeddings = 2048 };
        using (var model = new Qwen2ForCausalLM(cfg, 2)) Qwen2Loader.Save(model, lm);
        File.WriteAllText(Path.Combine(lm, "tokenizer.json"), TrainCommandTests.TinyTokenizerJson());
        return assets;
    }

    private static (int Code, string Stdout, string Stderr) RunIn(string workingDirectory, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory };
        psi.ArgumentList.Add(Path.Combine(TestContext.CurrentContext.TestDirectory, "parrot.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(300_000)) { p.Kill(true); Assert.Fail("parrot demo did not finish in 5 minutes"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static void AssertPng(string path)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.That(bytes.Take(8), Is.EqualTo(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }), path);
        using var image = Image.Load(bytes);
        Assert.That(image.Width, Is.GreaterThan(100), path);
        Assert.That(image.Height, Is.GreaterThan(100), path);
    }

    [Test]
    public void QuickDemoFindsTheAssetsAndWritesTheReportFolder()
    {
        var root = CliRunner.TempDir();
        MakeAssets(root);
        var sw = Stopwatch.StartNew();
        var (code, stdout, stderr) = RunIn(root, "demo", "--quick", "--out", "report", "--seed", "7");
        TestContext.Out.WriteLine($"demo --quick: {sw.Elapsed.TotalSeconds:F1} s");
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(stdout, Does.Contain(Path.Combine(root, "assets", "tiny")), "the assets are found from the working directory");

        var report = Path.Combine(root, "report");
        foreach (var png in new[] { "loss_curves.png", "accuracy.png", "routing.png" }) AssertPng(Path.Combine(report, png));

        var md = File.ReadAllText(Path.Combine(report, "report.md"));
        foreach (var lang in Languages)
        {
            Assert.That(md, Does.Contain($"| {lang} |"), $"routing row of {lang}");
            Assert.That(md, Does.Contain($"**{lang}**"), $"answered question in {lang}");
            Assert.That(stdout, Does.Contain($"[{lang}]"), $"answered question in {lang} on the console");
        }
        Assert.That(md, Does.Contain("| Parrot (MoE) |").And.Contain("| baseline (no MoE) |").And.Contain("the MoE"));
        foreach (var png in new[] { "loss_curves.png", "accuracy.png", "routing.png" }) Assert.That(md, Does.Contain($"({png})"));

        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(report, "results.json")))!;
        foreach (var model in new[] { "parrot", "baseline", "parrot_images_swapped", "baseline_images_swapped" })
            foreach (var lang in Languages)
            {
                double acc = json[model]!["accuracy"]![lang]!.GetValue<double>();
                Assert.That(acc, Is.InRange(0.0, 1.0), $"{model} {lang}");
                Assert.That(json[model]!["questions"]![lang]!.GetValue<int>(), Is.EqualTo(7), "one benchmark item per category");
            }
        foreach (var model in new[] { "parrot", "baseline" })
            Assert.That(json["answers_changed_by_image_swap"]![model]!.GetValue<double>(), Is.InRange(0.0, 1.0));
        bool narrows = json["moe_narrows_gap"]!.GetValue<bool>();
        double gp = json["parrot"]!["english_gap"]!.GetValue<double>(), gb = json["baseline"]!["english_gap"]!.GetValue<double>();
        Assert.That(narrows, Is.EqualTo(gp < gb));
        foreach (var lang in Languages)
        {
            var routing = json["parrot"]!["routing"]![lang]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            Assert.That(routing, Has.Length.EqualTo(6));
            Assert.That(routing.Sum(), Is.EqualTo(1).Within(1e-5), $"router probabilities of {lang}");
        }
        Assert.That(json["baseline"]!["routing"], Is.Null, "the baseline has no MoE");
        Assert.That(json["stages"]!.AsArray().Select(s => s!["name"]!.GetValue<string>()).ToList(), Has.Count.EqualTo(3));
        Assert.That(json["examples"]!.AsArray(), Has.Count.EqualTo(6));

        // The benchmark went through the `parrot eval` harness: its files per model, scores equal to the report's,
        // and `parrot eval --score` of the predictions gives them again.
        string[] files = ["mmmb_en.tsv", "mmmb_cn.tsv", "mmmb_pt.tsv", "mmmb_ar.tsv", "mmmb_tr.tsv", "mmmb_ru.tsv"];
        foreach (var model in new[] { "parrot", "baseline", "parrot_images_swapped", "baseline_images_swapped" })
        {
            var evalDir = Path.Combine(report, "eval", model);
            var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(evalDir, "summary.json")))!;
            for (int k = 0; k < files.Length; k++)
            {
                var d = summary["datasets"]![files[k]]!;
                Assert.That(d["protocol"]!.GetValue<string>(), Is.EqualTo("vanilla"));
                Assert.That(d["n"]!.GetValue<int>(), Is.EqualTo(7));
                Assert.That(d["overall"]!.GetValue<double>(), Is.EqualTo(json[model]!["accuracy"]![Languages[k]]!.GetValue<double>()).Within(1e-12), $"{model} {files[k]}");
            }
            Assert.That(File.ReadAllText(Path.Combine(evalDir, "summary.md")), Does.Contain("mmmb_ru.tsv"));
            if (model.EndsWith("swapped", StringComparison.Ordinal)) continue;
            var rescored = Path.Combine(root, "rescored-" + model);
            var (rc, rout, rerr) = CliRunner.Run(null, "eval", "--score", Path.Combine(evalDir, "predictions.tsv"), "--out", rescored);
            Assert.That(rc, Is.EqualTo(0), rerr + rout);
            var again = JsonNode.Parse(File.ReadAllText(Path.Combine(rescored, "summary.json")))!;
            foreach (var f in files)
                Assert.That(again["datasets"]![f]!["overall"]!.GetValue<double>(), Is.EqualTo(summary["datasets"]![f]!["overall"]!.GetValue<double>()), $"re-scored {model} {f}");
        }
        foreach (var lang in Languages)
        {
            var example = json["examples"]!.AsArray().Single(e => e!["language"]!.GetValue<string>() == lang)!;
            Assert.That(md, Does.Contain($"- Parrot: `{example["parrot_response"]!.GetValue<string>()}` → {example["parrot_choice"]!.GetValue<string>()}"));
        }

        var parrotConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(report, "models", "parrot", "config.json")))!;
        var baselineConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(report, "models", "baseline", "config.json")))!;
        Assert.That(parrotConfig["use_moe"]!.GetValue<bool>(), Is.True);
        Assert.That(baselineConfig["use_moe"]!.GetValue<bool>(), Is.False);

        // The models name their tower relatively, a copy next to them, so the report folder works wherever it is moved
        // (they named the checkout's assets by absolute path and broke when it moved).
        foreach (var config in new[] { parrotConfig, baselineConfig })
            Assert.That(config["mm_vision_tower"]!.GetValue<string>(), Is.EqualTo(Path.Combine("..", "vision")));
        var moved = Path.Combine(CliRunner.TempDir(), "moved-report");
        Directory.Move(report, moved);
        Directory.Move(Path.Combine(root, "assets"), Path.Combine(root, "assets-moved"));
        var image = Directory.GetFiles(Path.Combine(moved, "world", "images"), "*.png", SearchOption.AllDirectories).First();
        string expected;
        using (var m = ParrotModel.Load(Path.Combine(moved, "models", "parrot")))
        {
            Assert.That(m.SupportsImages, Is.True, "the moved model finds its tower");
            expected = m.Ask("What color is the star?", image, new GenerationOptions { MaxNewTokens = 4 });
        }
        var (cc, cout, cerr) = CliRunner.Run(null, "chat", "--model", Path.Combine(moved, "models", "parrot"), "--image", image, "--prompt", "What color is the star?", "--max-new-tokens", "4");
        Assert.That(cc, Is.EqualTo(0), cerr);
        Assert.That(cout, Is.EqualTo(expected + Environment.NewLine));
    }

    /// <summary>
    /// --out is refused before anything is written when it is a file, or a non-empty folder that holds no earlier demo
    /// (make-world's rule): the demo wrote report.md and the rest into any folder, over the user's files, and a file as
    /// --out gave .NET's "The file '…' already exists.". A folder a demo was killed in (its world begun) is reused.
    /// </summary>
    [Test]
    public void TheOutputMustBeNewEmptyOrAnEarlierDemosFolder()
    {
        var root = CliRunner.TempDir();
        var assets = MakeAssets(root);
        var notes = Path.Combine(root, "notes");
        Directory.CreateDirectory(notes);
        File.WriteAllText(Path.Combine(notes, "report.md"), "my notes");
        var (code, stdout, stderr) = CliRunner.Run(null, "demo", "--quick", "--out", notes, "--assets", assets);
        Assert.That(code, Is.EqualTo(1), stdout);
        Assert.That(stderr, Is.EqualTo($"parrot demo: --out {notes}: the folder is not empty and holds no results.json or world/world.json of an earlier demo; refusing to write into it (choose an empty or new folder)\n"));
        Assert.That(Directory.GetFileSystemEntries(notes), Is.EqualTo(new[] { Path.Combine(notes, "report.md") }), "nothing written");
        Assert.That(File.ReadAllText(Path.Combine(notes, "report.md")), Is.EqualTo("my notes"));

        var file = Path.Combine(root, "file.txt");
        File.WriteAllText(file, "x");
        (code, stdout, stderr) = CliRunner.Run(null, "demo", "--quick", "--out", file, "--assets", assets);
        Assert.That(code, Is.EqualTo(1), stdout);
        Assert.That(stderr, Is.EqualTo($"parrot demo: --out {file} is a file, not a folder\n"));

        // A demo killed while it wrote its world: the folder is the demo's, and the next run finishes it.
        var killed = Path.Combine(root, "killed");
        Directory.CreateDirectory(Path.Combine(killed, "world"));
        File.WriteAllText(Path.Combine(killed, "world", ".world-incomplete"), "");
        (code, stdout, stderr) = CliRunner.Run(null, "demo", "--quick", "--out", killed, "--assets", assets);
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(File.Exists(Path.Combine(killed, "results.json")), Is.True);
    }

    [Test]
    public void MissingOrIncompleteAssetsAreNamed()
    {
        var root = CliRunner.TempDir();
        var missing = Path.Combine(root, "nowhere");
        var (code, _, stderr) = CliRunner.Run(null, "demo", "--quick", "--out", Path.Combine(root, "out"), "--assets", missing);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain(missing).And.Contain("no such folder"));

        var assets = MakeAssets(root);
        File.Delete(Path.Combine(assets, "lm", "tokenizer.json"));
        (code, _, stderr) = CliRunner.Run(null, "demo", "--quick", "--out", Path.Combine(root, "out"), "--assets", assets);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain(Path.Combine(assets, "lm", "tokenizer.json")));
    }
}
