using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Autograd.Tests;

/// <summary>
/// The fused attention's backward: against finite differences in float64 (GradCheck), and against the same
/// attention composed from primitive ops (kv heads expanded, scores, masks, softmax, product), values and
/// gradients: float64 within 1e-12, float32 within 2e-5·(1 + |x|), bf16 within 2e-2·(1 + |x|) of the float64 composite.
/// </summary>
public class AttentionGradTests
{
    private static Tensor R(ulong seed, params int[] shape) => TensorScope.Detach(Tensor.Normal(shape, seed, dtype: DType.F64));

    /// <summary>The composite: what Parrot.Nn's Functional.ScaledDotProductAttentionComposite does.</summary>
    private static Variable Composite(Variable q, Variable k, Variable v, Tensor? mask, bool causal, int offset, double scale)
    {
        int b = q.Shape[0], h = q.Shape[1], t = q.Shape[2], d = q.Shape[3], hkv = k.Shape[1], s = k.Shape[2], dv = v.Shape[3];
        if (h != hkv)
        {
            int rep = h / hkv;
            k = k.Unsqueeze(2).Expand(b, hkv, rep, s, d).Reshape(b, h, s, d);
            v = v.Unsqueeze(2).Expand(b, hkv, rep, s, dv).Reshape(b, h, s, dv);
        }
        var scores = q.MatMul(k.Transpose(-2, -1)) * scale;
        if (causal)
        {
            var m = new double[t * s];
            for (int i = 0; i < t; i++)
                for (int j = 0; j < s; j++) m[i * s + j] = j <= offset + i ? 0 : double.NegativeInfinity;
            scores = scores + new Variable(Tensor.FromArray(m, t, s).To(scores.DType));
        }
        if (mask is not null) scores = scores + new Variable(mask.To(scores.DType));
        return scores.Softmax(-1).MatMul(v);
    }

    public sealed record Case(string Name, int B, int H, int Hkv, int T, int S, int D, int Dv, bool Causal, int Offset, string Mask)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<Case> Cases()
    {
        yield return new Case("GQA causal prefill", 1, 4, 2, 3, 3, 4, 4, true, 0, "none");
        yield return new Case("GQA 14/2 after a cache", 1, 14, 2, 2, 5, 4, 4, true, 3, "none");
        yield return new Case("MHA full, random mask, T≠S, odd dims", 2, 2, 2, 3, 4, 3, 5, false, 0, "full");
        yield return new Case("causal with right padding", 2, 2, 1, 4, 4, 2, 3, true, 0, "padding");
        yield return new Case("one query, one key", 1, 3, 1, 1, 1, 1, 2, false, 0, "none");
    }

    private static Tensor? Mask(Case c) => c.Mask switch
    {
        "none" => null,
        "full" => TensorScope.Detach(Tensor.Normal([c.B, c.H, c.T, c.S], 31, dtype: DType.F64)),
        // Padding hides the second sequence's last key; causal rows still see key 0, so no row is empty.
        _ => TensorScope.Detach(Tensor.FromArray(Enumerable.Range(0, c.B * c.S).Select(i => i / c.S == 1 && i % c.S == c.S - 1 ? double.NegativeInfinity : 0).ToArray(), c.B, 1, 1, c.S)),
    };

    [Test]
    public void GradCheckFloat64([ValueSource(nameof(Cases))] Case c)
    {
        using var scope = TensorScope.Begin();
        var mask = Mask(c);
        double scale = 0.6;
        GradCheck.Check(v => Variable.ScaledDotProductAttention(v[0], v[1], v[2], mask, c.Causal, c.Offset, scale),
            [R(1, c.B, c.H, c.T, c.D), R(2, c.B, c.Hkv, c.S, c.D), R(3, c.B, c.Hkv, c.S, c.Dv)], eps: 1e-6, atol: 1e-7, rtol: 1e-5);
    }

