using Parrot.Tensors.Formats;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// Compiled kernel images on disk, keyed by the source hash (source, headers, options, NVRTC version) and the
/// target architecture, so NVRTC runs once per machine and kernel version. The folder is
/// <c>PARROT_KERNEL_CACHE</c>, else <c>$XDG_CACHE_HOME/parrot/kernels</c>, else <c>~/.cache/parrot/kernels</c>.
/// When <c>PARROT_CUDA_FATBIN_DIR</c> names a folder holding <c>NAME.fatbin</c> (built by native/CMakeLists.txt),
/// that image is used instead and NVRTC is not needed.
/// </summary>
internal static class KernelCache
{
    /// <summary>The cache folder (created on first write).</summary>
    internal static string Folder
    {
        get
        {
            var own = Environment.GetEnvironmentVariable("PARROT_KERNEL_CACHE");
            if (!string.IsNullOrWhiteSpace(own)) return own;
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            var root = !string.IsNullOrWhiteSpace(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(root, "parrot", "kernels");
        }
    }

    /// <summary>
    /// The target for a device of compute capability <paramref name="major"/>.<paramref name="minor"/>: a CUBIN
    /// ("sm_90") when this NVRTC knows the real architecture, else PTX for the newest virtual one it knows at
    /// or below the device ("compute_86"), which the driver compiles when loading.
    /// </summary>
    internal static string TargetFor(int major, int minor, int[] supported)
    {
        int want = major * 10 + minor;
        if (supported.Contains(want)) return $"sm_{want}";
        var below = supported.Where(a => a <= want).ToArray();
        if (below.Length == 0) throw new CudaException($"NVRTC supports architectures {string.Join(", ", supported)}, none at or below the device's sm_{want}", 0);
        return $"compute_{below.Max()}";
    }

    /// <summary>
    /// The architecture number (90 for sm_90 or compute_90) NVRTC builds this device's kernels for; 0 when it cannot say
    /// (NVRTC missing, or nvcc fatbins from PARROT_CUDA_FATBIN_DIR, whose architectures are not checked here).
    /// </summary>
    internal static int KernelArch(int major, int minor)
    {
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("PARROT_CUDA_FATBIN_DIR"))) return 0;
        try
        {
            string target = TargetFor(major, minor, NvrtcCompiler.SupportedArchs());
            return int.Parse(target.AsSpan(target.IndexOf('_') + 1));
        }
        catch (Exception e) when (e is CudaException or DllNotFoundException or EntryPointNotFoundException or FormatException or InvalidOperationException or NotSupportedException)
        {
            return 0;
        }
    }

    /// <summary>The image of kernel file <paramref name="file"/> for the device: from the fatbin folder, the disk cache, or a fresh NVRTC compile.</summary>
    internal static byte[] Image(string file, int major, int minor)
    {
        var name = Path.GetFileNameWithoutExtension(file);
        var fatbinDir = Environment.GetEnvironmentVariable("PARROT_CUDA_FATBIN_DIR");
        if (!string.IsNullOrWhiteSpace(fatbinDir))
        {
            var fatbin = Path.Combine(fatbinDir, name + ".fatbin");
            if (File.Exists(fatbin)) return File.ReadAllBytes(fatbin);
        }
        var (vMajor, vMinor) = NvrtcCompiler.Version;
        string target = TargetFor(major, minor, NvrtcCompiler.SupportedArchs());
        string source = KernelSources.Read(file);
        string hash = KernelSources.Hash(source, [.. NvrtcCompiler.BaseOptions, target, $"nvrtc {vMajor}.{vMinor}"]);
        bool cubin = target.StartsWith("sm_", StringComparison.Ordinal);
        var path = Path.Combine(Folder, $"{name}-{hash}-{target}.{(cubin ? "cubin" : "ptx")}");
        if (File.Exists(path))
        {
            try { return File.ReadAllBytes(path); }
            catch (IOException) { /* unreadable: compile again below */ }
        }
        var result = NvrtcCompiler.Compile(file, source, KernelSources.Headers, target);
        try
        {
            Directory.CreateDirectory(Folder);
            AtomicFile.Write(path, s => s.Write(result.Image));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A read-only home folder only costs a compile per process.
        }
        return result.Image;
    }

    /// <summary>
    /// Every kernel file's image for compute capability <paramref name="major"/>.<paramref name="minor"/> into the cache,
    /// <paramref name="parallelism"/> files at a time (0: one per processor), the largest first so the longest compile
    /// starts at once. Returns the number of files.
    /// </summary>
    internal static int CompileAll(int major, int minor, int parallelism = 0)
    {
        int workers = parallelism > 0 ? parallelism : Math.Max(1, Environment.ProcessorCount);
        var order = KernelSources.Files.OrderByDescending(f => KernelSources.Read(f).Length).ToArray();
        Parallel.ForEach(order, new ParallelOptions { MaxDegreeOfParallelism = workers }, f => Image(f, major, minor));
        return order.Length;
    }
}
