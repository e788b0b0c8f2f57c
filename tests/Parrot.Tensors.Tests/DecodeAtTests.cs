namespace Parrot.Tensors.Tests;

/// <summary>
/// <see cref="Tensor.RopeAppendAt"/> and <see cref="Tensor.AttentionAt"/> (a decode step's ops with the positions on the
/// device) against the host-position ops they stand for: each batch row through <see cref="Tensor.RopeAppend"/> into
/// the cache slot at its position and <see cref="Tensor.ScaledDotProductAttention(Tensor, Tensor, Tensor, Tensor?, bool, int, double?)"/>
/// over its first position + T keys with that query offset, bit for bit; rows at different positions, int32 and int64
/// positions, the cache outside the new rows untouched, and the input checks. The CUDA kernels' identity with the
/// host-position kernels is checked by tools/cuda-emu and by `parrot selftest` on a GPU.
/// </summary>
public class DecodeAtTests
{
    private const int B = 2, H = 4, Hkv = 2, D = 16, Capacity = 11;
    private static readonly int[] Positions = [3, 7];

    [Test]
    public void RopeAppendAtEqualsRopeAppendAtEachRowsPosition(
        [Values(DType.F32, DType.BF16, DType.F64)] DType dtype, [Values(1, 3)] int t, [Values(DType.I64, DType.I32)] DType positionType)
    {
        using var scope = TensorScope.Begin();
        var q = IndexRef.Random([B, t, H * D], dtype, 1).ViewAs(B, t, H, D).Transpose(1, 2);
        var k = IndexRef.Random([B, t, Hkv * D], dtype, 2).ViewAs(B, t, Hkv, D).Transpose(1, 2);
        var v = IndexRef.Random([B, t, Hkv * D], dtype, 3).ViewAs(B, t, Hkv, D).Transpose(1, 2);
        var tableType = dtype == DType.BF16 ? DType.F32 : dtype;
        var (cos32, sin32) = Tensor.RopeTables(0, Capacity + 2, D, 10_000.0);
        var cos = cos32.To(tableType);
        var sin = sin32.To(tableType);
        var kc = IndexRef.Random([B, Hkv, Capacity, D], dtype, 4);
        var vc = IndexRef.Random([B, Hkv, Capacity, D], dtype, 5);
        var kWant = kc.Clone();
        var vWant = vc.Clone();
        var positions = Tensor.FromArray(Positions.Select(p => (long)p).ToArray(), B).To(positionType);

        var qRot = Tensor.RopeAppendAt(q, k, v, cos, sin, positions, kc, vc);

        for (int r = 0; r < B; r++)
        {
            int p = Positions[r];
            var want = Tensor.RopeAppend(q.Narrow(0, r, 1), k.Narrow(0, r, 1), v.Narrow(0, r, 1), cos.Narrow(0, p, t), sin.Narrow(0, p, t),
                kWant.Narrow(0, r, 1).Narrow(2, p, t), vWant.Narrow(0, r, 1).Narrow(2, p, t));
            Assert.That(Bits(qRot.Narrow(0, r, 1)), Is.EqualTo(Bits(want)), $"q of row {r}");
        }
        Assert.That(Bits(kc), Is.EqualTo(Bits(kWant)), "the K cache (new rows and the rest)");
        Assert.That(Bits(vc), Is.EqualTo(Bits(vWant)), "the V cache");
        Assert.That(Bits(kc.Narrow(0, 1, 1).Narrow(2, Positions[1], t)), Is.Not.EqualTo(Bits(IndexRef.Random([B, Hkv, Capacity, D], dtype, 4).Narrow(0, 1, 1).Narrow(2, Positions[1], t))),
            "not vacuous: the new rows were written");
    }