    [Test]
    public void GradCheckNonContiguousInputs()
    {
        using var scope = TensorScope.Begin();
        // q as the layer gives it (a transposed [B, T, H, D]), k transposed in its last two dims, v a step slice.
        var q = TensorScope.Detach(Tensor.Normal([1, 3, 4, 5], 4, dtype: DType.F64).Transpose(1, 2));
        var k = TensorScope.Detach(Tensor.Normal([1, 2, 5, 4], 5, dtype: DType.F64).Transpose(2, 3));
        var v = TensorScope.Detach(Tensor.Normal([1, 2, 4, 6], 6, dtype: DType.F64).Slice(3, step: 2));
        GradCheck.Check(x => Variable.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, queryOffset: 1), [q, k, v]);
    }

    private static void CompareWithComposite(Case c, DType dtype, double tol)
    {
        using var scope = TensorScope.Begin();
        var mask = Mask(c);
        double scale = 1 / Math.Sqrt(c.D);
        Tensor[] inputs = [R(11, c.B, c.H, c.T, c.D), R(12, c.B, c.Hkv, c.S, c.D), R(13, c.B, c.Hkv, c.S, c.Dv)];
        var fused = inputs.Select(x => new Variable(x.To(dtype), requiresGrad: true)).ToArray();
        var reference = inputs.Select(x => new Variable(x, requiresGrad: true)).ToArray();
        var y1 = Variable.ScaledDotProductAttention(fused[0], fused[1], fused[2], mask, c.Causal, c.Offset);
        var y2 = Composite(reference[0], reference[1], reference[2], mask, c.Causal, c.Offset, scale);
        Assert.That(y1.Shape.ToArray(), Is.EqualTo(y2.Shape.ToArray()));
        Close(y1.Value.ToDoubleArray(), y2.Value.ToDoubleArray(), tol, $"{c} {dtype} value");
        var seed = Tensor.Normal(y1.Shape, 77, dtype: DType.F64);
        y1.Backward(seed.To(dtype));
        y2.Backward(seed);
        string[] names = ["dq", "dk", "dv"];
        for (int i = 0; i < 3; i++)
        {
            Assert.That(fused[i].Grad!.DType, Is.EqualTo(dtype));
            Close(fused[i].Grad!.ToDoubleArray(), reference[i].Grad!.ToDoubleArray(), tol, $"{c} {dtype} {names[i]}");
        }
    }

    private static void Close(double[] a, double[] b, double tol, string what)
    {
        Assert.That(a, Has.Length.EqualTo(b.Length), what);
        for (int i = 0; i < a.Length; i++)
            Assert.That(a[i], Is.EqualTo(b[i]).Within(tol * (1 + Math.Abs(b[i]))), $"{what} [{i}]");
    }

    [Test]
    public void FusedMatchesCompositeFloat64([ValueSource(nameof(Cases))] Case c) => CompareWithComposite(c, DType.F64, 1e-12);

    [Test]
    public void FusedMatchesCompositeFloat32([ValueSource(nameof(Cases))] Case c) => CompareWithComposite(c, DType.F32, 2e-5);

    [Test]
    public void FusedMatchesCompositeBFloat16([ValueSource(nameof(Cases))] Case c) => CompareWithComposite(c, DType.BF16, 2e-2);

    [Test]
    public void LongerSequencesMatchTheComposite()
    {
        // Several key blocks and query items in the fused forward (and both threads), the Qwen2-0.5B head layout.
        CompareWithComposite(new Case("14/2 heads, 150 tokens", 1, 14, 2, 150, 150, 64, 64, true, 0, "none"), DType.F32, 2e-5);
    }

    [Test]
    public void NoGradientToInputsThatDoNotNeedIt()
    {
        using var scope = TensorScope.Begin();
        var q = new Variable(R(1, 1, 2, 3, 4), requiresGrad: true);
        var k = new Variable(R(2, 1, 1, 3, 4));
        var v = new Variable(R(3, 1, 1, 3, 4));
        Variable.ScaledDotProductAttention(q, k, v, causal: true).Sum().Backward();
        Assert.That(q.Grad, Is.Not.Null);
        Assert.That(k.Grad, Is.Null);
        Assert.That(v.Grad, Is.Null);
    }
}
