using Parrot.Tensors;
using Parrot.Tensors.Cpu;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// IBackend.IndexCopy has no Tensor front-end, so no device check runs before a backend's: each backend refuses tensors
/// on several devices itself (IndexCopyArgs). Here the CPU kernel, with one tensor on the test device (host memory
/// behind another device's name, so without the check the copy would silently run; on CUDA it would dereference a host
/// pointer in the kernel).
/// </summary>
public class IndexCopyDeviceTests
{
    [Test]
    public void TheCpuKernelRefusesTensorsOnAnotherDeviceBeforeWriting()
    {
        using var scope = TensorScope.Begin();
        var device = TestDevice.Get();
        var dst = Tensor.Zeros([2, 5], DType.F64);
        using var hostIds = Tensor.FromArray(new long[] { 4, 0 }, 2);
        var values = Tensor.Ones([2, 2], DType.F64);
        var cases = new (string What, Tensor Index, Tensor Src)[]
        {
            ("index on the device", hostIds.To(device), values),
            ("src on the device", hostIds, values.To(device)),
        };
        foreach (var (what, index, src) in cases)
            Assert.That(() => CpuBackend.Instance.IndexCopy(dst, 1, index, src),
                Throws.ArgumentException.With.Message.Contains("IndexCopy").And.Message.Contains("one device").And.Message.Contains(device.ToString()), what);
        Assert.That(dst.ToArray<double>(), Is.All.EqualTo(0.0), "nothing written");
        // The same call on one device runs.
        CpuBackend.Instance.IndexCopy(dst, 1, hostIds, values);
        Assert.That(dst.ToArray<double>(), Is.EqualTo(new double[] { 1, 0, 0, 0, 1, 1, 0, 0, 0, 1 }));
    }
}
