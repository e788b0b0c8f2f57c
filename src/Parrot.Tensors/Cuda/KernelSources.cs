using System.Reflection;
using System.Security.Cryptography;
using System.Text;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// The CUDA sources of <c>native/</c>, embedded in this assembly: <c>.cu</c> files per op family plus the shared
/// <c>.cuh</c> headers (<c>prelude.cuh</c> and the like), which NVRTC receives in memory (no CUDA headers are used).
/// </summary>
internal static class KernelSources
{
    private const string Prefix = "native/";

    /// <summary>Names of the kernel files (without folder), e.g. "elementwise.cu".</summary>
    internal static IReadOnlyList<string> Files { get; } = typeof(KernelSources).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(Prefix, StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal))
        .Select(n => n[Prefix.Length..]).Order(StringComparer.Ordinal).ToArray();

    /// <summary>The text of an embedded file.</summary>
    internal static string Read(string file)
    {
        using var s = typeof(KernelSources).Assembly.GetManifestResourceStream(Prefix + file)
                      ?? throw new FileNotFoundException($"kernel source {file} is not embedded in {typeof(KernelSources).Assembly.GetName().Name}");
        using var r = new StreamReader(s, Encoding.UTF8);
        return r.ReadToEnd();
    }

    /// <summary>The headers a kernel file may include, by include name: every embedded <c>.cuh</c> (prelude.cuh and
    /// the pieces a family's files share, such as attention_mma.cuh).</summary>
    internal static IReadOnlyDictionary<string, string> Headers { get; } = typeof(KernelSources).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(Prefix, StringComparison.Ordinal) && n.EndsWith(".cuh", StringComparison.Ordinal))
        .Select(n => n[Prefix.Length..]).Order(StringComparer.Ordinal).ToDictionary(n => n, Read);

    /// <summary>A short hex hash of a file's source together with its headers and the compile options.</summary>
    internal static string Hash(string source, IEnumerable<string> options)
    {
        var sb = new StringBuilder(source);
        foreach (var (k, v) in Headers.OrderBy(h => h.Key, StringComparer.Ordinal)) sb.Append('\0').Append(k).Append('\0').Append(v);
        foreach (var o in options) sb.Append('\0').Append(o);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())))[..20];
    }
}
