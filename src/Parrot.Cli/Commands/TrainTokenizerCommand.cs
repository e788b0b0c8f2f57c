using System.CommandLine;
using System.Diagnostics;
using Parrot.Parrot.Text;
using Parrot.Tensors.Formats;

namespace Parrot.Cli;

/// <summary>
/// `parrot train-tokenizer --input FILE[,FILE...] --vocab-size N --out tokenizer.json
/// [--special TOKEN,TOKEN,...] [--min-frequency F] [--jsonl-field NAME]`: learns a byte-level BPE vocabulary from UTF-8 text
/// files and writes a Qwen2-style tokenizer.json that `parrot tokenize` and the models read.
/// </summary>
internal static class TrainTokenizerCommand
{
    public static Command Create()
    {
        var input = new Option<string>("--input") { Description = "UTF-8 text file(s) to learn from, separated by commas", Required = true };
        var vocabSize = new Option<int>("--vocab-size") { Description = "Token ids in all: 256 byte symbols + merges + special tokens", Required = true };
        var output = new Option<string>("--out") { Description = "The tokenizer.json to write (atomically)", Required = true };
        var special = new Option<string>("--special")
        {
            Description = "Special tokens, separated by commas; their ids follow the learned vocabulary",
            DefaultValueFactory = _ => string.Join(',', BpeTrainerOptions.DefaultSpecialTokens),
        };
        var minFrequency = new Option<int>("--min-frequency")
        {
            Description = "Never merge a pair seen fewer times than this (training may stop below --vocab-size)",
            DefaultValueFactory = _ => 2,
        };
        var field = new Option<string?>("--jsonl-field")
        {
            Description = "Read the inputs as JSON lines and learn from this string field of each line (e.g. text, for a world's text/lm.jsonl)",
        };
        var cmd = new Command("train-tokenizer", "Learn a byte-level BPE tokenizer (Qwen2 layout) from text files");
        foreach (var o in new Option[] { input, vocabSize, output, special, minFrequency, field }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("train-tokenizer", () =>
        {
            var files = p.GetValue(input)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (files.Length == 0) throw new CliException("--input names no file");
            foreach (string f in files)
                if (!File.Exists(f)) throw new CliException($"input file {f} does not exist");
            var specials = p.GetValue(special)!.Split(',', StringSplitOptions.RemoveEmptyEntries);
            var clock = Stopwatch.StartNew();
            BpeTrainer trainer;
            // The options are checked here: a value out of its range is a usage error (exit 2), as in the other commands.
            try
            {
                trainer = new BpeTrainer(new BpeTrainerOptions
                {
                    VocabSize = p.GetValue(vocabSize),
                    SpecialTokens = specials,
                    MinPairFrequency = p.GetValue(minFrequency),
                });
            }
            catch (ArgumentException e) { throw new CliException(e.Message); }
            if (p.GetValue(field) is string name)
                foreach (string f in files) AddJsonLines(trainer, f, name);
            else
                foreach (string f in files) trainer.AddFile(f);
            var result = trainer.Train();
            string outPath = p.GetValue(output)!;
            result.Save(outPath);
            Console.WriteLine($"read {result.Characters:N0} characters: {result.Words:N0} words, {result.DistinctWords:N0} distinct");
            Console.WriteLine($"learned {result.Merges.Count:N0} merges in {result.MergeTime.TotalSeconds:F2} s ({clock.Elapsed.TotalSeconds:F2} s in all)");
            if (result.IdCount < result.RequestedVocabSize)
                Console.WriteLine($"note: the corpus has no more pairs seen {p.GetValue(minFrequency)} times; the vocabulary has {result.IdCount} ids, not {result.RequestedVocabSize}");
            Console.WriteLine($"wrote {outPath}: {result.IdCount} ids (256 bytes + {result.Tokens.Count - 256} merged tokens + {result.SpecialTokens.Count} special)");
            return 0;
        }));
        return cmd;
    }

    /// <summary>Adds the <paramref name="field"/> string of every non-empty line of <paramref name="path"/>, one document each.</summary>
    private static void AddJsonLines(BpeTrainer trainer, string path, string field)
    {
        foreach (var (lineNo, line) in global::Parrot.Parrot.Data.Utf8Lines.Read(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var doc = System.Text.Json.JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object || !doc.RootElement.TryGetProperty(field, out var v)
                    || v.ValueKind != System.Text.Json.JsonValueKind.String)
                    throw new CliException($"{path}:{lineNo}: expected a JSON object with a string \"{field}\"");
                trainer.AddText(JsonText.TryGetString(v)
                    ?? throw new CliException($"{path}:{lineNo}: \"{field}\" {JsonText.NotText}"));
            }
            catch (System.Text.Json.JsonException e) { throw new CliException($"{path}:{lineNo}: not valid JSON ({e.Message})"); }
        }
    }
}
