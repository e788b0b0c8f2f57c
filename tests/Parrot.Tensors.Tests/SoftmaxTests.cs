namespace Parrot.Tensors.Tests;

/// <summary>
/// Softmax and log-softmax against float64 loops. Tolerances: F32 softmax within 1e-6·(value) + 1e-7 absolute,
/// log-softmax within 1e-6·(1 + |value|); F64 within 1e-13; BF16 within one bf16 rounding of the float64 value
/// of the bf16 inputs (2^-8 relative, plus 1e-6 absolute / 1e-3 for log values near zero).
/// </summary>
public class SoftmaxTests
{
    private static double[] Reference(double[] row, bool log)
    {
        double max = row.Max();
        if (row.Any(double.IsNaN)) return row.Select(_ => double.NaN).ToArray();
        double sum = row.Sum(v => Math.Exp(v - max));
        return row.Select(v => log ? v - max - Math.Log(sum) : Math.Exp(v - max) / sum).ToArray();
    }

    /// <summary>Checks softmax along the last axis of a C-order [..., n] tensor x.</summary>
    private static void CheckLast(Tensor x, bool log, string what)
    {
        int n = x.Shape[^1];
        var expected = ReduceRef.Rows(x.ToDoubleArray(), n).SelectMany(r => Reference(r, log)).ToArray();
        using var y = log ? x.LogSoftmax() : x.Softmax();
        Assert.That(y.Shape.ToArray(), Is.EqualTo(x.Shape.ToArray()));
        Assert.That(y.DType, Is.EqualTo(x.DType));
        Assert.That(y.IsContiguous);
        ReduceRef.AssertClose(y.ToDoubleArray(), expected, Tolerance(x.DType, log, expected), what);
    }

    private static Func<int, double> Tolerance(DType dtype, bool log, double[] expected) => dtype switch
    {
        DType.F64 => i => 1e-13 * (1 + Math.Abs(expected[i])),
        DType.BF16 => i => Math.Abs(expected[i]) / 256 + (log ? 1e-3 : 1e-6),
        _ => i => log ? 1e-6 * (1 + Math.Abs(expected[i])) : 1e-6 * Math.Abs(expected[i]) + 1e-7,
    };

    [Test]
    public void RowsOfManyLengths([Values(DType.F32, DType.F64, DType.BF16)] DType dtype, [Values(false, true)] bool log)
    {
        foreach (var n in new[] { 1, 7, 17, 33, 1000, 5003 })
        {
            using var x = Tensor.Normal([5, n], seed: (ulong)n, std: 3, dtype: dtype);
            CheckLast(x, log, $"{(log ? "log-" : "")}softmax {dtype} n={n}");
        }
    }

