using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>The CUDA backend's host-side logic, and its behaviour on a machine without a GPU.</summary>
public class CudaBackendTests
{
    [Test]
    public void WithoutAGpuACudaTensorIsAClearErrorNotACrash()
    {
        if (CudaBackend.IsAvailable(out var description)) Assert.Ignore($"a GPU is present here: {description}");
        var e = Assert.Throws<CudaUnavailableException>(() => Tensor.Zeros([2, 3], DType.F32, new Device(DeviceKind.Cuda)));
        Assert.That(e!.Message, Does.StartWith("no CUDA device: "));
        Assert.That(e, Is.InstanceOf<NotSupportedException>(), "command lines report NotSupportedException as a one-line error");
        // Asking again gives the same answer (nothing half-initialised is cached) and the CPU keeps working.
        Assert.That(CudaBackend.IsAvailable(out var reason), Is.False);
        Assert.That(reason, Is.EqualTo(e.Reason));
        using var t = Tensor.Ones([2]);
        Assert.That(t.Sum().Item(), Is.EqualTo(2));
    }

    [TestCase(0, 512)]
    [TestCase(1, 512)]
    [TestCase(513, 1024)]
    [TestCase(1 << 20, 1 << 20)]
    [TestCase((1 << 20) + 1, 2 << 20)]
    [TestCase((5 << 20) + 1, 6 << 20)]
    public void AllocatorRoundsToSizeClasses(long request, long expected) =>
        Assert.That(CudaAllocator.SizeClass(request), Is.EqualTo(expected));

    [Test]
    public unsafe void LayoutMergesDimsThatEveryOperandWalksContiguously()
    {
        // Contiguous [2, 3, 4] read by two contiguous operands: one dim of 24.
        var a = KernelLayout.Create("t", [2, 3, 4], [12, 4, 1], [12, 4, 1]);
        Assert.That(a.Rank, Is.EqualTo(1));
        Assert.That(a.Size[0], Is.EqualTo(24));
        // A transposed input keeps two dims; a broadcast input (stride 0) merges only where its strides allow.
        var b = KernelLayout.Create("t", [3, 4], [4, 1], [1, 3]);
        Assert.That(b.Rank, Is.EqualTo(2));
        Assert.That((b.Size[0], b.Size[1], b.Stride[KernelLayout.MaxRank], b.Stride[KernelLayout.MaxRank + 1]), Is.EqualTo((3L, 4L, 1L, 3L)));
        var c = KernelLayout.Create("t", [5, 1, 6], [6, 6, 1], [0, 0, 1]);
        Assert.That(c.Rank, Is.EqualTo(2), "size-1 dims dropped, the broadcast dim stays separate");
        Assert.That((c.Stride[KernelLayout.MaxRank], c.Stride[KernelLayout.MaxRank + 1]), Is.EqualTo((0L, 1L)));
        // Nine dims that cannot merge (each operand's strides alternate) are refused with the op's name.
        int[] shape = [2, 2, 2, 2, 2, 2, 2, 2, 2];
        long[] odd = [1, 2, 4, 8, 16, 32, 64, 128, 256];
        var e = Assert.Throws<NotSupportedException>(() => KernelLayout.Create("Binary", shape, Tensor.ContiguousStrides(shape), odd));
        Assert.That(e!.Message, Does.StartWith("Binary:"));
    }

    [Test]
    public unsafe void KernelArgsAlignEachParameter()
    {
        using var args = new KernelArgs().Add(7).Add(9L).Add(1.5f).Add(2.5);
        void** p = stackalloc void*[args.Count];
        args.Fill(p);
        Assert.That(args.Count, Is.EqualTo(4));
        Assert.That((long)p[1] - (long)p[0], Is.EqualTo(8), "the long is 8-aligned after an int");
        Assert.That((*(int*)p[0], *(long*)p[1], *(float*)p[2], *(double*)p[3]), Is.EqualTo((7, 9L, 1.5f, 2.5)));
        Assert.That((long)p[3] % 8, Is.EqualTo(0));
    }

    [Test]
    public void OutOfMemoryMessageNamesTheNumbers()
    {
        var e = new CudaOutOfMemoryException(3L << 30, 1L << 29, 80L << 30, 1L << 20, 70L << 30);
        Assert.That(e.Message, Does.Contain("3.00 GiB").And.Contain("512.00 MiB free").And.Contain("80.00 GiB"));
        Assert.That(e, Is.InstanceOf<OutOfMemoryException>());
    }

    [Test, Category("GPU")]
    public void OnAGpuAnOversizedAllocationThrowsAndTheDeviceStaysUsable()
    {
        if (!CudaBackend.IsAvailable(out var why)) Assert.Ignore($"no GPU: {why}");
        var dev = new Device(DeviceKind.Cuda);
        var cuda = (CudaBackend)Backends.For(dev);
        using (var keep = Tensor.Zeros([1 << 20], DType.F32, dev)) { }
        Assert.That(cuda.BytesCached, Is.GreaterThanOrEqualTo(4L << 20), "the freed block stays cached");
        var e = Assert.Throws<CudaOutOfMemoryException>(() => Tensor.Empty([1 << 30, 1 << 10], DType.F32, dev));
        Assert.That(e!.Requested, Is.EqualTo(4L << 40));
        using var x = Tensor.Ones([1000], DType.F32, dev);
        Assert.That(x.Sum().Item(), Is.EqualTo(1000));
        cuda.EmptyCache();
        Assert.That(cuda.BytesCached, Is.Zero);
    }
}
