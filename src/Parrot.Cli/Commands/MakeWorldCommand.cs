using System.CommandLine;
using System.Globalization;
using Parrot.Parrot.Data.World;

namespace Parrot.Cli;

/// <summary>
/// `parrot make-world --out DIR [--seed S] [--size N] [--stage1 N] [--stage2 N] [--bench N] [--text N]
/// [--ratios en,zh,pt,ar,tr,ru] [--mc-fraction F] [--max-turns T]`: writes the seeded synthetic multilingual
/// world (images, LLaVA JSON for both stages, the six-language benchmark TSVs, LM text, labels, manifest).
/// </summary>
internal static class MakeWorldCommand
{
    public static Command Create()
    {
        var defaults = new WorldOptions();
        var outDir = new Option<string>("--out") { Description = "World directory (new, empty, or an earlier world to regenerate)", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Seed; the same seed and options give byte-identical files", DefaultValueFactory = _ => defaults.Seed };
        var size = new Option<int>("--size") { Description = "Image side in pixels", DefaultValueFactory = _ => defaults.ImageSize };
        var stage1 = new Option<int>("--stage1") { Description = "Stage-1 caption pairs (English)", DefaultValueFactory = _ => defaults.Stage1Count };
        var stage2 = new Option<int>("--stage2") { Description = "Stage-2 instruction samples, all languages together", DefaultValueFactory = _ => defaults.Stage2Count };
        var bench = new Option<int>("--bench") { Description = "Benchmark items per language (a multiple of 7 balances the categories)", DefaultValueFactory = _ => defaults.BenchmarkCount };
        var text = new Option<int>("--text") { Description = "Scenes in the LM text (one document per scene and language)", DefaultValueFactory = _ => defaults.TextScenes };
        var textFormat = new Option<string>("--text-format") { Description = "LM text documents: plain (description, then questions and answers) or chatml (ChatML conversations with the description where the image goes)", DefaultValueFactory = _ => "plain" };
        textFormat.AcceptOnlyFromAmong("plain", "chatml");
        var ratios = new Option<string>("--ratios") { Description = "Stage-2 language weights en,zh,pt,ar,tr,ru", DefaultValueFactory = _ => string.Join(",", defaults.LanguageWeights) };
        var mc = new Option<double>("--mc-fraction") { Description = "Fraction of stage-2 turns asked as multiple choice", DefaultValueFactory = _ => defaults.MultipleChoiceFraction };
        var turns = new Option<int>("--max-turns") { Description = "Most question-answer turns per stage-2 sample", DefaultValueFactory = _ => defaults.MaxTurns };
        var cmd = new Command("make-world", "Generate the seeded synthetic multilingual world: images, stage-1/2 LLaVA JSON, six-language benchmark TSVs, LM text");
        foreach (var o in new Option[] { outDir, seed, size, stage1, stage2, bench, text, textFormat, ratios, mc, turns }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("make-world", () =>
        {
            var options = new WorldOptions
            {
                Seed = p.GetValue(seed), ImageSize = p.GetValue(size), Stage1Count = p.GetValue(stage1), Stage2Count = p.GetValue(stage2),
                BenchmarkCount = p.GetValue(bench), TextScenes = p.GetValue(text),
                TextFormat = p.GetValue(textFormat) == "chatml" ? WorldTextFormat.ChatMl : WorldTextFormat.Plain, LanguageWeights = ParseRatios(p.GetValue(ratios)!),
                MultipleChoiceFraction = p.GetValue(mc), MaxTurns = p.GetValue(turns),
            };
            // A value out of its range is a usage error (exit 2), as in the other commands; Generate checks again.
            try { options.Validate(); }
            catch (ArgumentException e) { throw new CliException(e.Message); }
            var summary = WorldGenerator.Generate(p.GetValue(outDir)!, options);
            Console.WriteLine($"wrote {summary.Directory} in {summary.Seconds:F2} s: {summary.Images} images, {summary.Stage1} stage-1 captions, "
                + $"{summary.Stage2PerLanguage.Values.Sum()} stage-2 samples ({string.Join(" ", summary.Stage2PerLanguage.Select(kv => $"{kv.Key} {kv.Value}"))}), "
                + $"{summary.BenchmarkItems} benchmark items × 6 languages, {summary.TextDocuments} text documents");
            return 0;
        }));
        return cmd;
    }

    private static double[] ParseRatios(string s)
    {
        var parts = s.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 6) throw new CliException($"--ratios needs 6 comma-separated weights (en,zh,pt,ar,tr,ru), got '{s}'");
        var weights = new double[6];
        for (int i = 0; i < 6; i++)
            if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out weights[i]))
                throw new CliException($"--ratios: '{parts[i]}' is not a number");
        return weights;
    }
}
