namespace Parrot.Tensors.Tests;

/// <summary>
/// IBackend.RandomAt (the seed read from a counter in device memory, then advanced there) on the CPU backend: the draw
/// is Random's with seed baseSeed + counter[0] (wrapping), bit for bit, in every dtype and both kinds, and the counter
/// goes up by one per call (wrapping too), also for an empty draw. tools/cuda-emu/random_test.cpp checks the CUDA
/// kernels the same way; the test device's run is in Parrot.Nn.Tests (DropoutCounterTests).
/// </summary>
public class RandomAtTests
{
    private static Tensor Counter(long value) => Tensor.FromArray([value], 1);

    private static byte[] Bytes(Tensor t) => t.To(DType.F64).ToArray<double>().SelectMany(BitConverter.GetBytes).ToArray();

    private static unsafe byte[] RawBytes(Tensor t) =>
        new ReadOnlySpan<byte>((void*)t.DataPointer, checked((int)(t.Count * t.DType.SizeOf()))).ToArray();

    // (base, counter): small ones, a counter past 2^32, a negative counter (read as unsigned: −1 is 2^64 − 1) and a sum
    // that wraps past 2^64.
    private static readonly (ulong Base, long Counter)[] Seeds =
        [(0, 0), (42, 0), (40, 2), (7, 5_000_000_000L), (ulong.MaxValue - 1, 5), (3, -1), (ulong.MaxValue, long.MinValue)];

    [Test]
    public void TheDrawIsRandomsWithTheSeedBasePlusCounterBitForBit([Values] RandomKind kind)
    {
        foreach (var dt in Enum.GetValues<DType>())
            foreach (var (b, c) in Seeds)
            {
                using var counter = Counter(c);
                using var at = Tensor.Empty([1001], dt);
                at.Backend.RandomAt(at, kind, b, counter, kind == RandomKind.Uniform ? -2 : 1.5, kind == RandomKind.Uniform ? 3 : 2);
                using var want = Tensor.Empty([1001], dt);
                want.Backend.Random(want, kind, unchecked(b + (ulong)c), kind == RandomKind.Uniform ? -2 : 1.5, kind == RandomKind.Uniform ? 3 : 2);
                Assert.That(RawBytes(at), Is.EqualTo(RawBytes(want)), $"{kind} {dt.Name()} base {b} counter {c}");
            }
    }

    [Test]
    public void TheCounterGoesUpByOnePerCallAndWraps()
    {
        foreach (long start in new[] { 0L, 41, -1, long.MaxValue })
        {
            using var counter = Counter(start);
            using var t = Tensor.Empty([17], DType.F32);
            for (int k = 0; k < 3; k++) t.Backend.RandomAt(t, RandomKind.Normal, 9, counter, 0, 1);
            Assert.That(counter.ToArray<long>()[0], Is.EqualTo(unchecked(start + 3)), $"from {start}");
        }
        using var empty = Tensor.Empty([0, 4], DType.F32);
        using var c0 = Counter(10);
        empty.Backend.RandomAt(empty, RandomKind.Uniform, 9, c0, 0, 1);
        Assert.That(c0.ToArray<long>()[0], Is.EqualTo(11), "an empty draw is a call too (call k keeps seed base + k)");
    }

    [Test]
    public void SuccessiveCallsDrawSuccessiveSeeds()
    {
        using var counter = Counter(0);
        for (ulong k = 0; k < 4; k++)
        {
            using var at = Tensor.UniformAt([3, 65], 1000, counter, -1, 1, DType.BF16);
            using var want = Tensor.Uniform([3, 65], 1000 + 2 * k, -1, 1, DType.BF16); // one counter, two draws per round
            Assert.That(at.ToBFloat16Bits(), Is.EqualTo(want.ToBFloat16Bits()), $"uniform, call {2 * k}");
            using var n = Tensor.NormalAt([9], 5, counter, 0, 2, DType.F64);
            using var nWant = Tensor.Normal([9], 5 + 2 * k + 1, 0, 2, DType.F64);
            Assert.That(Bytes(n), Is.EqualTo(Bytes(nWant)), $"normal, call {2 * k + 1}");
        }
        Assert.That(counter.ToArray<long>()[0], Is.EqualTo(8));
    }

    [Test]
    public void ABadCounterOrDestinationIsRefusedAndTheCounterKept()
    {
        using var i32 = Tensor.FromArray([0], 1);
        using var two = Tensor.FromArray([0L, 0L], 2);
        using var wide = Tensor.FromArray([0L, 0L], 2);
        using var strided = wide.Narrow(0, 1, 1);
        Assert.Throws<ArgumentException>(() => Tensor.UniformAt([4], 0, i32));
        Assert.Throws<ArgumentException>(() => Tensor.UniformAt([4], 0, two));
        Assert.That(() => Tensor.UniformAt([4], 0, counter: null!), Throws.InstanceOf<ArgumentNullException>());
        using var counter = Counter(3);
        Assert.Throws<ArgumentException>(() => Tensor.NormalAt([4], 0, counter, dtype: DType.I32), "integer dtypes are refused as by Normal");
        using var t = Tensor.Empty([4, 4], DType.F32);
        using var notContiguous = t.Transpose(0, 1);
        Assert.Throws<ArgumentException>(() => t.Backend.RandomAt(notContiguous, RandomKind.Uniform, 0, counter, 0, 1));
        Assert.That(counter.ToArray<long>()[0], Is.EqualTo(3), "a refused draw does not count");
        // A one-element view of a longer buffer is a counter too: the element it shows is read and advanced.
        using var at = Tensor.UniformAt([4], 0, strided);
        Assert.That(wide.ToArray<long>(), Is.EqualTo(new long[] { 0, 1 }));
    }
}
