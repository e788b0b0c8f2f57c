using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Text.Json;
using System.Threading.Channels;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot;

/// <summary>How <see cref="ParrotModel.Load"/> opens a model directory.</summary>
public sealed record ParrotModelOptions
{
    /// <summary>The compute dtype; float32 by default (a bf16 checkpoint is widened on load).</summary>
    public DType DType { get; init; } = DType.F32;

    /// <summary>
    /// Where the model computes: the CPU by default, or a GPU (<c>Device.Parse("cuda:0")</c>). The weights are read on the
    /// host and moved there once; prompts, masks, RoPE tables, KV caches and image features are then made on that device,
    /// and only the logits of the chosen positions come back to the host for sampling.
    /// </summary>
    public Device Device { get; init; } = Device.Cpu;

    /// <summary>
    /// The CLIP vision tower folder of a Parrot model, overriding config.json's mm_vision_tower: absolute or relative
    /// to the current directory, like any path a caller gives (the CLI's --vision feeds it); a folder that does not
    /// exist is an error naming it as resolved. Null: mm_vision_tower, absolute or relative to the model directory
    /// (<see cref="ParrotConfig.VisionTowerFolder"/>); when that folder does not exist the model answers
    /// text-only questions and rejects images.
    /// </summary>
    public string? VisionTower { get; init; }

    /// <summary>
    /// Supplies the image encoder of a Parrot model, given the model directory and the loaded model, instead
    /// of the directory's own tower (which is then not loaded); a factory returning null leaves the model text-only.
    /// </summary>
    public Func<string, ParrotForCausalLM, IImageEncoder?>? ImageEncoder { get; init; }

    /// <summary>
    /// Hears, for a Parrot model whose MoE is on, the router's weights (a softmax over the experts) of every
    /// prompt with an image as the prompt is run, in the order the prompts of a call were given — what the
    /// paper's Figure 7c averages per language. Null: not observed.
    /// </summary>
    public Action<double[]>? OnRouting { get; init; }
}

/// <summary>One question of a batch: text in any language and an optional image.</summary>
/// <param name="Text">The question.</param>
/// <param name="Image">The image it is about, or null.</param>
public sealed record ParrotQuestion(string Text, RgbImage? Image = null);

/// <summary>
/// A Parrot (or plain Qwen2) chat model loaded from a directory, ready to answer questions about images in
/// any language. Load once, ask many times, dispose:
/// <code>
/// using var model = ParrotModel.Load("models/parrot");
/// string answer = model.Ask("What colour is the car?", imagePath: "car.jpg");
/// foreach (var piece in model.AskStreaming("¿De qué color es el coche?", "car.jpg")) Console.Write(piece);
/// </code>
/// Questions are wrapped in Parrot's ChatML template (the default system prompt, the image first in the
/// user turn); answers are the generated text with special tokens skipped, not trimmed. By default decoding
/// is greedy with at most 512 new tokens and stops at <c>&lt;|im_end|&gt;</c>, <c>&lt;|endoftext|&gt;</c> and
/// the model's eos ids (config.json and generation_config.json).
/// <para>Thread safety: every method may be called from any thread; calls that generate run one at a time
/// (later callers wait), a stream holding its turn from its first item until it is finished or disposed —
/// so code inside a stream's loop must not call the model again on the same thread (it would wait for itself).
/// <see cref="Dispose"/> waits for nothing: it frees the model at once when idle, else when the running
/// call ends, and later calls throw <see cref="ObjectDisposedException"/>.</para>
/// </summary>
public sealed partial class ParrotModel : IDisposable
{
    private readonly IDisposable _model;
    private readonly IImageEncoder? _encoder;
    private readonly Generator _generator;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile bool _disposed;
    private bool _freed;

