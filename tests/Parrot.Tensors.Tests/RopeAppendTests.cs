using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// <see cref="Tensor.RopeAppend"/> (inference's rotations and KV-cache append in one step): the same bits as ApplyRope
/// and copies apart, the cache outside the slots untouched, q and k within the stated tolerance of a float64 loop
/// (F32 1e-6·(1+|y|), BF16 one bf16 rounding, F64 1e-14), and its input checks. The CUDA kernel's identity with the
/// ops apart is checked by tools/cuda-emu and by `parrot selftest` on a GPU.
/// </summary>
public class RopeAppendTests
{
    private const int B = 2, H = 4, Hkv = 2, D = 16, MaxLen = 9, Past = 3;

    [Test]
    public void EqualsTheOpsApartBitForBitAndMatchesFloat64(
        [Values(DType.F32, DType.BF16, DType.F64)] DType dtype, [Values(1, 5)] int t, [Values(false, true)] bool perRow)
    {
        using var scope = TensorScope.Begin();
        // The projections' outputs [B, T, heads·D] viewed as heads and transposed, as attention passes them.
        var q = IndexRef.Random([B, t, H * D], dtype, 1).ViewAs(B, t, H, D).Transpose(1, 2);
        var k = IndexRef.Random([B, t, Hkv * D], dtype, 2).ViewAs(B, t, Hkv, D).Transpose(1, 2);
        var v = IndexRef.Random([B, t, Hkv * D], dtype, 3).ViewAs(B, t, Hkv, D).Transpose(1, 2);
        var (cos, sin) = Tables(t, perRow);
        var kc = IndexRef.Random([B, Hkv, MaxLen, D], dtype, 4);
        var vc = IndexRef.Random([B, Hkv, MaxLen, D], dtype, 5);
        var kc0 = kc.Clone();
        var vc0 = vc.Clone();

        var qRot = Tensor.RopeAppend(q, k, v, cos, sin, kc.Narrow(2, Past, t), vc.Narrow(2, Past, t));

        Assert.That(qRot.Shape.ToArray(), Is.EqualTo(new[] { B, H, t, D }));
        Assert.That(Bits(qRot), Is.EqualTo(Bits(q.ApplyRope(cos, sin))), "q");
        Assert.That(Bits(kc.Narrow(2, Past, t)), Is.EqualTo(Bits(k.ApplyRope(cos, sin))), "the K slot");
        Assert.That(Bits(vc.Narrow(2, Past, t)), Is.EqualTo(Bits(v)), "the V slot");
        foreach (var (start, length) in new[] { (0, Past), (Past + t, MaxLen - Past - t) })
        {
            Assert.That(Bits(kc.Narrow(2, start, length)), Is.EqualTo(Bits(kc0.Narrow(2, start, length))), $"K cache outside the slot at {start}");
            Assert.That(Bits(vc.Narrow(2, start, length)), Is.EqualTo(Bits(vc0.Narrow(2, start, length))), $"V cache outside the slot at {start}");
        }
        AssertNearFloat64(qRot, q, cos, sin, dtype, "q");
        AssertNearFloat64(kc.Narrow(2, Past, t), k, cos, sin, dtype, "k");
    }

