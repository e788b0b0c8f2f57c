using System.Runtime.CompilerServices;
using System.Text.Json;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Text;

/// <summary>
/// The parts of a Hugging Face <c>tokenizer.json</c> that a byte-level BPE tokenizer needs, read and
/// checked. Every problem is reported with the file's name: malformed content as
/// <see cref="InvalidDataException"/>, a well-formed but unsupported component (a normalizer other than
/// NFC, a pre-tokenizer other than Split + ByteLevel, ...) as <see cref="NotSupportedException"/>.
/// </summary>
internal sealed class TokenizerDefinition
{
    public required Dictionary<string, int> Vocab { get; init; }
    /// <summary>Vocabulary token of each id (null for added-token ids and gaps); as long as the id range.</summary>
    public required string?[] VocabTokenOfId { get; init; }
    /// <summary>Merges in rank order, as ids: the two parts and the merged token.</summary>
    public required List<(int Left, int Right, int Merged)> Merges { get; init; }
    public required List<AddedToken> AddedTokens { get; init; }
    public required bool NormalizeNfc { get; init; }
    /// <summary>The Split pre-tokenizer's regular expression, or null when the text is not split.</summary>
    public required string? SplitPattern { get; init; }
    public required bool IgnoreMerges { get; init; }

    public static TokenizerDefinition Parse(ReadOnlySpan<byte> utf8Json, string source)
    {
        JsonDocument doc;
        try
        {
            // A byte order mark (Windows editors add one) is not JSON but says nothing wrong about the file.
            if (utf8Json.StartsWith("\uFEFF"u8)) utf8Json = utf8Json[3..];
            doc = JsonDocument.Parse(utf8Json.ToArray(), new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            var reader = new Reader(source);
            try { return reader.Read(doc.RootElement); }
            // Looked for only when a read failed, since a large vocabulary would otherwise be read twice: a string that
            // cannot be read as text (an escaped lone surrogate) threw from GetString or a key's Name, unnamed.
            catch (InvalidOperationException e) when (JsonText.FindUnreadable(doc.RootElement) is { } bad)
            {
                throw new InvalidDataException($"{source}: {bad} {JsonText.NotText}", e);
            }
        }
    }

    private sealed class Reader(string source)
    {
        private InvalidDataException Bad(string problem) => new($"{source}: {problem}");
        private NotSupportedException Unsupported(string problem) => new($"{source}: {problem}");

        public TokenizerDefinition Read(JsonElement root)
        {
            if (root.ValueKind != JsonValueKind.Object) throw Bad("the top level is not a JSON object");
            foreach (var name in new[] { "truncation", "padding" })
                if (root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null)
                    throw Unsupported($"'{name}' is set; only tokenizers without built-in {name} are supported");

            if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw Bad("missing the 'model' object");
            string type = OptionalString(model, "type", "model") ?? throw Bad("model.type is missing");
            if (type != "BPE") throw Unsupported($"model type '{type}' is not supported (only BPE)");
            CheckBpeOptions(model);

            var vocab = ReadVocab(model);
            var added = ReadAddedTokens(root);
            var tokenOfId = VocabTokenOfId(vocab, added);
            var merges = ReadMerges(model, vocab);
            CheckByteAlphabet(vocab);
            CheckDecoderAndPostProcessor(root);
            string? unk = OptionalString(model, "unk_token", "model");
            if (unk is not null && !vocab.ContainsKey(unk) && !added.Exists(t => t.Content == unk))
                throw Bad($"model.unk_token '{unk}' is not a token");

            return new TokenizerDefinition
            {
                Vocab = vocab,
                VocabTokenOfId = tokenOfId,
                Merges = merges,
                AddedTokens = added,
                NormalizeNfc = ReadNormalizer(root),
                SplitPattern = ReadPreTokenizer(root),
                IgnoreMerges = OptionalBool(model, "ignore_merges", "model") ?? false,
            };
        }

        private void CheckBpeOptions(JsonElement model)
        {
            if (model.TryGetProperty("dropout", out var dropout) && dropout.ValueKind != JsonValueKind.Null
                && !(dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() == 0))
                throw Unsupported("model.dropout is set; BPE dropout is not supported");
            if (OptionalBool(model, "byte_fallback", "model") == true)
                throw Unsupported("model.byte_fallback is true; byte fallback is not supported");
            foreach (var name in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
                if (!string.IsNullOrEmpty(OptionalString(model, name, "model")))
                    throw Unsupported($"model.{name} is set; only byte-level BPE without {name} is supported");
        }

        private Dictionary<string, int> ReadVocab(JsonElement model)
        {
            if (!model.TryGetProperty("vocab", out var vocabJson) || vocabJson.ValueKind != JsonValueKind.Object)
                throw Bad("model.vocab is missing or not an object");
            var vocab = new Dictionary<string, int>(200_000, StringComparer.Ordinal);
            foreach (var entry in vocabJson.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                    throw Bad($"model.vocab: the id of token '{entry.Name}' is not a non-negative integer ({entry.Value.GetRawText()})");
                if (!vocab.TryAdd(entry.Name, id))
                    throw Bad($"model.vocab: token '{entry.Name}' appears twice");
            }
            if (vocab.Count == 0) throw Bad("model.vocab is empty");
            return vocab;
        }

        /// <summary>Token of each vocabulary id, once every id is known to be in range and used once.</summary>
        private string?[] VocabTokenOfId(Dictionary<string, int> vocab, List<AddedToken> added)
        {
            // Ids index the embedding table: a wild id means a broken file, not a big model.
            int limit = vocab.Count + added.Count;
            foreach (var (token, id) in vocab)
                if (id >= limit) throw Bad($"model.vocab: id {id} of '{token}' is out of range (the file has {limit} tokens)");
            foreach (var token in added)
                if (token.Id >= limit) throw Bad($"added token '{token.Content}' has id {token.Id}, out of range (the file has {limit} tokens)");
            var tokenOfId = new string?[limit];
            foreach (var (token, id) in vocab)
            {
                if (tokenOfId[id] is { } other) throw Bad($"model.vocab: id {id} is given to both '{other}' and '{token}'");
                tokenOfId[id] = token;
            }
            foreach (var token in added)
            {
                if (tokenOfId[token.Id] is { } vocabToken && vocabToken != token.Content)
                    throw Bad($"added token '{token.Content}': id {token.Id} is the id of vocabulary token '{vocabToken}'");
                if (vocab.TryGetValue(token.Content, out int vocabId) && vocabId != token.Id)
                    throw Bad($"added token '{token.Content}' has id {token.Id} but {vocabId} in model.vocab");
            }
            return tokenOfId;
        }

        private List<AddedToken> ReadAddedTokens(JsonElement root)
        {
            var result = new List<AddedToken>();
            if (!root.TryGetProperty("added_tokens", out var list) || list.ValueKind == JsonValueKind.Null) return result;
            if (list.ValueKind != JsonValueKind.Array) throw Bad("added_tokens is not an array");
            var byId = new Dictionary<int, AddedToken>();
            var byContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
            int i = 0;
            foreach (var item in list.EnumerateArray())
            {
                string where = $"added_tokens[{i++}]";
                if (item.ValueKind != JsonValueKind.Object) throw Bad($"{where} is not an object");
                if (!item.TryGetProperty("id", out var idJson) || idJson.ValueKind != JsonValueKind.Number
                    || !idJson.TryGetInt32(out int id) || id < 0)
                    throw Bad($"{where}: 'id' is missing or not a non-negative integer");
                string content = OptionalString(item, "content", where) ?? throw Bad($"{where}: 'content' is missing");
                if (content.Length == 0) throw Bad($"{where}: 'content' is empty");
                bool special = OptionalBool(item, "special", where) ?? false;
                var token = new AddedToken(id, content, special,
                    SingleWord: OptionalBool(item, "single_word", where) ?? false,
                    LStrip: OptionalBool(item, "lstrip", where) ?? false,
                    RStrip: OptionalBool(item, "rstrip", where) ?? false,
                    // Hugging Face's default: special tokens are matched in the raw text.
                    Normalized: OptionalBool(item, "normalized", where) ?? !special);
                if (byId.TryGetValue(id, out var other))
                    throw Bad($"{where}: id {id} is already used by added token '{other.Content}'");
                if (byContent.TryGetValue(content, out other))
                    throw Bad($"{where}: '{content}' is already an added token (id {other.Id})");
                byId[id] = byContent[content] = token;
                result.Add(token);
            }
            return result;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private List<(int, int, int)> ReadMerges(JsonElement model, Dictionary<string, int> vocab)
        {
            if (!model.TryGetProperty("merges", out var list) || list.ValueKind != JsonValueKind.Array)
                throw Bad("model.merges is missing or not an array");
            var bySpan = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
            var merges = new List<(int, int, int)>(list.GetArrayLength());
            Span<char> joined = stackalloc char[256];
            int i = 0;
            foreach (var item in list.EnumerateArray())
            {
                string left, right;
                if (item.ValueKind == JsonValueKind.String)
                {
                    // The older format: "left right", which works because byte-level tokens never hold a space.
                    string text = item.GetString()!;
                    int space = text.IndexOf(' ');
                    if (space <= 0 || space == text.Length - 1 || text.IndexOf(' ', space + 1) >= 0)
                        throw Bad($"model.merges[{i}]: \"{text}\" is not two tokens separated by one space");
                    left = text[..space];
                    right = text[(space + 1)..];
                }
                else if (item.ValueKind == JsonValueKind.Array && item.GetArrayLength() == 2
                         && item[0].ValueKind == JsonValueKind.String && item[1].ValueKind == JsonValueKind.String)
                {
                    left = item[0].GetString()!;
                    right = item[1].GetString()!;
                    if (left.Length == 0 || right.Length == 0) throw Bad($"model.merges[{i}]: a token is empty");
                }
                else throw Bad($"model.merges[{i}]: expected \"left right\" or [\"left\", \"right\"], got {item.GetRawText()}");
                Span<char> both = left.Length + right.Length <= joined.Length ? joined[..(left.Length + right.Length)] : new char[left.Length + right.Length];
                left.CopyTo(both);
                right.CopyTo(both[left.Length..]);
                if (!vocab.TryGetValue(left, out int l) || !vocab.TryGetValue(right, out int r) || !bySpan.TryGetValue(both, out int merged))
                {
                    string missing = !vocab.ContainsKey(left) ? left : !vocab.ContainsKey(right) ? right : left + right;
                    throw Bad($"model.merges[{i}]: '{missing}' (from merging '{left}' and '{right}') is not in model.vocab");
                }
                merges.Add((l, r, merged));
                i++;
            }
            return merges;
        }

        private void CheckByteAlphabet(Dictionary<string, int> vocab)
        {
            for (int b = 0; b < 256; b++)
                if (!vocab.ContainsKey(ByteLevelAlphabet.CharOfByte[b].ToString()))
                    throw Bad($"model.vocab lacks the byte-level symbol '{ByteLevelAlphabet.CharOfByte[b]}' for byte 0x{b:X2}, so some text could not be encoded");
        }

        private bool ReadNormalizer(JsonElement root)
        {
            if (!root.TryGetProperty("normalizer", out var n) || n.ValueKind == JsonValueKind.Null) return false;
            string type = TypeOf(n, "normalizer");
            if (type == "NFC") return true;
            throw Unsupported($"normalizer '{type}' is not supported (only NFC or none)");
        }

        private string? ReadPreTokenizer(JsonElement root)
        {
            if (!root.TryGetProperty("pre_tokenizer", out var p) || p.ValueKind == JsonValueKind.Null)
                throw Unsupported("no pre_tokenizer: only byte-level tokenizers (ByteLevel pre-tokenizer) are supported");
            string type = TypeOf(p, "pre_tokenizer");
            if (type == "ByteLevel")
            {
                CheckByteLevel(p, "pre_tokenizer");
                return null;
            }
            if (type != "Sequence")
                throw Unsupported($"pre_tokenizer '{type}' is not supported (only Sequence[Split, ByteLevel] or ByteLevel)");
            if (!p.TryGetProperty("pretokenizers", out var steps) || steps.ValueKind != JsonValueKind.Array)
                throw Bad("pre_tokenizer.pretokenizers is missing or not an array");
            var kinds = steps.EnumerateArray().Select((s, i) => TypeOf(s, $"pre_tokenizer.pretokenizers[{i}]")).ToArray();
            if (kinds.Length != 2 || kinds[0] != "Split" || kinds[1] != "ByteLevel")
                throw Unsupported($"pre_tokenizer Sequence[{string.Join(", ", kinds)}] is not supported (only Sequence[Split, ByteLevel])");
            CheckByteLevel(steps[1], "pre_tokenizer.pretokenizers[1]");
            return ReadSplit(steps[0], "pre_tokenizer.pretokenizers[0]");
        }

        private string ReadSplit(JsonElement split, string where)
        {
            if (!split.TryGetProperty("pattern", out var pattern) || pattern.ValueKind != JsonValueKind.Object)
                throw Bad($"{where}: 'pattern' is missing or not an object");
            if (!pattern.TryGetProperty("Regex", out var regex) || regex.ValueKind != JsonValueKind.String)
                throw Unsupported($"{where}: only a Regex pattern is supported (got {pattern.GetRawText()})");
            string behavior = OptionalString(split, "behavior", where) ?? throw Bad($"{where}: 'behavior' is missing");
            if (behavior != "Isolated")
                throw Unsupported($"{where}: Split behavior '{behavior}' is not supported (only Isolated)");
            if (OptionalBool(split, "invert", where) == true)
                throw Unsupported($"{where}: Split with invert = true is not supported");
            return regex.GetString()!;
        }

        private void CheckByteLevel(JsonElement step, string where)
        {
            if (OptionalBool(step, "add_prefix_space", where) == true)
                throw Unsupported($"{where}: ByteLevel add_prefix_space = true is not supported");
            // ByteLevel's own regex defaults to on when the key is absent.
            if (OptionalBool(step, "use_regex", where) ?? true)
                throw Unsupported($"{where}: ByteLevel use_regex = true is not supported (split with a Split step instead)");
        }

        private void CheckDecoderAndPostProcessor(JsonElement root)
        {
            if (!root.TryGetProperty("decoder", out var decoder) || decoder.ValueKind == JsonValueKind.Null)
                throw Unsupported("no decoder: only the ByteLevel decoder is supported");
            string type = TypeOf(decoder, "decoder");
            if (type != "ByteLevel") throw Unsupported($"decoder '{type}' is not supported (only ByteLevel)");
            // ByteLevel post-processing only adjusts offsets, which this tokenizer does not report; a
            // template (BOS/EOS insertion) would change the ids, so it is refused rather than ignored.
            if (root.TryGetProperty("post_processor", out var post) && post.ValueKind != JsonValueKind.Null)
            {
                string postType = TypeOf(post, "post_processor");
                if (postType != "ByteLevel")
                    throw Unsupported($"post_processor '{postType}' is not supported (only ByteLevel or none)");
            }
        }

        private string TypeOf(JsonElement e, string where)
        {
            if (e.ValueKind != JsonValueKind.Object) throw Bad($"{where} is not an object");
            if (!e.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String)
                throw Bad($"{where}.type is missing");
            return t.GetString()!;
        }

        private string? OptionalString(JsonElement obj, string name, string where)
        {
            if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind != JsonValueKind.String) throw Bad($"{where}.{name} is not a string");
            return v.GetString();
        }

        private bool? OptionalBool(JsonElement obj, string name, string where)
        {
            if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind is not (JsonValueKind.True or JsonValueKind.False)) throw Bad($"{where}.{name} is not true or false");
            return v.GetBoolean();
        }
    }
}
