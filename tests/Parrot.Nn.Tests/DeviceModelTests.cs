using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Nn.Optim;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// The models on a device that is not the CPU (the test device: the CPU kernels behind a check that every operand
/// lives on that device): moved with Module.To, they create their masks, RoPE tables, KV caches and targets there, so
/// forward, KV-cache decoding and training run with every tensor on the device and give exactly the CPU's numbers.
/// </summary>
public class DeviceModelTests
{
    private static readonly Qwen2Config Tiny = new()
    {
        VocabSize = 50, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        RopeTheta = 10000, RmsNormEps = 1e-6,
    };

    private static Device Dev => TestDevice.Get();

    [Test]
    public void AnOpOverTwoDevicesNamesBoth()
    {
        using var a = Tensor.Ones([3], DType.F32, Dev);
        using var b = Tensor.Ones([3]);
        var ex = Assert.Throws<ArgumentException>(() => { using var _ = a + b; });
        Assert.That(ex!.Message, Does.Contain(Dev.ToString()).And.Contain("cpu"));
        ex = Assert.Throws<ArgumentException>(() => { using var _ = a.MatMul(b.Reshape(3, 1)); });
        Assert.That(ex!.Message, Does.Contain(Dev.ToString()).And.Contain("cpu"));
        // Below the Tensor layer, the device's backend itself refuses a host operand.
        using var y = Tensor.Empty([3], DType.F32, Dev);
        var inner = Assert.Throws<InvalidOperationException>(() => TestDevice.Backend.Binary(BinaryOp.Add, a, b, y));
        Assert.That(inner!.Message, Does.Contain("is on cpu").And.Contain(Dev.ToString()));
        // Copies in and out are explicit and exact.
        using var h = Tensor.FromArray(new[] { 1f, 2.5f, -3f });
        using var d = h.To(Dev);
        Assert.That(d.Device, Is.EqualTo(Dev));
        Assert.That(d.ToFloatArray(), Is.EqualTo(new[] { 1f, 2.5f, -3f }));
    }

    private static (Qwen2ForCausalLM Cpu, Qwen2ForCausalLM Dev) Pair(DType dtype = DType.F32)
    {
        var cpu = new Qwen2ForCausalLM(Tiny, seed: 11, dtype);
        var dev = new Qwen2ForCausalLM(Tiny, seed: 11, dtype);
        dev.To(Dev);
        Assert.That(dev.Parameters().All(p => p.Value.Device == Dev), Is.True);
        return (cpu, dev);
    }

    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    public void Qwen2ForwardWithPaddingAndPositionsEqualsTheCpu(DType dtype)
    {
        var (cpu, dev) = Pair(dtype);
        using var _ = cpu; using var __ = dev;
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var ids = Tensor.FromArray(new long[] { 1, 7, 9, 3, 4, 0, 2, 8, 5, 6 }, 2, 5);
        var mask = Tensor.FromArray(new long[] { 1, 1, 1, 1, 1, 0, 1, 1, 1, 1 }, 2, 5);
        var pos = Tensor.FromArray(new long[] { 0, 1, 2, 3, 4, 0, 0, 1, 2, 3 }, 2, 5);
        var a = cpu.Forward(ids, mask, pos).Value;
        // Host-made ids, mask and positions: the model copies what it needs; everything it creates is on the device.
        var b = dev.Forward(ids, mask, pos).Value;
        Assert.That(b.Device, Is.EqualTo(Dev));
        Assert.That(b.ToFloatArray(), Is.EqualTo(a.ToFloatArray()));
    }

