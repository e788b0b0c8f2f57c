using System.Text.Json;
using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Model;

/// <summary>
/// A whole Parrot model directory, loaded as the released Parrot-7B is laid out, without conversion:
/// <list type="bullet">
/// <item><c>config.json</c>: model_type parrot_qwen2, the Qwen2 keys and Parrot's (mm_hidden_size,
/// mm_vision_select_layer, mm_vision_select_feature, image_aspect_ratio, num_experts, moe_*, use_moe, …);</item>
/// <item>the weights in <c>model.safetensors</c> or shards with <c>model.safetensors.index.json</c>, under the
/// released names (LLM, <c>model.mm_projector.</c>, <c>model.moe_model.</c>, and possibly the tower under
/// <c>model.vision_tower.vision_tower.</c>);</item>
/// <item><c>mm_vision_tower</c>: a folder, relative to the model directory or absolute
/// (<see cref="ParrotConfig.VisionTowerFolder"/>; or the override given to <see cref="Load"/>, relative to the current
/// directory or absolute, like any path a caller passes), holding the CLIP vision config (<c>config.json</c>, a CLIPVisionModel's or a full
/// CLIPModel's), optionally <c>preprocessor_config.json</c>, and the tower's weights when the Parrot checkpoint
/// has none;</item>
/// <item>optionally <c>tokenizer.json</c> (and <c>preprocessor_config.json</c> when the tower folder has none).</item>
/// </list>
/// It runs an image through the tower (hidden state mm_vision_select_layer, CLS kept for cls_patch) into
/// <see cref="ParrotForCausalLM"/>. Every problem is an exception naming the file and what is wrong.
/// </summary>
public sealed class ParrotModelDirectory : IDisposable
{
    /// <summary>The folder <see cref="Save"/> puts the tower's config (and, when asked, weights) in; mm_vision_tower names it.</summary>
    public const string SavedTowerFolder = "vision_tower";

    private const string TowerNames = "model.vision_tower.";

    /// <summary>Set by <see cref="Dispose"/>: the weights are freed, so every use after it is refused by name.</summary>
    private bool _disposed;

    private ParrotModelDirectory(string directory, ParrotForCausalLM model)
    {
        Directory = directory;
        Model = model;
    }

    /// <summary>The model directory (full path).</summary>
    public string Directory { get; }
    /// <summary>The language model with projector and MoE (its <see cref="ParrotForCausalLM.VisionFeatures"/> set when the tower is loaded).</summary>
    public ParrotForCausalLM Model { get; }
    /// <summary>The CLIP vision tower (null when loaded without it).</summary>
    public ClipVisionModel? VisionTower { get; private set; }
    /// <summary>The folder mm_vision_tower (or its override) names (full path; null without the tower).</summary>
    public string? VisionTowerDirectory { get; private set; }
    /// <summary>Whether the tower's weights came from the Parrot checkpoint (else from <see cref="VisionTowerDirectory"/>).</summary>
    public bool VisionWeightsInCheckpoint { get; private set; }
    /// <summary>The image preprocessing (null without the tower).</summary>
    public ImagePreprocessor? Preprocessor { get; private set; }
    /// <summary>The preprocessor_config.json in use, or null when CLIP's defaults at the tower's image_size are.</summary>
    public string? PreprocessorFile { get; private set; }
    /// <summary>The directory's tokenizer.json, when it has one.</summary>
    public BpeTokenizer? Tokenizer { get; private set; }
    /// <summary>Visual tokens one image becomes: 1 + N for cls_patch, N for patch (0 without the tower).</summary>
    public int ImageTokens => VisionTower is null ? 0
        : Model.Config.MmVisionSelectFeature == "patch" ? VisionTower.Config.NumPatches : VisionTower.Config.NumPositions;

