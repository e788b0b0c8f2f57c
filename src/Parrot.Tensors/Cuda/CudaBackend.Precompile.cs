using System.Diagnostics;

namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// Compiles every kernel file of native/ for this GPU into the on-disk kernel cache now, several files at a time
    /// (NVRTC compiles one program per thread; the files are independent), instead of one by one at their first use:
    /// on a fresh machine the first use of each file otherwise stalls the work that needs it for the whole compile.
    /// Files already cached (or taken from PARROT_CUDA_FATBIN_DIR) cost a file read. Returns how many files and the
    /// seconds it took. Modules are still loaded into the context at first use.
    /// </summary>
    public (int Files, double Seconds) PrecompileKernels(int parallelism = 0)
    {
        var sw = Stopwatch.StartNew();
        int files = KernelCache.CompileAll(_context.Major, _context.Minor, parallelism);
        return (files, sw.Elapsed.TotalSeconds);
    }
}
