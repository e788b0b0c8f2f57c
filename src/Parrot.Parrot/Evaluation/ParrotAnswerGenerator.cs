using System.Text.Json;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

namespace Parrot.Parrot.Evaluation;

/// <summary>
/// <see cref="IAnswerGenerator"/> over a Parrot model directory (config.json, safetensors, tokenizer.json)
/// and its CLIP vision tower: the question goes in as Parrot's evaluation prompt (ChatML with the default
/// system turn, the user turn <c>&lt;image&gt;\n{prompt}</c>, then <c>&lt;|im_start|&gt;assistant\n</c>),
/// the image through the tower (padded to a square when image_aspect_ratio is "pad"), and the answer is
/// decoded greedily with the KV cache until <c>&lt;|im_end|&gt;</c>, <c>&lt;|endoftext|&gt;</c>, an eos id of
/// config.json / generation_config.json, or the token limit; special tokens are left out of the text and
/// surrounding whitespace stripped (PARROT-DETAILS.md §4). Not thread-safe: one question at a time.
/// </summary>
public sealed class ParrotAnswerGenerator : IAnswerGenerator, IDisposable
{
    private readonly ParrotForCausalLM _model;
    private readonly ClipVisionModel? _tower;
    private readonly Func<Tensor, Tensor>? _features;
    private readonly ImagePreprocessor? _preprocessor;
    private readonly BpeTokenizer _tokenizer;
    private readonly ChatMl _chat;
    private readonly HashSet<int> _stop;

    private ParrotAnswerGenerator(ParrotForCausalLM model, ClipVisionModel? tower, ImagePreprocessor? preprocessor, BpeTokenizer tokenizer, HashSet<int> stop)
    {
        _model = model; _tower = tower; _preprocessor = preprocessor; _tokenizer = tokenizer; _stop = stop;
        _chat = new ChatMl(tokenizer);
        _stop.Add(_chat.ImEndId);
        if (tower is not null) _features = ParrotVision.Features(tower, model.Config.MmVisionSelectLayer);
    }