    /// <summary>Whether <paramref name="directory"/>'s config.json says model_type parrot_qwen2 (false when it cannot be read).</summary>
    public static bool IsParrotDirectory(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(directory, "config.json")));
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("model_type", out var t) && t.ValueKind == JsonValueKind.String && JsonText.TryGetString(t) == "parrot_qwen2";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException) { return false; }
    }

    /// <summary>
    /// Loads the model directory in <paramref name="dtype"/> (null: the checkpoint's own, e.g. bf16 for the
    /// released files). <paramref name="visionTower"/> overrides config.json's mm_vision_tower: a path that is
    /// absolute or relative to the current directory (the caller's path, as a command line's --vision is), while
    /// mm_vision_tower itself is relative to the model directory (<see cref="ParrotConfig.VisionTowerFolder"/>).
    /// Without <paramref name="loadVision"/> the tower is not read (text-only use: no mm_vision_tower folder needed).
    /// A missing tower folder is an error naming the folder as resolved (a full path) and where it came from.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="visionTower"/> is empty.</exception>
    /// <exception cref="DirectoryNotFoundException">The model directory or the tower folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">A required file is missing.</exception>
    /// <exception cref="InvalidDataException">A bad config, checkpoint or tokenizer file.</exception>
    /// <exception cref="StateDictException">Missing, unexpected or mis-shaped tensors.</exception>
    public static ParrotModelDirectory Load(string directory, DType? dtype = null, string? visionTower = null, bool loadVision = true)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (visionTower is { Length: 0 })
            throw new ArgumentException("ParrotModelDirectory.Load: the vision tower override is empty; give the CLIP tower's folder, or null for config.json's mm_vision_tower", nameof(visionTower));
        string dir = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(dir)) throw new DirectoryNotFoundException($"{directory}: model directory not found");
        string configPath = Path.Combine(dir, "config.json");
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{dir}: no config.json in the model directory", configPath);
        if (!IsParrotDirectory(dir))
        {
            var config = ParrotConfig.Load(configPath); // reports malformed JSON and bad keys first
            throw new InvalidDataException($"{configPath}: model_type must be parrot_qwen2 for a Parrot model directory (a text-only Qwen2 model has {config.Text.NumHiddenLayers} layers and no vision tower)");
        }
        var model = ParrotLoader.Load(dir, dtype, requireMultimodal: true);
        var result = new ParrotModelDirectory(dir, model);
        try
        {
            if (loadVision) result.LoadVision(visionTower, dtype ?? model.Model.EmbedTokens.Weight.DType);
            string tokenizer = Path.Combine(dir, "tokenizer.json");
            if (File.Exists(tokenizer))
            {
                try { result.Tokenizer = BpeTokenizer.Load(tokenizer); }
                catch (Exception e) when (e is JsonException or FormatException or ArgumentException or KeyNotFoundException)
                {
                    throw new InvalidDataException($"{tokenizer}: not a usable tokenizer: {e.Message}", e);
                }
            }
        }
        catch
        {
            result.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>
    /// Loads the tower from <paramref name="visionOverride"/> (the caller's folder: absolute or relative to the current
    /// directory) or else from config.json's mm_vision_tower (absolute or relative to the model directory).
    /// </summary>
    private void LoadVision(string? visionOverride, DType dtype)
    {
        var config = Model.Config;
        string configPath = Path.Combine(Directory, "config.json");
        string towerDir, source;
        if (visionOverride is not null)
        {
            towerDir = Path.GetFullPath(visionOverride);
            source = $"the vision tower override '{visionOverride}'";
        }
        else
        {
            if (config.MmVisionTower is null)
                throw new InvalidDataException($"{configPath}: no mm_vision_tower: name the CLIP vision tower's folder (relative to the model directory, or absolute)");
            if (config.MmVisionTower.Length == 0) throw new InvalidDataException($"{configPath}: mm_vision_tower is empty");
            towerDir = Path.GetFullPath(config.VisionTowerFolder(Directory)!);
            source = $"{configPath}: mm_vision_tower '{config.MmVisionTower}'";
        }
        if (!System.IO.Directory.Exists(towerDir))
            throw new DirectoryNotFoundException($"{source}: the folder {towerDir} does not exist; put the CLIP vision tower there (its config.json, and its weights unless the Parrot checkpoint holds them) or give another folder");
        string towerConfigPath = Path.Combine(towerDir, "config.json");
        if (!File.Exists(towerConfigPath))
            throw new FileNotFoundException($"{source}: {towerDir} has no config.json (the CLIP vision config)", towerConfigPath);
        var towerConfig = ClipVisionConfigJson.Load(towerConfigPath);
        if (towerConfig.HiddenSize != config.MmHiddenSize)
            throw new InvalidDataException($"{towerConfigPath}: the tower's hidden_size {towerConfig.HiddenSize} differs from mm_hidden_size {config.MmHiddenSize} in {configPath}");
        int states = towerConfig.NumHiddenLayers + 1;
        if (config.MmVisionSelectLayer < -states || config.MmVisionSelectLayer >= states)
            throw new InvalidDataException($"{configPath}: mm_vision_select_layer {config.MmVisionSelectLayer} is outside the tower's {states} hidden states (-{states}..{states - 1}, {towerConfigPath})");
        if (towerConfig.NumChannels != 3)
            throw new InvalidDataException($"{towerConfigPath}: num_channels {towerConfig.NumChannels}: the tower must take RGB images (3 channels)");

        bool inCheckpoint;
        using (var checkpoint = SafetensorsCheckpoint.Open(Directory))
            inCheckpoint = checkpoint.Names.Any(n => n.StartsWith(TowerNames, StringComparison.Ordinal));
        if (!inCheckpoint && !File.Exists(Path.Combine(towerDir, SafetensorsCheckpoint.SingleFileName)) && !File.Exists(Path.Combine(towerDir, SafetensorsCheckpoint.IndexFileName)))
            throw new FileNotFoundException($"{Directory}: the Parrot checkpoint has no vision tower weights ({ClipVisionLoader.ParrotPrefix}vision_model.…) and {source} holds no {SafetensorsCheckpoint.SingleFileName} or {SafetensorsCheckpoint.IndexFileName}");
        VisionTower = inCheckpoint
            ? ClipVisionLoader.Load(Directory, dtype, ClipVisionLoader.ParrotPrefix, towerConfig)
            : ClipVisionLoader.Load(towerDir, dtype, null, towerConfig);
        VisionTowerDirectory = towerDir;
        VisionWeightsInCheckpoint = inCheckpoint;

        string? file = new[] { Path.Combine(towerDir, "preprocessor_config.json"), Path.Combine(Directory, "preprocessor_config.json") }.FirstOrDefault(File.Exists);
        int s = towerConfig.ImageSize;
        var pre = file is null ? PreprocessorConfig.Clip336 with { ShortestEdge = s, CropHeight = s, CropWidth = s } : PreprocessorConfig.Load(file);
        var preprocessor = new ImagePreprocessor(pre);
        if (preprocessor.FixedOutputShape is not { } shape || shape[1] != s || shape[2] != s)
            throw new InvalidDataException($"{file}: it makes {(preprocessor.FixedOutputShape is null ? "images of varying size" : $"{preprocessor.FixedOutputShape[1]}x{preprocessor.FixedOutputShape[2]} images")}, but the tower takes {s}x{s} (image_size in {towerConfigPath})");
        Preprocessor = preprocessor;
        PreprocessorFile = file;
        ParrotVision.Attach(Model, VisionTower);
    }

    /// <summary>
    /// Moves the language model and the vision tower to <paramref name="device"/> (<see cref="Module.To(Device)"/>); the
    /// forward passes then run there. Returns this directory.
    /// </summary>
    public ParrotModelDirectory To(Device device)
    {
        ThrowIfDisposed();
        Model.To(device);
        VisionTower?.To(device);
        return this;
    }

    /// <summary>The pixel values [1, 3, S, S] (float32) of <paramref name="image"/>: padded to a square when image_aspect_ratio is pad, then CLIP-preprocessed.</summary>
    public Tensor Pixels(RgbImage image)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(image);
        var preprocessor = Preprocessor ?? throw new InvalidOperationException($"{Directory}: loaded without the vision tower, so images cannot be used");
        using var scope = TensorScope.Begin();
        return scope.Keep(preprocessor.Process(image, Model.Config.ImageAspectRatio == "pad").Unsqueeze(0).Contiguous());
    }

    /// <summary>The tower's features of <paramref name="image"/> that Parrot uses: hidden state mm_vision_select_layer, [1, 1 + N, C] (CLS kept; the projector drops it for "patch").</summary>
    public Tensor ImageFeatures(RgbImage image)
    {
        ThrowIfDisposed();
        using var scope = TensorScope.Begin();
        var pixels = Pixels(image);
        return scope.Keep(Model.VisionFeatures!(pixels));
    }

    /// <summary>
    /// The logits [T', vocab] (float32, on the host) of a prompt: <paramref name="ids"/> with at most one image placeholder
    /// (<see cref="ParrotSample.ImageToken"/>, −200), which <paramref name="image"/>'s <see cref="ImageTokens"/>
    /// visual tokens replace (routed by the MoE steered by the prompt's text), so T' = T − 1 + <see cref="ImageTokens"/>
    /// with an image and T without.
    /// </summary>
    /// <exception cref="ArgumentException">A placeholder without an image, an image without a placeholder, several placeholders, or an id outside the vocabulary.</exception>
    /// <exception cref="Inference.PromptTooLongException">T' is past the context (max_position_embeddings).</exception>
    public Tensor Logits(IReadOnlyList<int> ids, RgbImage? image)
    {
        var sample = Prompt(ids, image);
        // Checked before the tower and the model run: the spliced length is known from the prompt and the tower's shape.
        Inference.ContextWindow.CheckPrompt(Model.Config.Text.MaxPositionEmbeddings, Positions(ids, image));
        using var scope = TensorScope.Begin();
        using var noGrad = Graph.NoGrad();
        var features = image is null ? null : ImageFeatures(image);
        var logits = Model.Forward([sample], features, int.MaxValue).Logits.Value;
        var result = logits.Reshape(logits.Dim(1), logits.Dim(2));
        return scope.Keep(result.DType == DType.F32 && result.Device == Device.Cpu ? result.Contiguous() : result.To(DType.F32, Device.Cpu));
    }

    /// <summary>Greedy decoding with the KV cache after the prompt (as <see cref="Logits"/>); stops after an id of <paramref name="eosIds"/> unless <paramref name="ignoreEos"/>.</summary>
    /// <exception cref="Inference.PromptTooLongException">The prompt (T' positions) and <paramref name="maxNewTokens"/> do not fit the context; refused before the tower runs.</exception>
    public List<int> Generate(IReadOnlyList<int> ids, RgbImage? image, int maxNewTokens, IReadOnlyCollection<int> eosIds, bool ignoreEos = false)
    {
        var sample = Prompt(ids, image);
        ArgumentNullException.ThrowIfNull(eosIds);
        // The context rule the generator applies at its start (ContextWindow.Room with the spliced length), checked here
        // before the tower runs: it used to encode the image (the costly part) and then refuse the prompt. The message is
        // the generator's; with no new tokens asked for nothing runs there, and a negative count is its error to give.
        if (maxNewTokens > 0) Inference.ContextWindow.Room(Model.Config.Text.MaxPositionEmbeddings, Positions(ids, image), maxNewTokens);
        // With no new tokens (or a negative count) the decoder runs nothing: it returns no ids (or refuses the count) before
        // the prompt is embedded, so the features would go unused. The tower used to encode the image anyway; now the
        // decoder gets none and answers as before (its empty result, or its ArgumentOutOfRangeException).
        if (maxNewTokens <= 0) return GreedyDecoder.Generate(Model, sample, null, maxNewTokens, eosIds, ignoreEos);
        using var scope = TensorScope.Begin();
        using var noGrad = Graph.NoGrad();
        var features = image is null ? null : ImageFeatures(image);
        return GreedyDecoder.Generate(Model, sample, features, maxNewTokens, eosIds, ignoreEos);
    }

    /// <summary>Positions a checked prompt takes: T − 1 + <see cref="ImageTokens"/> with an image (the placeholder becomes the visual tokens), T without.</summary>
    private int Positions(IReadOnlyList<int> ids, RgbImage? image) => image is null ? ids.Count : ids.Count - 1 + ImageTokens;

    private ParrotSample Prompt(IReadOnlyList<int> ids, RgbImage? image)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Count == 0) throw new ArgumentException("Parrot: the prompt is empty");
        int places = ids.Count(i => i == ParrotSample.ImageToken);
        if (places > 1) throw new ArgumentException($"Parrot: the prompt has {places} image placeholders ({ParrotSample.ImageToken}); one image per prompt is supported");
        if (places == 1 && image is null) throw new ArgumentException($"Parrot: the prompt has the image placeholder {ParrotSample.ImageToken} but no image was given");
        if (places == 0 && image is not null) throw new ArgumentException($"Parrot: an image was given but the prompt has no image placeholder {ParrotSample.ImageToken} to put it at");
        if (image is not null && VisionTower is null) throw new InvalidOperationException($"{Directory}: loaded without the vision tower, so images cannot be used");
        int vocab = Model.Config.Text.VocabSize;
        for (int t = 0; t < ids.Count; t++)
            if (ids[t] != ParrotSample.ImageToken && (ids[t] < 0 || ids[t] >= vocab))
                throw new ArgumentException($"Parrot: token id {ids[t]} (position {t}) is outside the vocabulary [0, {vocab})");
        return new ParrotSample(ids.ToArray(), null, image is null ? -1 : 0);
    }

    /// <summary>
    /// Writes a model directory that <see cref="Load"/> (and the released code) reads: config.json with the
    /// released keys and mm_vision_tower = <see cref="SavedTowerFolder"/>, the weights under the released names
    /// (the tower's under <c>model.vision_tower.vision_tower.</c> when <paramref name="visionWeightsInCheckpoint"/>,
    /// else as a standalone CLIP checkpoint in the tower folder), the tower folder with the tower's config.json and
    /// preprocessor_config.json, and the tokenizer/generation files this directory has. Every file is written atomically.
    /// </summary>
    public void Save(string directory, DType? dtype = null, bool visionWeightsInCheckpoint = true)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(directory);
        var tower = VisionTower ?? throw new InvalidOperationException($"{Directory}: loaded without the vision tower; load it with the tower to save a complete model directory");
        string dir = Path.GetFullPath(directory);
        string towerOut = Path.Combine(dir, SavedTowerFolder);
        System.IO.Directory.CreateDirectory(towerOut);
        AtomicFile.Copy(Path.Combine(VisionTowerDirectory!, "config.json"), Path.Combine(towerOut, "config.json"));
        if (PreprocessorFile is not null) AtomicFile.Copy(PreprocessorFile, Path.Combine(towerOut, "preprocessor_config.json"));
        if (!visionWeightsInCheckpoint) ModelLoading.Save(tower, towerOut, dtype: dtype);
        ParrotLoader.Save(Model, dir, dtype, Model.Config with { MmVisionTower = SavedTowerFolder }, visionWeightsInCheckpoint ? tower : null);
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
        {
            string from = Path.Combine(Directory, name);
            if (File.Exists(from)) AtomicFile.Copy(from, Path.Combine(dir, name));
        }
    }

    /// <summary>Frees the weights; later calls of the methods above throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Model.Dispose();
        VisionTower?.Dispose();
    }

    // Without it a call after Dispose ran on freed weights: on the CPU an error from deep inside a layer that names no
    // model, on a GPU a read of memory the allocator may already have handed to someone else.
    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
