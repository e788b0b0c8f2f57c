using System.Security.Cryptography;
using System.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Data;

/// <summary>
/// Vision features per image file, computed once: the tower is frozen in both training stages, so each
/// distinct image goes through it a single time and its features [1+N, C] are kept in memory, and with a
/// cache directory also on disk as .npy (a later run, or a resumed one, reads them back instead of running
/// the tower). A cached file is named by a hash of what its features depend on: the image's full path, size
/// and modification time, the padding, and the caller's <c>cacheTag</c> naming the tower and its settings
/// (<see cref="TowerCacheTag"/>), so a cache shared by runs with another tower, layer or edited image is not
/// read back for them.
/// </summary>
public sealed class LlavaImageFeatures : IDisposable
{
    private readonly Func<Tensor, Tensor> _tower;
    private readonly ImagePreprocessor _preprocessor;
    private readonly bool _padToSquare;
    private readonly string? _cacheDir;
    private readonly string _cacheTag;
    private readonly Dictionary<string, Tensor> _memory = new(StringComparer.Ordinal);

    /// <summary>
    /// <paramref name="tower"/> maps pixels [B, 3, S, S] to features [B, 1+N, C] (e.g. <c>ParrotVision.Features</c>);
    /// <paramref name="padToSquare"/> is image_aspect_ratio "pad"; <paramref name="cacheTag"/> identifies the tower and
    /// its settings in the names of the cached files (<see cref="TowerCacheTag"/>).
    /// </summary>
    public LlavaImageFeatures(Func<Tensor, Tensor> tower, ImagePreprocessor preprocessor, bool padToSquare = true, string? cacheDir = null, string cacheTag = "")
    {
        ArgumentNullException.ThrowIfNull(tower);
        ArgumentNullException.ThrowIfNull(preprocessor);
        ArgumentNullException.ThrowIfNull(cacheTag);
        _tower = tower; _preprocessor = preprocessor; _padToSquare = padToSquare; _cacheDir = cacheDir; _cacheTag = cacheTag;
        if (cacheDir is not null) Directory.CreateDirectory(cacheDir);
    }

    /// <summary>How many times the tower ran (images not found in either cache).</summary>
    public int TowerCalls { get; private set; }

    /// <summary>Features [images, 1+N, C] for <paramref name="imagePaths"/> in order; <paramref name="sampleIds"/> name the samples in errors.</summary>
    /// <exception cref="LlavaDataException">An image cannot be read or gives features of another shape than the others.</exception>
    public Tensor Batch(IReadOnlyList<string> imagePaths, IReadOnlyList<string> sampleIds)
    {
        ArgumentNullException.ThrowIfNull(imagePaths);
        var rows = new Tensor[imagePaths.Count];
        for (int i = 0; i < rows.Length; i++) rows[i] = Get(imagePaths[i], sampleIds[i]);
        for (int i = 1; i < rows.Length; i++)
            if (!rows[i].Shape.SequenceEqual(rows[0].Shape))
                throw new LlavaDataException($"{imagePaths[i]} (sample '{sampleIds[i]}'): features {rows[i].ShapeString()} differ from {rows[0].ShapeString()} of {imagePaths[0]}");
        return Tensor.Stack(0, rows);
    }

    /// <summary>The features [1+N, C] of one image, on the host (owned by this cache: do not dispose).</summary>
    public Tensor Get(string imagePath, string sampleId)
    {
        ArgumentNullException.ThrowIfNull(imagePath);
        if (_memory.TryGetValue(imagePath, out var cached)) return cached;
        string? file = _cacheDir is null ? null : Path.Combine(_cacheDir, Key(imagePath) + ".npy");
        Tensor features;
        if (file is not null && File.Exists(file))
            features = TensorScope.Detach(Npy.Read(file));
        else
        {
            features = TensorScope.Detach(Compute(imagePath, sampleId));
            if (features.Device != Device.Cpu)
            {
                // Kept on the host, like the ones read from the disk cache: the model copies each batch to its device.
                var host = TensorScope.Detach(features.To(Device.Cpu));
                features.Dispose();
                features = host;
            }
            if (file is not null) Npy.Write(file, features); // atomic
        }
        _memory[imagePath] = features;
        return features;
    }

    /// <summary>
    /// Whether <see cref="Get"/> would return <paramref name="imagePath"/>'s features without reading the image: they are
    /// in memory, or on disk under the image's current key (its path, size and modification time, the padding and the
    /// tower's tag). Either way its pixels were decoded once, when the features were computed; a file since changed in
    /// size or time has another key and is not cached. Safe to call from several threads while no features are computed.
    /// </summary>
    public bool IsCached(string imagePath)
    {
        ArgumentNullException.ThrowIfNull(imagePath);
        return _memory.ContainsKey(imagePath) || _cacheDir is not null && File.Exists(Path.Combine(_cacheDir, Key(imagePath) + ".npy"));
    }

    private Tensor Compute(string imagePath, string sampleId)
    {
        using var scope = TensorScope.Begin();
        RgbImage image;
        try { image = ImageLoader.Load(imagePath); }
        catch (Exception e) when (e is ImageLoadException or IOException or UnauthorizedAccessException)
        {
            throw new LlavaDataException($"{imagePath} (sample '{sampleId}'): cannot read the image: {e.Message}");
        }
        var pixels = _preprocessor.Process(image, _padToSquare);
        var batch = pixels.Unsqueeze(0);
        TowerCalls++;
        var output = _tower(batch);
        if (output.Rank != 3 || output.Dim(0) != 1)
            throw new InvalidOperationException($"LlavaImageFeatures: the tower returned {output.ShapeString()} for one image; expected [1, tokens, channels]");
        return scope.Keep(output.Select(0, 0).Contiguous().Clone());
    }

    private string Key(string imagePath)
    {
        var full = Path.GetFullPath(imagePath);
        var file = new FileInfo(full);
        string stamp = file.Exists ? $"{file.Length}:{file.LastWriteTimeUtc.Ticks}" : "missing";
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{full}\n{stamp}\npad={_padToSquare}\n{_cacheTag}")))[..32];
    }

    /// <summary>
    /// A cache tag for the CLIP tower in <paramref name="towerDir"/> read at hidden state <paramref name="selectLayer"/>:
    /// the folder's full path, its config.json and preprocessor_config.json, and the size and modification time of its
    /// weight files (a tower retrained in place gets new features).
    /// </summary>
    public static string TowerCacheTag(string towerDir, int selectLayer)
    {
        ArgumentNullException.ThrowIfNull(towerDir);
        var full = Path.GetFullPath(towerDir);
        var tag = new StringBuilder($"tower={full}\nlayer={selectLayer}\n");
        foreach (var name in new[] { "config.json", "preprocessor_config.json" })
        {
            var path = Path.Combine(full, name);
            tag.Append(name).Append('=').Append(File.Exists(path) ? File.ReadAllText(path) : "").Append('\n');
        }
        if (Directory.Exists(full))
            foreach (var weights in Directory.GetFiles(full, "*.safetensors").Order(StringComparer.Ordinal))
            {
                var info = new FileInfo(weights);
                tag.Append(info.Name).Append('=').Append(info.Length).Append(':').Append(info.LastWriteTimeUtc.Ticks).Append('\n');
            }
        return tag.ToString();
    }

    /// <summary>Frees the cached features.</summary>
    public void Dispose()
    {
        foreach (var t in _memory.Values) t.Dispose();
        _memory.Clear();
    }
}
