namespace Parrot.Tensors.Tests;

/// <summary>
/// <see cref="Tensor.ScaledDotProductAttentionBackward"/> (the backend's AttentionBackward) against float64 loops
/// written here: the probabilities from scratch (exact softmax), dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − Σ_j P dP),
/// dQ = dS·K·scale, dK = dSᵀ·Q·scale, with kv heads shared by groups of query heads. Tolerances: F64 1e-10,
/// F32 1e-5 relative to the gradient's largest magnitude.
/// </summary>
public class AttentionBackwardTests
{
    private static (double[] Dq, double[] Dk, double[] Dv) Reference(double[] q, double[] k, double[] v, double[] dO, double[]? mask,
        int B, int H, int Hkv, int T, int S, int D, int Dv, bool causal, int offset, double scale)
    {
        var dq = new double[B * H * T * D];
        var dk = new double[B * Hkv * S * D];
        var dv = new double[B * Hkv * S * Dv];
        var p = new double[S];
        var dp = new double[S];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
            {
                int hk = h / (H / Hkv);
                for (int i = 0; i < T; i++)
                {
                    int qi = ((b * H + h) * T + i);
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < S; j++)
                    {
                        double s = 0;
                        for (int d = 0; d < D; d++) s += q[qi * D + d] * k[((b * Hkv + hk) * S + j) * D + d];
                        s *= scale;
                        if (mask is not null) s += mask[b * S + j];
                        if (causal && j > offset + i) s = double.NegativeInfinity;
                        p[j] = s;
                        max = Math.Max(max, s);
                    }
                    double sum = 0;
                    for (int j = 0; j < S; j++) sum += p[j] = Math.Exp(p[j] - max);
                    double rowDot = 0;
                    for (int j = 0; j < S; j++)
                    {
                        p[j] /= sum;
                        double x = 0;
                        for (int e = 0; e < Dv; e++) x += dO[qi * Dv + e] * v[((b * Hkv + hk) * S + j) * Dv + e];
                        dp[j] = x;
                        rowDot += p[j] * x;
                    }
                    for (int j = 0; j < S; j++)
                    {
                        double ds = p[j] * (dp[j] - rowDot);
                        int kj = (b * Hkv + hk) * S + j;
                        for (int d = 0; d < D; d++)
                        {
                            dq[qi * D + d] += ds * k[kj * D + d] * scale;
                            dk[kj * D + d] += ds * q[qi * D + d] * scale;
                        }
                        for (int e = 0; e < Dv; e++) dv[kj * Dv + e] += p[j] * dO[qi * Dv + e];
                    }
                }
            }
        return (dq, dk, dv);
    }

    private static void Near(Tensor actual, double[] expected, double rtol, string what)
    {
        var a = actual.ToDoubleArray();
        Assert.That(a, Has.Length.EqualTo(expected.Length), what);
        double scaleMax = expected.Max(Math.Abs);
        for (int i = 0; i < a.Length; i++)
            Assert.That(a[i], Is.EqualTo(expected[i]).Within(rtol * scaleMax), $"{what}[{i}]");
    }

    [Test]
    public void MatchesFloat64Loops([Values(DType.F32, DType.F64)] DType dtype, [Values(false, true)] bool masked)
    {
        const int B = 2, H = 4, Hkv = 2, T = 5, S = 9, D = 6, Dv = 3, Offset = 4;
        using var scope = TensorScope.Begin();
        var q = Tensor.Normal([B, H, T, D], 1).To(dtype);
        var k = Tensor.Normal([B, Hkv, S, D], 2).To(dtype);
        var v = Tensor.Normal([B, Hkv, S, Dv], 3).To(dtype);
        var dO = Tensor.Normal([B, H, T, Dv], 4).To(dtype);
        double[]? m = null;
        Tensor? mask = null;
        if (masked)
        {
            m = new double[B * S];
            for (int j = 0; j < S; j++) { m[j] = -0.5 * j; m[S + j] = j >= S - 2 ? double.NegativeInfinity : 0.25 * j; }
            mask = Tensor.FromArray(m, B, 1, 1, S).To(dtype);
        }
        double scale = 0.7;
        var o = Tensor.ScaledDotProductAttention(q, k, v, out var lse, mask, causal: true, queryOffset: Offset, scale: scale);
        var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(q, k, v, o, lse, dO, mask, true, Offset, scale);
        var (rq, rk, rv) = Reference(q.ToDoubleArray(), k.ToDoubleArray(), v.ToDoubleArray(), dO.ToDoubleArray(), m, B, H, Hkv, T, S, D, Dv, true, Offset, scale);
        double tol = dtype == DType.F64 ? 1e-10 : 1e-5;
        Assert.That(dq!.DType, Is.EqualTo(dtype));
        Near(dq, rq, tol, "dq");
        Near(dk!, rk, tol, "dk");
        Near(dv!, rv, tol, "dv");
    }

    [Test]
    public void OnlyTheRequestedGradientsAreComputed()
    {
        using var scope = TensorScope.Begin();
        var q = Tensor.Normal([1, 2, 3, 4], 1);
        var k = Tensor.Normal([1, 1, 3, 4], 2);
        var v = Tensor.Normal([1, 1, 3, 4], 3);
        var o = Tensor.ScaledDotProductAttention(q, k, v, out var lse, causal: true);
        var dO = Tensor.Normal([1, 2, 3, 4], 4);
        var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(q, k, v, o, lse, dO, null, true, 0, 0.5, qGrad: false, kGrad: true, vGrad: false);
        Assert.That(dq, Is.Null);
        Assert.That(dv, Is.Null);
        Assert.That(dk!.Shape.ToArray(), Is.EqualTo(new[] { 1, 1, 3, 4 }));
    }

    /// <summary>dq/dk/dv written into given tensors (columns of one packed [B, T, (H + 2·Hkv)·D] buffer, as the head
    /// split sees them): the same bits as new tensors, the tensors themselves returned; misfits throw.</summary>
    [Test]
    public void GradientsWrittenIntoGivenTensorsAreTheSame([Values(DType.F32, DType.BF16)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var q = Tensor.Normal([2, 4, 5, 8], 1).To(dtype);
        var k = Tensor.Normal([2, 2, 5, 8], 2).To(dtype);
        var v = Tensor.Normal([2, 2, 5, 8], 3).To(dtype);
        var o = Tensor.ScaledDotProductAttention(q, k, v, out var lse, causal: true);
        var dO = Tensor.Normal([2, 4, 5, 8], 4).To(dtype);
        var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(q, k, v, o, lse, dO, null, true, 0, 0.3);
        var packed = Tensor.Full([2, 5, 64], 7, dtype);
        var iq = packed.Narrow(2, 0, 32).Reshape(2, 5, 4, 8).Transpose(1, 2);
        var ik = packed.Narrow(2, 32, 16).Reshape(2, 5, 2, 8).Transpose(1, 2);
        var iv = packed.Narrow(2, 48, 16).Reshape(2, 5, 2, 8).Transpose(1, 2);
        var (wq, wk, wv) = Tensor.ScaledDotProductAttentionBackward(q, k, v, o, lse, dO, null, true, 0, 0.3, dqInto: iq, dkInto: ik, dvInto: iv);
        Assert.That(wq, Is.SameAs(iq));
        Assert.That(wk, Is.SameAs(ik));
        Assert.That(wv, Is.SameAs(iv));
        Assert.That(iq.ToFloatArray(), Is.EqualTo(dq!.ToFloatArray()));
        Assert.That(ik.ToFloatArray(), Is.EqualTo(dk!.ToFloatArray()));
        Assert.That(iv.ToFloatArray(), Is.EqualTo(dv!.ToFloatArray()));
        // Only dv given, only dv asked for: the others stay null.
        var alone = Tensor.Empty([2, 2, 5, 8], dtype);
        var (nq, nk, av) = Tensor.ScaledDotProductAttentionBackward(q, k, v, o, lse, dO, null, true, 0, 0.3, qGrad: false, kGrad: false, vGrad: false, dvInto: alone);
        Assert.That(nq, Is.Null);
        Assert.That(nk, Is.Null);
        Assert.That(av!.ToFloatArray(), Is.EqualTo(dv.ToFloatArray()));
        Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttentionBackward(q, k, v, o, lse, dO, null, true, 0, 0.3, dvInto: Tensor.Empty([2, 2, 5, 4], dtype)));
        Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttentionBackward(q, k, v, o, lse, dO, null, true, 0, 0.3, dvInto: Tensor.Empty([2, 2, 5, 8], DType.F64)));
        Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttentionBackward(q, k, v, o, lse, dO, null, true, 0, 0.3, dqInto: dO));
    }

    [Test]
    public void ALogSumExpOfTheWrongShapeThrowsNamingTheOp()
    {
        using var scope = TensorScope.Begin();
        var q = Tensor.Normal([1, 2, 3, 4], 1);
        var o = Tensor.Normal([1, 2, 3, 4], 2);
        var lse = Tensor.Zeros([1, 2, 4]);
        var e = Assert.Throws<ArgumentException>(() => Tensor.ScaledDotProductAttentionBackward(q, q, q, o, lse, o, null, false, 0, 0.5));
        Assert.That(e!.Message, Does.Contain("ScaledDotProductAttentionBackward").And.Contain("log-sum-exp"));
    }
}