    private ParrotModel(string directory, IDisposable model, IAutoregressiveModel lm, BpeTokenizer tokenizer, HashSet<int> eos, IImageEncoder? encoder, bool multimodal, DType dtype)
    {
        Directory = directory;
        DType = dtype;
        _model = model;
        _encoder = encoder;
        Tokenizer = tokenizer;
        Chat = new ChatMl(tokenizer);
        IsMultimodal = multimodal;
        _generator = new Generator(lm, tokenizer, eos);
    }

    /// <summary>The directory the model was loaded from.</summary>
    public string Directory { get; }

    /// <summary>The dtype the language model's weights are kept in and it computes with (<see cref="ParrotModelOptions.DType"/>), read from its embedding.</summary>
    public DType DType { get; }

    /// <summary>The model's tokenizer.</summary>
    public BpeTokenizer Tokenizer { get; }

    /// <summary>The ChatML formatter that builds prompts.</summary>
    public ChatMl Chat { get; }

    /// <summary>True for a Parrot model, false for a text-only Qwen2 model.</summary>
    public bool IsMultimodal { get; }

    /// <summary>Whether questions may carry an image (a Parrot model with an image encoder).</summary>
    public bool SupportsImages => _encoder is not null;

    /// <summary>The ids that end an answer.</summary>
    public IReadOnlySet<int> EndOfSequenceIds => _generator.EndOfSequenceIds;

    /// <summary>
    /// Loads the model in <paramref name="directory"/>: config.json (model_type parrot_qwen2 → Parrot,
    /// qwen2 → text-only Qwen2), safetensors weights, tokenizer.json, optional generation_config.json, and for
    /// Parrot the image encoder (<see cref="ParrotModelOptions.ImageEncoder"/>). Errors name the file and the problem.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">No such directory.</exception>
    /// <exception cref="InvalidDataException">A missing or malformed file.</exception>
    public static ParrotModel Load(string directory, ParrotModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        options ??= new ParrotModelOptions();
        // Both used to fail deep inside with messages that named neither: an integer dtype blamed the checkpoint's
        // weights, an empty tower folder gave Path's "The value cannot be an empty string (Parameter 'path')".
        if (!options.DType.IsFloat())
            throw new ArgumentException($"ParrotModel.Load: ParrotModelOptions.DType must be floating-point (F32, BF16, F16 or F64), got {options.DType}", nameof(options));
        if (options.VisionTower is { Length: 0 })
            throw new ArgumentException("ParrotModel.Load: ParrotModelOptions.VisionTower is empty; give the CLIP tower's folder, or null for config.json's mm_vision_tower", nameof(options));
        if (!System.IO.Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found");
        var configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath)) throw new InvalidDataException($"{directory}: no config.json");
        var tokenizerPath = Path.Combine(directory, "tokenizer.json");
        if (!File.Exists(tokenizerPath)) throw new InvalidDataException($"{directory}: no tokenizer.json next to the model");
        var tokenizer = BpeTokenizer.Load(tokenizerPath);
        string modelType = ModelType(configPath);
        var eos = Generator.DefaultEndOfSequenceIds(tokenizer);
        foreach (var id in GenerationConfigEos(directory)) eos.Add(id);

