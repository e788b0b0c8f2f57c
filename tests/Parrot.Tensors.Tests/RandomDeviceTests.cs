using System.Text.RegularExpressions;
using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// What ties the CUDA Random kernel (native/random.cu) to the CPU's without a GPU: golden bits of the CPU backend that
/// tools/cuda-emu/random_test.cpp checks its C++ port of the formula and the kernel against (the same constants), and
/// the launcher's parameters and kernel names against the kernel file. On a GPU, `parrot selftest --device cuda` rows
/// "random uniform on the device = CPU (bits)" and "random normal on the device = CPU (ulp)" compare the tensors.
/// </summary>
public class RandomDeviceTests
{
    // Float64 bits at indices 0, 1, 2, 3, 999999 of seed 42: uniform on [-2, 3), normal(1.5, 2). random_test.cpp holds
    // the same numbers; a change to either formula must change both.
    private static readonly long[] Indices = [0, 1, 2, 3, 999999];
    private static readonly ulong[] UniformBits = [0xBFFB05505776830EUL, 0x3FFB35B8443EF7D4UL, 0x40020CEDAB9905A4UL, 0x3FD2CC7B3E109BE8UL, 0xBFE8FA015F6FC410UL];
    private static readonly ulong[] NormalBits = [0x3FF749DC19D6C8D5UL, 0x3FE9199CC062C7BFUL, 0xC002312649508986UL, 0x4004018C8C124AC6UL, 0x40119B536590A548UL];

    [Test]
    public void TheCpuDrawsTheGoldenBitsTheKernelTestChecks()
    {
        using var u = Tensor.Uniform([1_000_000], seed: 42, low: -2, high: 3, dtype: DType.F64);
        using var n = Tensor.Normal([1_000_000], seed: 42, mean: 1.5, std: 2, dtype: DType.F64);
        double[] ud = u.ToArray<double>(), nd = n.ToArray<double>();
        for (int j = 0; j < Indices.Length; j++)
        {
            Assert.That(BitConverter.DoubleToUInt64Bits(ud[Indices[j]]), Is.EqualTo(UniformBits[j]), $"uniform at {Indices[j]}");
            Assert.That(BitConverter.DoubleToUInt64Bits(nd[Indices[j]]), Is.EqualTo(NormalBits[j]), $"normal at {Indices[j]}");
        }
    }

    [Test]
    public void KernelParametersAreTheLaunchersOrder()
    {
        // The launcher packs (long n, pointer, int dtype code, ulong seed, double p0, double p1).
        string src = Regex.Replace(KernelSources.Read("random.cu"), @"\s+", " ");
        Assert.That(src, Does.Contain("extern \"C\" __global__ void random_uniform(i64 n, void* y, int dt, u64 seed, double low, double high)"));
        Assert.That(src, Does.Contain("extern \"C\" __global__ void random_normal(i64 n, void* y, int dt, u64 seed, double mean, double std)"));
        // RandomAt packs (long n, pointer, int dtype code, ulong base, counter pointer, double p0, double p1), then the
        // counter pointer alone for the step; its kernels are the kind's name + "_at".
        Assert.That(src, Does.Contain("extern \"C\" __global__ void random_uniform_at(i64 n, void* y, int dt, u64 base, const i64* counter, double low, double high)"));
        Assert.That(src, Does.Contain("extern \"C\" __global__ void random_normal_at(i64 n, void* y, int dt, u64 base, const i64* counter, double mean, double std)"));
        Assert.That(src, Does.Contain("extern \"C\" __global__ void random_counter_step(i64* counter)"));
    }

    [Test]
    public void EachKindHasItsKernelAndOtherValuesAreRefused()
    {
        Assert.That(CudaBackend.RandomKernel(RandomKind.Uniform), Is.EqualTo("random_uniform"));
        Assert.That(CudaBackend.RandomKernel(RandomKind.Normal), Is.EqualTo("random_normal"));
        Assert.That(Enum.GetValues<RandomKind>(), Has.Length.EqualTo(2), "a new kind needs its kernel in random.cu");
        Assert.Throws<ArgumentOutOfRangeException>(() => CudaBackend.RandomKernel((RandomKind)7));
    }

    [Test]
    public void TheDtypeCodesTheKernelStoresAreDTypesOrder()
    {
        // random_store switches on prelude.cuh's DT_* codes; the launcher passes (int)DType.
        string prelude = KernelSources.Headers["prelude.cuh"];
        foreach (var t in Enum.GetValues<DType>())
            Assert.That(prelude, Does.Match($@"#define DT_{t.ToString().ToUpperInvariant()} {(int)t}\b"), t.ToString());
    }
}
