using NUnit.Framework;
using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The launch geometry of the multi-tensor gradient norm (CudaBackend.GradNormClip) against native/grad_norm.cu's
/// constants (the kernels themselves are checked by tools/cuda-emu's grad_norm_test and, on a GPU, by the selftest row
/// "grad norm + clip" against the per-tensor path and the CPU).
/// </summary>
public class CudaGradNormDispatchTests
{
    private static long Define(string src, string name)
    {
        var m = System.Text.RegularExpressions.Regex.Match(src, $@"#define {name} (\d+)\b");
        Assert.That(m.Success, $"grad_norm.cu defines {name}");
        return long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    [Test]
    public void BlockCountsAndTableSizeAreTheKernelFiles()
    {
        string src = KernelSources.Read("grad_norm.cu");
        long perBlock = Define(src, "GN_BLOCK_ELEMENTS"), most = Define(src, "GN_MAX_BLOCKS");
        Assert.That(Define(src, "GN_TABLE"), Is.EqualTo(CudaBackend.GradNormTable));
        Assert.That(CudaBackend.GradNormBlocks(0), Is.EqualTo(1), "an empty gradient still writes its (zero) partial");
        Assert.That(CudaBackend.GradNormBlocks(1), Is.EqualTo(1));
        Assert.That(CudaBackend.GradNormBlocks(perBlock), Is.EqualTo(1));
        Assert.That(CudaBackend.GradNormBlocks(perBlock + 1), Is.EqualTo(2));
        Assert.That(CudaBackend.GradNormBlocks(100003), Is.EqualTo((100003 + perBlock - 1) / perBlock));
        Assert.That(CudaBackend.GradNormBlocks(151936L * 896), Is.EqualTo(most), "Qwen2-0.5B's embedding: the most blocks");
        Assert.That(CudaBackend.GradNormBlocks(1L << 40), Is.EqualTo(most));
        Assert.That(CudaBackend.GradNormBlocks(most * perBlock), Is.EqualTo(most));
        Assert.That(CudaBackend.GradNormBlocks(most * perBlock + 1), Is.EqualTo(most));
    }

    [Test]
    public void TheSwitchIsOffOnlyForZero()
    {
        Assert.That(CudaBackend.MultiTensorGradClipDefault(null), Is.True);
        Assert.That(CudaBackend.MultiTensorGradClipDefault("1"), Is.True);
        Assert.That(CudaBackend.MultiTensorGradClipDefault(" 0 "), Is.False);
    }
}
