namespace Parrot.Tensors.Tests;

/// <summary>
/// Cross-entropy against a float64 loop (logsumexp(row) - row[target]). Tolerances: F32 and BF16 logits
/// (computed in float32 with float64 sums) within 1e-6·(1 + |loss|) of the float64 value of the same inputs,
/// F64 within 1e-12·(1 + |loss|).
/// </summary>
public class CrossEntropyTests
{
    private static double[] PerRow(double[] logits, int classes, long[] targets, int ignore)
    {
        var loss = new double[targets.Length];
        for (int r = 0; r < targets.Length; r++)
        {
            if (targets[r] == ignore) continue;
            var row = logits.AsSpan(r * classes, classes);
            double max = double.NegativeInfinity;
            foreach (var v in row) max = Math.Max(max, v);
            double sum = 0;
            foreach (var v in row) sum += Math.Exp(v - max);
            loss[r] = max + Math.Log(sum) - row[(int)targets[r]];
        }
        return loss;
    }

    private static long[] Targets(int n, int classes, int seed, int ignore, double ignoreRate)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.NextDouble() < ignoreRate ? ignore : (long)rng.Next(classes)).ToArray();
    }

    [Test]
    public void EveryReductionAgainstFloat64([Values(DType.F32, DType.F64, DType.BF16)] DType dtype)
    {
        foreach (var classes in new[] { 1, 7, 33, 1000, 5003 })
        {
            using var scope = TensorScope.Begin();
            const int n = 37;
            var logits = Tensor.Normal([n, classes], seed: (ulong)classes, std: 4, dtype: dtype);
            var t = Targets(n, classes, classes, -100, 0.2);
            var targets = Tensor.FromArray(t);
            var expected = PerRow(logits.ToDoubleArray(), classes, t, -100);
            double rel = dtype == DType.F64 ? 1e-12 : 1e-6;
            var none = Tensor.CrossEntropy(logits, targets, reduction: LossReduction.None);
            Assert.That(none.DType, Is.EqualTo(dtype == DType.F64 ? DType.F64 : DType.F32));
            ReduceRef.AssertClose(none.ToDoubleArray(), expected, i => rel * (1 + Math.Abs(expected[i])), $"per-row {dtype} C={classes}");
            double sum = expected.Sum();
            int counted = t.Count(v => v != -100);
            Assert.That(Tensor.CrossEntropy(logits, targets, reduction: LossReduction.Sum).Item(), Is.EqualTo(sum).Within(rel * (n + Math.Abs(sum))));
            var mean = Tensor.CrossEntropy(logits, targets);
            Assert.That(mean.Rank, Is.EqualTo(0));
            Assert.That(mean.Item(), Is.EqualTo(sum / counted).Within(rel * (1 + Math.Abs(sum / counted))), $"mean {dtype} C={classes}");
        }
    }

    [Test]
    public void NonContiguousLogitsBatchedShapesAndCustomIgnoreIndex()
    {
        using var scope = TensorScope.Begin();
        var logits = Tensor.Normal([50, 3, 4], seed: 3).Permute(1, 2, 0); // [3, 4, 50], class axis strided
        var t = Targets(12, 50, 4, ignore: 7, ignoreRate: 0).Select((v, i) => i % 5 == 0 ? 7L : v).ToArray(); // label 7 ignored
        var targets = Tensor.FromArray(t, 3, 4);
        var expected = PerRow(logits.Contiguous().ToDoubleArray(), 50, t, ignore: 7);
        var none = Tensor.CrossEntropy(logits, targets, ignoreIndex: 7, reduction: LossReduction.None);
        Assert.That(none.Shape.ToArray(), Is.EqualTo(new[] { 3, 4 }));
        ReduceRef.AssertClose(none.ToDoubleArray(), expected, i => 1e-6 * (1 + expected[i]), "strided logits");
        Assert.That(none.ToDoubleArray().Where((_, i) => t[i] == 7), Is.All.EqualTo(0.0));
        // Int32 targets are accepted and widened.
        var mean32 = Tensor.CrossEntropy(logits, targets.To(DType.I32), ignoreIndex: 7);
        Assert.That(mean32.Item(), Is.EqualTo(expected.Sum() / t.Count(v => v != 7)).Within(1e-5));
        // Huge logits: the max is subtracted first, nothing overflows.
        var big = Tensor.FromArray(new float[] { 1000, 0, -1000, 999 }, 1, 4);
        var loss = Tensor.CrossEntropy(big, Tensor.FromArray(new long[] { 3 })).Item();
        Assert.That(loss, Is.EqualTo(1 + Math.Log(1 + Math.Exp(-1))).Within(1e-5));
    }

    [Test]
    public void AllIgnoredMeanIsNaNAndSumIsZero()
    {
        using var scope = TensorScope.Begin();
        var logits = Tensor.Normal([4, 6], seed: 1);
        var targets = Tensor.Full([4], -100, DType.I64);
        Assert.That(Tensor.CrossEntropy(logits, targets).Item(), Is.NaN, "mean over zero rows, as PyTorch");
        Assert.That(Tensor.CrossEntropy(logits, targets, reduction: LossReduction.Sum).Item(), Is.EqualTo(0));
        Assert.That(Tensor.CrossEntropy(logits, targets, reduction: LossReduction.None).ToDoubleArray(), Is.All.EqualTo(0.0));
        var empty = Tensor.CrossEntropy(Tensor.Zeros([0, 6]), Tensor.Zeros([0], DType.I64));
        Assert.That(empty.Item(), Is.NaN);
    }

    [Test]
    public void BadTargetsThrowNamingRowAndValue()
    {
        using var scope = TensorScope.Begin();
        var logits = Tensor.Normal([5, 10], seed: 2);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.CrossEntropy(logits, Tensor.FromArray(new long[] { 1, 2, 3, 10, 4 })));
        Assert.That(ex!.Message, Does.Contain("CrossEntropy").And.Contain("row 3").And.Contain("10"));
        var neg = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.CrossEntropy(logits, Tensor.FromArray(new long[] { 0, -1, 0, 0, 0 })));
        Assert.That(neg!.Message, Does.Contain("row 1").And.Contain("-1"));
        Assert.Throws<ArgumentException>(() => Tensor.CrossEntropy(logits, Tensor.Zeros([5])));             // float targets
        Assert.Throws<ArgumentException>(() => Tensor.CrossEntropy(logits, Tensor.Zeros([4], DType.I64)));  // wrong length
        Assert.Throws<ArgumentException>(() => Tensor.CrossEntropy(Tensor.Zeros([5, 10], DType.I32), Tensor.Zeros([5], DType.I64)));
        var dead = Tensor.Zeros([5, 10]);
        dead.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Tensor.CrossEntropy(dead, Tensor.Zeros([5], DType.I64)));
    }
}