    [Test]
    public void AttentionAtEqualsAttentionOverEachRowsPrefix([Values(DType.F32, DType.BF16, DType.F64)] DType dtype, [Values(1, 3)] int t,
        [Values(DType.I64, DType.I32)] DType positionType)
    {
        using var scope = TensorScope.Begin();
        var q = IndexRef.Random([B, t, H * D], dtype, 6).ViewAs(B, t, H, D).Transpose(1, 2);
        var kc = IndexRef.Random([B, Hkv, Capacity, D], dtype, 7);
        var vc = IndexRef.Random([B, Hkv, Capacity, D], dtype, 8);
        var positions = Tensor.FromArray(Positions.Select(p => (long)p).ToArray(), B).To(positionType);

        var o = Tensor.AttentionAt(q, kc, vc, positions);

        Assert.That(o.Shape.ToArray(), Is.EqualTo(new[] { B, H, t, D }));
        Assert.That(o.Transpose(1, 2).IsContiguous, "laid out as [B, T, H, D], as ScaledDotProductAttention");
        for (int r = 0; r < B; r++)
        {
            int p = Positions[r];
            var want = Tensor.ScaledDotProductAttention(q.Narrow(0, r, 1), kc.Narrow(0, r, 1).Narrow(2, 0, p + t), vc.Narrow(0, r, 1).Narrow(2, 0, p + t),
                causal: true, queryOffset: p);
            Assert.That(Bits(o.Narrow(0, r, 1)), Is.EqualTo(Bits(want)), $"row {r} at position {p}");
        }
        // Keys past a row's position + T are never read: NaN there changes nothing.
        var kn = kc.Clone();
        var vn = vc.Clone();
        for (int r = 0; r < B; r++)
        {
            int end = Positions[r] + t;
            kn.Narrow(0, r, 1).Narrow(2, end, Capacity - end).Fill(double.NaN);
            vn.Narrow(0, r, 1).Narrow(2, end, Capacity - end).Fill(double.NaN);
        }
        Assert.That(Bits(Tensor.AttentionAt(q, kn, vn, positions)), Is.EqualTo(Bits(o)), "keys past the position");
    }

