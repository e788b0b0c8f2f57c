using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Parrot.Text;

namespace Parrot.Parrot.Tests.Text;

/// <summary>The committed Qwen tokenizer and golden files, and small synthetic tokenizer.json files.</summary>
internal static class TokenizerFixtures
{
    private static readonly Lazy<BpeTokenizer> QwenLazy = new(() => BpeTokenizer.Load(QwenTokenizerPath));

    /// <summary>tests/Parrot.Parrot.Tests/Fixtures, found by walking up from the test binaries (no copy step needed).</summary>
    public static string Folder { get; } = FindFolder();

    public static string QwenTokenizerPath => Path.Combine(Folder, "qwen-tokenizer", "tokenizer.json.gz");

    /// <summary>Qwen's tokenizer, loaded once for all tests.</summary>
    public static BpeTokenizer Qwen => QwenLazy.Value;

    private static string FindFolder()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "Parrot.Parrot.Tests", "Fixtures");
            if (File.Exists(Path.Combine(candidate, "tokenizer-corpus.jsonl"))) return candidate;
        }
        throw new DirectoryNotFoundException("tests/Parrot.Parrot.Tests/Fixtures not found above " + TestContext.CurrentContext.TestDirectory);
    }

    public static IEnumerable<JsonElement> ReadJsonLines(string file) =>
        File.ReadAllLines(Path.Combine(Folder, file)).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement);

    /// <summary>
    /// A minimal valid byte-level tokenizer.json: the 256 byte symbols (ids 0–255 in byte order), then one
    /// token per merge, the Qwen split pattern, NFC; tests mutate the returned tree to break it.
    /// </summary>
    public static JsonObject TinyJson(IEnumerable<(string Left, string Right)>? merges = null, IEnumerable<JsonObject>? added = null)
    {
        var vocab = new JsonObject();
        int next = 0;
        for (int b = 0; b < 256; b++) vocab[ByteChar(b).ToString()] = next++;
        var mergeList = new JsonArray();
        foreach (var (l, r) in merges ?? [])
        {
            if (!vocab.ContainsKey(l + r)) vocab[l + r] = next++;
            mergeList.Add(new JsonArray(l, r));
        }
        var addedList = new JsonArray();
        foreach (var a in added ?? []) addedList.Add(a);
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = addedList,
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split",
                        ["pattern"] = new JsonObject { ["Regex"] = QwenPattern },
                        ["behavior"] = "Isolated",
                        ["invert"] = false,
                    },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false }),
            },
            ["post_processor"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["ignore_merges"] = false,
                ["vocab"] = vocab,
                ["merges"] = mergeList,
            },
        };
    }

    public const string QwenPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static JsonObject Added(int id, string content, bool special = true, bool singleWord = false, bool lstrip = false,
        bool rstrip = false, bool? normalized = null) => new()
    {
        ["id"] = id,
        ["content"] = content,
        ["single_word"] = singleWord,
        ["lstrip"] = lstrip,
        ["rstrip"] = rstrip,
        ["normalized"] = normalized ?? !special,
        ["special"] = special,
    };

    public static BpeTokenizer Build(JsonObject json) =>
        BpeTokenizer.FromJson(System.Text.Encoding.UTF8.GetBytes(json.ToJsonString()), "tiny.json");

    /// <summary>GPT-2's byte-to-character map, written out independently of the library's.</summary>
    public static char ByteChar(int b)
    {
        if (b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF) return (char)b;
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!(x is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF)) n++;
        return (char)(256 + n);
    }
}
