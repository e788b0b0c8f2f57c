using Parrot.Tensors.Cuda;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Every kernel file of native/ compiles with NVRTC for Ampere and Hopper without errors or warnings. Needs
/// libnvrtc (Debian's libnvrtc11.2 here and in CI, see .ci/run); no GPU is needed to compile.
/// </summary>
public class CudaKernelCompileTests
{
    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var file in KernelSources.Files)
            foreach (var arch in new[] { "compute_80", "compute_90" })
                yield return new TestCaseData(file, arch).SetName($"Compiles({file}, {arch})");
    }

    [Test]
    public void EveryOpFamilyHasAKernelFile()
    {
        Assert.That(KernelSources.Files, Is.SupersetOf(new[]
        {
            "adamw.cu", "attention.cu", "attention_decode.cu", "attention_decode_mma.cu", "attention_mma.cu", "attention_mma_backward.cu", "attention_mma_dkdv2.cu", "cross_entropy.cu", "elementwise.cu", "gemv.cu", "grad_norm.cu", "indexing.cu", "matmul_int.cu", "norms.cu", "random.cu", "reduce.cu", "rope.cu", "softmax.cu", "topk.cu",
        }));
        Assert.That(KernelSources.Headers.Keys, Is.SupersetOf(new[] { "prelude.cuh", "attention_mma.cuh", "swiglu.cuh" }), "the headers NVRTC is given");
    }

    [Test]
    public void CompileAllFillsTheCacheInParallelAndASecondRunOnlyReadsIt()
    {
        if (!NvrtcCompiler.IsAvailable(out var why)) Assert.Ignore($"NVRTC is not installed: {why}");
        var dir = Path.Combine(Path.GetTempPath(), "parrot-kernels-" + Guid.NewGuid().ToString("N"));
        var before = Environment.GetEnvironmentVariable("PARROT_KERNEL_CACHE");
        Environment.SetEnvironmentVariable("PARROT_KERNEL_CACHE", dir);
        try
        {
            // Compute capability 8.0 (a CUBIN or PTX, whichever this NVRTC gives), two files at a time.
            Assert.That(KernelCache.CompileAll(8, 0, parallelism: 2), Is.EqualTo(KernelSources.Files.Count));
            var images = Directory.GetFiles(dir).Where(f => !f.EndsWith(".tmp", StringComparison.Ordinal)).ToArray();
            Assert.That(images.Select(f => Path.GetFileName(f).Split('-')[0] + ".cu").Order(), Is.EqualTo(KernelSources.Files.Order()),
                "one image per kernel file, named by it");
            var written = images.ToDictionary(f => f, File.GetLastWriteTimeUtc);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            KernelCache.CompileAll(8, 0, parallelism: 2);
            Assert.That(written.All(kv => File.GetLastWriteTimeUtc(kv.Key) == kv.Value), "a second run reads the cache and writes nothing");
            Assert.That(sw.Elapsed.TotalSeconds, Is.LessThan(5), "reading the cache compiles nothing");
        }
        finally
        {
            Environment.SetEnvironmentVariable("PARROT_KERNEL_CACHE", before);
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void Compiles(string file, string arch)
    {
        if (!NvrtcCompiler.IsAvailable(out var why)) Assert.Ignore($"NVRTC is not installed, so kernels cannot be compiled here: {why}");
        var result = NvrtcCompiler.Compile(file, KernelSources.Read(file), KernelSources.Headers, arch);
        Assert.That(result.Log, Does.Not.Contain("warning").IgnoreCase, $"{file} for {arch} compiled with warnings:\n{result.Log}");
        string ptx = System.Text.Encoding.ASCII.GetString(result.Image);
        Assert.That(ptx, Does.Contain($".target sm_{arch[^2..]}"), "PTX for the requested architecture");
        // Every extern "C" __global__ kernel of the file is in the PTX under its own (unmangled) name.
        foreach (var kernel in KernelNames(KernelSources.Read(file)))
            Assert.That(ptx, Does.Contain($".entry {kernel}("), $"{file}: kernel {kernel} missing from the PTX");
    }

    [Test]
    public void ACompileErrorNamesTheFileAndShowsTheLog()
    {
        if (!NvrtcCompiler.IsAvailable(out var why)) Assert.Ignore($"NVRTC is not installed: {why}");
        var e = Assert.Throws<CudaException>(() => NvrtcCompiler.Compile("broken.cu", "extern \"C\" __global__ void k() { undefined_thing(); }",
            new Dictionary<string, string>(), "compute_80"));
        Assert.That(e!.Message, Does.Contain("broken.cu").And.Contain("undefined_thing").And.Contain("NVRTC_ERROR_COMPILATION"));
    }

    [Test]
    public void TargetIsACubinWhenNvrtcKnowsTheDeviceElsePtxForTheNewestOlderArch()
    {
        Assert.That(KernelCache.TargetFor(9, 0, [75, 80, 86, 89, 90]), Is.EqualTo("sm_90"));
        Assert.That(KernelCache.TargetFor(10, 0, [75, 80, 86, 89, 90]), Is.EqualTo("compute_90"));
        Assert.That(KernelCache.TargetFor(8, 7, [75, 80, 86, 90]), Is.EqualTo("compute_86"));
        Assert.Throws<CudaException>(() => KernelCache.TargetFor(7, 0, [75, 80]));
    }

    [Test]
    public void TheResolverSearchesPipAndCudaPathFolders()
    {
        var dir = Path.Combine(Path.GetTempPath(), "parrot-cuda-path-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(dir, "lib64"));
        var old = Environment.GetEnvironmentVariable("PARROT_CUDA_PATH");
        try
        {
            Environment.SetEnvironmentVariable("PARROT_CUDA_PATH", dir);
            Assert.That(CudaLibrary.SearchFolders().Take(2), Is.EqualTo(new[] { dir, Path.Combine(dir, "lib64") }));
            Assert.That(CudaLibrary.FileNames(CudaLibrary.Cublas), Is.EqualTo(new[] { "libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so" }));
        }
        finally
        {
            Environment.SetEnvironmentVariable("PARROT_CUDA_PATH", old);
            Directory.Delete(dir, true);
        }
    }

    private static IEnumerable<string> KernelNames(string source) =>
        System.Text.RegularExpressions.Regex.Matches(source, @"extern ""C"" __global__ void (?:__launch_bounds__\([^)]*\)\s+)?(\w+)\(").Select(m => m.Groups[1].Value);
}
