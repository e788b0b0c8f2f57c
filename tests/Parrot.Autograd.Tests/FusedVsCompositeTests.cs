using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Autograd.Tests;

/// <summary>Fused ops agree with the same function composed from primitives, in value and gradient.</summary>
public class FusedVsCompositeTests
{
    private static void Compare(Func<Variable[], Variable> fused, Func<Variable[], Variable> composite, double tol, params Tensor[] inputs)
    {
        using var scope = TensorScope.Begin();
        var v1 = inputs.Select(t => new Variable(t, true)).ToArray();
        var v2 = inputs.Select(t => new Variable(t, true)).ToArray();
        var y1 = fused(v1); var y2 = composite(v2);
        Assert.That(y1.Shape.ToArray(), Is.EqualTo(y2.Shape.ToArray()));
        var a = y1.Value.ToDoubleArray(); var b = y2.Value.ToDoubleArray();
        for (int i = 0; i < a.Length; i++) Assert.That(a[i], Is.EqualTo(b[i]).Within(tol), $"value {i}");
        var seed = Tensor.Normal(y1.Shape, 77, dtype: y1.DType);
        y1.Backward(seed); y2.Backward(seed);
        for (int k = 0; k < inputs.Length; k++)
        {
            var g1 = v1[k].Grad!.ToDoubleArray(); var g2 = v2[k].Grad!.ToDoubleArray();
            for (int i = 0; i < g1.Length; i++) Assert.That(g1[i], Is.EqualTo(g2[i]).Within(tol), $"grad of input {k} at {i}");
        }
    }

    private static Tensor R(ulong seed, params int[] shape) => Tensor.Normal(shape, seed, dtype: DType.F64);

    [Test]
    public void Softmax() => Compare(v => v[0].Softmax(-1), v => { var e = (v[0] - v[0].Max([-1], true)).Exp(); return e / e.Sum([-1], true); }, 1e-12, R(1, 4, 7));

    [Test]
    public void LogSoftmax() => Compare(v => v[0].LogSoftmax(-1), v => { var s = v[0] - v[0].Max([-1], true); return s - s.Exp().Sum([-1], true).Log(); }, 1e-12, R(2, 4, 7));

    [Test]
    public void LayerNorm() => Compare(v => v[0].LayerNorm(v[1], v[2], 1e-5),
        v => { var mu = v[0].Mean([-1], true); var d = v[0] - mu; return d / ((d * d).Mean([-1], true) + 1e-5).Sqrt() * v[1] + v[2]; },
        1e-10, R(3, 5, 8), R(4, 8), R(5, 8));

    [Test]
    public void RmsNorm() => Compare(v => v[0].RmsNorm(v[1], 1e-6), v => v[0] * ((v[0] * v[0]).Mean([-1], true) + 1e-6).Rsqrt() * v[1], 1e-10, R(6, 5, 8), R(7, 8));

    [Test]
    public void CrossEntropyWithIgnoreIndex()
    {
        var targets = Tensor.FromArray(new long[] { 3, -100, 0, 5, -100 });
        Compare(v => Variable.CrossEntropy(v[0], targets, -100),
            v =>
            {
                // mean over non-ignored rows of −log_softmax[row, target]
                var ls = v[0].LogSoftmax(-1);
                var picked = ls.Gather(1, Tensor.FromArray(new long[] { 3, 0, 0, 5, 0 }, 5, 1));
                var mask = new Variable(Tensor.FromArray(new double[] { 1, 0, 1, 1, 0 }, 5, 1));
                return -(picked * mask).Sum() / 3;
            }, 1e-12, R(8, 5, 6));
    }
}
