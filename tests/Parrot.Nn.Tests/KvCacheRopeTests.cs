using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// <see cref="IKvCache.AttendRope"/> (inference: the cache rotates q and k and stores k and v in one step) gives the
/// bits of the path it replaces: q and k rotated with ApplyRope, then Attend. For the shared cache, per-row caches and
/// a cache that only has the interface's default; on the CPU and on the test device (another device's code path).
/// </summary>
public class KvCacheRopeTests
{
    private const int Heads = 4, KvHeads = 2, D = 8, MaxLen = 12;

    private static Device DeviceFor(bool testDevice) => testDevice ? TestDevice.Get() : Device.Cpu;

    [Test]
    public void SharedCacheEqualsRotatingThenAttend([Values] bool testDevice, [Values(DType.F32, DType.BF16)] DType dtype)
    {
        var device = DeviceFor(testDevice);
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        using var fused = new KvCache(1, MaxLen);
        using var apart = new KvCache(1, MaxLen);
        ulong seed = 1;
        foreach (int t in new[] { 3, 1, 1, 2 }) // a prefill, two decode steps, a two-token step
        {
            var (q, k, v) = Projections(2, t, dtype, device, seed++);
            var (cos, sin) = Tensor.RopeTables(fused.Length(0), t, D, 10_000.0, device);
            var got = fused.AttendRope(0, q, k, v, cos, sin, causal: true, mask: null);
            var want = ((IKvCache)apart).Attend(0, new Variable(q.ApplyRope(cos, sin)), k.ApplyRope(cos, sin), v, causal: true, mask: null);
            Assert.That(Bits(got.Value), Is.EqualTo(Bits(want.Value)), $"attention at T {t}");
            Assert.That(fused.Length(0), Is.EqualTo(apart.Length(0)));
            var (fk, fv) = fused.Stored(0)!.Value;
            var (ak, av) = apart.Stored(0)!.Value;
            Assert.That(Bits(fk), Is.EqualTo(Bits(ak)), "stored keys");
            Assert.That(Bits(fv), Is.EqualTo(Bits(av)), "stored values");
            Assert.That(fk.Device, Is.EqualTo(device));
        }
    }

    [Test]
    public void RowCachesSplitPerRowTablesAndEqualRotatingThenAttend([Values] bool testDevice)
    {
        var device = DeviceFor(testDevice);
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        KvCache[] fused = [new KvCache(1, MaxLen), new KvCache(1, MaxLen)], apart = [new KvCache(1, MaxLen), new KvCache(1, MaxLen)];
        try
        {
            // Rows of different lengths first (each alone), then steps of both together with per-row positions.
            ulong seed = 10;
            for (int r = 0; r < 2; r++)
            {
                int t = 2 + 3 * r;
                var (q, k, v) = Projections(1, t, DType.F32, device, seed++);
                var (cos, sin) = Tensor.RopeTables(0, t, D, 10_000.0, device);
                fused[r].AttendRope(0, q, k, v, cos, sin, true, null);
                ((IKvCache)apart[r]).Attend(0, new Variable(q.ApplyRope(cos, sin)), k.ApplyRope(cos, sin), v, true, null);
            }
            for (int step = 0; step < 2; step++)
            {
                var (q, k, v) = Projections(2, 1, DType.F32, device, seed++);
                using var positions = Tensor.FromArray(new long[] { fused[0].Length(0), fused[1].Length(0) }, 2, 1);
                var (c3, s3) = Tensor.RopeTables(positions, D, 10_000.0, device);
                var (cos, sin) = (c3.Unsqueeze(1), s3.Unsqueeze(1)); // [B, 1, T, D]
                var got = new KvCacheRows(fused).AttendRope(0, q, k, v, cos, sin, true, null);
                var want = new KvCacheRows(apart).Attend(0, new Variable(q.ApplyRope(cos, sin)), k.ApplyRope(cos, sin), v, true, null);
                Assert.That(Bits(got.Value), Is.EqualTo(Bits(want.Value)), $"step {step}");
            }
            for (int r = 0; r < 2; r++)
            {
                Assert.That(fused[r].Length(0), Is.EqualTo(apart[r].Length(0)).And.EqualTo(2 + 3 * r + 2), $"row {r}");
                Assert.That(Bits(fused[r].Stored(0)!.Value.K), Is.EqualTo(Bits(apart[r].Stored(0)!.Value.K)), $"row {r} keys");
                Assert.That(Bits(fused[r].Stored(0)!.Value.V), Is.EqualTo(Bits(apart[r].Stored(0)!.Value.V)), $"row {r} values");
            }
            var (q2, k2, v2) = Projections(2, 1, DType.F32, device, 99);
            var (bad, _) = Tensor.RopeTables(Tensor.FromArray(new long[] { 1, 2, 3 }, 3, 1), D, 10_000.0, device);
            Assert.That(() => new KvCacheRows(fused).AttendRope(0, q2, k2, v2, bad.Unsqueeze(1), bad.Unsqueeze(1), true, null),
                Throws.ArgumentException.With.Message.Contains("has 3 rows for 2 caches"));
        }
        finally
        {
            foreach (var c in fused.Concat(apart)) c.Dispose();
        }
    }

    [Test]
    public void TheInterfaceDefaultRotatesThenAttends()
    {
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        using var inner = new KvCache(1, MaxLen);
        using var apart = new KvCache(1, MaxLen);
        IKvCache plain = new AttendOnly(inner);
        var (q, k, v) = Projections(2, 3, DType.F32, Device.Cpu, 5);
        var (cos, sin) = Tensor.RopeTables(0, 3, D, 10_000.0);
        var got = plain.AttendRope(0, q, k, v, cos, sin, true, null);
        var want = ((IKvCache)apart).Attend(0, new Variable(q.ApplyRope(cos, sin)), k.ApplyRope(cos, sin), v, true, null);
        Assert.That(Bits(got.Value), Is.EqualTo(Bits(want.Value)));
        Assert.That(Bits(inner.Stored(0)!.Value.K), Is.EqualTo(Bits(apart.Stored(0)!.Value.K)));
    }

    /// <summary>A cache with only the interface's required members (its AttendRope is the default).</summary>
    private sealed class AttendOnly(KvCache inner) : IKvCache
    {
        public int Length(int layer) => inner.Length(layer);
        public Variable Attend(int layer, Variable q, Tensor k, Tensor v, bool causal, Tensor? mask) => inner.Attend(layer, q, k, v, causal, mask);
    }

    /// <summary>q [B, heads, T, D], k and v [B, kvHeads, T, D]: transposed views of [B, T, heads·D], as attention makes them.</summary>
    private static (Tensor Q, Tensor K, Tensor V) Projections(int b, int t, DType dtype, Device device, ulong seed)
    {
        Tensor View(int heads, ulong s)
        {
            using var host = Tensor.Normal([b, t, heads * D], seed * 3 + s, 0, 1, dtype);
            return host.To(device).Reshape(b, t, heads, D).Transpose(1, 2);
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
