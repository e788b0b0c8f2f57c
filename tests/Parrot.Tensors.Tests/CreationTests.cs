using Parrot.Tensors;
using Parrot.Tensors.Cpu;

namespace Parrot.Tensors.Tests;

public class CreationTests
{
    [Test]
    public void ZerosOnesFullArange()
    {
        using var scope = TensorScope.Begin();
        Assert.That(Tensor.Zeros([2, 2], DType.I64).ToArray<long>(), Is.EqualTo(new long[4]));
        Assert.That(Tensor.Ones([3], DType.BF16).ToFloatArray(), Is.EqualTo(new float[] { 1, 1, 1 }));
        Assert.That(Tensor.Full([2], 2.5, DType.F64).ToArray<double>(), Is.EqualTo(new[] { 2.5, 2.5 }));
        Assert.That(Tensor.Full([2], 0.1, DType.BF16).ToBFloat16Bits(), Is.EqualTo(new ushort[] { BFloat16.FromFloat(0.1f), BFloat16.FromFloat(0.1f) }));
        Assert.That(Tensor.Arange(5).ToArray<long>(), Is.EqualTo(new long[] { 0, 1, 2, 3, 4 }));
        Assert.That(Tensor.Arange(1, 2, 0.25, DType.F32).ToArray<float>(), Is.EqualTo(new float[] { 1, 1.25f, 1.5f, 1.75f }));
        Assert.That(Tensor.Arange(5, 0, -2).ToArray<long>(), Is.EqualTo(new long[] { 5, 3, 1 }));
        Assert.That(Tensor.Arange(0, 0).Count, Is.EqualTo(0));
        Assert.Throws<ArgumentException>(() => Tensor.Arange(0, 1, 0));
        Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, -1]));
        Assert.Throws<ArgumentException>(() => Tensor.FromArray(new float[5], 2, 3));
    }

    [Test]
    public void RandomIsSeededAndIndependentOfThreadCount()
    {
        int saved = CpuParallel.Workers;
        try
        {
            CpuParallel.Workers = 1;
            using var a1 = Tensor.Normal([300, 1000], seed: 42);
            using var u1 = Tensor.Uniform([300, 1000], seed: 42, low: -2, high: 3, dtype: DType.F64);
            CpuParallel.Workers = 2;
            using var a2 = Tensor.Normal([300, 1000], seed: 42);
            using var u2 = Tensor.Uniform([300, 1000], seed: 42, low: -2, high: 3, dtype: DType.F64);
            using var a3 = Tensor.Normal([300, 1000], seed: 43);
            Assert.That(a1.ToArray<float>(), Is.EqualTo(a2.ToArray<float>()));
            Assert.That(u1.ToArray<double>(), Is.EqualTo(u2.ToArray<double>()));
            Assert.That(a1.ToArray<float>(), Is.Not.EqualTo(a3.ToArray<float>()));
            // A prefix of a larger draw equals a smaller draw: values depend only on (seed, index).
            using var small = Tensor.Normal([1000], seed: 42);
            Assert.That(small.ToArray<float>(), Is.EqualTo(a1.ToArray<float>().Take(1000).ToArray()));
        }
        finally { CpuParallel.Workers = saved; }
    }

    [Test]
    public void RandomHasTheRequestedMoments()
    {
        using var n = Tensor.Normal([1_000_000], seed: 7, mean: 1.5, std: 2, dtype: DType.F64);
        var d = n.ToArray<double>();
        double mean = d.Average(), var = d.Select(x => (x - mean) * (x - mean)).Average();
        Assert.That(mean, Is.EqualTo(1.5).Within(0.01));
        Assert.That(Math.Sqrt(var), Is.EqualTo(2).Within(0.01));
        // Fraction within one sigma of a normal: 68.27%.
        double inside = d.Count(x => Math.Abs(x - 1.5) < 2) / (double)d.Length;
        Assert.That(inside, Is.EqualTo(0.6827).Within(0.003));
        using var u = Tensor.Uniform([1_000_000], seed: 8, low: -1, high: 3);
        var f = u.ToArray<float>();
        Assert.That(f.Min(), Is.GreaterThanOrEqualTo(-1f));
        Assert.That(f.Max(), Is.LessThan(3f));
        Assert.That(f.Average(x => (double)x), Is.EqualTo(1).Within(0.01));
        Assert.Throws<ArgumentException>(() => Tensor.Normal([2], 1, dtype: DType.I32));
    }
}
