using System.Text.Json;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;

namespace Parrot.Parrot.Data;

/// <summary>One tokenised LLaVA sample.</summary>
/// <param name="Id">The sample's id (its position in the file when it has none).</param>
/// <param name="ImagePath">The image file resolved against the images directory, or null for text-only samples.</param>
/// <param name="Language">The language (from a "language" field, else the id's prefix such as <c>zh_…</c>), or null.</param>
/// <param name="Ids">ChatML ids with <see cref="ParrotSample.ImageToken"/> where the image goes.</param>
/// <param name="Labels">Targets per id (−100 outside assistant answers).</param>
public sealed record LlavaExample(string Id, string? ImagePath, string? Language, int[] Ids, int[] Labels);

/// <summary>A sample that was skipped, and why.</summary>
public sealed record LlavaProblem(string File, string SampleId, string Message)
{
    /// <inheritdoc/>
    public override string ToString() => $"{File}: sample '{SampleId}': {Message}";
}

/// <summary>Bad LLaVA data: the message names the file and the sample.</summary>
public sealed class LlavaDataException(string message) : IOException(message);

/// <summary>How <see cref="LlavaDataset.Load"/> reads and checks the data.</summary>
public sealed record LlavaOptions
{
    /// <summary>Longest allowed sequence after the image placeholder becomes its visual tokens (the paper's 2048).</summary>
    public int MaxLength { get; init; } = 2048;
    /// <summary>Visual tokens one image adds (1+N with CLS kept: 577 for CLIP-L/14 at 336).</summary>
    public int ImageTokens { get; init; } = 577;
    /// <summary>Report and drop bad samples instead of stopping at the first.</summary>
    public bool SkipBad { get; init; }
    /// <summary>
    /// The model's context (its max_position_embeddings), or null if unknown: a longer sample would be trained at positions
    /// the model was never given, so it is refused (as <see cref="MaxLength"/> refuses) whatever the maximum length says.
    /// </summary>
    public int? Context { get; init; }
    /// <summary>
    /// Whether an image's vision features are cached under the image's current key (its path, size and modification
    /// time: <see cref="LlavaImageFeatures.IsCached"/>), or null: none are. Such an image is not checked
    /// (<see cref="ImageLoader.Check"/>): its pixels were decoded when its features were computed, and a run reads the
    /// features instead of the file. Called from several threads at once while loading.
    /// </summary>
    public Func<string, bool>? HasCachedFeatures { get; init; }
    /// <summary>
    /// Images checked at once (<see cref="ImageLoader.Check"/>), or null: one per processor. Ranks of a data-parallel job
    /// that share a machine each load the data, so each gives its share (<c>LaunchInfo.ProcessorShare</c>) rather than
    /// every rank taking all the processors. At least 1.
    /// </summary>
    public int? ImageCheckThreads { get; init; }
}

/// <summary>
/// A LLaVA-format data set: a JSON array (or JSON lines, one object per line, for <c>.jsonl</c> files) of
/// <c>{"id", "image"?, "language"?, "conversations": [{"from": "human"|"gpt"|"system", "value"}]}</c>,
/// tokenised with ChatML. Every sample is checked when loading: malformed JSON (with its line and byte),
/// missing or empty conversations, unknown roles, a conversation without an answer to learn, a missing
/// image file or one that is not an intact image (<see cref="ImageLoader.Check"/>: format, truncation,
/// header, pixel count, without decoding; once per distinct file, several files at once, skipped for files whose
/// features are cached: <see cref="LlavaOptions.HasCachedFeatures"/>), and a sequence longer than the maximum
/// once the image's visual tokens are counted. Problems are reported in file order whatever order the checks end in.
/// </summary>
public sealed class LlavaDataset
{
    /// <summary>Language codes recognised as id prefixes (MMMB's; <c>cn</c> is its name for Chinese).</summary>
    public static IReadOnlySet<string> KnownLanguages { get; } = new HashSet<string>(StringComparer.Ordinal) { "en", "zh", "cn", "pt", "ar", "tr", "ru" };

    /// <summary>The good samples in file order.</summary>
    public IReadOnlyList<LlavaExample> Examples { get; }
    /// <summary>The samples skipped (only with <see cref="LlavaOptions.SkipBad"/>).</summary>
    public IReadOnlyList<LlavaProblem> Skipped { get; }
    /// <summary>The data file.</summary>
    public string File { get; }

