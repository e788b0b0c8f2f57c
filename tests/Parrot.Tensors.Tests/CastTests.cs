using Parrot.Tensors;

namespace Parrot.Tensors.Tests;

public class CastTests
{
    private static readonly DType[] All = [DType.F32, DType.F64, DType.BF16, DType.F16, DType.I32, DType.I64, DType.U8, DType.Bool];

    [Test]
    public void SmallIntegersSurviveEveryCastPair()
    {
        var values = new double[] { 0, 1, 2, 7, 100, 255 };
        foreach (var from in All)
        foreach (var to in All)
        {
            using var scope = TensorScope.Begin();
            var src = Tensor.FromArray(values).To(from);
            var dst = src.To(to);
            Assert.That(dst.DType, Is.EqualTo(to));
            var expected = values.Select(v => from == DType.Bool || to == DType.Bool ? (v != 0 ? 1.0 : 0.0) : v).ToArray();
            Assert.That(dst.ToDoubleArray(), Is.EqualTo(expected), $"{from} -> {to}");
        }
    }

    [Test]
    public void FloatToIntegerTruncatesTowardZero()
    {
        using var scope = TensorScope.Begin();
        var f = Tensor.FromArray(new float[] { -2.7f, -0.5f, 0.5f, 2.7f });
        Assert.That(f.To(DType.I32).ToArray<int>(), Is.EqualTo(new[] { -2, 0, 0, 2 }));
        Assert.That(f.To(DType.I64).ToArray<long>(), Is.EqualTo(new long[] { -2, 0, 0, 2 }));
        Assert.That(f.To(DType.Bool).ToArray<bool>(), Is.EqualTo(new[] { true, true, true, true }));
    }

    [Test]
    public void NarrowingFloatsRoundsToNearestEven()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([10_007], seed: 3, std: 100);
        var xs = x.ToArray<float>();
        // Contiguous (vector path) and strided (scalar path) conversions agree with the scalar reference.
        var bf = x.To(DType.BF16).ToBFloat16Bits();
        var bfStrided = x.Slice(0, step: 3).To(DType.BF16).ToBFloat16Bits();
        for (int i = 0; i < xs.Length; i++) Assert.That(bf[i], Is.EqualTo(BFloat16.FromFloat(xs[i])));
        for (int i = 0; i < bfStrided.Length; i++) Assert.That(bfStrided[i], Is.EqualTo(BFloat16.FromFloat(xs[3 * i])));
        var h = x.To(DType.F16).ToArray<Half>();
        for (int i = 0; i < xs.Length; i++) Assert.That(h[i], Is.EqualTo((Half)xs[i]));
        var d = Tensor.FromArray(new double[] { 1.0 + 1e-12, 1e300, double.NaN });
        var df = d.To(DType.F32).ToArray<float>();
        Assert.That(df[0], Is.EqualTo(1f));
        Assert.That(df[1], Is.EqualTo(float.PositiveInfinity));
        Assert.That(float.IsNaN(df[2]), Is.True);
    }

    [Test]
    public void WideningIsExact()
    {
        using var scope = TensorScope.Begin();
        var l = Tensor.FromArray(new long[] { (1L << 53) + 0, -(1L << 40), long.MaxValue });
        var d = l.To(DType.F64).ToArray<double>();
        Assert.That(d[0], Is.EqualTo(9007199254740992.0));
        Assert.That(d[1], Is.EqualTo(-(double)(1L << 40)));
        var i = Tensor.FromArray(new long[] { 1L << 40, -5 });
        Assert.That(i.To(DType.I32).ToArray<int>()[1], Is.EqualTo(-5));
    }

    [Test]
    public void CastOfStridedAndBroadcastSources()
    {
        using var scope = TensorScope.Begin();
        var a = Tensor.Arange(12, DType.I64).Reshape(3, 4).Transpose();
        Assert.That(a.To(DType.F32).ToArray<float>(), Is.EqualTo(new float[] { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }));
        var dst = Tensor.Zeros([2, 3], DType.BF16);
        dst.CopyFrom(Tensor.FromArray(new double[] { 1, 2, 3 }));
        Assert.That(dst.ToFloatArray(), Is.EqualTo(new float[] { 1, 2, 3, 1, 2, 3 }));
        Assert.Throws<ArgumentException>(() => dst.CopyFrom(Tensor.Zeros([4])));
    }
}
