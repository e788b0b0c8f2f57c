using System.Text.Json;

namespace Parrot.Parrot.Vision;

/// <summary>
/// The settings of a Hugging Face CLIPImageProcessor, read from a model's <c>preprocessor_config.json</c>.
/// Absent keys take CLIPImageProcessor's defaults, except the sizes, which default to CLIP ViT-L/14-336's
/// (shortest edge 336, crop 336 × 336). Both spellings transformers accepts are read: <c>"size": 336</c> (a
/// shortest edge) or <c>{"shortest_edge": 336}</c> or <c>{"height": h, "width": w}</c>, and
/// <c>"crop_size": 336</c> or <c>{"height": h, "width": w}</c>. <c>do_convert_rgb</c> is read but changes
/// nothing: <see cref="ImageLoader"/> always produces RGB.
/// </summary>
public sealed record PreprocessorConfig
{
    /// <summary>CLIP's normalisation mean, per RGB channel.</summary>
    public static IReadOnlyList<double> ClipMean { get; } = [0.48145466, 0.4578275, 0.40821073];

    /// <summary>CLIP's normalisation standard deviation, per RGB channel.</summary>
    public static IReadOnlyList<double> ClipStd { get; } = [0.26862954, 0.26130258, 0.27577711];

    /// <summary>openai/clip-vit-large-patch14-336's settings, the vision tower of Parrot.</summary>
    public static PreprocessorConfig Clip336 { get; } = new();

    /// <summary>do_resize</summary>
    public bool DoResize { get; init; } = true;

    /// <summary>size.shortest_edge: the shorter side becomes this, the longer keeps the aspect ratio
    /// (null when the size is an exact <see cref="ResizeHeight"/> × <see cref="ResizeWidth"/>).</summary>
    public int? ShortestEdge { get; init; } = 336;

    /// <summary>size.height, when the size is exact rather than a shortest edge.</summary>
    public int? ResizeHeight { get; init; }

    /// <summary>size.width, when the size is exact rather than a shortest edge.</summary>
    public int? ResizeWidth { get; init; }

    /// <summary>resample: PIL's filter number (3, bicubic, for CLIP).</summary>
    public ResampleFilter Resample { get; init; } = ResampleFilter.Bicubic;

    /// <summary>do_center_crop</summary>
    public bool DoCenterCrop { get; init; } = true;

    /// <summary>crop_size.height</summary>
    public int CropHeight { get; init; } = 336;

    /// <summary>crop_size.width</summary>
    public int CropWidth { get; init; } = 336;

    /// <summary>do_rescale</summary>
    public bool DoRescale { get; init; } = true;

    /// <summary>rescale_factor (1/255).</summary>
    public double RescaleFactor { get; init; } = 1.0 / 255;

    /// <summary>do_normalize</summary>
    public bool DoNormalize { get; init; } = true;

    /// <summary>image_mean, one value per RGB channel.</summary>
    public IReadOnlyList<double> ImageMean { get; init; } = ClipMean;

    /// <summary>image_std, one value per RGB channel.</summary>
    public IReadOnlyList<double> ImageStd { get; init; } = ClipStd;

    /// <summary>do_convert_rgb (images are always RGB here, so this only records the file's value).</summary>
    public bool DoConvertRgb { get; init; } = true;

