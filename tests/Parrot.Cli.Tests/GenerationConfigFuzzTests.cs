using Parrot.Nn.Models.Qwen2;
using Parrot.Tests.Shared;

namespace Parrot.Cli.Tests;

/// <summary>
/// Seeded mutations of a generation_config.json as `parrot generate` reads it (<see cref="GenerateCommand.EndOfSequenceIds"/>):
/// ids inside the vocabulary, or an InvalidDataException naming the file.
/// </summary>
public class GenerationConfigFuzzTests
{
    private static readonly Qwen2Config Config = new() { VocabSize = 100, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 1, NumAttentionHeads = 2, NumKeyValueHeads = 1, RopeTheta = 10000, EosTokenIds = [99] };

    [Test]
    public void GenerationConfigJson()
    {
        var valid = """
            {
              "bos_token_id": 97,
              "do_sample": true,
              "eos_token_id": [98, 99],
              "pad_token_id": 98,
              "repetition_penalty": 1.05,
              "temperature": 0.7,
              "top_k": 20,
              "top_p": 0.8,
              "max_new_tokens": 512,
              "transformers_version": "4.39.0"
            }
            """u8.ToArray();
        var root = CliRunner.TempDir();
        try
        {
            FuzzHarness.Run(valid, 51, bytes =>
            {
                File.WriteAllBytes(Path.Combine(root, "generation_config.json"), bytes);
                var ids = GenerateCommand.EndOfSequenceIds(root, Config);
                FuzzHarness.Require(ids.All(id => id >= 0 && id < Config.VocabSize), $"eos ids {string.Join(", ", ids)}");
            }, root, typeof(InvalidDataException));
        }
        finally
        {
            try { Directory.Delete(root, true); }
            catch (IOException) { }
        }
    }
}
