using System.Text.Json.Nodes;
using Parrot.Nn;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Model;
using Parrot.Tensors;
using Parrot.Tensors.Formats;
using Parrot.Tests.Shared;

namespace Parrot.WebUi.Tests;

/// <summary>The model directories the page is tested against (made on the fly, seconds).</summary>
internal static class WebUiModels
{
    /// <summary>
    /// The tiny random Parrot of the inference tests (byte-level tokenizer, 28-px CLIP tower) made to talk
    /// until stopped: a 200k-position context, and the lm_head rows of the end tokens zeroed, so that their
    /// logit is 0 while the largest of the 257 others is far above it — greedy answers never end by themselves.
    /// </summary>
    public static string WriteEndlessParrot(string dir)
    {
        TinyModels.WriteParrot(dir);
        var path = Path.Combine(dir, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!;
        config["max_position_embeddings"] = 200_000;
        AtomicFile.WriteAllText(path, config.ToJsonString());
        using (var model = ParrotLoader.Load(dir, DType.F32))
        {
            var head = model.NamedParameters().Single(p => p.Name == "lm_head.weight").Parameter.Value;
            foreach (int id in new[] { TinyModels.EndOfText, TinyModels.ImEnd }) head.Narrow(0, id, 1).Fill(0);
            ParrotLoader.Save(model, dir);
        }
        return dir;
    }

    /// <summary>
    /// A Parrot assembled from the repository's pre-trained tiny assets (assets/tiny: the six-language LM, its
    /// tokenizer and the 96-px CLIP tower) with a fresh projector — the demo's stage-1 starting point; its answers
    /// read like the demo world's text. Null when assets/tiny cannot be found above the test directory.
    /// </summary>
    public static string? WriteAssetsParrot(string dir)
    {
        var assets = FindAssets();
        if (assets is null) return null;
        string lm = Path.Combine(assets, "lm"), vision = Path.Combine(assets, "vision");
        var lmConfig = Qwen2ConfigJson.Load(Path.Combine(lm, "config.json")) with { MaxPositionEmbeddings = 200_000 };
        using var tower = ClipVisionLoader.Load(vision, DType.F32);
        var config = new ParrotConfig
        {
            Text = lmConfig, MmHiddenSize = tower.Config.HiddenSize, NumExperts = 6, MmVisionSelectLayer = -1,
            MoeIntermediateSize = lmConfig.HiddenSize, UseMoe = false, MmVisionTower = "vision",
        };
        Directory.CreateDirectory(dir);
        using (var model = new ParrotForCausalLM(config, 1, DType.F32))
        {
            using (var checkpoint = SafetensorsCheckpoint.Open(lm))
            {
                var fresh = model.NamedParameters().Select(p => p.Name)
                    .Where(n => n.StartsWith("model.mm_projector.", StringComparison.Ordinal) || n.StartsWith("model.moe_model.", StringComparison.Ordinal));
                ModelLoading.Load(model, checkpoint, "", DType.F32, ignoreUnexpected: n => n.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal), optional: fresh);
            }
            ParrotLoader.Save(model, dir, config: config);
        }
        File.Copy(Path.Combine(lm, "tokenizer.json"), Path.Combine(dir, "tokenizer.json"), overwrite: true);
        var towerDir = Path.Combine(dir, "vision");
        Directory.CreateDirectory(towerDir);
        foreach (var f in new[] { "config.json", "preprocessor_config.json", "model.safetensors" })
            File.Copy(Path.Combine(vision, f), Path.Combine(towerDir, f), overwrite: true);
        return dir;
    }

    private static string? FindAssets()
    {
        for (var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "assets", "tiny");
            if (File.Exists(Path.Combine(candidate, "lm", "model.safetensors")) && File.Exists(Path.Combine(candidate, "vision", "model.safetensors")))
                return candidate;
        }
        return null;
    }

    /// <summary>The repository root (the folder with ParrotNative.sln above the test directory), or null.</summary>
    public static string? RepositoryRoot()
    {
        for (var d = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "ParrotNative.sln"))) return d.FullName;
        return null;
    }
}
