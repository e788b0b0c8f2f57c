using System.CommandLine;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// `parrot generate --model DIR --tokens 1,2,3 --max-new-tokens N [--ignore-eos]`: greedy decoding with the
/// KV cache; prints the new ids comma-separated on one line.
/// </summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Qwen2/Qwen1.5 model directory", Required = true };
        var tokens = new Option<string>("--tokens") { Description = "Comma-separated prompt token ids (use --tokens=... when the list starts with '-')", Required = true };
        var max = new Option<int>("--max-new-tokens") { Description = "Most tokens to generate", Required = true };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Generate exactly --max-new-tokens tokens, ignoring end-of-sequence ids" };
        var cmd = new Command("generate", "Greedy decoding with the KV cache; prints the new token ids");
        cmd.Options.Add(model); cmd.Options.Add(tokens); cmd.Options.Add(max); cmd.Options.Add(ignoreEos);
        cmd.SetAction(p => CliErrors.Run("generate", () =>
        {
            var ids = TokenIds.Parse(p.GetValue(tokens)!);
            int n = p.GetValue(max);
            if (n < 0) throw new CliException($"--max-new-tokens must be ≥ 0, got {n}");
            string dir = p.GetValue(model)!;
            using var m = Qwen2Loader.Load(dir, DType.F32);
            var eos = EndOfSequenceIds(dir, m.Config);
            var output = GreedyDecoder.Generate(m, ids, n, eos, p.GetValue(ignoreEos));
            Console.WriteLine(string.Join(",", output));
            return 0;
        }));
        return cmd;
    }

    /// <summary>eos ids from generation_config.json when present, else config.json's eos_token_id.</summary>
    internal static HashSet<int> EndOfSequenceIds(string dir, Qwen2Config config)
    {
        var set = new HashSet<int>(config.EosTokenIds);
        var gen = Path.Combine(dir, "generation_config.json");
        if (File.Exists(gen))
        {
            try
            {
                using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(gen));
                if (doc.RootElement.TryGetProperty("eos_token_id", out var e))
                {
                    set.Clear();
                    if (e.ValueKind == System.Text.Json.JsonValueKind.Array) foreach (var x in e.EnumerateArray()) set.Add(x.GetInt32());
                    else if (e.ValueKind == System.Text.Json.JsonValueKind.Number) set.Add(e.GetInt32());
                }
            }
            catch (System.Text.Json.JsonException ex) { throw new InvalidDataException($"{gen}: not valid JSON: {ex.Message}", ex); }
        }
        return set;
    }
}