    [Test]
    public void KvCacheDecodingOnTheDeviceEqualsTheCpu()
    {
        var (cpu, dev) = Pair();
        using var _ = cpu; using var __ = dev;
        using var ng = Graph.NoGrad();
        float[][] Run(Qwen2ForCausalLM m)
        {
            using var cache = new KvCache(Tiny.NumHiddenLayers, 16);
            var outs = new List<float[]>();
            using (var s = TensorScope.Begin())
                outs.Add(m.Forward(Tensor.FromArray(new long[] { 3, 14, 15, 9 }, m.Device, 1, 4), cache: cache).Value.ToFloatArray());
            foreach (var t in new long[] { 2, 6, 5 })
            {
                using var s = TensorScope.Begin();
                var logits = m.Forward(Tensor.FromArray(new[] { t }, m.Device, 1, 1), cache: cache).Value;
                Assert.That(logits.Device, Is.EqualTo(m.Device));
                outs.Add(logits.ToFloatArray());
            }
            Assert.That(cache.Stored(0)!.Value.K.Device, Is.EqualTo(m.Device), "the cache lives with the model");
            return outs.ToArray();
        }
        var a = Run(cpu);
        var b = Run(dev);
        for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]), $"call {i}");
    }

    [Test]
    public void DecodeStepsCopyOnlyTheirInputsToTheDevice()
    {
        // The RoPE tables are cached on the device: after the prefill, a decode step copies its token ids (and, for a
        // padded batch, its mask) from the host, never cos/sin; the logits still equal the CPU's.
        var (cpu, dev) = Pair();
        using var _ = cpu; using var __ = dev;
        using var ng = Graph.NoGrad();
        float[][] Run(Qwen2ForCausalLM m, List<long> copies)
        {
            var outs = new List<float[]>();
            using var cache = new KvCache(Tiny.NumHiddenLayers, 80);
            using var padded = new KvCache(Tiny.NumHiddenLayers, 80);
            using (var s = TensorScope.Begin())
            {
                outs.Add(m.Forward(Tensor.FromArray(new long[] { 3, 14, 15, 9 }, 1, 4), cache: cache).Value.ToFloatArray());
                // Two rows, the second left-padded by two: per-row positions from the host.
                var ids = Tensor.FromArray(new long[] { 1, 2, 3, 4, 0, 0, 5, 6 }, 2, 4);
                var mask = Tensor.FromArray(new long[] { 1, 1, 1, 1, 0, 0, 1, 1 }, 2, 4);
                var pos = Tensor.FromArray(new long[] { 0, 1, 2, 3, 0, 0, 0, 1 }, 2, 4);
                outs.Add(m.Forward(ids, mask, pos, padded).Value.ToFloatArray());
            }
            // Enough steps to pass the first table's capacity (64 positions), so growth is exercised too.
            for (int step = 0; step < 70; step++)
            {
                using var s = TensorScope.Begin();
                long before = TestDevice.Backend.HostToDevice;
                outs.Add(m.Forward(Tensor.FromArray(new long[] { (step * 7) % Tiny.VocabSize }, 1, 1), cache: cache).Value.ToFloatArray());
                copies.Add(TestDevice.Backend.HostToDevice - before);
                if (step >= 8) continue;
                int past = padded.Length(0);
                var mask = Tensor.FromArray(Enumerable.Range(0, 2 * (past + 1)).Select(i => i % (past + 1) is 0 or 1 && i > past ? 0L : 1L).ToArray(), 2, past + 1);
                var pos = Tensor.FromArray(new long[] { past, past - 2 }, 2, 1);
                before = TestDevice.Backend.HostToDevice;
                outs.Add(m.Forward(Tensor.FromArray(new long[] { 4, 8 }, 2, 1), mask, pos, padded).Value.ToFloatArray());
                copies.Add(TestDevice.Backend.HostToDevice - before);
            }
            return outs.ToArray();
        }
        var a = Run(cpu, []);
        var copies = new List<long>();
        var b = Run(dev, copies);
        for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]), $"call {i}");
        // Single-row steps copy their id; padded steps their ids and mask; the one exception is the step whose
        // position (64) outgrows the first table, which rebuilds it once (cos and sin).
        var expected = new List<long>();
        for (int step = 0; step < 70; step++)
        {
            expected.Add(step == 60 ? 3 : 1);
            if (step < 8) expected.Add(2);
        }
        Assert.That(copies, Is.EqualTo(expected));
        Assert.That(dev.Model.Rotary.Capacity(Dev, DType.F32), Is.EqualTo(128));
    }

    [Test]
    public void ThreeTrainingStepsOnTheDeviceEqualTheCpu()
    {
        var (cpu, dev) = Pair();
        using var _ = cpu; using var __ = dev;
        dev.GradientCheckpointing = true; // the recomputation runs on the device too (and must not change a number)
        cpu.GradientCheckpointing = true;
        double[] Train(Qwen2ForCausalLM m)
        {
            using var opt = new AdamW(m.Parameters(), 3e-3, weightDecay: 0.01);
            var losses = new List<double>();
            for (int step = 0; step < 3; step++)
            {
                using var scope = TensorScope.Begin();
                var ids = Tensor.FromArray(Enumerable.Range(0, 12).Select(i => (long)((i * 7 + step * 3) % Tiny.VocabSize)).ToArray(), m.Device, 2, 6);
                var loss = Losses.NextTokenCrossEntropy(m.Forward(ids), ids);
                Assert.That(loss.Value.Device, Is.EqualTo(m.Device));
                losses.Add(loss.Value.Item()); // an explicit host read
                opt.ZeroGrad();
                loss.Backward();
                GradClip.ClipGradNorm(m.Parameters(), 1.0);
                Assert.That(m.Parameters().All(p => p.Grad!.Device == m.Device), Is.True, "gradients stay on the device");
                opt.Step();
            }
            return losses.ToArray();
        }
        long ops = TestDevice.Backend.Ops;
        var a = Train(cpu);
        var b = Train(dev);
        Assert.That(b, Is.EqualTo(a));
        Assert.That(TestDevice.Backend.Ops - ops, Is.GreaterThan(100), "the device computed the steps");
        foreach (var ((name, p), (_, q)) in cpu.NamedParameters().Zip(dev.NamedParameters()))
            Assert.That(q.Value.ToFloatArray(), Is.EqualTo(p.Value.ToFloatArray()), name);
    }

    [Test]
    public void ATrainingStepWaitsForTheDeviceOnlyWhereAValueIsRead()
    {
        // The embedding's id check and the cross-entropy's target check are queued on the device, not read back: up to
        // the loss read, and from there to the end of the optimizer step, nothing comes back to the host.
        var (cpu, dev) = Pair();
        using var _ = cpu; using var __ = dev;
        using var opt = new AdamW(dev.Parameters(), 3e-3, weightDecay: 0.01);
        var host = TestDevice.Backend;
        for (int step = 0; step < 2; step++)
        {
            using var scope = TensorScope.Begin();
            var ids = Tensor.FromArray(Enumerable.Range(0, 12).Select(i => (long)((i * 5 + step) % Tiny.VocabSize)).ToArray(), Dev, 2, 6);
            long before = host.DeviceToHost;
            var loss = Losses.NextTokenCrossEntropy(dev.Forward(ids), ids);
            Assert.That(host.DeviceToHost - before, Is.Zero, "no read-back before the loss is read");
            Assert.That(host.IndexChecks.Pending, Is.EqualTo(2), "the id and target checks wait on the device");
            Assert.That(double.IsFinite(loss.Value.Item()), Is.True);
            Assert.That(host.IndexChecks.Pending, Is.Zero, "the read verified them");
            before = host.DeviceToHost;
            opt.ZeroGrad();
            loss.Backward();
            opt.Step();
            Assert.That(host.DeviceToHost - before, Is.Zero, "backward and the optimizer step read nothing back");
        }
    }

    [Test]
    public void ABadIdOrTargetOnTheDeviceIsReportedAtTheNextRead()
    {
        var (cpu, dev) = Pair();
        using var _ = cpu; using var __ = dev;
        using var scope = TensorScope.Begin();
        var good = Enumerable.Range(0, 12).Select(i => (long)(i % Tiny.VocabSize)).ToArray();
        var badIds = (long[])good.Clone();
        badIds[9] = 77; // row 1, position 3 of [2, 6]
        // On the CPU: the immediate exception, as before.
        var cpuError = Assert.Throws<ArgumentOutOfRangeException>(() => cpu.Forward(Tensor.FromArray(badIds, 2, 6)));
        Assert.That(cpuError!.Message, Does.Contain("id 77 at position [1, 3]").And.Contain("vocabulary of 50"));
        // On the device: the forward is queued without a wait; the first read throws the same words.
        var ids = Tensor.FromArray(badIds, Dev, 2, 6);
        var logits = dev.Forward(ids);
        var loss = Losses.NextTokenCrossEntropy(logits, Tensor.FromArray(good, Dev, 2, 6));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => loss.Value.Item());
        Assert.That(e!.Message, Does.Contain("Embedding: id 77 at position [1, 3] of the ids [2, 6]").And.Contain("vocabulary of 50 rows").And.Contain("cuda:9"));
        Assert.That(TestDevice.Backend.IndexChecks.Pending, Is.Zero);
        // A bad target: the same message as the CPU's cross-entropy.
        var labels = (long[])good.Clone();
        labels[4] = 99;
        var ok = dev.Forward(Tensor.FromArray(good, Dev, 2, 6));
        var cpuTarget = Assert.Throws<ArgumentOutOfRangeException>(() =>
            Tensor.CrossEntropy(Tensor.Zeros([12, 50]), Tensor.FromArray(labels, 12)));
        var targetLoss = Tensor.CrossEntropy(ok.Value.Reshape(12, 50), Tensor.FromArray(labels, Dev, 12));
        var te = Assert.Throws<ArgumentOutOfRangeException>(() => targetLoss.Item());
        Assert.That(te!.Message, Does.Contain("CrossEntropy: target 99 at row 4 is out of range for 50 classes (ignore index -100)"));
        Assert.That(cpuTarget!.Message, Does.Contain("CrossEntropy: target 99 at row 4 is out of range for 50 classes (ignore index -100)"));
        // Both bad: the first in program order is named. Afterwards the device works as before.
        var both = Tensor.CrossEntropy(dev.Forward(Tensor.FromArray(badIds, Dev, 2, 6)).Value.Reshape(12, 50), Tensor.FromArray(labels, Dev, 12));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => both.ToFloatArray())!.Message, Does.Contain("id 77"));
        var fine = Tensor.CrossEntropy(ok.Value.Reshape(12, 50), Tensor.FromArray(good, Dev, 12));
        Assert.That(fine.Item(), Is.EqualTo(Tensor.CrossEntropy(cpu.Forward(Tensor.FromArray(good, 2, 6)).Value.Reshape(12, 50), Tensor.FromArray(good, 12)).Item()));
    }

    [Test]
    public void UnreadChecksAreVerifiedBeforeTheyPileUp()
    {
        // Without any read, the 65th check first verifies the 64 before it (one wait per 64 unread checks), so a bad
        // index among them is reported there and no more than 64 verdicts ever wait.
        using var scope = TensorScope.Begin();
        var x = Tensor.Ones([4, 3], DType.F32, Dev);
        var good = Tensor.FromArray(new long[] { 0, 3 }, Dev, 2);
        var bad = Tensor.FromArray(new long[] { 1, 4 }, Dev, 2);
        var checks = TestDevice.Backend.IndexChecks;
        for (int i = 0; i < DeferredIndexChecks.Capacity - 1; i++) x.IndexSelect(0, good);
        x.IndexSelect(0, bad);
        Assert.That(checks.Pending, Is.EqualTo(DeferredIndexChecks.Capacity));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => x.IndexSelect(0, good));
        Assert.That(e!.Message, Does.Contain("IndexSelect: index 4 at position [1] is out of range for dimension 0 of size 4")
            .And.Contain("reported when 64 checks had queued up unread, at the next index op"), "not at a read: the message says where it surfaced");
        Assert.That(checks.Pending, Is.Zero);
        for (int i = 0; i < DeferredIndexChecks.Capacity + 3; i++) x.IndexSelect(0, good);
        Assert.That(checks.Pending, Is.EqualTo(3), "the 65th verified the 64 before it; it and two more wait");
        Assert.That(x.IndexSelect(0, good).ToFloatArray(), Is.EqualTo(new float[6] { 1, 1, 1, 1, 1, 1 }));
    }

    [Test]
    public void ClipForwardAndBackwardOnTheDeviceEqualTheCpu()
    {
        var config = new ClipVisionConfig { HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 2, ImageSize = 14, PatchSize = 7 };
        using var cpu = new ClipVisionModel(config, seed: 5);
        using var dev = new ClipVisionModel(config, seed: 5);
        dev.To(Dev);
        (float[] Out, float[][] Grads) Run(ClipVisionModel m)
        {
            using var scope = TensorScope.Begin();
            var pixels = Tensor.Uniform([2, 3, 14, 14], 9, -1, 1); // made on the host, as the image loader makes them
            var o = m.Forward(new Variable(pixels));
            var loss = (o.PoolerOutput * o.PoolerOutput).Sum() + o.HiddenStates[1].Mean();
            Assert.That(loss.Value.Device, Is.EqualTo(m.Device));
            foreach (var p in m.Parameters()) p.ZeroGrad();
            loss.Backward();
            return (o.LastHiddenState.Value.ToFloatArray(), m.Parameters().Select(p => p.Grad!.ToFloatArray()).ToArray());
        }
        var a = Run(cpu);
        var b = Run(dev);
        Assert.That(b.Out, Is.EqualTo(a.Out));
        for (int i = 0; i < a.Grads.Length; i++) Assert.That(b.Grads[i], Is.EqualTo(a.Grads[i]), $"gradient {i}");
    }
}