        if (modelType == "parrot_qwen2")
        {
            // The released layout (tower in the checkpoint or in the mm_vision_tower folder) is ParrotModelDirectory's;
            // without a tower folder the model still answers text.
            bool vision = options.ImageEncoder is null && (options.VisionTower is not null || TowerFolderExists(directory, configPath));
            var loaded = ParrotModelDirectory.Load(directory, options.DType, options.VisionTower, loadVision: vision);
            IImageEncoder? encoder = null;
            try
            {
                loaded.To(options.Device);
                var model = loaded.Model;
                foreach (var id in model.Config.Text.EosTokenIds) eos.Add(id);
                CheckVocabulary(directory, tokenizer, model.Config.Text.VocabSize, eos);
                encoder = options.ImageEncoder?.Invoke(directory, model) ?? (loaded.VisionTower is null ? null : new DirectoryImageEncoder(loaded));
                return new ParrotModel(directory, loaded, Generator.Wrap(model, options.OnRouting), tokenizer, eos, encoder, multimodal: true,
                    model.Parameters().First().DType);
            }
            catch
            {
                encoder?.Dispose();
                loaded.Dispose();
                throw;
            }
        }
        var lm = Qwen2Loader.Load(directory, options.DType);
        try
        {
            lm.To(options.Device);
            foreach (var id in lm.Config.EosTokenIds) eos.Add(id);
            CheckVocabulary(directory, tokenizer, lm.Config.VocabSize, eos);
            return new ParrotModel(directory, lm, Generator.Wrap(lm), tokenizer, eos, null, multimodal: false, lm.Parameters().First().DType);
        }
        catch
        {
            lm.Dispose();
            throw;
        }
    }

    /// <summary>Answers <paramref name="question"/>, about the image in the file <paramref name="imagePath"/> when given.</summary>
    public string Ask(string question, string? imagePath = null, GenerationOptions? options = null) =>
        Ask(question, LoadImage(imagePath), options);

    /// <summary>Answers <paramref name="question"/> about <paramref name="image"/> (null: no image).</summary>
    public string Ask(string question, RgbImage? image, GenerationOptions? options = null) =>
        Generate(Conversation(question, image), image, options).Text;

    /// <summary>Answers several questions as one batch (faster than one by one); answer i is to question i.</summary>
    public IReadOnlyList<string> Ask(IReadOnlyList<ParrotQuestion> questions, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(questions);
        // A null question used to surface as a NullReferenceException from inside the prompt building.
        for (int i = 0; i < questions.Count; i++)
            if (questions[i] is null) throw new ArgumentException($"Ask: question {i} of {questions.Count} is null", nameof(questions));
        return Generate(questions.Select(q => (IReadOnlyList<ChatTurn>)Conversation(q.Text, q.Image)).ToList(), questions.Select(q => q.Image).ToList(), options)
            .Select(r => r.Text).ToList();
    }

    /// <summary>The answer to <paramref name="question"/> as it is generated: pieces of whole characters that concatenate to <see cref="Ask(string, string?, GenerationOptions?)"/>'s answer.</summary>
    public IEnumerable<string> AskStreaming(string question, string? imagePath = null, GenerationOptions? options = null)
    {
        var image = LoadImage(imagePath);
        return Stream(Conversation(question, image), image, options, null).Where(e => e.Text.Length > 0).Select(e => e.Text);
    }

    /// <summary>As <see cref="AskStreaming(string, string?, GenerationOptions?)"/> for <paramref name="image"/>.</summary>
    public IEnumerable<string> AskStreaming(string question, RgbImage? image, GenerationOptions? options = null) =>
        Stream(Conversation(question, image), image, options, null).Where(e => e.Text.Length > 0).Select(e => e.Text);

    /// <summary>
    /// The answer as it is generated, asynchronously: generation runs on a thread-pool thread; cancelling
    /// <paramref name="cancellationToken"/> stops it after the current token.
    /// </summary>
    public IAsyncEnumerable<string> AskStreamingAsync(string question, string? imagePath = null, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var image = LoadImage(imagePath);
        var conversation = Conversation(question, image);
        return ToAsync(token => Stream(conversation, image, options, null).TakeWhile(_ => !token.IsCancellationRequested).Where(e => e.Text.Length > 0).Select(e => e.Text), cancellationToken);
    }

    /// <summary>Starts a multi-turn conversation (<paramref name="systemPrompt"/> null: Parrot's default system prompt).</summary>
    public ParrotChat StartChat(string? systemPrompt = null)
    {
        ThrowIfDisposed();
        return new ParrotChat(this, systemPrompt);
    }

    /// <summary>
    /// Continues <paramref name="conversation"/> (ChatML; at most one turn may carry the image) with an
    /// assistant turn; <paramref name="image"/> is the image of the turn that has one.
    /// </summary>
    public GenerationResult Generate(IReadOnlyList<ChatTurn> conversation, RgbImage? image, GenerationOptions? options = null) =>
        Generate([conversation], [image], options)[0];

    /// <summary>Continues several conversations as one batch; result i continues conversation i, with image i (or none).</summary>
    public IReadOnlyList<GenerationResult> Generate(IReadOnlyList<IReadOnlyList<ChatTurn>> conversations, IReadOnlyList<RgbImage?> images, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(conversations);
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count != conversations.Count) throw new ArgumentException($"Generate: {conversations.Count} conversations but {images.Count} images");
        Enter();
        var features = new List<Tensor>();
        try
        {
            return _generator.Generate(Prompts(conversations, images, options, features), options);
        }
        finally
        {
            foreach (var f in features) f.Dispose();
            Exit();
        }
    }

    /// <summary>Continues <paramref name="conversation"/>, step by step (see <see cref="Generator.Stream"/>); <paramref name="onDone"/> gets the result.</summary>
    internal IEnumerable<GenerationEvent> Stream(IReadOnlyList<ChatTurn> conversation, RgbImage? image, GenerationOptions? options, Action<GenerationResult>? onDone)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        ThrowIfDisposed();
        return StreamCore(conversation, image, options, onDone);
    }

    private IEnumerable<GenerationEvent> StreamCore(IReadOnlyList<ChatTurn> conversation, RgbImage? image, GenerationOptions? options, Action<GenerationResult>? onDone)
    {
        Enter();
        var features = new List<Tensor>();
        try
        {
            var prompt = Prompts([conversation], [image], options, features)[0];
            var tokens = new List<int>();
            var text = new System.Text.StringBuilder();
            foreach (var e in _generator.Stream([prompt], options))
            {
                if (e.Token is int t) tokens.Add(t);
                text.Append(e.Text);
                if (e.Finished is FinishReason reason) onDone?.Invoke(new GenerationResult(tokens.ToArray(), text.ToString(), reason));
                yield return e;
            }
        }
        finally
        {
            foreach (var f in features) f.Dispose();
            Exit();
        }
    }

    internal static IAsyncEnumerable<string> ToAsync(Func<CancellationToken, IEnumerable<string>> source, CancellationToken cancellationToken) =>
        ToAsyncCore(source, cancellationToken);

    private static async IAsyncEnumerable<string> ToAsyncCore(Func<CancellationToken, IEnumerable<string>> source, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        ExceptionDispatchInfo? failure = null;
        var producer = Task.Run(() =>
        {
            try
            {
                foreach (var piece in source(stop.Token)) channel.Writer.TryWrite(piece);
            }
            catch (Exception e) { failure = ExceptionDispatchInfo.Capture(e); }
            finally { channel.Writer.Complete(); }
        }, CancellationToken.None);
        try
        {
            while (await channel.Reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
                while (channel.Reader.TryRead(out var piece))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    yield return piece;
                }
            failure?.Throw();
            cancellationToken.ThrowIfCancellationRequested();
        }
        finally
        {
            stop.Cancel();
            await producer.ConfigureAwait(false);
        }
    }

    /// <summary>A one-question conversation.</summary>
    private static ChatTurn[] Conversation(string question, RgbImage? image)
    {
        ArgumentNullException.ThrowIfNull(question);
        return [new ChatTurn(ChatRole.User, question, HasImage: image is not null)];
    }

    /// <summary>
    /// The prompts of a call, checked whole before any image is encoded or any prompt runs: each conversation's ids and
    /// image, then (when <paramref name="options"/> ask for new tokens) each prompt's length with them against the context,
    /// counting an image as <see cref="VisualTokens"/> positions where the encoder says how many. Before, prompt i's image
    /// was encoded (and, in the generator, prompts before it prefilled) before prompt i was found not to fit. Errors of a
    /// batch name the prompt (its index); the generator checks the encoded prompts again (the actual feature rows).
    /// </summary>
    private GenerationPrompt[] Prompts(IReadOnlyList<IReadOnlyList<ChatTurn>> conversations, IReadOnlyList<RgbImage?> images, GenerationOptions? options, List<Tensor> owned)
    {
        var settings = options ?? new GenerationOptions();
        settings.Validate();
        int n = conversations.Count;
        var ids = new int[n][];
        for (int i = 0; i < n; i++) ids[i] = Named(i, n, () => PromptIds(conversations[i], images[i]));
        if (settings.MaxNewTokens > 0) // with none the generator runs nothing, so no length was ever refused
            for (int i = 0; i < n; i++)
            {
                if (KnownLength(ids[i], images[i]) is int t) Named(i, n, () => ContextWindow.Room(ContextLength, t, settings.MaxNewTokens));
            }
        var prompts = new GenerationPrompt[n];
        // With no new tokens the generator ends every prompt before it runs the model (Generator.Run: nothing is embedded),
        // so image features would go unused: the images, checked above, are not encoded. They used to be, the tower's whole
        // cost for an empty answer.
        for (int i = 0; i < n; i++) prompts[i] = settings.MaxNewTokens == 0 ? new GenerationPrompt(ids[i]) : Encoded(ids[i], images[i], owned);
        return prompts;
    }

    /// <summary>
    /// Runs a check of prompt <paramref name="i"/> of <paramref name="n"/>; in a batch its error says which prompt (the same
    /// exception type; the generator's context errors read "prompt i: …" too).
    /// </summary>
    private static T Named<T>(int i, int n, Func<T> check)
    {
        if (n == 1) return check();
        try { return check(); }
        catch (PromptTooLongException e) { throw new PromptTooLongException($"prompt {i}: {e.Message}"); }
        catch (ArgumentException e) when (e is not ArgumentNullException) { throw new ArgumentException($"prompt {i}: {e.Message}", e); }
        catch (InvalidOperationException e) { throw new InvalidOperationException($"prompt {i}: {e.Message}", e); }
    }

    /// <summary>
    /// Positions the prompt of checked <paramref name="ids"/> takes, when known before <paramref name="image"/> is encoded:
    /// T without an image, T − 1 + <see cref="VisualTokens"/> with one (the marker becomes the visual tokens); null when
    /// the encoder does not say its rows (the length is then known once the image is encoded).
    /// </summary>
    private int? KnownLength(int[] ids, RgbImage? image) => image is null ? ids.Length : VisualTokens is int v ? ids.Length - 1 + v : null;

    /// <summary>
    /// Positions an image takes in a prompt (its visual tokens), when the encoder says how many rows its features have
    /// (<see cref="IImageEncoder.FeatureRows"/>): all of them for cls_patch, the CLS row dropped for patch — as
    /// <c>ParrotForCausalLM.Assemble</c> splices them. Null for a model without an encoder or an encoder that does not say.
    /// </summary>
    internal int? VisualTokens => _model is ParrotModelDirectory d && _encoder?.FeatureRows is int rows
        ? (d.Model.Config.MmVisionSelectFeature == "patch" ? rows - 1 : rows) : null;

    /// <summary>The prompt ids of <paramref name="conversation"/>, checked against <paramref name="image"/> and the model (nothing is encoded).</summary>
    private int[] PromptIds(IReadOnlyList<ChatTurn> conversation, RgbImage? image)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        var ids = Chat.BuildPrompt(conversation);
        int markers = ids.Count(i => i == ChatMl.ImageTokenIndex);
        if (markers > 1) throw new ArgumentException("Parrot takes one image per conversation; this one has several <image> markers");
        if (markers == 1 && image is null) throw new ArgumentException("the conversation has an <image> marker but no image was given");
        if (image is null) return ids;
        if (!IsMultimodal) throw new ArgumentException($"{Directory}: a text-only Qwen2 model cannot look at images");
        if (_encoder is null) throw new InvalidOperationException($"{Directory}: this Parrot model has no vision tower (config.json's mm_vision_tower names no directory here), so it cannot take images");
        if (markers == 0) throw new ArgumentException("an image was given but no turn of the conversation carries it");
        return ids;
    }

    /// <summary>The prompt of checked <paramref name="ids"/>, <paramref name="image"/> encoded (its features added to <paramref name="owned"/>).</summary>
    private GenerationPrompt Encoded(int[] ids, RgbImage? image, List<Tensor> owned)
    {
        if (image is null) return new GenerationPrompt(ids);
        var features = TensorScope.Detach(_encoder!.Encode(image));
        owned.Add(features);
        return new GenerationPrompt(ids, features);
    }

    internal static RgbImage? LoadImage(string? path) => path is null ? null : ImageLoader.Load(path);

    private void Enter()
    {
        ThrowIfDisposed();
        _gate.Wait();
        if (_disposed)
        {
            Exit();
            throw new ObjectDisposedException(nameof(ParrotModel));
        }
    }

    private void Exit()
    {
        if (_disposed) Free();
        _gate.Release();
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private void Free()
    {
        if (_freed) return;
        _freed = true;
        _encoder?.Dispose();
        _model.Dispose();
    }

    /// <summary>Frees the weights (now when idle, else when the running call ends).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_gate.Wait(0))
        {
            Free();
            _gate.Release();
        }
    }

    private static string ModelType(string configPath)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(configPath));
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("model_type", out var t) && t.ValueKind == JsonValueKind.String
                ? JsonText.TryGetString(t) ?? throw new InvalidDataException($"{configPath}: 'model_type' {JsonText.NotText}")
                : throw new InvalidDataException($"{configPath}: no string 'model_type' (expected parrot_qwen2 or qwen2)");
        }
        catch (JsonException e) { throw new InvalidDataException($"{configPath}: not valid JSON: {e.Message}", e); }
    }

    /// <summary>eos_token_id of generation_config.json (an id or a list), when the file exists.</summary>
    private static IEnumerable<int> GenerationConfigEos(string directory)
    {
        var path = Path.Combine(directory, "generation_config.json");
        if (!File.Exists(path)) return [];
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("eos_token_id", out var e) || e.ValueKind == JsonValueKind.Null) return [];
            if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int one)) return [one];
            if (e.ValueKind == JsonValueKind.Array)
                return e.EnumerateArray().Select((x, i) => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out int v) ? v
                    : throw new InvalidDataException($"{path}: 'eos_token_id'[{i}] must be an integer")).ToList();
            throw new InvalidDataException($"{path}: 'eos_token_id' must be an integer or a list of integers");
        }
        catch (JsonException ex) { throw new InvalidDataException($"{path}: not valid JSON: {ex.Message}", ex); }
    }

    private static void CheckVocabulary(string directory, BpeTokenizer tokenizer, int vocab, IEnumerable<int> eos)
    {
        if (tokenizer.IdCount > vocab)
            throw new InvalidDataException($"{directory}: tokenizer.json has ids up to {tokenizer.IdCount - 1}, beyond the model's vocab_size {vocab}");
        foreach (var id in eos)
            if ((uint)id >= (uint)vocab) throw new InvalidDataException($"{directory}: end-of-sequence id {id} is outside the vocabulary [0, {vocab})");
    }

    /// <summary>Whether config.json names an mm_vision_tower folder that exists (relative to the model directory or absolute).</summary>
    private static bool TowerFolderExists(string directory, string configPath) =>
        ParrotConfig.Load(configPath).VisionTowerFolder(directory) is { } tower && System.IO.Directory.Exists(tower);

    /// <summary>The features of a loaded model directory's own tower.</summary>
    private sealed class DirectoryImageEncoder(ParrotModelDirectory directory) : IImageEncoder
    {
        public int? FeatureRows => directory.VisionTower?.Config.NumPositions;

        public Tensor Encode(RgbImage image)
        {
            using var scope = TensorScope.Begin();
            var features = directory.ImageFeatures(image); // [1, 1+N, C]
            return scope.Keep(features.Select(0, 0).Contiguous());
        }

        public void Dispose() { } // the tower goes with the model directory
    }
}
