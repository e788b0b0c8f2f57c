using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Nn;

/// <summary>
/// Filling a module from a checkpoint by walking names (the candle way): every parameter and persistent
/// buffer is looked up under <c>prefix + its name</c>, loaded lazily (zero-copy when the checkpoint's dtype
/// is the wanted one) and swapped in; every missing, unexpected or mis-shaped tensor is reported together.
/// </summary>
public static class ModelLoading
{
    /// <summary>
    /// Loads <paramref name="module"/>'s parameters from <paramref name="checkpoint"/>, converting to
    /// <paramref name="dtype"/> (null: keep each parameter's current dtype). Names in the checkpoint that
    /// start with <paramref name="prefix"/> but match nothing are "unexpected" unless
    /// <paramref name="ignoreUnexpected"/> says otherwise; names outside the prefix are not this module's concern.
    /// </summary>
    public static LoadReport Load(Module module, SafetensorsCheckpoint checkpoint, string prefix = "", DType? dtype = null,
        Func<string, bool>? ignoreUnexpected = null, bool strict = true, IEnumerable<string>? optional = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(checkpoint);
        var optionalSet = new HashSet<string>(optional ?? [], StringComparer.Ordinal);
        var parameters = module.NamedParameters().ToList();
        var wanted = parameters.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var missing = new List<string>();
        var mismatched = new List<string>();
        bool wrongDType = false;
        foreach (var (name, p) in parameters)
        {
            string key = prefix + name;
            if (!checkpoint.TryGetInfo(key, out var info))
            {
                if (!optionalSet.Contains(name)) missing.Add(key);
                continue;
            }
            if (!info.Shape.SequenceEqual(p.Shape))
                mismatched.Add($"{key}: checkpoint {Tensor.FormatShape(info.Shape)}, model {p.Value.ShapeString()}");
            // Integers or booleans cast to a float weight (or the reverse) load without complaint and compute nonsense.
            else if (info.DType is { } stored && stored.IsFloat() != p.DType.IsFloat())
            {
                wrongDType = true;
                mismatched.Add($"{key}: checkpoint dtype {info.FormatDType}, model {p.DType} (a {(p.DType.IsFloat() ? "floating-point" : "non-floating-point")} tensor is needed)");
            }
        }
        var unexpected = checkpoint.Names
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && !wanted.Contains(n[prefix.Length..]) && !(ignoreUnexpected?.Invoke(n) ?? false))
            .OrderBy(n => n, StringComparer.Ordinal).ToList();
        if (mismatched.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing {missing.Count}: {Preview(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected {unexpected.Count}: {Preview(unexpected)}");
            if (mismatched.Count > 0) parts.Add($"{(wrongDType ? "shape or dtype" : "shape")} mismatch {mismatched.Count}: {Preview(mismatched)}");
            throw new StateDictException($"loading {module.GetType().Name} from {string.Join(", ", checkpoint.Files)}: " + string.Join("; ", parts), missing, unexpected, mismatched);
        }
        foreach (var (name, p) in parameters)
        {
            string key = prefix + name;
            if (!checkpoint.Contains(key)) continue;
            var loaded = TensorScope.Detach(checkpoint.Load(key, dtype ?? p.DType));
            var old = p.Value;
            p.ReplaceValue(loaded);
            old.Dispose();
        }
        module.ParametersReplaced();
        return new LoadReport(missing, unexpected);

        static string Preview(List<string> xs) => string.Join(", ", xs.Take(20)) + (xs.Count > 20 ? $", ... ({xs.Count - 20} more)" : "");
    }

    /// <summary>
    /// Before a model is allocated: throws when config.json (<paramref name="keys"/>) makes <paramref name="tensor"/>
    /// more than twice the size the checkpoint stores, so an absurd or mistyped size (hidden_size 10^9) is an error
    /// naming the keys, not an attempt to allocate terabytes. Near misses are left to <see cref="Load"/>, which names
    /// every mismatched tensor; an absent tensor too.
    /// </summary>
    public static void RefuseOversized(SafetensorsCheckpoint checkpoint, string configPath, string tensor, string keys, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if (!checkpoint.TryGetInfo(tensor, out var info)) return;
        double wanted = shape.Aggregate(1.0, (a, d) => a * d);
        if (wanted > 2.0 * Math.Max(1, info.ElementCount))
            throw new InvalidDataException($"{configPath}: {keys} make {tensor} {Tensor.FormatShape(shape)}, but the checkpoint's is {Tensor.FormatShape(info.Shape)}; refusing to allocate a model that cannot fit it");
    }

    /// <summary>
    /// Before a model is allocated: throws when config.json's <paramref name="key"/> asks for more than twice the
    /// numbered blocks (<paramref name="what"/>) the checkpoint holds under <paramref name="layersPrefix"/> (<c>….layers.</c>): 10^6 layers would
    /// otherwise be allocated one by one until memory runs out.
    /// </summary>
    public static void RefuseExcessLayers(SafetensorsCheckpoint checkpoint, string configPath, string key, int layers, string layersPrefix, string what = "layers")
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        int present = checkpoint.Names
            .Where(n => n.StartsWith(layersPrefix, StringComparison.Ordinal))
            .Select(n => n.AsSpan(layersPrefix.Length) is var rest && rest.IndexOf('.') is int dot and > 0 && int.TryParse(rest[..dot], out int i) ? i : -1)
            .Where(i => i >= 0).Distinct().Count();
        if (layers > 2 * Math.Max(1, present))
            throw new InvalidDataException($"{configPath}: {key} is {layers}, but the checkpoint holds {present} {what} under '{layersPrefix}'; refusing to allocate a model that cannot fit it");
    }

    /// <summary>Writes the module's parameters (under <paramref name="prefix"/>) as a safetensors checkpoint in <paramref name="directory"/>, atomically.</summary>
    public static IReadOnlyList<string> Save(Module module, string directory, string prefix = "", DType? dtype = null, long maxShardBytes = SafetensorsCheckpoint.DefaultMaxShardBytes)
    {
        ArgumentNullException.ThrowIfNull(module);
        using var scope = TensorScope.Begin();
        var tensors = module.NamedParameters().Select(p => new KeyValuePair<string, Tensor>(prefix + p.Name, dtype is { } d && d != p.Parameter.DType ? p.Parameter.Value.To(d) : p.Parameter.Value));
        return SafetensorsCheckpoint.Save(directory, tensors.ToList(), maxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
    }
}