    /// <summary>Distinct image files checked while loading (<see cref="ImageLoader.Check"/>).</summary>
    public int ImagesChecked { get; private init; }
    /// <summary>Distinct image files not checked because their features are cached (<see cref="LlavaOptions.HasCachedFeatures"/>).</summary>
    public int ImagesCached { get; private init; }

    private readonly List<string?> _imageKeys;
    private readonly Lazy<string> _fingerprint;

    private LlavaDataset(string file, List<LlavaExample> examples, List<string?> imageKeys, List<LlavaProblem> skipped)
    {
        File = file; Examples = examples; Skipped = skipped;
        _imageKeys = imageKeys;
        _fingerprint = new Lazy<string>(ComputeFingerprint);
    }

    /// <summary>
    /// "sha256:" and the hex SHA-256 of what a run trains on, in order: every kept sample's id, image path (relative to the
    /// images folder; an absolute path in the data as it stands), language, ids and labels. A training checkpoint records it (trainer_state.json's data_fingerprint), so
    /// that a resumed run on another data set of the same size — another order, other conversations or images, another
    /// --skip-bad outcome — is refused instead of going on silently with other samples. Hashed from the samples already in
    /// memory, not from the file (no second read of a large LLaVA json; a reformatted but identical file keeps it) and not
    /// from the images (never read: their paths stand for them; the feature cache is keyed by file); relative paths keep it
    /// when the images folder moves, and absolute ones do not depend on it (hashed relative to it, they changed with the
    /// --images given, though those images are the same files). Computed once, when first asked.
    /// </summary>
    public string Fingerprint => _fingerprint.Value;

