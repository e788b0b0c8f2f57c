using Parrot.Parrot.Inference;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

namespace Parrot.Parrot.Evaluation;

/// <summary>
/// <see cref="IAnswerGenerator"/> over a model directory opened with <see cref="ParrotModel"/> (a Parrot model
/// with its CLIP tower, or a text-only Qwen2 model; float32, bf16 checkpoints widened on load), decoding through
/// the same <see cref="Generator"/> as the rest of the API. The question goes in as VLMEvalKit's Parrot wrapper
/// sends it: the user turn <c>&lt;image&gt;\n{prompt}</c> (just <c>{prompt}</c> without an image) in Parrot's
/// ChatML template with the default system turn, then <c>&lt;|im_start|&gt;assistant\n</c>; decoding is greedy,
/// at most <see cref="AnswerRequest.MaxNewTokens"/> tokens, until <c>&lt;|im_end|&gt;</c>,
/// <c>&lt;|endoftext|&gt;</c> or an eos id of config.json / generation_config.json; the text has special tokens
/// skipped and ASCII whitespace (Python's <c>string.whitespace</c>) stripped from both ends (PARROT-DETAILS.md §4).
/// The answer is the raw text: Parrot's model-side cleanup (<see cref="ParrotAnswerCleanup"/>) is applied at
/// scoring time so that predictions.tsv keeps what the model said. Not thread-safe beyond what
/// <see cref="ParrotModel"/> guarantees (calls run one at a time).
/// </summary>
public sealed class ParrotAnswerGenerator : IBatchAnswerGenerator, IContextAwareGenerator, IDisposable
{
    private readonly ParrotModel _model;
    private readonly List<double[]>? _routed;

    /// <summary>Wraps an open <paramref name="model"/> (disposed with this generator).</summary>
    public ParrotAnswerGenerator(ParrotModel model) : this(model, null) { }

