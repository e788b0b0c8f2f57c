using System.Reflection;
using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cuda.Interop;

/// <summary>
/// Finds NVIDIA's shared libraries for the <c>[LibraryImport]</c> classes of this folder, whichever major
/// version is installed (13, 12, 11). The imports name a logical library ("cuda", "nvrtc", ...); the resolver
/// maps it to the first file that loads, searching, in order: <c>PARROT_CUDA_PATH</c>, <c>CUDA_PATH</c> /
/// <c>CUDA_HOME</c> (and their lib64 / lib / targets folders), the loader's own search (ldconfig,
/// LD_LIBRARY_PATH), the usual install folders, and the <c>nvidia/*/lib</c> folders of a pip-installed CUDA
/// (as found next to PyTorch). A library that is not found stays unresolved: the first call then throws
/// <see cref="DllNotFoundException"/>, which <see cref="CudaBackend"/> turns into "no CUDA device".
/// </summary>
internal static class CudaLibrary
{
    internal const string Cuda = "parrot-cuda";
    internal const string Nvrtc = "parrot-nvrtc";
    internal const string Cublas = "parrot-cublas";
    internal const string CublasLt = "parrot-cublasLt";
    internal const string Cudnn = "parrot-cudnn";
    internal const string Nccl = "parrot-nccl";
    /// <summary>Open MPI's libmpi (not NVIDIA's, but found the same way: the CPU collectives and NCCL's bootstrap).</summary>
    internal const string Mpi = "parrot-mpi";

    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, (nint Handle, string Where)> Loaded = new();
    private static bool _registered;

    /// <summary>File names tried for each logical library, newest major version first.</summary>
    internal static IReadOnlyList<string> FileNames(string library) => library switch
    {
        Cuda => ["libcuda.so.1", "libcuda.so"],
        Nvrtc => ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so.11.1", "libnvrtc.so.11.0", "libnvrtc.so"],
        Cublas => ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"],
        CublasLt => ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"],
        Cudnn => ["libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"],
        Nccl => ["libnccl.so.2", "libnccl.so"],
        Mpi => ["libmpi.so.40", "libmpi.so"],
        _ => [library],
    };

    /// <summary>Installs the resolver for this assembly's imports (idempotent; called by each import class).</summary>
    internal static void EnsureResolver()
    {
        lock (Gate)
        {
            if (_registered) return;
            NativeLibrary.SetDllImportResolver(typeof(CudaLibrary).Assembly, Resolve);
            _registered = true;
        }
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path) =>
        name.StartsWith("parrot-", StringComparison.Ordinal) && TryLoad(name, out nint h, out _) ? h : 0;

    /// <summary>Loads <paramref name="library"/> (a logical name above); on failure <paramref name="why"/> lists what was tried.</summary>
    internal static bool TryLoad(string library, out nint handle, out string why)
    {
        lock (Gate)
        {
            if (Loaded.TryGetValue(library, out var hit)) { handle = hit.Handle; why = hit.Where; return true; }
            var tried = new List<string>();
            foreach (var file in FileNames(library))
            {
                foreach (var dir in SearchFolders())
                {
                    var full = Path.Combine(dir, file);
                    if (!File.Exists(full)) continue;
                    if (NativeLibrary.TryLoad(full, out handle)) { Loaded[library] = (handle, full); why = full; return true; }
                    tried.Add(full + " (exists but did not load)");
                }
                // The loader's own search: ldconfig's cache and LD_LIBRARY_PATH.
                if (NativeLibrary.TryLoad(file, out handle)) { Loaded[library] = (handle, file); why = file; return true; }
            }
            handle = 0;
            why = $"{string.Join(" or ", FileNames(library).Take(3))} not found (searched PARROT_CUDA_PATH, CUDA_PATH, the loader's path, " +
                  $"/usr/local/cuda and pip's nvidia/*/lib folders{(tried.Count > 0 ? "; " + string.Join("; ", tried) : "")})";
            return false;
        }
    }

    /// <summary>Where the library was loaded from, or null when it is not loaded.</summary>
    internal static string? LoadedFrom(string library)
    {
        lock (Gate) return Loaded.TryGetValue(library, out var hit) ? hit.Where : null;
    }

    /// <summary>Folders searched before the loader's own path, most specific first; only existing ones.</summary>
    internal static IEnumerable<string> SearchFolders()
    {
        var roots = new List<string>();
        foreach (var variable in new[] { "PARROT_CUDA_PATH", "CUDA_PATH", "CUDA_HOME" })
        {
            var v = Environment.GetEnvironmentVariable(variable);
            if (string.IsNullOrWhiteSpace(v)) continue;
            foreach (var part in v.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)) roots.Add(part);
        }
        var result = new List<string>();
        foreach (var r in roots)
        {
            result.Add(r);
            result.Add(Path.Combine(r, "lib64"));
            result.Add(Path.Combine(r, "lib"));
            result.Add(Path.Combine(r, "targets", "x86_64-linux", "lib"));
        }
        result.AddRange(["/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64",
                         "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/wsl/lib"]);
        foreach (var site in PythonSitePackages())
        {
            var nvidia = Path.Combine(site, "nvidia");
            if (!Directory.Exists(nvidia)) continue;
            foreach (var sub in SafeDirectories(nvidia))
            {
                var lib = Path.Combine(sub, "lib");
                if (Directory.Exists(lib)) result.Add(lib);
            }
        }
        return result.Where(Directory.Exists).Distinct();
    }

    /// <summary>site-packages folders of the Python installs a pip-installed CUDA usually lives in.</summary>
    private static IEnumerable<string> PythonSitePackages()
    {
        var bases = new List<string>();
        var venv = Environment.GetEnvironmentVariable("VIRTUAL_ENV");
        if (!string.IsNullOrEmpty(venv)) bases.Add(Path.Combine(venv, "lib"));
        var home = Environment.GetEnvironmentVariable("HOME");
        if (!string.IsNullOrEmpty(home)) bases.Add(Path.Combine(home, ".local", "lib"));
        bases.AddRange(["/usr/local/lib", "/usr/lib"]);
        foreach (var opt in SafeDirectories("/opt"))
        {
            bases.Add(Path.Combine(opt, ".venv", "lib"));
            bases.Add(Path.Combine(opt, "venv", "lib"));
            bases.Add(Path.Combine(opt, "lib"));
        }
        foreach (var b in bases.Where(Directory.Exists))
            foreach (var py in SafeDirectories(b).Where(d => Path.GetFileName(d).StartsWith("python3", StringComparison.Ordinal)))
                foreach (var kind in new[] { "site-packages", "dist-packages" })
                {
                    var s = Path.Combine(py, kind);
                    if (Directory.Exists(s)) yield return s;
                }
    }

    private static IEnumerable<string> SafeDirectories(string dir)
    {
        try { return Directory.Exists(dir) ? Directory.GetDirectories(dir).Order(StringComparer.Ordinal).ToArray() : []; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }
}