    /// <summary>
    /// What the GPU kernels do (rope_kv_append_at, attention_decode_at; a continuous batch parks idle slots there): a row
    /// whose new position is outside the cache writes no cache element and its qRot is NaN, the other rows as ever; a
    /// row of T = 2 half inside writes its inside row only; attention at a position outside the cache sees no key (NaN,
    /// the cache not read: an idle slot costs no key reads), T = 2 rows starting at the last row see the whole cache.
    /// </summary>
    [Test]
    public void APositionOutsideTheCacheWritesNothingAndGivesNaN([Values(DType.F32, DType.BF16)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        const int cap = 4;
        var (cos32, sin32) = Tensor.RopeTables(0, cap + 4, D, 10_000.0);
        foreach (int t in new[] { 1, 2 })
        {
            var q = IndexRef.Random([3, H, t, D], dtype, 1);
            var k = IndexRef.Random([3, Hkv, t, D], dtype, 2);
            var v = IndexRef.Random([3, Hkv, t, D], dtype, 3);
            var kc = IndexRef.Random([3, Hkv, cap, D], dtype, 4);
            var vc = IndexRef.Random([3, Hkv, cap, D], dtype, 5);
            var (k0, v0) = (kc.Clone(), vc.Clone());
            // Row 0 inside (as the reference), row 1 at the capacity (idle), row 2 at cap − 1 (for T = 2: one row in, one out).
            var at = Tensor.FromArray(new long[] { 1, cap + 3, cap - 1 }, 3);
            var inRange = Tensor.FromArray(new long[] { 1, 0, cap - t }, 3);
            var qRot = Tensor.RopeAppendAt(q, k, v, cos32, sin32, at, kc, vc).To(DType.F64).ToDoubleArray();
            var (kr, vr) = (k0.Clone(), v0.Clone());
            var want = Tensor.RopeAppendAt(q, k, v, cos32, sin32, inRange, kr, vr).To(DType.F64).ToDoubleArray();
            int per = H * t * D;
            Assert.That(qRot.AsSpan(0, per).ToArray(), Is.EqualTo(want.AsSpan(0, per).ToArray()), $"T {t}: the row inside");
            Assert.That(qRot.AsSpan(per, per).ToArray(), Is.All.NaN, $"T {t}: the row outside");
            Assert.That(Bits(kc.Narrow(0, 1, 1)), Is.EqualTo(Bits(k0.Narrow(0, 1, 1))), $"T {t}: nothing written for the row outside");
            Assert.That(Bits(vc.Narrow(0, 1, 1)), Is.EqualTo(Bits(v0.Narrow(0, 1, 1))), $"T {t}: nothing written for the row outside (v)");
            Assert.That(Bits(kc.Narrow(0, 0, 1)), Is.EqualTo(Bits(kr.Narrow(0, 0, 1))), $"T {t}: the row inside written");
            var last = Enumerable.Range(0, H).SelectMany(h => Enumerable.Range(0, D).Select(d => qRot[2 * per + (h * t + t - 1) * D + d])).ToArray();
            Assert.That(last, t == 2 ? Is.All.NaN : Is.All.Not.NaN, $"T {t}: row 2's last query row (outside for T 2) is NaN");
            if (t == 2)
            {
                var first = Enumerable.Range(0, H).SelectMany(h => Enumerable.Range(0, D).Select(d => qRot[2 * per + h * t * D + d])).ToArray();
                Assert.That(first, Is.All.Not.NaN, "row 2's first query row (inside) is rotated");
                Assert.That(Bits(kc.Narrow(0, 2, 1).Narrow(2, cap - 1, 1)), Is.Not.EqualTo(Bits(k0.Narrow(0, 2, 1).Narrow(2, cap - 1, 1))), "its inside row written");
                Assert.That(Bits(kc.Narrow(0, 2, 1).Narrow(2, 0, cap - 1)), Is.EqualTo(Bits(k0.Narrow(0, 2, 1).Narrow(2, 0, cap - 1))), "and nothing before it");
            }
        }
        var qa = IndexRef.Random([2, H, 1, D], dtype, 6);
        var kca = IndexRef.Random([2, Hkv, cap, D], dtype, 7);
        var vca = IndexRef.Random([2, Hkv, cap, D], dtype, 8);
        var past = Tensor.AttentionAt(qa, kca, vca, Tensor.FromArray(new long[] { cap, -1 }, 2)).To(DType.F64).ToDoubleArray();
        Assert.That(past.AsSpan(0, H * D).ToArray(), Is.All.NaN, "at the capacity (an idle slot): no key seen");
        Assert.That(past.AsSpan(H * D, H * D).ToArray(), Is.All.NaN, "a negative position sees no key");
        var farPast = Tensor.AttentionAt(qa, kca, vca, Tensor.FromArray(new long[] { 1, cap + 5 }, 2)).To(DType.F64).ToDoubleArray();
        Assert.That(farPast.AsSpan(0, H * D).ToArray(), Is.All.Not.NaN, "a row inside next to it");
        Assert.That(farPast.AsSpan(H * D, H * D).ToArray(), Is.All.NaN, "past the capacity: no key seen");
        var q2 = IndexRef.Random([1, H, 2, D], dtype, 9);
        var runsPast = Tensor.AttentionAt(q2, kca.Narrow(0, 0, 1), vca.Narrow(0, 0, 1), Tensor.FromArray(new long[] { cap - 1 }, 1)).To(DType.F64).ToDoubleArray();
        var whole = Tensor.ScaledDotProductAttention(q2, kca.Narrow(0, 0, 1), vca.Narrow(0, 0, 1), null, causal: true, queryOffset: cap - 1).To(DType.F64).ToDoubleArray();
        Assert.That(runsPast, Is.EqualTo(whole), "T 2 from the last row: the whole cache seen (clamped)");
    }

    [Test]
    public void BadArgumentsAreRefusedWithTheirNames()
    {
        using var scope = TensorScope.Begin();
        var q = Tensor.Zeros([2, 4, 1, 8]);
        var k = Tensor.Zeros([2, 2, 1, 8]);
        var kc = Tensor.Zeros([2, 2, 6, 8]);
        var vc = Tensor.Zeros([2, 2, 6, 8]);
        var (cos, sin) = Tensor.RopeTables(0, 6, 8, 10_000.0);
        var pos = Tensor.FromArray(new long[] { 0, 1 }, 2);
        Tensor Rope(Tensor? q2 = null, Tensor? c = null, Tensor? p = null, Tensor? kc2 = null) => Tensor.RopeAppendAt(q2 ?? q, k, k, c ?? cos, sin, p ?? pos, kc2 ?? kc, vc);
        Assert.That(() => Rope(c: cos.Narrow(0, 0, 5)), Throws.ArgumentException.With.Message.Contains("RopeAppendAt: cos [5, 8] must be a whole table [rows ≥ the cache's 6"));
        Assert.That(() => Rope(p: Tensor.FromArray(new long[] { 0 }, 1)), Throws.ArgumentException.With.Message.Contains("positions must be a contiguous [2] int32 or int64 tensor"));
        Assert.That(() => Rope(p: Tensor.FromArray(new float[] { 0, 1 }, 2)), Throws.ArgumentException.With.Message.Contains("positions must be"));
        Assert.That(() => Rope(p: Tensor.FromArray(new long[] { 0, 9, 1, 9 }, 2, 2).Select(1, 0)), Throws.ArgumentException.With.Message.Contains("contiguous"));
        Assert.That(() => Rope(kc2: Tensor.Zeros([2, 1, 6, 8])), Throws.ArgumentException.With.Message.Contains("RopeAppendAt: the caches [2, 1, 6, 8] and [2, 2, 6, 8]"));
        Assert.That(() => Rope(q2: Tensor.Zeros([2, 4, 1, 8], DType.F64)), Throws.ArgumentException.With.Message.Contains("one float dtype"));
        Assert.That(() => Tensor.RopeAppendAt(q, kc.Narrow(2, 3, 1), k, cos, sin, pos, kc, vc), Throws.ArgumentException.With.Message.Contains("RopeAppendAt: kCache [2, 2, 6, 8] shares memory with k"));
        Assert.That(() => Tensor.RopeAppendAt(q, k, k, cos, sin, pos, kc, kc), Throws.ArgumentException.With.Message.Contains("kCache and vCache share memory"));
        Assert.That(() => Tensor.AttentionAt(Tensor.Zeros([2, 3, 1, 8]), kc, vc, pos), Throws.ArgumentException.With.Message.Contains("multiple of the 2 key/value heads"));
        Assert.That(() => Tensor.AttentionAt(q, kc, Tensor.Zeros([2, 2, 5, 8]), pos), Throws.ArgumentException.With.Message.Contains("AttentionAt: the caches"));
        Assert.That(() => Tensor.AttentionAt(q, kc, vc, Tensor.FromArray(new long[] { 0, 1, 2 }, 3)), Throws.ArgumentException.With.Message.Contains("[2] int32 or int64"));
        Assert.That(kc.ToFloatArray(), Is.All.EqualTo(0f), "a refused call writes nothing");
    }

    private static long[] Bits(Tensor t) => t.DType switch
    {
        DType.F32 => t.ToArray<float>().Select(x => (long)BitConverter.SingleToInt32Bits(x)).ToArray(),
        DType.F64 => t.ToArray<double>().Select(BitConverter.DoubleToInt64Bits).ToArray(),
        DType.BF16 => t.ToBFloat16Bits().Select(x => (long)x).ToArray(),
        _ => throw new ArgumentException(t.DType.ToString()),
    };
}