    private ParrotAnswerGenerator(ParrotModel model, List<double[]>? routed)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _routed = routed;
    }

    /// <summary>
    /// Opens <paramref name="modelDirectory"/> with <see cref="ParrotModel.Load"/>; the vision tower comes from
    /// <paramref name="visionDirectory"/> when given (absolute or relative to the current directory), else from
    /// config.json's mm_vision_tower (absolute or relative to the model directory). Without a tower the model answers text-only questions only. With
    /// <paramref name="captureRouting"/> the MoE's routing weights of every question with an image are summed
    /// per question language into <see cref="Routing"/>.
    /// </summary>
    public static ParrotAnswerGenerator Load(string modelDirectory, string? visionDirectory = null, bool captureRouting = false) =>
        Load(modelDirectory, visionDirectory, captureRouting, Device.Cpu);

    /// <summary>As <see cref="Load(string, string?, bool)"/>, the model computing on <paramref name="device"/>.</summary>
    public static ParrotAnswerGenerator Load(string modelDirectory, string? visionDirectory, bool captureRouting, Device device) =>
        Load(modelDirectory, visionDirectory, captureRouting, device, DType.F32);

    /// <summary>As <see cref="Load(string, string?, bool)"/>, the model computing on <paramref name="device"/> in <paramref name="dtype"/>.</summary>
    public static ParrotAnswerGenerator Load(string modelDirectory, string? visionDirectory, bool captureRouting, Device device, DType dtype)
    {
        List<double[]>? routed = captureRouting ? [] : null;
        return new(ParrotModel.Load(modelDirectory, new ParrotModelOptions
        {
            VisionTower = visionDirectory, OnRouting = routed is null ? null : routed.Add, Device = device, DType = dtype,
        }), routed);
    }

    /// <summary>
    /// The MoE routing weights of the questions answered so far, per language (the paper's Figure 7c), when
    /// the generator was loaded with routing capture; null until a question with an image has been routed
    /// (always null for a model whose MoE is off).
    /// </summary>
    public RoutingDistribution? Routing { get; private set; }

    /// <summary>The loaded model.</summary>
    public ParrotModel Model => _model;

    /// <summary>Whether questions with images can be answered (a Parrot model with a vision tower).</summary>
    public bool HasVisionTower => _model.SupportsImages;

    /// <inheritdoc/>
    public string Answer(AnswerRequest request) => Answer([request])[0];

    /// <inheritdoc/>
    public IReadOnlyList<string> Answer(IReadOnlyList<AnswerRequest> requests) =>
        Generate(requests).Select(r => r.Text.Trim(ParrotAnswerCleanup.AsciiWhitespace.ToCharArray())).ToList();

    /// <summary>The generation results (tokens, untrimmed text) of a batch of requests.</summary>
    internal IReadOnlyList<GenerationResult> Generate(IReadOnlyList<AnswerRequest> requests)
    {
        ArgumentNullException.ThrowIfNull(requests);
        if (requests.Count == 0) return [];
        int maxNew = requests[0]?.MaxNewTokens ?? 0;
        var conversations = new List<IReadOnlyList<ChatTurn>>(requests.Count);
        var images = new List<RgbImage?>(requests.Count);
        foreach (var request in requests)
        {
            ArgumentNullException.ThrowIfNull(request);
            if (request.MaxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(requests), "max new tokens must be ≥ 0");
            if (request.MaxNewTokens != maxNew) throw new ArgumentException("the questions of a batch must share the token limit", nameof(requests));
            if (request.Image is not null && !_model.SupportsImages)
                throw new InvalidOperationException($"{_model.Directory}: the question has an image but no vision tower is loaded");
            var image = request.Image is null ? null : LoadImage(request.Image);
            conversations.Add(Conversation(request));
            images.Add(image);
        }
        _routed?.Clear();
        var results = _model.Generate(conversations, images, new GenerationOptions { MaxNewTokens = maxNew });
        if (_routed is { Count: > 0 })
        {
            // One routing per question with an image, in request order (the model runs the prompts in order).
            var routedLanguages = requests.Where(r => r.Image is not null).Select(r => r.Language).ToList();
            if (routedLanguages.Count != _routed.Count)
                throw new InvalidOperationException($"routing capture: {_routed.Count} routings for {routedLanguages.Count} questions with an image");
            for (int i = 0; i < _routed.Count; i++) (Routing ??= new RoutingDistribution(_routed[i].Length)).Add(routedLanguages[i], _routed[i]);
            _routed.Clear();
        }
        return results;
    }

    /// <summary>The reference's query: <c>&lt;image&gt;\n</c> + prompt (the placeholder is a literal in the text, not re-placed), one user turn.</summary>
    internal static IReadOnlyList<ChatTurn> Conversation(AnswerRequest request) => Conversation(request.Prompt, request.Image is not null);

    private static IReadOnlyList<ChatTurn> Conversation(string prompt, bool withImage) =>
        [new ChatTurn(ChatRole.User, withImage ? ChatMl.ImagePlaceholder + "\n" + prompt : prompt)];

    /// <inheritdoc/>
    public int ContextLength => _model.ContextLength;

    /// <summary>
    /// The prompt's ids as <see cref="Generate"/> builds them, the image marker counted as the model's visual tokens (the
    /// tower's feature rows, known from its config: no image is decoded or encoded), as the generator counts them.
    /// </summary>
    public int? PromptLength(string prompt, bool withImage)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        int ids = _model.Chat.BuildPrompt(Conversation(prompt, withImage)).Length;
        if (!withImage) return ids;
        return _model.VisualTokens is int visual ? ids - 1 + visual : null;
    }

    /// <summary>The decoded image of a question, as <see cref="Generate"/> and <see cref="TakesImage"/> both load it.</summary>
    private static RgbImage LoadImage(byte[] image) => ImageLoader.Load(image, name: "the question's image");

    /// <summary>
    /// Whether <see cref="Generate"/> decodes <paramref name="image"/> (else it throws the <see cref="ImageLoadException"/>
    /// that makes the harness skip the row), found the same way: by loading it. A header check would be cheaper but not the
    /// same verdict: a file whose container and header are sound can still hold compressed data that only decoding finds
    /// corrupt (<see cref="ImageLoader.Check(string, ImageLimits?)"/>). The harness asks only about questions that would
    /// otherwise refuse the run, where the verdict must be exact; the cost falls on those alone (usually none; at worst, a
    /// token limit no image question fits decodes each of their images once before the run is refused). Loading is quick to
    /// refuse what is no image at all: the format and the header are checked before any pixel is decoded.
    /// Without a vision tower the question is not skipped but refused with an error, so the image counts as taken.
    /// </summary>
    public bool TakesImage(byte[] image)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (!_model.SupportsImages) return true;
        try
        {
            LoadImage(image);
            return true;
        }
        catch (ImageLoadException) { return false; }
    }

    /// <summary>The prompt ids the model gets for <paramref name="request"/> (<see cref="ChatMl.ImageTokenIndex"/> where the image goes).</summary>
    internal int[] PromptIds(AnswerRequest request) => _model.Chat.BuildPrompt(Conversation(request));

    /// <summary>Frees the model.</summary>
    public void Dispose() => _model.Dispose();
}
