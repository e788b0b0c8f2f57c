using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// LayerNorm with weight and bias, and Rope with cos and sin, of two float dtypes on CUDA: the kernels read a pair with
/// one dtype code, so CudaBackend converts the narrower to <see cref="CudaBackend.PairDType"/> first. Checked on the
/// CPU: the conversion is exact (the CPU backend gives the same bits with the converted operand as with the original,
/// which is what the CUDA path relies on), and the conversion of a broadcast table copies only its distinct elements.
/// </summary>
public class CudaTablePairTests
{
    private static readonly DType[] Floats = [DType.F32, DType.F64, DType.BF16, DType.F16];

    [Test]
    public void PairDTypeHoldsBothExactly()
    {
        foreach (var a in Floats)
            foreach (var b in Floats)
            {
                var p = CudaBackend.PairDType(a, b);
                Assert.That(p, Is.EqualTo(a == b ? a : a == DType.F64 || b == DType.F64 ? DType.F64 : DType.F32), $"{a} {b}");
                Assert.That(CudaBackend.PairDType(b, a), Is.EqualTo(p), "symmetric");
            }
    }

    private static Tensor N(ulong seed, DType dt, params int[] shape)
    {
        using var f = Tensor.Normal(shape, seed, 0, 1, DType.F64);
        return f.To(dt);
    }

    [Test]
    public void LayerNormWithTheConvertedPairGivesTheCpuBits()
    {
        foreach (var xt in new[] { DType.F32, DType.BF16, DType.F64 })
            foreach (var (wt, bt) in new[] { (DType.BF16, DType.F32), (DType.F32, DType.F16), (DType.BF16, DType.F16), (DType.F64, DType.F32), (DType.F16, DType.F64) })
            {
                using var x = N(1, xt, 5, 48);
                using var w = N(2, wt, 48);
                using var b = N(3, bt, 48);
                var common = CudaBackend.PairDType(wt, bt);
                using var wc = CudaBackend.ConvertedOrNull(w, common);
                using var bc = CudaBackend.ConvertedOrNull(b, common);
                Assert.That(wc is not null || bc is not null, $"{wt} {bt}: one converted");
                using var want = x.LayerNorm(w, b);
                using var got = x.LayerNorm(wc ?? w, bc ?? b);
                Assert.That(got.ToDoubleArray(), Is.EqualTo(want.ToDoubleArray()), $"x {xt}, weight {wt}, bias {bt}");
            }
    }

    [Test]
    public void RopeWithTheConvertedPairGivesTheCpuBits()
    {
        foreach (var xt in new[] { DType.F32, DType.BF16, DType.F64 })
            foreach (var (ct, st) in new[] { (DType.BF16, DType.F32), (DType.F16, DType.BF16), (DType.F32, DType.F64) })
            {
                using var x = N(4, xt, 2, 3, 6, 16);
                var (cos, sin) = Tensor.RopeTables(0, 6, 16, 10000.0);
                using (cos) using (sin)
                {
                    using var c = cos.To(ct);
                    using var s = sin.To(st);
                    using var ce = c.Expand([2, 3, 6, 16]);
                    using var se = s.Expand([2, 3, 6, 16]);
                    var common = CudaBackend.PairDType(ct, st);
                    using var cc = CudaBackend.ConvertedOrNull(ce, common);
                    using var sc = CudaBackend.ConvertedOrNull(se, common);
                    using var want = x.ApplyRope(c, s);
                    using var got = x.ApplyRope(cc ?? ce, sc ?? se);
                    Assert.That(got.ToDoubleArray(), Is.EqualTo(want.ToDoubleArray()), $"x {xt}, cos {ct}, sin {st}");
                }
            }
    }

    [Test]
    public void ABroadcastTableIsConvertedOnceAndExpandedAgain()
    {
        using var t = N(5, DType.BF16, 6, 16);
        using var e = t.Expand([2, 3, 6, 16]);
        using var c = CudaBackend.ConvertedOrNull(e, DType.F32)!;
        Assert.That(c.Shape.ToArray(), Is.EqualTo(new[] { 2, 3, 6, 16 }));
        Assert.That(c.Strides.ToArray(), Is.EqualTo(new long[] { 0, 0, 16, 1 }), "the [6, 16] copy, broadcast");
        using var back = t.To(DType.F32);
        using var want = back.Expand([2, 3, 6, 16]);
        Assert.That(c.ToDoubleArray(), Is.EqualTo(want.ToDoubleArray()));
        Assert.That(CudaBackend.ConvertedOrNull(e, DType.BF16), Is.Null, "already of the dtype");
        Assert.That(CudaBackend.ConvertedOrNull(null, DType.F32), Is.Null);
    }
}
