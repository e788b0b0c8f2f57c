using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// Dropout's call counter in device memory (what lets a CUDA graph replay a new mask each time): the masks are the ones
/// the host counter drew before (call k: Uniform with seed SeedFor(seed, "dropout") + k, kept where ≥ p, scaled by
/// 1/(1 − p)), the counter advances by one per training call, follows the input to another device with its count, and
/// RandomAt on the test device reads and advances it there without a transfer.
/// </summary>
[NonParallelizable]
public class DropoutCounterTests
{
    /// <summary>What Dropout computed before the counter moved to the device: the host counter's formula.</summary>
    private static float[] OldDropout(Tensor x, double p, ulong seed, ulong call)
    {
        using var u = Tensor.Uniform(x.Shape, Init.SeedFor(seed, "dropout") + call, 0, 1, DType.F32);
        using var threshold = Tensor.Scalar(p, DType.F32);
        using var keep = u.Ge(threshold);
        using var mask = keep.To(x.DType);
        using var scaled = mask * (1 / (1 - p));
        using var y = x * scaled;
        return y.ToFloatArray();
    }

    [Test]
    public void EagerMasksAreTheHostCountersAndEachCallAdvancesTheCounter([Values(DType.F32, DType.BF16)] DType dtype)
    {
        using var n = Tensor.Normal([7, 45], seed: 2);
        using var x = n.To(dtype);
        using var drop = new Dropout(0.4, seed: 123);
        Assert.That(drop.Calls, Is.Zero);
        var v = new Variable(x);
        for (ulong k = 0; k < 5; k++)
        {
            using var scope = TensorScope.Begin();
            var y = drop.Forward(v).Value.ToFloatArray();
            Assert.That(y, Is.EqualTo(OldDropout(x, 0.4, 123, k)), $"call {k}");
            Assert.That(drop.Calls, Is.EqualTo((long)k + 1));
        }
        drop.Eval();
        Assert.That(drop.Forward(v), Is.SameAs(v));
        Assert.That(drop.Calls, Is.EqualTo(5), "evaluation draws nothing");
        drop.Train();
        using (TensorScope.Begin())
            Assert.That(drop.Forward(v).Value.ToFloatArray(), Is.EqualTo(OldDropout(x, 0.4, 123, 5)), "training again: call 5");
        using var none = new Dropout(0, seed: 1);
        Assert.That(none.Forward(v), Is.SameAs(v));
        Assert.That(none.Calls, Is.Zero, "p = 0 draws nothing");
    }

    [Test]
    public void TheCounterOutlivesATensorScopeAndFollowsTheInputToAnotherDevice()
    {
        using var x = Tensor.Normal([4, 33], seed: 8);
        using var drop = new Dropout(0.25, seed: 6);
        using (TensorScope.Begin()) drop.Forward(new Variable(x)); // the counter is made inside a scope: it must survive it
        using (TensorScope.Begin()) drop.Forward(new Variable(x));
        var dev = TestDevice.Get();
        using var onDevice = x.To(dev);
        long before = TestDevice.Backend.HostToDevice + TestDevice.Backend.DeviceToHost;
        float[] third;
        using (TensorScope.Begin()) third = drop.Forward(new Variable(onDevice)).Value.ToFloatArray();
        Assert.That(third, Is.EqualTo(OldDropout(x, 0.25, 6, 2)), "call 2 on the device: the count moved with the counter");
        // The counter's move (host → device) and the result's read: nothing else crosses.
        Assert.That(TestDevice.Backend.HostToDevice + TestDevice.Backend.DeviceToHost - before, Is.EqualTo(2));
        before = TestDevice.Backend.HostToDevice + TestDevice.Backend.DeviceToHost;
        using (TensorScope.Begin()) drop.Forward(new Variable(onDevice));
        Assert.That(TestDevice.Backend.HostToDevice + TestDevice.Backend.DeviceToHost - before, Is.Zero, "a call on the device moves nothing");
        Assert.That(drop.Calls, Is.EqualTo(4));
        using (TensorScope.Begin())
            Assert.That(drop.Forward(new Variable(x)).Value.ToFloatArray(), Is.EqualTo(OldDropout(x, 0.25, 6, 4)), "and back on the CPU: call 4");
    }

