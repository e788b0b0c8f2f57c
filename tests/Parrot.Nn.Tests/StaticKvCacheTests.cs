using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// <see cref="StaticKvCache"/>: steps through it (whole tables, device positions, positions advanced on the device)
/// give the bits of a <see cref="KvCache"/> fed the same projections with its host positions (a loaded prefill, then
/// decode steps), on the CPU and the test device, with no host↔device copy in a step there; and its refusals (room,
/// a mask, attention without rope, loads that do not fit).
/// </summary>
public class StaticKvCacheTests
{
    private const int Heads = 4, KvHeads = 2, D = 8, MaxLen = 12;

    [Test]
    public void StepsEqualAKvCacheFedTheSameProjections([Values] bool testDevice, [Values(DType.F32, DType.BF16)] DType dtype)
    {
        var device = testDevice ? TestDevice.Get() : Device.Cpu;
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        using var eager = new KvCache(1, MaxLen);
        using var cache = new StaticKvCache(1, 1, KvHeads, D, MaxLen, dtype, device);
        var (cos, sin) = Tensor.RopeTables(0, MaxLen, D, 10_000.0, device);
        // The prefill through the eager cache, loaded into the static one.
        var (q0, k0, v0) = Projections(3, dtype, device, 1);
        eager.AttendRope(0, q0, k0, v0, cos.Narrow(0, 0, 3), sin.Narrow(0, 0, 3), true, null);
        var (sk, sv) = eager.Stored(0)!.Value;
        cache.Load(0, 0, sk, sv);
        cache.UploadPositions();
        for (int s = 0; s < 4; s++)
        {
            var (q, k, v) = Projections(1, dtype, device, 10UL + (ulong)s);
            int past = eager.Length(0);
            var want = eager.AttendRope(0, q, k, v, cos.Narrow(0, past, 1), sin.Narrow(0, past, 1), true, null);
            long copies = testDevice ? TestDevice.Backend.Transfers : 0;
            cache.Reserve(1);
            var got = cache.AttendRope(0, q, k, v, cos, sin, true, null);
            cache.AdvanceOnDevice();
            if (testDevice) Assert.That(TestDevice.Backend.Transfers, Is.EqualTo(copies), "no copy in a step");
            Assert.That(Bits(got.Value), Is.EqualTo(Bits(want.Value)), $"step {s}");
            Assert.That(cache.Length(0), Is.EqualTo(eager.Length(0)));
        }
        var (ek, ev) = eager.Stored(0)!.Value;
        Assert.That(Bits(cache.Keys(0).Narrow(2, 0, 7)), Is.EqualTo(Bits(ek)), "stored keys");
        Assert.That(Bits(cache.Values(0).Narrow(2, 0, 7)), Is.EqualTo(Bits(ev)), "stored values");
        Assert.That(cache.Positions.ToLongArray(), Is.EqualTo(new long[] { 7 }));
    }

