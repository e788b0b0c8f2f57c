using Parrot.Tensors;

namespace Parrot.Tensors.Tests;

/// <summary>
/// float64 exp, log, tanh, sigmoid, sin, cos, pow and the softmax's exp give the C runtime's bits (Math.*), element for
/// element, whatever else shares their vector: TensorPrimitives' float64 kernels did not (about 1 ulp off in many
/// lanes), and their bits changed when the JIT recompiled them at a higher tier — the same float64 reference computed
/// twice in one process could differ (Cpu/Transcendentals.cs). Math.* calls the C runtime at every tier, so equality
/// with it is tier-independence.
/// </summary>
public class Float64TranscendentalsTests
{
    // Rows of 67 (vector bodies and a tail) mixing −∞, +∞, NaN, ±0, huge, tiny and ordinary values.
    private static double[] Mixed(int seed, double lo, double hi)
    {
        var rng = new Random(seed);
        var x = new double[64 * 67];
        for (int i = 0; i < x.Length; i++)
            x[i] = (i % 11) switch
            {
                3 => double.NegativeInfinity,
                7 when i % 3 == 0 => double.PositiveInfinity,
                9 when i % 5 == 0 => double.NaN,
                5 when i % 4 == 0 => i % 8 == 0 ? 0.0 : -0.0,
                _ => lo + rng.NextDouble() * (hi - lo),
            };
        return x;
    }

    private static void AssertBits(double[] expected, double[] actual, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length));
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.DoubleToInt64Bits(expected[i]) != BitConverter.DoubleToInt64Bits(actual[i]) && !(double.IsNaN(expected[i]) && double.IsNaN(actual[i])))
                Assert.Fail($"{what}: element {i} ({expected.Length} in all) is {actual[i]:R}, Math gives {expected[i]:R}");
    }

    private static readonly (UnaryOp Op, Func<double, double> F, double Lo, double Hi)[] Cases =
    [
        (UnaryOp.Exp, Math.Exp, -30, 5),
        (UnaryOp.Exp, Math.Exp, -800, 720),
        (UnaryOp.Log, Math.Log, 1e-300, 1e300),
        (UnaryOp.Tanh, Math.Tanh, -30, 30),
        (UnaryOp.Sigmoid, x => 1.0 / (1.0 + Math.Exp(-x)), -40, 40),
        (UnaryOp.Silu, x => x * (1.0 / (1.0 + Math.Exp(-x))), -40, 40),
        (UnaryOp.Sin, Math.Sin, -1e4, 1e4),
        (UnaryOp.Cos, Math.Cos, -1e4, 1e4),
    ];

    [Test]
    public void UnaryMapsGiveTheCRuntimesBits([Range(0, 7)] int c)
    {
        var (op, f, lo, hi) = Cases[c];
        var x = Mixed(c, lo, hi);
        var y = Tensor.FromArray(x, Device.Cpu, 64, 67).Map(op).ToArray<double>();
        AssertBits(x.Select(f).ToArray(), y, $"{op} over [{lo}, {hi}]");
    }

    [Test]
    public void PowGivesTheCRuntimesBits()
    {
        var a = Mixed(11, 0, 50); var b = Mixed(12, -6, 6);
        var y = (Tensor.FromArray(a, Device.Cpu, 64, 67).Pow(Tensor.FromArray(b, Device.Cpu, 64, 67))).ToArray<double>();
        AssertBits(a.Zip(b, Math.Pow).ToArray(), y, "pow");
    }

    [Test]
    public void SoftmaxOverMaskedScoresSumsTheCRuntimesExpInIndexOrder()
    {
        // y = e^(x − max) · (1/Σ), Σ in index order. Causally masked rows (−∞ right of the diagonal), as attention's float64 references build them.
        var rng = new Random(3);
        int n = 67;
        var x = new double[n * n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) x[i * n + j] = j <= i ? rng.NextDouble() * 20 - 10 : double.NegativeInfinity;
        var y = Tensor.FromArray(x, Device.Cpu, n, n).Softmax().ToArray<double>();
        var expected = new double[x.Length];
        for (int i = 0; i < n; i++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < n; j++) max = Math.Max(max, x[i * n + j]);
            for (int j = 0; j < n; j++) sum += Math.Exp(x[i * n + j] - max);
            for (int j = 0; j < n; j++) expected[i * n + j] = Math.Exp(x[i * n + j] - max) * (1.0 / sum);
        }
        AssertBits(expected, y, "softmax");
    }

    [Test]
    public void RepeatedCallsGiveTheSameBits()
    {
        // Tiering: ~30 calls, then a background recompile; 150 calls with pauses cover it. Exp over rows holding −∞
        // lanes changed bits at the recompile before (77 of 4096 elements, around the 50th call).
        var x = Tensor.FromArray(Mixed(5, -5, 0), Device.Cpu, 64, 67);
        var first = x.Exp().ToArray<double>();
        for (int i = 1; i < 150; i++)
        {
            if (i % 25 == 0) Thread.Sleep(20);
            AssertBits(first, x.Exp().ToArray<double>(), $"exp, call {i + 1}");
        }
    }
}
