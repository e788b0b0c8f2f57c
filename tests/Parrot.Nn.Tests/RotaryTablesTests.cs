using Parrot.Nn.Layers;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>The cached RoPE tables give exactly the tables built per call, for every way positions are asked for.</summary>
public class RotaryTablesTests
{
    private const int HeadDim = 8;
    private const double Theta = 10000;

    private static void AssertSame((Tensor Cos, Tensor Sin) got, Tensor positions, Device device, DType dtype)
    {
        var (c, s) = Tensor.RopeTables(positions, HeadDim, Theta);
        Assert.That(got.Cos.Device, Is.EqualTo(device));
        Assert.That(got.Cos.DType, Is.EqualTo(dtype));
        Assert.That(got.Cos.Shape.ToArray(), Is.EqualTo(c.Shape.ToArray()));
        Assert.That(got.Cos.ToFloatArray(), Is.EqualTo(c.To(dtype).ToFloatArray()));
        Assert.That(got.Sin.ToFloatArray(), Is.EqualTo(s.To(dtype).ToFloatArray()));
    }

    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    [TestCase(DType.F64)]
    public void EveryKindOfPositionsGivesThePerCallTables(DType dtype)
    {
        var dev = TestDevice.Get();
        using var tables = new RotaryTables(HeadDim, Theta);
        using var scope = TensorScope.Begin();
        AssertSame(tables.Range(5, 7, dev, dtype), Tensor.FromArray(Enumerable.Range(5, 7).Select(i => (long)i).ToArray(), 7), dev, dtype);
        var consecutiveRows = Tensor.FromArray(new long[] { 0, 1, 2, 9, 10, 11 }, 2, 3);
        AssertSame(tables.At(consecutiveRows, dev, dtype), consecutiveRows, dev, dtype);
        var scattered = Tensor.FromArray(new long[] { 3, 0, 0, 1, 40, 2 }, 2, 3); // gathered on the device
        AssertSame(tables.At(scattered, dev, dtype), scattered, dev, dtype);
        using var onDevice = scattered.To(dev);
        AssertSame(tables.At(onDevice, dev, dtype), scattered, dev, dtype);
        Assert.That(tables.Builds, Is.EqualTo(1));
        Assert.That(tables.Capacity(dev, dtype), Is.EqualTo(64));
        // Past the first table: grown (doubled) once, and views taken before stay valid.
        var (oldCos, _) = tables.Range(60, 4, dev, dtype);
        var before = oldCos.ToFloatArray();
        var far = Tensor.FromArray(new long[] { 200, 201 }, 1, 2);
        AssertSame(tables.At(far, dev, dtype), far, dev, dtype);
        Assert.That(tables.Capacity(dev, dtype), Is.EqualTo(256));
        Assert.That(tables.Builds, Is.EqualTo(2));
        Assert.That(oldCos.ToFloatArray(), Is.EqualTo(before));
        // Another device or dtype has its own table.
        AssertSame(tables.Range(0, 3, Device.Cpu, dtype), Tensor.FromArray(new long[] { 0, 1, 2 }, 3), Device.Cpu, dtype);
        Assert.That(tables.Builds, Is.EqualTo(3));
    }

    [Test]
    public void DevicePositionsBelowAKnownLimitAreGatheredWithoutAReadBack()
    {
        var dev = TestDevice.Get();
        using var tables = new RotaryTables(HeadDim, Theta);
        using var scope = TensorScope.Begin();
        var host = Tensor.FromArray(new long[] { 7, 3, 0, 9 }, 4, 1);
        var onDevice = host.To(dev);
        long reads = TestDevice.Backend.DeviceToHost;
        var got = tables.At(onDevice, dev, DType.F32, limit: 10);
        Assert.That(TestDevice.Backend.DeviceToHost - reads, Is.Zero, "the positions are not read back");
        Assert.That(tables.Capacity(dev, DType.F32), Is.EqualTo(64));
        AssertSame(got, host, dev, DType.F32);
        // A position the limit did not cover is out of the table: the gather's index check names it (on a GPU at the
        // next read, as here on the test device).
        var beyond = tables.At(Tensor.FromArray(new long[] { 2, 70 }, dev, 2), dev, DType.F32, limit: 10);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => beyond.Cos.ToFloatArray());
        Assert.That(e!.Message, Does.Contain("index 70 at position [1]").And.Contain("size 64"));
    }

    [Test]
    public void BadPositionsAreRefused()
    {
        using var tables = new RotaryTables(HeadDim, Theta);
        using var scope = TensorScope.Begin();
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => tables.At(Tensor.FromArray(new long[] { 2, -1 }, 2), Device.Cpu, DType.F32));
        Assert.That(ex!.Message, Does.Contain("-1..2"));
        Assert.Throws<ArgumentException>(() => tables.At(Tensor.FromArray(new[] { 1f }, 1), Device.Cpu, DType.F32));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RotaryTables(7, Theta));
    }
}
