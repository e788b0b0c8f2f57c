using System.CommandLine;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Model;
using Parrot.Parrot.Inference;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// `parrot generate --model DIR --tokens 1,2,3 --max-new-tokens N [--ignore-eos] [--image FILE] [--vision DIR]`:
/// greedy decoding with the KV cache; prints the new ids comma-separated on one line. A Parrot model directory
/// takes an image whose visual tokens replace the placeholder -200 in the prompt.
/// </summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Qwen2/Qwen1.5 model directory, or a Parrot model directory (model_type parrot_qwen2)", Required = true };
        var tokens = new Option<string>("--tokens") { Description = $"Comma-separated prompt token ids; {ParrotSample.ImageToken} marks where the --image goes (use --tokens=... when the list starts with '-')", Required = true };
        var max = new Option<int>("--max-new-tokens") { Description = "Most tokens to generate; the prompt (an image's visual tokens included) and these must fit the model's context (max_position_embeddings), else nothing is generated and the command fails, as serve refuses max_tokens past it", Required = true };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Generate exactly --max-new-tokens tokens, ignoring end-of-sequence ids" };
        var image = ParrotInputs.ImageOption();
        var vision = ParrotInputs.VisionOption();
        var cmd = new Command("generate", $"Greedy decoding with the KV cache; prints the new token ids. With a Parrot model and --image, the image's visual tokens replace {ParrotSample.ImageToken} in the prompt");
        var device = DeviceOption.Create();
        var dtype = DTypeOption.Create();
        foreach (var o in new Option[] { device, dtype, model, tokens, max, ignoreEos, image, vision }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("generate", () =>
        {
            var dev = DeviceOption.Resolve(p.GetValue(device), "generate");
            var ids = TokenIds.Parse(p.GetValue(tokens)!);
            int n = p.GetValue(max);
            if (n < 0) throw new CliException($"--max-new-tokens must be ≥ 0, got {n}");
            string dir = p.GetValue(model)!;
            List<int> output;
            var type = DTypeOption.Resolve(p.GetValue(dtype));
            if (ParrotInputs.Open(dir, ids, p.GetValue(image), p.GetValue(vision), type) is { } opened)
            {
                using var parrot = opened.Model.To(dev);
                output = parrot.Generate(ids, opened.Image, n, EndOfSequenceIds(dir, parrot.Model.Config.Text), p.GetValue(ignoreEos));
            }
            else
            {
                using var m = Qwen2Loader.Load(dir, type);
                m.To(dev);
                output = GreedyDecoder.Generate(m, ids, n, EndOfSequenceIds(dir, m.Config), p.GetValue(ignoreEos));
            }
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
                if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object) throw new InvalidDataException($"{gen}: expected a JSON object");
                if (doc.RootElement.TryGetProperty("eos_token_id", out var e))
                {
                    // null: no end-of-sequence id. Anything but ids is an error: ignoring it would silently leave generation without an end.
                    set.Clear();
                    if (e.ValueKind == System.Text.Json.JsonValueKind.Null) { }
                    else if (e.ValueKind == System.Text.Json.JsonValueKind.Array)
                    {
                        int i = 0;
                        foreach (var x in e.EnumerateArray())
                            set.Add(Id(x, $"'eos_token_id'[{i++}]"));
                    }
                    else set.Add(Id(e, "'eos_token_id'"));
                }
            }
            catch (System.Text.Json.JsonException ex) { throw new InvalidDataException($"{gen}: not valid JSON: {ex.Message}", ex); }
        }
        return set;

        int Id(System.Text.Json.JsonElement x, string what) =>
            x.ValueKind == System.Text.Json.JsonValueKind.Number && x.TryGetInt32(out int id) && id >= 0 && id < config.VocabSize ? id
                : throw new InvalidDataException($"{gen}: {what} must be a token id in [0, {config.VocabSize}), got {x.GetRawText()}");
    }
}