    [Test]
    public void RopeAppendRejectsBadInput()
    {
        using var scope = TensorScope.Begin();
        var (cos, sin) = Tensor.RopeTables(0, 4, 8, 10_000.0);
        var q = Tensor.Zeros([1, 4, 4, 8]);
        var k = Tensor.Zeros([1, 2, 4, 8]);
        var v = Tensor.Zeros([1, 2, 4, 8]);
        var slot = Tensor.Zeros([1, 2, 4, 8]);
        Tensor Run(Tensor? q2 = null, Tensor? k2 = null, Tensor? v2 = null, Tensor? ks = null, Tensor? vs = null, Tensor? c = null) =>
            Tensor.RopeAppend(q2 ?? q, k2 ?? k, v2 ?? v, c ?? cos, sin, ks ?? slot, vs ?? slot.Clone());
        Assert.That(() => Run(ks: Tensor.Zeros([1, 2, 3, 8])), Throws.ArgumentException.With.Message.Contains("RopeAppend: kSlot [1, 2, 3, 8] must have k's shape"));
        Assert.That(() => Run(v2: Tensor.Zeros([1, 4, 4, 8])), Throws.ArgumentException.With.Message.Contains("RopeAppend: v [1, 4, 4, 8]"));
        Assert.That(() => Run(vs: Tensor.Zeros([1, 2, 4, 8], DType.BF16)), Throws.ArgumentException.With.Message.Contains("one dtype").And.Message.Contains("bfloat16"));
        Assert.That(() => Run(q2: Tensor.Zeros([1, 4, 4, 8], DType.F64)), Throws.ArgumentException.With.Message.Contains("one dtype"));
        Assert.That(() => Run(q2: Tensor.Zeros([4, 4, 8])), Throws.ArgumentException.With.Message.Contains("[batch, heads, seq, head_dim]"));
        Assert.That(() => Run(q2: Tensor.Zeros([2, 4, 4, 8])), Throws.ArgumentException.With.Message.Contains("differ in batch, seq or head_dim"));
        Assert.That(() => Run(k2: Tensor.Zeros([1, 2, 3, 8])), Throws.ArgumentException.With.Message.Contains("RopeAppend"));
        Assert.That(() => Run(k2: Tensor.Zeros([1, 2, 4, 8], DType.I32)), Throws.ArgumentException.With.Message.Contains("RopeAppend: k must be a float tensor"));
        Assert.That(() => Run(c: Tensor.Zeros([4, 6])), Throws.ArgumentException.With.Message.Contains("head_dim"));
        // The cache apart from the new rows and kSlot apart from vSlot (the fused kernels would read rows being rotated).
        Assert.That(() => Run(ks: k), Throws.ArgumentException.With.Message.Contains("RopeAppend: kSlot [1, 2, 4, 8] shares memory with k"));
        Assert.That(() => Run(vs: v), Throws.ArgumentException.With.Message.Contains("vSlot [1, 2, 4, 8] shares memory with v"));
        var qs = Tensor.Zeros([1, 4, 4, 8]);
        Assert.That(() => Run(q2: qs, vs: qs.Narrow(1, 2, 2)), Throws.ArgumentException.With.Message.Contains("vSlot [1, 2, 4, 8] shares memory with q"));
        Assert.That(() => Run(vs: slot), Throws.ArgumentException.With.Message.Contains("kSlot and vSlot share memory"));
        var dead = Tensor.Zeros([1, 2, 4, 8]);
        dead.Dispose();
        Assert.That(() => Run(vs: dead), Throws.InstanceOf<ObjectDisposedException>().With.Message.Contains("RopeAppend"));
        Assert.That(slot.ToFloatArray(), Is.All.EqualTo(0f), "a refused call writes nothing");
    }

    [Test]
    public void CudaLauncherBroadcastsTheTablesAsExpandDoes()
    {
        using var scope = TensorScope.Begin();
        int[] half = [B, H, 5, D / 2], full = [B, H, 5, D];
        var (shared, _) = Tensor.RopeTables(0, 5, D, 10_000.0);
        var (rows, _) = Tensor.RopeTables(Tensor.FromArray(new long[] { 0, 1, 2, 3, 4, 7, 8, 9, 10, 11 }, B, 5), D, 10_000.0);
        foreach (var table in new[] { shared, rows.Unsqueeze(1), shared.Narrow(0, 1, 1).Expand(5, D) })
        {
            using var e = table.Expand(full);
            Assert.That(CudaBackend.StridesOver(table, half), Is.EqualTo(e.Strides.ToArray()), table.ShapeString());
        }
    }

    private static (Tensor Cos, Tensor Sin) Tables(int t, bool perRow)
    {
        if (!perRow) return Tensor.RopeTables(Past, t, D, 10_000.0);
        // Each row at its own positions (continuous batching): row 0 from Past, row 1 from 6.
        var positions = new long[B * t];
        for (int i = 0; i < t; i++) { positions[i] = Past + i; positions[t + i] = 6 + i; }
        var (c, s) = Tensor.RopeTables(Tensor.FromArray(positions, B, t), D, 10_000.0);
        return (c.Unsqueeze(1), s.Unsqueeze(1));
    }

    private static long[] Bits(Tensor t) => t.DType switch
    {
        DType.F32 => t.ToArray<float>().Select(x => (long)BitConverter.SingleToInt32Bits(x)).ToArray(),
        DType.F64 => t.ToArray<double>().Select(BitConverter.DoubleToInt64Bits).ToArray(),
        DType.BF16 => t.ToBFloat16Bits().Select(x => (long)x).ToArray(),
        _ => throw new ArgumentException(t.DType.ToString()),
    };

    /// <summary>y against x·cos + rotate_half(x)·sin evaluated in float64 over [B, heads, T, D] in C order.</summary>
    private static void AssertNearFloat64(Tensor y, Tensor x, Tensor cos, Tensor sin, DType dtype, string what)
    {
        int[] shape = x.Shape.ToArray();
        var xs = x.ToDoubleArray();
        using var ce = cos.Expand(shape);
        using var se = sin.Expand(shape);
        var c = ce.ToDoubleArray();
        var s = se.ToDoubleArray();
        var got = y.ToDoubleArray();
        int half = D / 2;
        for (int o = 0; o < xs.Length; o += D)
            for (int d = 0; d < D; d++)
            {
                double rotated = d < half ? -xs[o + d + half] : xs[o + d - half];
                double want = xs[o + d] * c[o + d] + rotated * s[o + d];
                double tol = dtype switch { DType.F64 => 1e-14, DType.F32 => 1e-6, _ => Math.Pow(2, -8) } * (1 + Math.Abs(want));
                Assert.That(got[o + d], Is.EqualTo(want).Within(tol), $"{what} at {o + d}");
            }
    }
}
