using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Parrot.Evaluation;
using Parrot.Tensors.Formats;

namespace Parrot.Cli.Demo;

/// <summary>
/// The demo's outputs: report.md, results.json, loss_curves.png, accuracy.png and routing.png in the report
/// folder, and the accuracy table on the console.
/// </summary>
internal static class DemoReport
{
    /// <summary>The file names written into the report folder.</summary>
    public const string Markdown = "report.md", Json = "results.json", LossPng = "loss_curves.png", AccuracyPng = "accuracy.png", RoutingPng = "routing.png";

    /// <summary>The folder (in the report folder) holding each evaluation's predictions.tsv, summary.json and summary.md, as `parrot eval` writes them.</summary>
    public const string EvalFolder = "eval";

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static string[] Langs => DemoEvaluation.Languages.Select(l => l.Language).ToArray();

    /// <summary>English accuracy minus the mean of the other five languages.</summary>
    public static double Gap(BenchmarkScores s) => s.Accuracy["en"] - NonEnglishMean(s);

    /// <summary>The mean accuracy of the five non-English languages.</summary>
    public static double NonEnglishMean(BenchmarkScores s) => Langs.Where(l => l != "en").Average(l => s.Accuracy[l]);

    /// <summary>Writes every file of the report into <paramref name="dir"/>.</summary>
    public static void Write(string dir, DemoResult r)
    {
        Directory.CreateDirectory(dir);
        LossPlot.Save(Path.Combine(dir, LossPng), "Parrot demo: training loss per stage",
            r.Stages.Select(s => (s.Name, s.Steps.Select(m => (double)m.Step).ToArray(), s.Steps.Select(m => m.Loss).ToArray())).ToArray());
        DemoPlots.GroupedBars(Path.Combine(dir, AccuracyPng), "Six-language benchmark: accuracy per language", "accuracy", Langs,
            [("Parrot (MoE)", Langs.Select(l => r.Parrot.Accuracy[l]).ToArray()), ("baseline (no MoE)", Langs.Select(l => r.Baseline.Accuracy[l]).ToArray())], yMax: 1.0);
        var routing = r.Parrot.Routing!;
        DemoPlots.GroupedBars(Path.Combine(dir, RoutingPng), "Parrot: mean router probability per expert, benchmark questions of each language", "mean routing probability", Langs,
            Enumerable.Range(0, routing.Experts).Select(e => ($"expert {e}", Langs.Select(l => routing.Mean(l)[e]).ToArray())).ToList(),
            yMax: Math.Min(1.0, Langs.Max(l => routing.Mean(l).Max()) * 1.4)); // head room for the legend
        AtomicFile.WriteAllText(Path.Combine(dir, Json), ResultsJson(r).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        AtomicFile.WriteAllText(Path.Combine(dir, Markdown), MarkdownText(r));
    }

    /// <summary>Prints the accuracy table and one answered question per language.</summary>
    public static void PrintSummary(TextWriter o, DemoResult r)
    {
        o.WriteLine();
        o.WriteLine("accuracy on the six-language benchmark (" + string.Join(", ", Langs.Select(l => $"{l} {r.Parrot.Counts[l]}")) + " questions)");
        o.WriteLine($"{"model",-20}" + string.Concat(Langs.Select(l => $"{l,8}")) + $"{"non-en",9}{"gap",8}");
        foreach (var (name, s) in new[] { ("Parrot (MoE)", r.Parrot), ("baseline (no MoE)", r.Baseline), ("Parrot, swapped img", r.ParrotSwapped), ("baseline, swapped", r.BaselineSwapped) })
            o.WriteLine($"{name,-20}" + string.Concat(Langs.Select(l => $"{s.Accuracy[l] * 100,8:F1}")) + $"{NonEnglishMean(s) * 100,9:F1}{Gap(s) * 100,8:F1}");
        o.WriteLine(Verdict(r));
        o.WriteLine();
        foreach (var (lang, p, b) in Examples(r))
        {
            o.WriteLine($"[{lang}] {p.Row.Question.Question}  ({string.Join("  ", p.Row.Question.Options.Select(x => $"{x.Letter}. {x.Text}"))})  correct: {p.Row.Answer}");
            o.WriteLine($"      Parrot: \"{p.Prediction}\" → {p.Extracted} {(p.Hit ? "right" : "wrong")};  baseline: \"{b.Prediction}\" → {b.Extracted} {(b.Hit ? "right" : "wrong")}");
        }
    }

    /// <summary>
    /// Whether the MoE narrows the English/non-English gap, with the numbers, whether the difference is beyond
    /// noise (two standard errors of the difference of two gaps, each model's accuracies taken as independent
    /// binomials at worst-case p = 0.5), and whether the models read the image at all (the image-swap ablation).
    /// </summary>
    public static string Verdict(DemoResult r)
    {
        double gp = Gap(r.Parrot), gb = Gap(r.Baseline);
        string how = gp < gb ? "narrows" : gp > gb ? "widens" : "does not change";
        int n = r.Parrot.Counts["en"];
        // Var(gap) = Var(en) + Var(mean of 5) = 0.25/n · (1 + 1/5) per model; the difference of two models doubles it.
        double se = Math.Sqrt(2 * 1.2 * 0.25 / n);
        string noise = Math.Abs(gb - gp) < 2 * se ? $"within noise (two standard errors of the difference are {2 * se * 100:F1} points)" : $"beyond two standard errors ({2 * se * 100:F1} points)";
        double cp = DemoRunner.Changed(r.Parrot, r.ParrotSwapped), cb = DemoRunner.Changed(r.Baseline, r.BaselineSwapped);
        string image = cp < 0.05 && cb < 0.05
            ? $" Showing each question another item's image changes only {cp * 100:F1}% (Parrot) and {cb * 100:F1}% (baseline) of the answers: both models answer from the question text alone, so at this scale the comparison says nothing about what the MoE does with visual tokens."
            : $" Showing each question another item's image changes {cp * 100:F1}% (Parrot) and {cb * 100:F1}% (baseline) of the answers.";
        return string.Create(Inv, $"English minus non-English accuracy: Parrot {gp * 100:F1} points, baseline {gb * 100:F1} points — the MoE {how} the gap{(gp != gb ? $" by {Math.Abs(gb - gp) * 100:F1} points" : "")}, {noise}.{image}");
    }

    /// <summary>One question per language: item k of language k, with Parrot's and the baseline's answers.</summary>
    private static IEnumerable<(string Lang, PredictedRow Parrot, PredictedRow Baseline)> Examples(DemoResult r)
    {
        for (int k = 0; k < Langs.Length; k++)
        {
            var lang = Langs[k];
            var p = r.Parrot.Responses[lang];
            int i = k % p.Count;
            yield return (lang, p[i], r.Baseline.Responses[lang][i]);
        }
    }

    /// <summary>Expected accuracy of guessing: the mean of 1/options over the questions.</summary>
    private static double Chance(BenchmarkScores s, string lang) => s.Responses[lang].Average(a => 1.0 / a.Row.Question.Options.Count);

    private static JsonObject Scores(BenchmarkScores s)
    {
        var o = new JsonObject
        {
            ["accuracy"] = new JsonObject(Langs.Select(l => KeyValuePair.Create(l, (JsonNode?)s.Accuracy[l]))),
            ["questions"] = new JsonObject(Langs.Select(l => KeyValuePair.Create(l, (JsonNode?)s.Counts[l]))),
            ["non_english_mean"] = NonEnglishMean(s),
            ["english_gap"] = Gap(s),
            ["unanswered"] = new JsonObject(Langs.Select(l => KeyValuePair.Create(l, (JsonNode?)s.Responses[l].Count(a => a.Extracted == AnswerExtraction.None)))),
        };
        o["per_category"] = new JsonObject(Langs.Select(l => KeyValuePair.Create(l, (JsonNode?)new JsonObject(
            s.PerCategory[l].OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))))));
        if (s.Routing is { } routing)
            o["routing"] = new JsonObject(Langs.Select(l => KeyValuePair.Create(l, (JsonNode?)new JsonArray(routing.Mean(l).Select(v => (JsonNode?)v).ToArray()))));
        return o;
    }

    private static JsonObject ResultsJson(DemoResult r)
    {
        var examples = new JsonArray();
        foreach (var (lang, p, b) in Examples(r))
            examples.Add(new JsonObject
            {
                ["language"] = lang, ["index"] = p.Row.Index, ["prompt"] = p.Row.Question.Prompt(), ["answer"] = p.Row.Answer.ToString(),
                ["parrot_response"] = p.Prediction, ["parrot_choice"] = p.Extracted.ToString(),
                ["baseline_response"] = b.Prediction, ["baseline_choice"] = b.Extracted.ToString(),
            });
        return new JsonObject
        {
            ["command"] = "parrot demo" + (r.Settings.Quick ? " --quick" : ""),
            ["seed"] = r.Settings.Seed,
            ["languages"] = new JsonArray(Langs.Select(l => (JsonNode?)l).ToArray()),
            ["parrot"] = Scores(r.Parrot),
            ["baseline"] = Scores(r.Baseline),
            ["parrot_images_swapped"] = Scores(r.ParrotSwapped),
            ["baseline_images_swapped"] = Scores(r.BaselineSwapped),
            ["answers_changed_by_image_swap"] = new JsonObject { ["parrot"] = DemoRunner.Changed(r.Parrot, r.ParrotSwapped), ["baseline"] = DemoRunner.Changed(r.Baseline, r.BaselineSwapped) },
            ["moe_narrows_gap"] = Gap(r.Parrot) < Gap(r.Baseline),
            ["chance"] = new JsonObject(Langs.Select(l => KeyValuePair.Create(l, (JsonNode?)Chance(r.Parrot, l)))),
            ["stages"] = new JsonArray(r.Stages.Select(s => (JsonNode?)new JsonObject
            {
                ["name"] = s.Name, ["steps"] = s.Steps.Count, ["first_loss"] = s.Steps[0].Loss, ["final_loss"] = s.Steps[^1].Loss,
                ["loss"] = new JsonArray(s.Steps.Select(m => (JsonNode?)m.Loss).ToArray()),
            }).ToArray()),
            ["world"] = new JsonObject
            {
                ["stage1"] = r.World.Stage1, ["benchmark_items"] = r.World.BenchmarkItems,
                ["stage2"] = new JsonObject(r.World.Stage2PerLanguage.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            },
            ["seconds"] = new JsonObject(r.Seconds.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Math.Round(kv.Value, 2)))),
            ["cpu_seconds"] = new JsonObject(r.CpuSeconds.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Math.Round(kv.Value, 2)))),
            ["examples"] = examples,
        };
    }

    private static string MarkdownText(DemoResult r)
    {
        var sb = new StringBuilder();
        void L(string s = "") => sb.Append(s).Append('\n');
        string Pct(double v) => (v * 100).ToString("F1", Inv);
        var c = r.Config;
        L("# Parrot demo report");
        L();
        L(string.Create(Inv, $"Made by `parrot demo{(r.Settings.Quick ? " --quick" : "")} --seed {r.Settings.Seed}` in {r.Seconds["total"]:F0} s on {Environment.ProcessorCount} CPU cores ({DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC).{(r.Settings.Quick ? " **This is the smoke version: a handful of samples and steps; its numbers mean nothing.**" : "")}"));
        L();
        L("## What ran");
        L();
        L(string.Create(Inv, $"- **World** (`world/`, seed {r.Settings.Seed}): {r.World.Stage1} English image–caption pairs for stage 1; {r.World.Stage2PerLanguage.Values.Sum()} stage-2 instruction samples with the paper's imbalance ({string.Join(", ", r.World.Stage2PerLanguage.Select(kv => $"{kv.Key} {kv.Value}"))}); a held-out benchmark of {r.World.BenchmarkItems} multiple-choice items asked identically in en, zh, pt, ar, tr, ru."));
        L(string.Create(Inv, $"- **Starting weights** (`{r.Assets.Root}`): a CLIP vision tower (width {c.MmHiddenSize}, features of layer {c.MmVisionSelectLayer}, CLS kept) and a Qwen2 LM ({c.Text.NumHiddenLayers} layers, width {c.Text.HiddenSize}, vocabulary {c.Text.VocabSize}, {r.LmParameters:N0} parameters)."));
        L(string.Create(Inv, $"- **Stage 1** (both models share it): the `mlp2x_gelu` projector alone, MoE bypassed, global batch {r.Settings.Stage1Batch}, lr {r.Settings.Stage1Lr:G3}, one epoch."));
        L(string.Create(Inv, $"- **Stage 2, Parrot**: projector + a fresh language-routing MoE ({c.NumExperts} experts of width {c.MoeIntermediateSize}, α = {c.MoeWeight}) + the whole LLM, {r.ParrotParameters:N0} parameters; **stage 2, baseline** (LLaVA-style): the same recipe, data and seed with the MoE bypassed, {r.BaselineParameters:N0} parameters. Global batch {r.Settings.Stage2Batch}, lr {r.Settings.Stage2Lr:G3}, one epoch, AdamW without weight decay, cosine with 3% warm-up, clipping at 1.0."));
        L(string.Create(Inv, $"- **Evaluation**: the `parrot eval` harness on each saved model (`parrot eval --model models/NAME --vision {r.Assets.Vision} --max-new-tokens {r.Settings.MaxNewTokens}` gives the same answers): the PARROT.md multiple-choice prompt with the image, greedy decoding until `<|im_end|>`, the option letter extracted by VLMEvalKit's rules, each file scored with its protocol (vanilla here); accuracy per language. Per-question predictions and summaries: `{EvalFolder}/parrot/`, `{EvalFolder}/baseline/` and the image-swap ablations `{EvalFolder}/*_images_swapped/` (predictions.tsv, summary.json, summary.md)."));
        L();
        L("## Accuracy per language");
        L();
        L("| model | " + string.Join(" | ", Langs) + " | non-English mean | English − non-English |");
        L("|---|" + string.Concat(Enumerable.Repeat("---:|", Langs.Length + 2)));
        foreach (var (name, s) in new[] { ("Parrot (MoE)", r.Parrot), ("baseline (no MoE)", r.Baseline) })
            L($"| {name} | " + string.Join(" | ", Langs.Select(l => Pct(s.Accuracy[l]))) + $" | {Pct(NonEnglishMean(s))} | {Pct(Gap(s))} |");
        foreach (var (name, s) in new[] { ("Parrot, images swapped", r.ParrotSwapped), ("baseline, images swapped", r.BaselineSwapped) })
            L($"| {name} | " + string.Join(" | ", Langs.Select(l => Pct(s.Accuracy[l]))) + $" | {Pct(NonEnglishMean(s))} | {Pct(Gap(s))} |");
        L("| chance | " + string.Join(" | ", Langs.Select(l => Pct(Chance(r.Parrot, l)))) + " | | |");
        L();
        int n = r.Parrot.Counts["en"];
        double se = Math.Sqrt(0.25 / n);
        L(string.Create(Inv, $"Percent of {n} questions per language (one language's accuracy has a standard error of up to {se * 100:F1} points). {Verdict(r)}"));
        L();
        L(string.Create(Inv, $"*Images swapped* is an ablation: every question is shown another benchmark item's image. A model that reads the image drops towards chance there; one that answers from the text alone keeps its score. Answers that change when the image changes: Parrot {DemoRunner.Changed(r.Parrot, r.ParrotSwapped) * 100:F1}%, baseline {DemoRunner.Changed(r.Baseline, r.BaselineSwapped) * 100:F1}%."));
        L();
        L($"![accuracy per language]({AccuracyPng})");
        L();
        L("Accuracy per question category, English and the mean of the other five languages:");
        L();
        L("| category | Parrot en | Parrot non-English | baseline en | baseline non-English | chance |");
        L("|---|---:|---:|---:|---:|---:|");
        foreach (var cat in r.Parrot.PerCategory["en"].Keys.Order(StringComparer.Ordinal))
        {
            double Cat(BenchmarkScores s, string l) => s.PerCategory[l].GetValueOrDefault(cat);
            double NonEn(BenchmarkScores s) => Langs.Where(l => l != "en").Average(l => Cat(s, l));
            double chance = r.Parrot.Responses["en"].Where(a => a.Row.Category == cat).Average(a => 1.0 / a.Row.Question.Options.Count);
            L($"| {cat} | {Pct(Cat(r.Parrot, "en"))} | {Pct(NonEn(r.Parrot))} | {Pct(Cat(r.Baseline, "en"))} | {Pct(NonEn(r.Baseline))} | {Pct(chance)} |");
        }
        L();
        L("## Training loss");
        L();
        L("| stage | steps | first loss | final loss |");
        L("|---|---:|---:|---:|");
        foreach (var s in r.Stages) L(string.Create(Inv, $"| {s.Name} | {s.Steps.Count} | {s.Steps[0].Loss:F3} | {s.Steps[^1].Loss:F3} |"));
        L();
        L($"![training loss]({LossPng})");
        L();
        L("## Expert routing per language (the paper's Figure 7c)");
        L();
        L("Mean router probability of each expert over the benchmark questions of each language (Parrot):");
        L();
        var routing = r.Parrot.Routing!;
        L("| language | " + string.Join(" | ", Enumerable.Range(0, routing.Experts).Select(e => $"expert {e}")) + " | top |");
        L("|---|" + string.Concat(Enumerable.Repeat("---:|", routing.Experts + 1)));
        foreach (var l in Langs)
            L($"| {l} | " + string.Join(" | ", routing.Mean(l).Select(v => v.ToString("F3", Inv))) + $" | {routing.TopExpert(l)} |");
        L();
        double uniform = 1.0 / routing.Experts, spread = Langs.Max(l => routing.Mean(l).Max(v => Math.Abs(v - uniform)));
        L(spread < 0.02
            ? string.Create(Inv, $"The router stays close to uniform (1/{routing.Experts} = {uniform:F3}; no mean differs from it by more than {spread:F3}): at this scale it has not learned language-specific experts.")
            : string.Create(Inv, $"Top expert per language: {string.Join(", ", Langs.Select(l => $"{l} → {routing.TopExpert(l)}"))} (largest deviation from the uniform {uniform:F3}: {spread:F3})."));
        L();
        L($"![routing per language]({RoutingPng})");
        L();
        L("## One answered question per language");
        L();
        foreach (var (lang, p, b) in Examples(r))
        {
            L($"**{lang}** (item {p.Row.Index}, {p.Row.Question.Options.Count} options, correct: {p.Row.Answer})");
            L();
            L("```");
            L(p.Row.Question.Prompt());
            L("```");
            L();
            L($"- Parrot: `{p.Prediction}` → {p.Extracted} ({(p.Hit ? "right" : "wrong")})");
            L($"- baseline: `{b.Prediction}` → {b.Extracted} ({(b.Hit ? "right" : "wrong")})");
            L();
        }
        L("## Time");
        L();
        L("Wall-clock and CPU seconds per phase (on a shared machine the wall clock grows with the load; CPU time does not):");
        L();
        L("| phase | wall s | CPU s |");
        L("|---|---:|---:|");
        foreach (var (k, v) in r.Seconds) L(string.Create(Inv, $"| {k} | {v:F1} | {r.CpuSeconds.GetValueOrDefault(k):F1} |"));
        L();
        L("The trained models are in `models/` (stage1, parrot, baseline): Parrot model folders (config.json with the released keys, model.safetensors, tokenizer.json) that `ParrotLoader.Load` and `parrot train --model` read; their vision tower is the folder named by mm_vision_tower.");
        return sb.ToString();
    }
}
