using System.Collections.ObjectModel;

namespace Parrot.Tensors.Formats;

/// <summary>
/// The weights of a Hugging Face model directory, looked up by tensor name whether they sit in one
/// <c>model.safetensors</c> or in shards listed by <c>model.safetensors.index.json</c>.
/// <para><see cref="Open"/> validates everything up front: the index (see its rules: JSON shape, shard
/// names that stay inside the folder and exist), the header of every shard, that every name the index
/// maps is in its shard, and that no shard holds a tensor the index does not map to it (a stale or
/// hand-edited index; refused, since loading would silently depend on which file one looked in). Only
/// headers are read: a shard is memory-mapped when its first tensor is loaded, and tensors load one by
/// one, zero-copy where possible (<see cref="SafetensorsFile.Load"/>).</para>
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    /// <summary>The file name of a single-file checkpoint.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>The file name of a sharded checkpoint's index.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>The default shard size limit of <see cref="Save"/>: 5 GB, transformers' default.</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    private readonly SafetensorsFile[] _shards;
    private readonly Dictionary<string, SafetensorsFile> _shardOf;

    private SafetensorsCheckpoint(string? indexPath, SafetensorsFile[] shards, Dictionary<string, SafetensorsFile> shardOf, IReadOnlyList<string> names,
        IReadOnlyDictionary<string, string> indexMetadata)
    {
        IndexPath = indexPath;
        _shards = shards;
        _shardOf = shardOf;
        Names = names;
        IndexMetadata = indexMetadata;
        Files = new ReadOnlyCollection<string>(shards.Select(s => s.Path).ToArray());
    }

    /// <summary>
    /// Opens a checkpoint: a directory (holding <c>model.safetensors</c>, or else
    /// <c>model.safetensors.index.json</c>, the order transformers looks in), an index file (any name
    /// ending in .json) or a single .safetensors file.
    /// </summary>
    /// <exception cref="FileNotFoundException">The path, or the checkpoint in the directory, does not exist.</exception>
    /// <exception cref="InvalidDataException">The index or a shard is malformed or they disagree; the message names the file and the tensor.</exception>
    public static SafetensorsCheckpoint Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string file = Directory.Exists(path) ? Locate(path) : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"SafetensorsCheckpoint.Open: no file or directory '{path}'", path);
        return file.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? OpenSharded(file) : OpenSingle(file);
    }

    /// <summary>
    /// The checkpoint file of a model directory: <c>model.safetensors</c> when present, otherwise
    /// <c>model.safetensors.index.json</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">Neither exists (the message lists the .safetensors files the folder does hold).</exception>
    public static string Locate(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string single = Path.Combine(directory, SingleFileName);
        if (File.Exists(single)) return single;
        string index = Path.Combine(directory, IndexFileName);
        if (File.Exists(index)) return index;
        var others = Directory.Exists(directory)
            ? Directory.EnumerateFiles(directory, "*.safetensors*").Select(Path.GetFileName).Order(StringComparer.Ordinal).Take(10).ToList()
            : [];
        string found = others.Count == 0 ? "it holds no .safetensors file" : "it holds " + string.Join(", ", others);
        throw new FileNotFoundException($"{directory}: no {SingleFileName} or {IndexFileName} ({found})", single);
    }

    /// <summary>The index file, or null for a single-file checkpoint.</summary>
    public string? IndexPath { get; }

    /// <summary>True when the checkpoint is sharded (read through an index).</summary>
    public bool IsSharded => IndexPath is not null;

    /// <summary>The safetensors files (one, or the shards in the order the index first mentions them).</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>Every tensor name: file order for a single file, index order for a sharded checkpoint.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Number of tensors.</summary>
    public int Count => Names.Count;

    /// <summary>The reader of each file, in <see cref="Files"/> order.</summary>
    internal IReadOnlyList<SafetensorsFile> Readers => _shards;

    /// <summary>
    /// The <c>__metadata__</c> of the (first) file; <see cref="Save"/> writes the same metadata into every
    /// shard. Empty when there is none.
    /// </summary>
    public IReadOnlyDictionary<string, string> Metadata => _shards.Length > 0 ? _shards[0].Metadata : ReadOnlyDictionary<string, string>.Empty;

    /// <summary>
    /// The index's "metadata" (such as "total_size"); values that are not JSON strings are given as their
    /// JSON text. Empty for a single-file checkpoint.
    /// </summary>
    public IReadOnlyDictionary<string, string> IndexMetadata { get; }

    /// <summary>True when the checkpoint has a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _shardOf.ContainsKey(name);
    }

    /// <summary>The header entry for <paramref name="name"/> (its <see cref="SafetensorsTensorInfo.File"/> says which shard).</summary>
    /// <exception cref="KeyNotFoundException">The checkpoint has no such tensor.</exception>
    public SafetensorsTensorInfo Info(string name) => ShardOf(name).Info(name);

    /// <summary>The header entry for <paramref name="name"/>, or false when there is none.</summary>
    public bool TryGetInfo(string name, out SafetensorsTensorInfo info)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_shardOf.TryGetValue(name, out var shard)) return shard.TryGetInfo(name, out info);
        info = null!;
        return false;
    }

    /// <summary>Materialises a tensor (see <see cref="SafetensorsFile.Load"/>), converted to <paramref name="dtype"/> when given.</summary>
    /// <exception cref="KeyNotFoundException">The checkpoint has no such tensor.</exception>
    /// <exception cref="NotSupportedException">The tensor's dtype has no ParrotNative dtype.</exception>
    public Tensor Load(string name, DType? dtype = null) => ShardOf(name).Load(name, dtype);

    /// <summary>
    /// Writes <paramref name="tensors"/> as a checkpoint in <paramref name="directory"/> (created if
    /// needed), the way transformers' <c>save_pretrained</c> lays it out, and returns the files written.
    /// <para>Tensors are assigned to shards in the order given, a new shard starting when the next tensor
    /// would take the current one past <paramref name="maxShardBytes"/> of tensor data (a tensor larger than
    /// the limit gets a shard of its own). One shard is written as <c>model.safetensors</c>; several as
    /// <c>model-00001-of-0000N.safetensors</c> ... plus <c>model.safetensors.index.json</c> (metadata
    /// "total_size" and <paramref name="metadata"/>, and the weight map).</para>
    /// <para>Every shard gets <paramref name="metadata"/> as its <c>__metadata__</c>, with "format": "pt"
    /// added unless a "format" is given, because transformers refuses safetensors weights without it.</para>
    /// <para>Each file is written atomically (temporary file, flush, rename); the shards are renamed into
    /// place first and the index last, so a reader sees either the old checkpoint or the new one. When the
    /// new shards would overwrite files of an older sharded checkpoint, the old index is removed before
    /// they are, so a crash can leave no index but never an index over a mix of old and new shards.
    /// Files of an earlier checkpoint that the new one does not use (<c>model.safetensors</c>, the index,
    /// <c>model-NNNNN-of-NNNNN.safetensors</c>) are deleted afterwards, as transformers does.</para>
    /// </summary>
    /// <exception cref="ArgumentException">A name is null, repeated or reserved; a tensor is null; <paramref name="maxShardBytes"/> is not positive; a metadata key is "total_size".</exception>
    public static IReadOnlyList<string> Save(string directory, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        long maxShardBytes = DefaultMaxShardBytes, IReadOnlyDictionary<string, string>? metadata = null) =>
        SafetensorsCheckpointWriter.Save(directory, tensors, maxShardBytes, metadata);

    /// <summary>Releases every shard's hold on its file; tensors already loaded stay valid. Safe to call twice.</summary>
    public void Dispose()
    {
        foreach (var shard in _shards) shard.Dispose();
    }

    private SafetensorsFile ShardOf(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_shardOf.TryGetValue(name, out var shard)) return shard;
        string where = IndexPath ?? (Files.Count > 0 ? Files[0] : "checkpoint");
        var sample = Names.Take(3).Select(n => $"'{FormatText.Printable(n, 80)}'");
        throw new KeyNotFoundException($"{where}: no tensor named '{FormatText.Printable(name)}' (the checkpoint has {Count} tensors{(Count > 0 ? ", e.g. " + string.Join(", ", sample) : "")})");
    }

    private static SafetensorsCheckpoint OpenSingle(string file)
    {
        var shard = SafetensorsFile.Open(file);
        var shardOf = shard.Names.ToDictionary(n => n, _ => shard, StringComparer.Ordinal);
        return new SafetensorsCheckpoint(null, [shard], shardOf, shard.Names, ReadOnlyDictionary<string, string>.Empty);
    }

    private static SafetensorsCheckpoint OpenSharded(string indexPath)
    {
        var index = SafetensorsIndex.Read(indexPath);
        var shards = new List<SafetensorsFile>();
        try
        {
            var byFile = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            for (int i = 0; i < index.ShardFiles.Count; i++)
            {
                var shard = SafetensorsFile.Open(index.ShardPaths[i]);
                shards.Add(shard);
                byFile.Add(index.ShardFiles[i], shard);
            }
            var shardOf = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (name, file) in index.WeightMap)
            {
                var shard = byFile[file];
                if (!shard.Contains(name))
                    throw SafetensorsErrors.Bad(indexPath, name, $"the index maps it to \"{FormatText.Printable(file)}\", which has no tensor of that name");
                shardOf.Add(name, shard);
            }
            for (int i = 0; i < shards.Count; i++)
            {
                foreach (var name in shards[i].Names)
                {
                    if (!shardOf.TryGetValue(name, out var mapped))
                        throw SafetensorsErrors.Bad(indexPath, name, $"shard \"{FormatText.Printable(index.ShardFiles[i])}\" holds it but the index does not list it (stale index?)");
                    if (!ReferenceEquals(mapped, shards[i]))
                        throw SafetensorsErrors.Bad(indexPath, name, $"shard \"{FormatText.Printable(index.ShardFiles[i])}\" holds it too, but the index maps it to \"{FormatText.Printable(Path.GetFileName(mapped.Path))}\"");
                }
            }
            var names = new ReadOnlyCollection<string>(index.WeightMap.Select(kv => kv.Key).ToArray());
            return new SafetensorsCheckpoint(indexPath, shards.ToArray(), shardOf, names, index.Metadata);
        }
        catch
        {
            foreach (var shard in shards) shard.Dispose();
            throw;
        }
    }
}
