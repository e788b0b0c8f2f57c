namespace Parrot.Tensors.Tests;

/// <summary>Top-k against a float64 sort in the test; results are exact (values are copied, not computed).</summary>
public class TopKTests
{
    /// <summary>Indices of the k best of a row: larger first, NaN above everything, ties by lower index.</summary>
    private static long[] Reference(double[] row, int k) =>
        Enumerable.Range(0, row.Length)
            .OrderByDescending(i => double.IsNaN(row[i]) ? double.PositiveInfinity : row[i])
            .ThenByDescending(i => double.IsNaN(row[i]) ? 1 : 0)
            .ThenBy(i => i)
            .Take(k).Select(i => (long)i).ToArray();

    private static void Check(Tensor x, int k, string what)
    {
        int n = x.Shape[^1];
        var rows = ReduceRef.Rows(x.ToDoubleArray(), n);
        var (values, indices) = x.TopK(k);
        using (values)
        using (indices)
        {
            var shape = x.Shape.ToArray();
            shape[^1] = k;
            Assert.That(values.Shape.ToArray(), Is.EqualTo(shape), what);
            Assert.That(values.DType, Is.EqualTo(x.DType));
            Assert.That(indices.DType, Is.EqualTo(DType.I64));
            var gotIdx = indices.ToLongArray();
            var gotVal = values.ToDoubleArray();
            for (int r = 0; r < rows.Length; r++)
            {
                var want = Reference(rows[r], k);
                Assert.That(gotIdx.AsSpan(r * k, k).ToArray(), Is.EqualTo(want), $"{what}: row {r} indices");
                Assert.That(gotVal.AsSpan(r * k, k).ToArray(), Is.EqualTo(want.Select(i => rows[r][i]).ToArray()), $"{what}: row {r} values");
            }
        }
    }

    [Test]
    public void RowsOfManyLengthsAndKs([Values(DType.F32, DType.F64, DType.BF16, DType.I32)] DType dtype)
    {
        foreach (var n in new[] { 1, 7, 33, 1000 })
            foreach (var k in new[] { 0, 1, 5, n / 2, n }.Where(k => k <= n).Distinct())
            {
                using var scope = TensorScope.Begin();
                // Integer-valued data in a narrow range: many ties.
                var x = Tensor.Uniform([4, n], seed: (ulong)(n + k), low: -20, high: 20).To(DType.I32).To(dtype);
                Check(x, k, $"{dtype} n={n} k={k}");
            }
    }

    [Test]
    public void NaNRanksFirstAndTiesKeepIndexOrder()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(new[] { 3f, float.NaN, 3f, 5f, -0f, 0f, float.NaN, 5f });
        var (values, indices) = x.TopK(6);
        Assert.That(indices.ToLongArray(), Is.EqualTo(new long[] { 1, 6, 3, 7, 0, 2 }));
        Assert.That(values.ToFloatArray().Skip(2), Is.EqualTo(new[] { 5f, 5f, 3f, 3f }));
        Check(x, 8, "with NaN and signed zeros");
    }

    [Test]
    public void SixteenBitNaNsComeBackQuietWithTheirPayload([Values(DType.BF16, DType.F16)] DType dtype, [Values(1, 2)] int step)
    {
        // The values come back through float32 (RowIO), which sets a signalling NaN's quiet bit and keeps sign and
        // payload; native/topk.cu (topk_store_value) writes the same bits. Contiguous rows (the vector conversions) and
        // strided ones (the scalar conversions), 40 long so that the vector loops run.
        using var scope = TensorScope.Begin();
        ushort quiet = dtype == DType.BF16 ? (ushort)0x40 : (ushort)0x200;
        ushort one = dtype == DType.BF16 ? (ushort)0x3f80 : (ushort)0x3c00;
        ushort[] nans = dtype == DType.BF16 ? [0x7f81, 0xff85, 0x7fc3] : [0x7c01, 0xfd05, 0x7e03]; // signalling, negative signalling, quiet
        var bits = new ushort[40 * step];
        for (int j = 0; j < bits.Length; j++) bits[j] = one;
        for (int j = 0; j < nans.Length; j++) bits[(10 * j + 5) * step] = nans[j];
        Tensor x = dtype == DType.BF16 ? Tensor.FromBFloat16Bits(bits) : Tensor.FromArray(bits.Select(BitConverter.UInt16BitsToHalf).ToArray());
        var row = x.Slice(0, 0, null, step);
        var (values, indices) = row.TopK(4);
        Assert.That(indices.ToLongArray(), Is.EqualTo(new long[] { 5, 15, 25, 0 }));
        ushort[] got = dtype == DType.BF16 ? values.ToBFloat16Bits() : values.ToArray<Half>().Select(BitConverter.HalfToUInt16Bits).ToArray();
        Assert.That(got, Is.EqualTo(new[] { (ushort)(nans[0] | quiet), (ushort)(nans[1] | quiet), nans[2], one }));
    }

    [Test]
    public void NonLastAxisNonContiguousAndVocabularySizedRows()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([30, 4, 5], seed: 9);
        var (v0, i0) = x.TopK(3, axis: 0);
        Assert.That(v0.Shape.ToArray(), Is.EqualTo(new[] { 3, 4, 5 }));
        var moved = x.Permute(1, 2, 0).Contiguous();
        var (vm, im) = moved.TopK(3);
        Assert.That(i0.Permute(1, 2, 0).ToLongArray(), Is.EqualTo(im.ToLongArray()));
        Assert.That(v0.Permute(1, 2, 0).ToFloatArray(), Is.EqualTo(vm.ToFloatArray()));
        Check(x.Transpose(0, 2).Slice(1, 0, null, 3), 4, "transposed and stepped");
        Check(Tensor.Normal([2, 151_936], seed: 10), 50, "vocabulary rows");
    }

    [Test]
    public void BadKAndDtypeThrow()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Zeros([3, 4]);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.TopK(5));
        Assert.That(ex!.Message, Does.Contain("TopK").And.Contain("5"));
        Assert.Throws<ArgumentOutOfRangeException>(() => x.TopK(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => x.TopK(1, axis: 2));
        Assert.Throws<ArgumentException>(() => Tensor.Zeros([3], DType.Bool).TopK(1));
        Assert.Throws<ArgumentException>(() => Tensor.Scalar(1).TopK(1));
        var dead = Tensor.Zeros([3]);
        dead.Dispose();
        Assert.Throws<ObjectDisposedException>(() => dead.TopK(1));
    }
}