    private string ComputeFingerprint()
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        var number = new byte[4];
        void Int(int v) { System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(number, v); sha.AppendData(number); }
        // Every field is length-prefixed (null: −1), so no two different sample lists give the same bytes.
        void Text(string? t)
        {
            if (t is null) { Int(-1); return; }
            var bytes = System.Text.Encoding.UTF8.GetBytes(t);
            Int(bytes.Length);
            sha.AppendData(bytes);
        }
        void Ints(int[] values)
        {
            Int(values.Length);
            var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan());
            if (BitConverter.IsLittleEndian) sha.AppendData(bytes);
            else foreach (int v in values) Int(v);
        }
        Int(Examples.Count);
        for (int i = 0; i < Examples.Count; i++)
        {
            var e = Examples[i];
            Text(e.Id);
            Text(_imageKeys[i]);
            Text(e.Language);
            Ints(e.Ids);
            Ints(e.Labels);
        }
        return "sha256:" + Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>
    /// One record as the first pass leaves it: the problem found before its image would be checked (final), its image
    /// (null: none, or a problem before it), and what the rest of it gave, an example or a problem, which counts only
    /// if the image passes its check.
    /// </summary>
    private sealed record Pending(string Id, string LineHint, string? HeadProblem, string? Image, string? ImageKey, LlavaExample? Example, string? BodyProblem);

    /// <summary>Reads <paramref name="path"/>, resolving image paths against <paramref name="imagesDir"/> (the JSON's folder when null).</summary>
    /// <exception cref="LlavaDataException">Bad data (the first problem, or malformed JSON even when skipping).</exception>
    public static LlavaDataset Load(string path, string? imagesDir, ChatMl chat, LlavaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(chat);
        options ??= new LlavaOptions();
        if (options.MaxLength < 2) throw new ArgumentOutOfRangeException(nameof(options), options.MaxLength, "LlavaDataset: the maximum length must be at least 2");
        if (options.Context < 2) throw new ArgumentOutOfRangeException(nameof(options), options.Context, "LlavaDataset: the model's context must be at least 2");
        if (options.ImageCheckThreads < 1) throw new ArgumentOutOfRangeException(nameof(options), options.ImageCheckThreads, "LlavaDataset: the images checked at once must be at least 1");
        int threads = options.ImageCheckThreads ?? Environment.ProcessorCount;
        if (!System.IO.File.Exists(path)) throw new LlavaDataException($"{path}: data file not found");
        imagesDir = Path.GetFullPath(imagesDir ?? Path.GetDirectoryName(Path.GetFullPath(path))!);

        // First pass, serial: every record parsed and tokenised, its image found but not yet checked. Without skipping,
        // reading stops at the first record that fails whatever its image gives (the load throws at it or before).
        var pending = new List<Pending>();
        var imageIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        var images = new List<string>();
        System.Runtime.ExceptionServices.ExceptionDispatchInfo? readFailure = null;
        int index = 0;
        // The images, each distinct file once, several at a time; results by index, so the order they finish in changes
        // nothing. Checked here, not when the image's batch comes: an empty, truncated or non-image file used to stop the
        // run hours in, even with --skip-bad, and cost every step since the last checkpoint.
        var imageProblems = new List<string?>();
        int checkedCount = 0, cachedCount = 0;
        bool CheckNewImages()
        {
            if (imageProblems.Count == images.Count) return false;
            var (problems, c, k) = CheckImages(images.GetRange(imageProblems.Count, images.Count - imageProblems.Count), options.HasCachedFeatures, threads);
            imageProblems.AddRange(problems);
            checkedCount += c; cachedCount += k;
            return problems.Any(x => x is not null);
        }
        using (var records = ReadRecords(path).GetEnumerator())
        {
            while (true)
            {
                try { if (!records.MoveNext()) break; }
                catch (Exception e)
                {
                    // Malformed JSON (or an unreadable line) ends the load even when skipping, as before; a bad sample
                    // ahead of it, whose image is checked below, is still what a load that does not skip reports.
                    readFailure = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
                    break;
                }
                var (element, lineHint) = records.Current;
                string id = SampleId(element, index++);
                var record = First(element, id, lineHint, imagesDir, chat, options);
                pending.Add(record);
                if (record.Image is not null && imageIndex.TryAdd(record.Image, images.Count)) images.Add(record.Image);
                if (!options.SkipBad && (record.HeadProblem ?? record.BodyProblem) is not null) break;
                // Without skipping, the images are checked a block at a time as they come, and the first bad one ends
                // the reading: a bad image near the start is reported at once, as the serial check did, not after the
                // whole file is tokenised and every image checked (minutes for LLaVA's 665k samples).
                if (!options.SkipBad && images.Count - imageProblems.Count >= ImageCheckBlock && CheckNewImages()) break;
            }
        }
        CheckNewImages();

        var examples = new List<LlavaExample>();
        var imageKeys = new List<string?>();
        var skipped = new List<LlavaProblem>();
        foreach (var r in pending)
        {
            string? problem = r.HeadProblem ?? (r.Image is null ? null : imageProblems[imageIndex[r.Image]]) ?? r.BodyProblem;
            if (problem is null)
            {
                examples.Add(r.Example!);
                imageKeys.Add(r.ImageKey);
                continue;
            }
            var bad = new LlavaProblem(path, r.Id, problem + r.LineHint);
            if (!options.SkipBad) throw new LlavaDataException(bad.ToString());
            skipped.Add(bad);
        }
        readFailure?.Throw();
        if (examples.Count == 0) throw new LlavaDataException($"{path}: no usable samples" + (skipped.Count > 0 ? $" ({skipped.Count} skipped as bad)" : ""));
        return new LlavaDataset(path, examples, imageKeys, skipped) { ImagesChecked = checkedCount, ImagesCached = cachedCount };
    }

    /// <summary>Images checked at once by a load that does not skip bad samples (it stops after the block with the first bad one).</summary>
    internal const int ImageCheckBlock = 1024;

    /// <summary>
    /// <see cref="ImageLoader.Check"/> of each of <paramref name="images"/> whose features are not cached, at most
    /// <paramref name="threads"/> at a time: the problem of image i (null: none) at i. An exception other than the check's own
    /// (running out of memory) is rethrown, the one of the first such image.
    /// </summary>
    private static (string?[] Problems, int Checked, int Cached) CheckImages(List<string> images, Func<string, bool>? cached, int threads)
    {
        var problems = new string?[images.Count];
        var skippedAsCached = new bool[images.Count];
        var failures = new Exception?[images.Count];
        Parallel.For(0, images.Count, new ParallelOptions { MaxDegreeOfParallelism = threads }, i =>
        {
            try
            {
                if (cached?.Invoke(images[i]) == true) { skippedAsCached[i] = true; return; }
                ImageLoader.Check(images[i]);
            }
            catch (ImageLoadException x) { problems[i] = $"cannot read the image: {x.Message}"; }
            catch (Exception x) { failures[i] = x; }
        });
        if (failures.FirstOrDefault(f => f is not null) is { } failure) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        int cachedCount = skippedAsCached.Count(c => c);
        return (problems, images.Count - cachedCount, cachedCount);
    }

    /// <summary>The first pass over one record (<see cref="Pending"/>).</summary>
    private static Pending First(JsonElement element, string id, string lineHint, string imagesDir, ChatMl chat, LlavaOptions options)
    {
        string? image, imageKey;
        JsonElement conv;
        try { (conv, image, imageKey) = Head(element, imagesDir); }
        catch (LlavaDataException e) { return new Pending(id, lineHint, e.Message, null, null, null, null); }
        try { return new Pending(id, lineHint, null, image, imageKey, Body(element, conv, image, id, chat, options), null); }
        catch (LlavaDataException e) { return new Pending(id, lineHint, null, image, imageKey, null, e.Message); }
    }

    /// <summary>The language of a sample: its "language" field, else an id prefix before '_', '-' or '/' that is a known code.</summary>
    public static string? DetectLanguage(string id, string? languageField)
    {
        if (!string.IsNullOrWhiteSpace(languageField)) return languageField.Trim().ToLowerInvariant();
        int cut = id.IndexOfAny(['_', '-', '/']);
        if (cut <= 0) return null;
        var prefix = id[..cut].ToLowerInvariant();
        return KnownLanguages.Contains(prefix) ? prefix : null;
    }

    private static IEnumerable<(JsonElement Element, string LineHint)> ReadRecords(string path)
    {
        if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
        {
            using var lines = Utf8Lines.Read(path).GetEnumerator();
            while (true)
            {
                // A line that is not UTF-8 is bad data like malformed JSON: the reader's own exception, as the JSON array's
                // reading gives for the same bytes (it was Utf8Lines' InvalidDataException, which a caller of this reader
                // catching LlavaDataException, or IOException, missed).
                try { if (!lines.MoveNext()) break; }
                catch (InvalidDataException ex) { throw new LlavaDataException(ex.Message); }
                var (lineNo, line) = lines.Current;
                if (line.Trim().Length == 0) continue;
                JsonElement e;
                try { e = JsonDocument.Parse(line).RootElement.Clone(); }
                catch (JsonException ex) { throw new LlavaDataException($"{path}: malformed JSON on line {lineNo}, byte {(ex.BytePositionInLine ?? 0) + 1}: {ex.Message}"); }
                yield return (e, $" (line {lineNo})");
            }
            yield break;
        }
        JsonElement root;
        try
        {
            var bytes = System.IO.File.ReadAllBytes(path).AsMemory();
            if (bytes.Span.StartsWith("\uFEFF"u8)) bytes = bytes[3..]; // a byte order mark is not JSON, but no fault in the data
            using var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { AllowTrailingCommas = false });
            root = doc.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw new LlavaDataException($"{path}: malformed JSON at line {(ex.LineNumber ?? 0) + 1}, byte {(ex.BytePositionInLine ?? 0) + 1}: {ex.Message}");
        }
        if (root.ValueKind != JsonValueKind.Array) throw new LlavaDataException($"{path}: expected a JSON array of samples, found {root.ValueKind}");
        foreach (var e in root.EnumerateArray()) yield return (e, "");
    }

    // An id that is not valid text (a lone surrogate escape) names the sample by its position; Head reports it.
    private static string SampleId(JsonElement e, int index) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("id", out var id) && id.ValueKind is JsonValueKind.String or JsonValueKind.Number
            && (id.ValueKind == JsonValueKind.Number || TryText(id) is not null) ? id.ToString() : $"#{index}";

    /// <summary>
    /// A JSON string's text, or a data problem naming <paramref name="what"/>: an escaped lone surrogate ("\ud800") parses
    /// but cannot be read as text, and reading it threw InvalidOperationException, which named neither the file nor the
    /// sample and stopped even a load that skips bad samples.
    /// </summary>
    private static string Text(JsonElement e, string what) =>
        TryText(e) ?? throw new LlavaDataException($"{what} is not valid text (an unpaired UTF-16 surrogate escape)");

    private static string? TryText(JsonElement e)
    {
        try { return e.GetString(); }
        catch (InvalidOperationException) { return null; }
    }

    /// <summary>
    /// What is checked before the image (its problems come first): the object, its conversation and its image file's
    /// existence. ImageKey: the image as Fingerprint hashes it, its path relative to the images folder, or its full path
    /// when the data gives an absolute one; forward slashes, so that the same data on another system gives the same text.
    /// Null without an image.
    /// </summary>
    private static (JsonElement Conversations, string? Image, string? ImageKey) Head(JsonElement e, string imagesDir)
    {
        string? imageKey = null;
        if (e.ValueKind != JsonValueKind.Object) throw new LlavaDataException($"expected an object, found {e.ValueKind}");
        if (!e.TryGetProperty("conversations", out var conv) || conv.ValueKind == JsonValueKind.Null)
            throw new LlavaDataException("has no \"conversations\"");
        if (conv.ValueKind != JsonValueKind.Array) throw new LlavaDataException($"\"conversations\" must be an array, found {conv.ValueKind}");
        if (conv.GetArrayLength() == 0) throw new LlavaDataException("has an empty conversation");
        if (e.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String) Text(id, "\"id\"");

        string? image = null;
        if (e.TryGetProperty("image", out var img) && img.ValueKind != JsonValueKind.Null)
        {
            if (img.ValueKind != JsonValueKind.String || Text(img, "\"image\"").Length == 0) throw new LlavaDataException("\"image\" must be a non-empty relative path");
            var given = img.GetString()!;
            // A NUL in the path made GetFullPath throw ArgumentException, as unnamed and unskippable as the text above.
            try { image = Path.GetFullPath(Path.Combine(imagesDir, given)); }
            catch (ArgumentException x) { throw new LlavaDataException($"\"image\" is not a usable path: {x.Message}"); }
            imageKey = (Path.IsPathRooted(given) ? image : Path.GetRelativePath(imagesDir, image)).Replace('\\', '/');
            if (!System.IO.File.Exists(image)) throw new LlavaDataException($"image file not found: {image}");
        }
        return (conv, image, imageKey);
    }

    /// <summary>The rest, after the image's check (whose problem comes before these): the turns, their tokens and the length.</summary>
    private static LlavaExample Body(JsonElement e, JsonElement conv, string? image, string id, ChatMl chat, LlavaOptions options)
    {
        string? languageField = e.TryGetProperty("language", out var lang) && lang.ValueKind == JsonValueKind.String ? Text(lang, "\"language\"") : null;

        var turns = new List<ChatTurn>();
        bool imagePlaced = false;
        int t = 0;
        foreach (var turn in conv.EnumerateArray())
        {
            t++;
            if (turn.ValueKind != JsonValueKind.Object) throw new LlavaDataException($"turn {t} is not an object");
            if (!turn.TryGetProperty("from", out var from) || from.ValueKind != JsonValueKind.String) throw new LlavaDataException($"turn {t} has no \"from\"");
            if (!turn.TryGetProperty("value", out var value) || value.ValueKind != JsonValueKind.String) throw new LlavaDataException($"turn {t} has no string \"value\"");
            var role = Text(from, $"turn {t}'s \"from\"") switch
            {
                "human" or "user" => ChatRole.User,
                "gpt" or "assistant" => ChatRole.Assistant,
                "system" => ChatRole.System,
                var other => throw new LlavaDataException($"turn {t} has the unknown role \"{other}\" (expected human, gpt or system)"),
            };
            var text = Text(value, $"turn {t}'s \"value\"");
            // The image goes to the turn that names it, else to the first user turn (LLaVA's data carries it there).
            bool carries = image is not null && !imagePlaced && role == ChatRole.User;
            if (carries) imagePlaced = true;
            else if (text.Contains(ChatMl.ImagePlaceholder, StringComparison.Ordinal))
            {
                if (image is null) throw new LlavaDataException($"turn {t} has an {ChatMl.ImagePlaceholder} placeholder but the sample has no image");
                text = text.Replace(ChatMl.ImagePlaceholder, "", StringComparison.Ordinal);
            }
            turns.Add(new ChatTurn(role, text, carries));
        }
        if (image is not null && !imagePlaced) throw new LlavaDataException("has an image but no human turn to carry it");
        if (!turns.Any(x => x.Role == ChatRole.Assistant)) throw new LlavaDataException("has no gpt turn: nothing to learn");

        var enc = chat.FormatForTraining(turns);
        int length = enc.Ids.Length + (image is not null ? options.ImageTokens - 1 : 0);
        string visual = image is not null ? $" with its {options.ImageTokens} visual tokens" : "";
        if (length > options.MaxLength)
            throw new LlavaDataException($"is {length} tokens long{visual}, over the maximum length {options.MaxLength}");
        if (length > options.Context)
            throw new LlavaDataException($"is {length} tokens long{visual}, over the model's context of {options.Context} positions (max_position_embeddings in its config.json)");
        return new LlavaExample(id, image, DetectLanguage(id, languageField), enc.Ids, enc.Labels);
    }
}