    /// <summary>
    /// Loads the model in <paramref name="modelDirectory"/> (float32) and the vision tower from
    /// <paramref name="visionDirectory"/>, else from config.json's mm_vision_tower (relative to the model
    /// directory). Without a tower directory the model answers text-only questions only.
    /// </summary>
    public static ParrotAnswerGenerator Load(string modelDirectory, string? visionDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        if (!Directory.Exists(modelDirectory)) throw new DirectoryNotFoundException($"{modelDirectory}: model directory not found");
        var tokenizerPath = Path.Combine(modelDirectory, "tokenizer.json");
        if (!File.Exists(tokenizerPath)) throw new FileNotFoundException($"{modelDirectory}: no tokenizer.json next to the model", tokenizerPath);
        var tokenizer = BpeTokenizer.Load(tokenizerPath);
        var model = ParrotLoader.Load(modelDirectory, DType.F32);
        ClipVisionModel? tower = null;
        try
        {
            string? towerDir = visionDirectory;
            if (towerDir is null && model.Config.MmVisionTower is { } named)
            {
                towerDir = Path.IsPathRooted(named) ? named : Path.Combine(modelDirectory, named);
                if (!Directory.Exists(towerDir))
                    throw new DirectoryNotFoundException($"{modelDirectory}/config.json: mm_vision_tower '{named}' is not a directory here: give the CLIP tower directory explicitly");
            }
            ImagePreprocessor? preprocessor = null;
            if (towerDir is not null)
            {
                tower = ClipVisionLoader.Load(towerDir, DType.F32);
                if (tower.Config.HiddenSize != model.Config.MmHiddenSize)
                    throw new InvalidDataException($"{towerDir}: the vision tower's width {tower.Config.HiddenSize} differs from the model's mm_hidden_size {model.Config.MmHiddenSize}");
                preprocessor = ImagePreprocessor.FromDirectory(towerDir);
            }
            var stop = new HashSet<int>(model.Config.Text.EosTokenIds);
            foreach (var id in GenerationConfigEos(modelDirectory)) stop.Add(id);
            if (tokenizer.TokenToId("<|endoftext|>") is int eot) stop.Add(eot);
            return new ParrotAnswerGenerator(model, tower, preprocessor, tokenizer, stop);
        }
        catch
        {
            tower?.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>The loaded model.</summary>
    public ParrotForCausalLM Model => _model;

    /// <summary>Whether a vision tower is loaded (without one only text-only questions can be answered).</summary>
    public bool HasVisionTower => _features is not null;

    /// <inheritdoc/>
    public string Answer(AnswerRequest request)
    {
        var (_, generated) = Generate(request);
        // Ids beyond the tokenizer's (a vocabulary padded for speed) decode to nothing, as in Hugging Face.
        var known = generated.Where(id => _tokenizer.IdToToken(id) is not null).ToArray();
        return PythonStrip(_tokenizer.Decode(known, skipSpecialTokens: true));
    }

    /// <summary>The prompt ids (image placeholder <see cref="ChatMl.ImageTokenIndex"/>) and the generated ids, the stop id left out.</summary>
    internal (int[] Prompt, List<int> Generated) Generate(AnswerRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.MaxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(request), "max new tokens must be ≥ 0");
        bool withImage = request.Image is not null;
        if (withImage && _features is null)
            throw new InvalidOperationException("the question has an image but no vision tower is loaded");
        var ids = _chat.BuildPrompt([new ChatTurn(ChatRole.User, withImage ? ChatMl.ImagePlaceholder + "\n" + request.Prompt : request.Prompt)]);
        var generated = new List<int>();
        if (request.MaxNewTokens == 0) return (ids, generated);
        using (var scope = TensorScope.Begin())
        {
            Tensor? features = null;
            int visual = 0;
            if (withImage)
            {
                var image = ImageLoader.Load(request.Image!, name: "the question's image");
                var pixels = _preprocessor!.Process(image, _model.Config.ImageAspectRatio == "pad").Unsqueeze(0);
                features = _features!(pixels);
                visual = features.Dim(1) - (_model.Config.MmVisionSelectFeature == "patch" ? 1 : 0);
            }
            int promptLength = ids.Count(i => i != ChatMl.ImageTokenIndex) + (ids.Contains(ChatMl.ImageTokenIndex) ? visual : 0);
            using var cache = new KvCache(_model.Config.Text.NumHiddenLayers, promptLength + request.MaxNewTokens);
            int next = ArgMax(_model.Prefill(new ParrotSample(ids, null, withImage ? 0 : -1), features, cache));
            while (true)
            {
                if (_stop.Contains(next)) break;
                generated.Add(next);
                if (generated.Count == request.MaxNewTokens) break;
                using var step = TensorScope.Begin();
                next = ArgMax(_model.DecodeStep(next, cache));
            }
        }
        return (ids, generated);
    }

    private static int ArgMax(Tensor logits)
    {
        using var am = logits.ArgMax(-1);
        return (int)am.ToLongArray()[0];
    }

    /// <summary>Python's str.strip(): Unicode whitespace plus U+001C–U+001F.</summary>
    internal static string PythonStrip(string s)
    {
        static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001C' and <= '\u001F';
        int start = 0, end = s.Length;
        while (start < end && IsSpace(s[start])) start++;
        while (end > start && IsSpace(s[end - 1])) end--;
        return s[start..end];
    }

    private static IEnumerable<int> GenerationConfigEos(string directory)
    {
        var path = Path.Combine(directory, "generation_config.json");
        if (!File.Exists(path)) return [];
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (!doc.RootElement.TryGetProperty("eos_token_id", out var e)) return [];
            return e.ValueKind switch
            {
                JsonValueKind.Array => e.EnumerateArray().Select(x => x.GetInt32()).ToList(),
                JsonValueKind.Number => [e.GetInt32()],
                _ => [],
            };
        }
        catch (Exception ex) when (ex is JsonException or FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: eos_token_id is not an id or a list of ids: {ex.Message}", ex);
        }
    }

    /// <summary>Frees the model and the tower.</summary>
    public void Dispose()
    {
        _tower?.Dispose();
        _model.Dispose();
    }
}
