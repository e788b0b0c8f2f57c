using System.Text.RegularExpressions;

namespace Parrot.Tensors.Formats;

/// <summary>Writes a model directory's weights, sharded like transformers' <c>save_pretrained</c> (see <see cref="SafetensorsCheckpoint.Save"/>).</summary>
internal static partial class SafetensorsCheckpointWriter
{
    private const string Op = "SafetensorsCheckpoint.Save";

    [GeneratedRegex(@"^model-\d{5}-of-\d{5}\.safetensors$")]
    private static partial Regex ShardName();

    public static IReadOnlyList<string> Save(string directory, IEnumerable<KeyValuePair<string, Tensor>> tensors, long maxShardBytes, IReadOnlyDictionary<string, string>? metadata)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (maxShardBytes <= 0) throw new ArgumentException($"{Op}: maxShardBytes must be positive, got {maxShardBytes}", nameof(maxShardBytes));
        if (metadata is not null && metadata.ContainsKey("total_size"))
            throw new ArgumentException($"{Op}: the metadata key 'total_size' is reserved for the index");
        var items = SafetensorsWriter.Collect(tensors, Op);
        var shardMetadata = WithFormat(metadata);
        var groups = Split(items, maxShardBytes);

        // Every header is built (and so every name and metadata entry checked) before any file is touched.
        var headers = groups.Select(g => SafetensorsWriter.BuildHeader(g, shardMetadata, Op)).ToList();
        Directory.CreateDirectory(directory);
        string single = Path.Combine(directory, SafetensorsCheckpoint.SingleFileName);
        string index = Path.Combine(directory, SafetensorsCheckpoint.IndexFileName);

        if (groups.Count == 1)
        {
            AtomicFile.Write(single, file => SafetensorsWriter.Write(file, groups[0], headers[0]));
            RemoveStale(directory, keep: [single]);
            return [single];
        }

        var paths = Enumerable.Range(1, groups.Count)
            .Select(i => Path.Combine(directory, $"model-{i:D5}-of-{groups.Count:D5}.safetensors")).ToList();
        var temps = new List<string>();
        try
        {
            for (int i = 0; i < groups.Count; i++)
            {
                var group = groups[i];
                var header = headers[i];
                temps.Add(AtomicFile.WriteTemporary(paths[i], file => SafetensorsWriter.Write(file, group, header)));
            }
            // An old index over shards we are about to replace one by one would, after a crash, describe a
            // mix of two checkpoints; with no index the directory reads as "no checkpoint" instead.
            if (File.Exists(index) && paths.Any(File.Exists)) File.Delete(index);
            for (int i = 0; i < paths.Count; i++)
            {
                AtomicFile.MoveIntoPlace(temps[i], paths[i]);
                temps[i] = "";
            }
        }
        finally
        {
            foreach (var temp in temps) if (temp.Length > 0) AtomicFile.TryDelete(temp);
        }

        long total = items.Sum(item => item.Bytes);
        var weightMap = new List<KeyValuePair<string, string>>();
        for (int i = 0; i < groups.Count; i++)
            foreach (var item in groups[i]) weightMap.Add(new(item.Name, Path.GetFileName(paths[i])));
        byte[] json = SafetensorsIndex.Build(total, metadata, weightMap);
        AtomicFile.Write(index, file => file.Write(json));
        RemoveStale(directory, keep: [.. paths, index]);
        return [.. paths, index];
    }

    /// <summary>Consecutive runs of tensors whose data fits <paramref name="maxShardBytes"/> (a larger tensor alone), each in file order.</summary>
    private static List<List<SafetensorsWriter.Item>> Split(List<SafetensorsWriter.Item> items, long maxShardBytes)
    {
        var groups = new List<List<SafetensorsWriter.Item>>();
        var current = new List<SafetensorsWriter.Item>();
        long size = 0;
        foreach (var item in items)
        {
            if (current.Count > 0 && size + item.Bytes > maxShardBytes)
            {
                groups.Add(current);
                current = [];
                size = 0;
            }
            current.Add(item);
            size += item.Bytes;
        }
        groups.Add(current);
        return groups.Select(g => SafetensorsWriter.InFileOrder(g)).ToList();
    }

    private static IReadOnlyDictionary<string, string> WithFormat(IReadOnlyDictionary<string, string>? metadata)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (metadata is null || !metadata.ContainsKey("format")) result["format"] = "pt";
        if (metadata is not null)
            foreach (var (k, v) in metadata) result[k ?? throw new ArgumentException($"{Op}: a metadata key is null")] = v;
        return result;
    }

    /// <summary>Deletes the files of an earlier checkpoint in <paramref name="directory"/> that the new one does not use.</summary>
    private static void RemoveStale(string directory, IReadOnlyCollection<string> keep)
    {
        var kept = new HashSet<string>(keep.Select(Path.GetFullPath), StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(directory))
        {
            string name = Path.GetFileName(file);
            bool ours = name == SafetensorsCheckpoint.SingleFileName || name == SafetensorsCheckpoint.IndexFileName || ShardName().IsMatch(name);
            if (ours && !kept.Contains(Path.GetFullPath(file))) AtomicFile.TryDelete(file);
        }
    }
}