    [Test]
    public void LargeLogitsDoNotOverflowAndRowsSumToOne()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([64, 333], seed: 2, mean: 1000, std: 50);
        CheckLast(x, log: false, "large logits");
        CheckLast(x, log: true, "large logits (log)");
        var sums = x.Softmax().Sum(1).ToDoubleArray();
        Assert.That(sums, Is.All.EqualTo(1.0).Within(1e-5));
    }

    [Test]
    public void MinusInfinityEntriesAndAllMinusInfinityRows()
    {
        using var scope = TensorScope.Begin();
        float ninf = float.NegativeInfinity;
        var data = new float[]
        {
            1, ninf, 2, ninf,          // masked entries get exactly 0 (log: -inf)
            ninf, ninf, ninf, ninf,    // a fully masked row is NaN, as in PyTorch
            0, 0, 0, 0,
            ninf, 5, ninf, ninf,       // one survivor gets exactly 1
        };
        var x = Tensor.FromArray(data, 4, 4);
        var y = x.Softmax().ToArray<float>();
        double e = Math.Exp(-1);
        Assert.That(y[0], Is.EqualTo(e / (1 + e)).Within(1e-7));
        Assert.That(y[1], Is.EqualTo(0f));
        Assert.That(y[2], Is.EqualTo(1 / (1 + e)).Within(1e-7));
        Assert.That(y.Skip(4).Take(4), Is.All.NaN);
        Assert.That(y.Skip(8).Take(4), Is.All.EqualTo(0.25f));
        Assert.That(y.Skip(12).Take(4), Is.EqualTo(new[] { 0f, 1f, 0f, 0f }));
        var l = x.LogSoftmax().ToArray<float>();
        Assert.That(l[1], Is.EqualTo(float.NegativeInfinity));
        Assert.That(l.Skip(4).Take(4), Is.All.NaN);
        Assert.That(l[13], Is.EqualTo(0f));
        // Masked entries in long vectorised rows, every third one.
        var wide = Tensor.Normal([3, 1000], seed: 3).ToArray<float>();
        for (int i = 0; i < wide.Length; i += 3) wide[i] = ninf;
        CheckLast(Tensor.FromArray(wide, 3, 1000), log: false, "masked wide rows");
        CheckLast(Tensor.FromArray(wide, 3, 1000), log: true, "masked wide rows (log)");
        // A NaN poisons its row only.
        var withNaN = Tensor.FromArray(new[] { 1f, float.NaN, 2f, 1f, 2f, 3f }, 2, 3).Softmax().ToArray<float>();
        Assert.That(withNaN.Take(3), Is.All.NaN);
        Assert.That(withNaN.Skip(3), Is.All.Not.NaN);
    }

    [Test]
    public void NonLastAxesAndNonContiguousInputs([Values(false, true)] bool log)
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([4, 6, 9], seed: 4, std: 2);
        foreach (var axis in new[] { 0, 1, -2 })
        {
            // Reference: move the axis last with a copy, compute there, compare after moving back.
            var moved = x.Transpose(axis, -1).Contiguous();
            int n = moved.Shape[^1];
            var expectedMoved = ReduceRef.Rows(moved.ToDoubleArray(), n).SelectMany(r => Reference(r, log)).ToArray();
            var expected = Tensor.FromArray(expectedMoved, moved.Shape.ToArray()).Transpose(axis, -1).ToDoubleArray();
            var y = log ? x.LogSoftmax(axis) : x.Softmax(axis);
            Assert.That(y.Shape.ToArray(), Is.EqualTo(new[] { 4, 6, 9 }));
            ReduceRef.AssertClose(y.ToDoubleArray(), expected, Tolerance(DType.F32, log, expected), $"axis {axis}");
        }
        CheckLast(x.Transpose(0, 2), log, "transposed input");
        CheckLast(x.Slice(2, 1, null, 2).Slice(0, 1, 3), log, "stepped input");
        CheckLast(Tensor.Normal([1, 50], seed: 5).Expand(7, 50), log, "broadcast input");
        CheckLast(Tensor.Normal([5, 7, 1], seed: 6, dtype: DType.BF16).Permute(2, 0, 1).Transpose(1, 2), log, "bf16 permuted");
    }

    [Test]
    public void EdgeShapesAndBadInput()
    {
        using var scope = TensorScope.Begin();
        Assert.That(Tensor.Scalar(3.0).Softmax().Item(), Is.EqualTo(1.0));
        Assert.That(Tensor.Scalar(3.0).LogSoftmax(0).Item(), Is.EqualTo(0.0));
        Assert.That(Tensor.Zeros([0, 5]).Softmax().Shape.ToArray(), Is.EqualTo(new[] { 0, 5 }));
        Assert.That(Tensor.Zeros([3, 0]).LogSoftmax().Shape.ToArray(), Is.EqualTo(new[] { 3, 0 }));
        Assert.That(Tensor.Full([2, 1], 7.0).Softmax().ToDoubleArray(), Is.EqualTo(new[] { 1.0, 1.0 }));
        var ints = Tensor.Zeros([2, 3], DType.I32);
        Assert.That(Assert.Throws<ArgumentException>(() => ints.Softmax())!.Message, Does.Contain("Softmax").And.Contain("int32"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Zeros([2, 3]).LogSoftmax(2))!.Message, Does.Contain("LogSoftmax"));
        var dead = Tensor.Zeros([2]);
        dead.Dispose();
        Assert.Throws<ObjectDisposedException>(() => dead.Softmax());
    }
}
