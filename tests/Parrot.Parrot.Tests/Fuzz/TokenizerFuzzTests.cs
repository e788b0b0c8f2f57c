using System.Text;
using Parrot.Parrot.Text;
using Parrot.Tests.Shared;
using static Parrot.Parrot.Tests.Text.TokenizerFixtures;

namespace Parrot.Parrot.Tests.Fuzz;

/// <summary>
/// Seeded mutations of a tiny tokenizer.json (merges, added tokens, the Qwen split pattern): it loads and encodes, or is
/// refused with the loader's InvalidDataException or NotSupportedException naming the file.
/// </summary>
public class TokenizerFuzzTests
{
    [Test]
    public void TokenizerJson()
    {
        var json = TinyJson([("a", "b"), ("ab", "c")], added: [Added(258, "<|im_start|>"), Added(259, "<|im_end|>"), Added(260, "hello", special: false)]);
        // Unescaped, so that the mutations meet raw UTF-8 too.
        var valid = Encoding.UTF8.GetBytes(json.ToJsonString(new System.Text.Json.JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        FuzzHarness.Run(valid, 21, bytes =>
        {
            var tokenizer = BpeTokenizer.FromJson(bytes, "tiny.json");
            // What a load is for: encoding (whose split pattern may give up with its InvalidDataException) and decoding.
            string text = "<|im_start|>abc hello 12 é\n<|im_end|>";
            int[] ids;
            try { ids = tokenizer.Encode(text); }
            catch (InvalidDataException e) { throw new InvalidDataException($"tiny.json: {e.Message}", e); }
            tokenizer.Decode(ids);
        }, "tiny.json: ", typeof(InvalidDataException), typeof(NotSupportedException));
    }
}