    /// <summary>Reads <paramref name="path"/> (a preprocessor_config.json).</summary>
    /// <exception cref="InvalidDataException">The file is not valid JSON or a value has the wrong type or range;
    /// the message names the file and the key.</exception>
    public static PreprocessorConfig Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"{path}: cannot read the preprocessor config: {e.Message}", e);
        }
        return Parse(text, path);
    }

    /// <summary>The config in <paramref name="directory"/>/preprocessor_config.json, or <see cref="Clip336"/>
    /// when the model directory has none.</summary>
    public static PreprocessorConfig LoadOrDefault(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string path = Path.Combine(directory, "preprocessor_config.json");
        return File.Exists(path) ? Load(path) : Clip336;
    }

    /// <summary>Parses the JSON text of a preprocessor config; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="InvalidDataException">Malformed JSON, a wrong type or an out-of-range value.</exception>
    public static PreprocessorConfig Parse(string json, string source = "preprocessor_config.json")
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not valid JSON: {e.Message}", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{source}: the config must be a JSON object");
            var reader = new Reader(root, source);
            var config = new PreprocessorConfig
            {
                DoResize = reader.Bool("do_resize", true),
                DoCenterCrop = reader.Bool("do_center_crop", true),
                DoRescale = reader.Bool("do_rescale", true),
                RescaleFactor = reader.Number("rescale_factor", 1.0 / 255),
                DoNormalize = reader.Bool("do_normalize", true),
                DoConvertRgb = reader.Bool("do_convert_rgb", true),
                ImageMean = reader.PerChannel("image_mean", ClipMean),
                ImageStd = reader.PerChannel("image_std", ClipStd),
                Resample = reader.Filter("resample", ResampleFilter.Bicubic),
            };
            config = reader.Size(config);
            config = reader.Crop(config);
            config.Validate(source);
            return config;
        }
    }

    /// <summary>Throws when a size is not positive or a std is zero; <paramref name="source"/> names the config.</summary>
    public void Validate(string source = "PreprocessorConfig")
    {
        if (ShortestEdge is { } s && s <= 0) throw new InvalidDataException($"{source}: size.shortest_edge {s} must be positive");
        if (ShortestEdge is null && (ResizeHeight is not > 0 || ResizeWidth is not > 0))
            throw new InvalidDataException($"{source}: size needs a positive shortest_edge, or positive height and width");
        if (CropHeight <= 0 || CropWidth <= 0) throw new InvalidDataException($"{source}: crop_size {CropHeight}x{CropWidth} must be positive");
        if (ImageMean.Count != 3 || ImageStd.Count != 3) throw new InvalidDataException($"{source}: image_mean and image_std need 3 values");
        foreach (double s2 in ImageStd)
            if (!(Math.Abs(s2) > 0) || double.IsInfinity(s2)) throw new InvalidDataException($"{source}: image_std value {s2} must be finite and non-zero");
        foreach (double m in ImageMean)
            if (!double.IsFinite(m)) throw new InvalidDataException($"{source}: image_mean value {m} must be finite");
        if (!double.IsFinite(RescaleFactor)) throw new InvalidDataException($"{source}: rescale_factor {RescaleFactor} must be finite");
        if (!Enum.IsDefined(Resample)) throw new InvalidDataException($"{source}: resample {(int)Resample} is not a PIL filter (0..5)");
    }

    /// <summary>Typed access to the keys, with errors that name the file and the key.</summary>
    private sealed class Reader(JsonElement root, string source)
    {
        private bool TryGet(string key, out JsonElement value) =>
            root.TryGetProperty(key, out value) && value.ValueKind != JsonValueKind.Null;

        public bool Bool(string key, bool fallback)
        {
            if (!TryGet(key, out var v)) return fallback;
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new InvalidDataException($"{source}: {key} must be true or false, got {v.GetRawText()}"),
            };
        }

        public double Number(string key, double fallback) => TryGet(key, out var v) ? AsNumber(v, key) : fallback;

        public ResampleFilter Filter(string key, ResampleFilter fallback)
        {
            if (!TryGet(key, out var v)) return fallback;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int n) || !Enum.IsDefined((ResampleFilter)n))
                throw new InvalidDataException($"{source}: {key} must be a PIL filter number 0..5, got {v.GetRawText()}");
            return (ResampleFilter)n;
        }

        public IReadOnlyList<double> PerChannel(string key, IReadOnlyList<double> fallback)
        {
            if (!TryGet(key, out var v)) return fallback;
            if (v.ValueKind == JsonValueKind.Number) { double x = AsNumber(v, key); return [x, x, x]; }
            if (v.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{source}: {key} must be a number or a list of 3 numbers");
            var values = v.EnumerateArray().Select(e => AsNumber(e, key)).ToArray();
            if (values.Length == 1) return [values[0], values[0], values[0]];
            if (values.Length != 3) throw new InvalidDataException($"{source}: {key} has {values.Length} values; an RGB image needs 3");
            return values;
        }

        public PreprocessorConfig Size(PreprocessorConfig config)
        {
            if (!TryGet("size", out var v)) return config;
            switch (v.ValueKind)
            {
                case JsonValueKind.Number:
                    return config with { ShortestEdge = AsInt(v, "size"), ResizeHeight = null, ResizeWidth = null };
                case JsonValueKind.Array:
                    var hw = v.EnumerateArray().Select(e => AsInt(e, "size")).ToArray();
                    if (hw.Length != 2) throw new InvalidDataException($"{source}: size as a list must be [height, width]");
                    return config with { ShortestEdge = null, ResizeHeight = hw[0], ResizeWidth = hw[1] };
                case JsonValueKind.Object:
                    if (v.TryGetProperty("shortest_edge", out var se))
                        return config with { ShortestEdge = AsInt(se, "size.shortest_edge"), ResizeHeight = null, ResizeWidth = null };
                    if (v.TryGetProperty("height", out var h) && v.TryGetProperty("width", out var w))
                        return config with { ShortestEdge = null, ResizeHeight = AsInt(h, "size.height"), ResizeWidth = AsInt(w, "size.width") };
                    throw new InvalidDataException($"{source}: size must contain shortest_edge, or height and width (got {v.GetRawText()})");
                default:
                    throw new InvalidDataException($"{source}: size must be a number or an object, got {v.GetRawText()}");
            }
        }

        public PreprocessorConfig Crop(PreprocessorConfig config)
        {
            if (!TryGet("crop_size", out var v)) return config;
            switch (v.ValueKind)
            {
                case JsonValueKind.Number:
                    int s = AsInt(v, "crop_size");
                    return config with { CropHeight = s, CropWidth = s };
                case JsonValueKind.Array:
                    var hw = v.EnumerateArray().Select(e => AsInt(e, "crop_size")).ToArray();
                    if (hw.Length != 2) throw new InvalidDataException($"{source}: crop_size as a list must be [height, width]");
                    return config with { CropHeight = hw[0], CropWidth = hw[1] };
                case JsonValueKind.Object:
                    if (v.TryGetProperty("height", out var h) && v.TryGetProperty("width", out var w))
                        return config with { CropHeight = AsInt(h, "crop_size.height"), CropWidth = AsInt(w, "crop_size.width") };
                    throw new InvalidDataException($"{source}: crop_size must contain height and width (got {v.GetRawText()})");
                default:
                    throw new InvalidDataException($"{source}: crop_size must be a number or an object, got {v.GetRawText()}");
            }
        }

        private double AsNumber(JsonElement v, string key)
        {
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double x) || !double.IsFinite(x))
                throw new InvalidDataException($"{source}: {key} must be a finite number, got {v.GetRawText()}");
            return x;
        }

        private int AsInt(JsonElement v, string key)
        {
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int n) || n <= 0 || n > 1 << 16)
                throw new InvalidDataException($"{source}: {key} must be an integer in 1..65536, got {v.GetRawText()}");
            return n;
        }
    }
}
