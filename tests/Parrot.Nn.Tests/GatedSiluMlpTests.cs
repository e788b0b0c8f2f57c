using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Tests;

/// <summary>
/// GatedSiluMlp in inference on a few rows takes Tensor.SwiGluLinear (one GPU launch for gate, up and SwiGLU): on the
/// CPU it must give the same bits as the autograd path it replaces, and both must match a float64 loop.
/// </summary>
public class GatedSiluMlpTests
{
    [TestCase(DType.F32, new[] { 1, 1, 24 })]
    [TestCase(DType.F32, new[] { 2, 2, 24 })]
    [TestCase(DType.F32, new[] { 3, 24 })]
    [TestCase(DType.BF16, new[] { 4, 1, 24 })]
    [TestCase(DType.BF16, new[] { 24 })]
    [TestCase(DType.F32, new[] { 1, 6, 24 })] // 6 rows: the unfused path in both
    public void InferenceEqualsTheAutogradPathAndAFloat64Loop(DType dt, int[] shape)
    {
        const int hidden = 24, inter = 40;
        var mlp = new GatedSiluMlp(hidden, inter, seed: 5, dtype: dt);
        using var xt = Tensor.Normal(shape, 11, 0, 1, dt);
        var x = new Variable(xt);
        double[] tracked, inference;
        using (var y = mlp.Forward(x).Value) tracked = y.ToDoubleArray();
        using (Graph.NoGrad())
        using (var y = mlp.Forward(x).Value)
        {
            Assert.That(y.Shape.ToArray(), Is.EqualTo(shape[..^1].Append(hidden).ToArray()));
            inference = y.ToDoubleArray();
        }
        Assert.That(inference, Is.EqualTo(tracked), "inference and autograd paths");
        // float64: down(silu(x·Wgᵀ) ⊙ x·Wuᵀ), from the stored values.
        var xv = xt.ToDoubleArray();
        var wg = mlp.GateProj.Weight.Value.ToDoubleArray();
        var wu = mlp.UpProj.Weight.Value.ToDoubleArray();
        var wd = mlp.DownProj.Weight.Value.ToDoubleArray();
        int rows = xv.Length / hidden;
        double tol = dt == DType.BF16 ? 3e-2 : 1e-5;
        for (int m = 0; m < rows; m++)
        {
            var h = new double[inter];
            for (int n = 0; n < inter; n++)
            {
                double g = 0, u = 0;
                for (int k = 0; k < hidden; k++) { g += xv[m * hidden + k] * wg[n * hidden + k]; u += xv[m * hidden + k] * wu[n * hidden + k]; }
                h[n] = g / (1 + Math.Exp(-g)) * u;
            }
            for (int o = 0; o < hidden; o++)
            {
                double s = 0, mag = 0;
                for (int n = 0; n < inter; n++) { s += h[n] * wd[o * inter + n]; mag += Math.Abs(h[n] * wd[o * inter + n]); }
                Assert.That(inference[m * hidden + o], Is.EqualTo(s).Within(tol * (1 + mag)), $"row {m} out {o}");
            }
        }
    }
}