    [Test]
    public void RandomAtOnTheTestDeviceReadsAndAdvancesTheCounterThere()
    {
        var dev = TestDevice.Get();
        using var counter = Tensor.Zeros([1], DType.I64, dev);
        long before = TestDevice.Backend.HostToDevice + TestDevice.Backend.DeviceToHost;
        var draws = new List<Tensor>();
        for (int k = 0; k < 3; k++) draws.Add(Tensor.UniformAt([5, 7], 77, counter, -1, 1, DType.F32));
        Assert.That(TestDevice.Backend.HostToDevice + TestDevice.Backend.DeviceToHost - before, Is.Zero, "no transfer");
        for (int k = 0; k < 3; k++)
        {
            using var want = Tensor.Uniform([5, 7], 77 + (ulong)k, -1, 1, DType.F32);
            Assert.That(draws[k].Device, Is.EqualTo(dev));
            Assert.That(draws[k].ToFloatArray(), Is.EqualTo(want.ToFloatArray()), $"call {k}");
            draws[k].Dispose();
        }
        Assert.That(counter.ToArray<long>()[0], Is.EqualTo(3));
        using var cpuCounter = Tensor.Zeros([1], DType.I64);
        using var d = Tensor.Empty([3], DType.F32, dev);
        Assert.That(() => d.Backend.RandomAt(d, RandomKind.Uniform, 0, cpuCounter, 0, 1), Throws.InvalidOperationException, "a counter on another device");
    }

    [Test]
    public void TheCpuBackendRefusesACounterOnAnotherDevice()
    {
        // The CPU backend dereferences the counter's address as host memory: a GPU counter would crash the process.
        var dev = TestDevice.Get();
        using var counter = Tensor.Zeros([1], DType.I64, dev);
        using var d = Tensor.Empty([3], DType.F32);
        var e = Assert.Throws<ArgumentException>(() => d.Backend.RandomAt(d, RandomKind.Uniform, 0, counter, 0, 1));
        Assert.That(e!.Message, Does.Contain("share a device"));
        Assert.That(counter.ToArray<long>()[0], Is.Zero, "a refused draw does not count");
    }

    /// <summary>The counter Forward is using now (what a CUDA graph captured at this point records the address of).</summary>
    private static Tensor CurrentCounter(Dropout drop) =>
        (Tensor)typeof(Dropout).GetField("_calls", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(drop)!;

    [Test]
    public void ACounterAGraphMayHoldIsNeitherFreedNorReplacedWhenTheInputMovesAndBack()
    {
        // A graph captured on a device holds that device's counter and advances it on every replay: a call on another
        // device must not free it (a replay would then add one to whatever tensor reused its memory), and a call back on
        // the device must continue in that same counter (the graph's replays and the eager calls stay one sequence).
        using var x = Tensor.Normal([4, 33], seed: 8);
        var dev = TestDevice.Get();
        using var onDevice = x.To(dev);
        using var drop = new Dropout(0.25, seed: 6);
        using (TensorScope.Begin()) drop.Forward(new Variable(onDevice)); // call 0 on the device
        var recorded = CurrentCounter(drop); // what a capture now would record
        using (TensorScope.Begin()) drop.Forward(new Variable(x)); // call 1 on the CPU
        var onCpu = CurrentCounter(drop);
        Assert.That(recorded.IsDisposed, Is.False, "the device counter was freed by a call on the CPU");
        // A replay of that graph: reads and advances the recorded counter (it continues from the count it holds).
        using (var replayed = Tensor.UniformAt([4, 33], 0, recorded)) { }
        using (TensorScope.Begin())
            Assert.That(drop.Forward(new Variable(onDevice)).Value.ToFloatArray(), Is.EqualTo(OldDropout(x, 0.25, 6, 2)), "call 2 back on the device: the count the CPU continued");
        Assert.That(CurrentCounter(drop), Is.SameAs(recorded), "back on the device the recorded counter is used again, not a new one");
        Assert.That(drop.Calls, Is.EqualTo(3));
        drop.Dispose();
        Assert.That(recorded.IsDisposed && onCpu.IsDisposed, Is.True, "Dispose frees every counter");
    }
}