    [Test]
    public void RefusalsAreClear()
    {
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        using var cache = new StaticKvCache(2, 2, KvHeads, D, 4, DType.F32, Device.Cpu);
        var (q, k, v) = Projections(1, DType.F32, Device.Cpu, 3, batch: 2);
        var (cos, sin) = Tensor.RopeTables(0, 4, D, 10_000.0);
        Assert.That(() => cache.AttendRope(0, q, k, v, cos, sin, true, Tensor.Zeros([2, 1, 1, 1])), Throws.ArgumentException.With.Message.Contains("no mask"));
        Assert.That(() => cache.AttendRope(0, q, k, v, cos, sin, false, null), Throws.ArgumentException.With.Message.Contains("causal"));
        Assert.That(() => cache.AttendRope(0, q, k, v, cos.Narrow(0, 0, 1), sin.Narrow(0, 0, 1), true, null), Throws.ArgumentException.With.Message.Contains("whole table"));
        Assert.That(() => cache.Attend(0, new Variable(q), k, v, true, null), Throws.InstanceOf<NotSupportedException>().With.Message.Contains("AttendRope"));
        Assert.That(() => cache.Load(0, 0, Tensor.Zeros([1, KvHeads, 5, D]), Tensor.Zeros([1, KvHeads, 5, D])), Throws.InvalidOperationException.With.Message.Contains("5 positions exceed the maximum length 4"));
        Assert.That(() => cache.Load(0, 2, Tensor.Zeros([1, KvHeads, 1, D]), Tensor.Zeros([1, KvHeads, 1, D])), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => cache.Load(2, 0, Tensor.Zeros([1, KvHeads, 1, D]), Tensor.Zeros([1, KvHeads, 1, D])), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("layer 2 of 2"));
        Assert.That(() => cache.AttendRope(-1, q, k, v, cos, sin, true, null), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("layer -1 of 2"));
        Assert.That(() => cache.Keys(2), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("layer 2 of 2"));
        Assert.That(() => cache.Load(0, 0, Tensor.Zeros([1, 1, 2, D]), Tensor.Zeros([1, 1, 2, D])), Throws.ArgumentException.With.Message.Contains("[1, 2, length, 8]"));
        cache.Load(0, 1, Tensor.Zeros([1, KvHeads, 3, D]), Tensor.Zeros([1, KvHeads, 3, D]));
        Assert.That(() => cache.Length(0), Throws.InvalidOperationException.With.Message.Contains("different lengths"));
        cache.Reserve(1);
        Assert.That(() => cache.Reserve(1), Throws.InvalidOperationException.With.Message.Contains("row 1 holds 4 positions and cannot take 1 more"));
        Assert.That(cache.HostLength(0), Is.EqualTo(1), "a refused step counts nothing");
        Assert.That(() => new StaticKvCache(1, 1, 1, D, 0, DType.F32, Device.Cpu), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    /// <summary>
    /// Slots: a released row is idle — the room check skips it (a full idle row does not stop a step), its device
    /// position is the capacity, a step writes nothing into it and gives NaN there; a load makes it live again. A bigger
    /// cache takes every row (keys, values, lengths, idle marks) with <see cref="StaticKvCache.CopyRowsFrom"/>, its extra
    /// rows idle; a smaller one is refused.
    /// </summary>
    [Test]
    public void ReleasedRowsAreIdleAndRowsMoveToABiggerCache([Values] bool testDevice)
    {
        var device = testDevice ? TestDevice.Get() : Device.Cpu;
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        using var cache = new StaticKvCache(1, 2, KvHeads, D, 4, DType.F32, device);
        var (cos, sin) = Tensor.RopeTables(0, 4, D, 10_000.0, device);
        var (_, k3, v3) = Projections(3, DType.F32, device, 1);
        var (_, k4, v4) = Projections(4, DType.F32, device, 2);
        cache.Load(0, 0, k3, v3);
        cache.Load(0, 1, k4, v4); // full
        Assert.That(() => cache.Reserve(1), Throws.InvalidOperationException.With.Message.Contains("row 1 holds 4 positions"));
        cache.Release(1);
        Assert.That((cache.IsIdle(1), cache.HostLength(1), cache.IsIdle(0)), Is.EqualTo((true, 0, false)));
        cache.UploadPositions();
        Assert.That(cache.Positions.ToLongArray(), Is.EqualTo(new long[] { 3, 4 }), "the idle row's position is the capacity");
        var idleKeys = Bits(cache.Keys(0).Narrow(0, 1, 1));
        var (q, k, v) = Projections(1, DType.F32, device, 3, batch: 2);
        cache.Reserve(1);
        var o = cache.AttendRope(0, q, k, v, cos, sin, true, null).Value.ToFloatArray();
        cache.AdvanceOnDevice();
        Assert.That(Bits(cache.Keys(0).Narrow(0, 1, 1)), Is.EqualTo(idleKeys), "the idle row wrote nothing");
        Assert.That(o.AsSpan(0, o.Length / 2).ToArray(), Is.All.Not.NaN, "the live row");
        Assert.That(o.AsSpan(o.Length / 2).ToArray(), Is.All.NaN, "the idle row");
        Assert.That((cache.HostLength(0), cache.Positions.ToLongArray()), Is.EqualTo((4, new long[] { 4, 5 })));
        cache.Load(0, 1, k3, v3);
        Assert.That((cache.IsIdle(1), cache.HostLength(1)), Is.EqualTo((false, 3)));
        cache.Release(0);
        using var bigger = new StaticKvCache(1, 4, KvHeads, D, 6, DType.F32, device);
        bigger.CopyRowsFrom(cache);
        Assert.That(Enumerable.Range(0, 4).Select(bigger.IsIdle), Is.EqualTo(new[] { true, false, true, true }));
        Assert.That(bigger.HostLength(1), Is.EqualTo(3));
        Assert.That(Bits(bigger.Keys(0).Narrow(0, 1, 1).Narrow(2, 0, 3)), Is.EqualTo(Bits(cache.Keys(0).Narrow(0, 1, 1).Narrow(2, 0, 3))), "the live row's keys moved");
        Assert.That(Bits(bigger.Values(0).Narrow(0, 1, 1).Narrow(2, 0, 3)), Is.EqualTo(Bits(v3)), "values too");
        bigger.UploadPositions();
        Assert.That(bigger.Positions.ToLongArray(), Is.EqualTo(new long[] { 6, 3, 6, 6 }));
        Assert.That(() => cache.CopyRowsFrom(bigger), Throws.ArgumentException.With.Message.Contains("does not fit"));
    }

    private static (Tensor Q, Tensor K, Tensor V) Projections(int t, DType dtype, Device device, ulong seed, int batch = 1)
    {
        Tensor View(int heads, ulong s)
        {
            using var host = Tensor.Normal([batch, t, heads * D], seed * 3 + s, 0, 1, dtype);
            return host.To(device).Reshape(batch, t, heads, D).Transpose(1, 2);
        }
        return (View(Heads, 0), View(KvHeads, 1), View(KvHeads, 2));
    }

    private static long[] Bits(Tensor t) => t.DType switch
    {
        DType.F32 => t.ToArray<float>().Select(x => (long)BitConverter.SingleToInt32Bits(x)).ToArray(),
        DType.BF16 => t.ToBFloat16Bits().Select(x => (long)x).ToArray(),
        _ => throw new ArgumentException(t.DType.ToString()),
    };
}
