using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// Dropout on a device that is not the CPU (the test device: CPU kernels behind another device's tensors): its mask
/// (a draw, a threshold made by Fill, a comparison, a cast) stays on the device — a training step moves nothing
/// between host and device — and equals the CPU's. On CUDA the draw is native/random.cu (the same bits).
/// </summary>
[NonParallelizable]
public class DropoutDeviceTests
{
    [Test]
    public void ATrainingStepOnTheDeviceCopiesNothingAndDropsWhatTheCpuDrops()
    {
        using var host = Tensor.Normal([16, 33], seed: 3);
        float[] Step(Device device, out long copies)
        {
            using var scope = TensorScope.Begin();
            var x = new Variable(host.To(device), requiresGrad: true);
            var drop = new Dropout(0.25, seed: 11);
            long before = TestDevice.Backend.HostToDevice + TestDevice.Backend.DeviceToHost;
            var y = drop.Forward(x);
            y.Sum().Backward();
            y = drop.Forward(x); // a second call draws another mask
            copies = TestDevice.Backend.HostToDevice + TestDevice.Backend.DeviceToHost - before;
            return [.. x.Grad!.ToFloatArray(), .. y.Value.ToFloatArray()];
        }
        var cpu = Step(Device.Cpu, out _);
        var dev = Step(TestDevice.Get(), out long copies);
        Assert.That(copies, Is.Zero, "host<->device copies in a dropout step");
        Assert.That(dev, Is.EqualTo(cpu));
        int n = 16 * 33;
        Assert.That(cpu.Take(n).Count(v => v == 0), Is.InRange(n / 8, n * 3 / 8), "about a quarter dropped");
        Assert.That(cpu.Take(n).Select(v => v == 0), Is.Not.EqualTo(cpu.Skip(n).Select(v => v == 0)), "each call its own mask");
    }
}
