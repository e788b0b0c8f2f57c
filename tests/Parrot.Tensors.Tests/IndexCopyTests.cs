using Parrot.Tensors;
using Parrot.Tensors.Cpu;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The backend's IndexCopy (PyTorch's index_copy_: dst[..., index[j], ...] = src[..., j, ...]) on the CPU against a
/// naive loop over C-order float64 arrays. It copies element bits, so every dtype must match exactly (the values of
/// every dtype here convert to float64 exactly). The CPU refuses repeated and out-of-range indices before writing.
/// The CUDA kernel is checked against a port of this loop by tools/cuda-emu's scatter_test and, on a GPU, by the
/// selftest row "index copy" against the CPU; the test device (the CPU kernel behind device checks) by the sampler's
/// penalised chunk-sum tests and SelfTestScatterCasesTests.
/// </summary>
public class IndexCopyTests
{
    private static readonly DType[] AllTypes = [DType.F32, DType.F64, DType.BF16, DType.F16, DType.I32, DType.I64, DType.U8, DType.Bool];

    /// <summary>y = dst with y[o, index[j], i] = src[o, j, i] (dst [outer, size, inner] in C order, src [outer, k, inner]).</summary>
    private static double[] Naive(double[] dst, int[] shape, int axis, long[] index, double[] src)
    {
        var y = (double[])dst.Clone();
        int outer = shape.Take(axis).Aggregate(1, (a, b) => a * b), inner = shape.Skip(axis + 1).Aggregate(1, (a, b) => a * b);
        int size = shape[axis], k = index.Length;
        for (int o = 0; o < outer; o++)
            for (int j = 0; j < k; j++)
                for (int i = 0; i < inner; i++)
                    y[((long)o * size + index[j]) * inner + i] = src[((long)o * k + j) * inner + i];
        return y;
    }

    /// <summary>k distinct values of [0, size) in a seeded random order (a shuffled prefix of a permutation).</summary>
    private static long[] Distinct(int size, int k, int seed)
    {
        var all = Enumerable.Range(0, size).Select(i => (long)i).ToArray();
        new Random(seed).Shuffle(all);
        return all[..k];
    }

    /// <summary>An index tensor holding <paramref name="values"/>: int64 or int32, contiguous or every other element of a longer one.</summary>
    private static Tensor Index(long[] values, DType dtype, bool stepped)
    {
        var t = Tensor.FromArray(values, values.Length).To(dtype);
        if (!stepped) return t;
        var view = Tensor.Zeros([2 * values.Length + 1], dtype).Slice(0, 1, null, 2);
        view.CopyFrom(t);
        return view;
    }

    [Test]
    public void MatchesNaiveForEveryDtypeAxisAndLayout(
        [ValueSource(nameof(AllTypes))] DType dtype,
        [Values("contiguous", "transposed", "stepped")] string layout)
    {
        int[][] shapes = [[9], [5, 17], [3, 4, 7], [2, 3, 1, 5]];
        ulong seed = 500;
        foreach (var shape in shapes)
        {
            for (int a = 0; a < shape.Length; a++)
            {
                using var scope = TensorScope.Begin();
                var dstSource = IndexRef.Random(shape, dtype, seed++);
                var before = dstSource.ToDoubleArray();
                // All of the axis (a permutation) on even axes, all but two (or one) of it on odd ones.
                int k = a % 2 == 0 ? shape[a] : Math.Max(1, shape[a] - 2);
                var values = Distinct(shape[a], k, (int)seed);
                var srcShape = shape.Select((s, d) => d == a ? k : s).ToArray();
                var srcSource = IndexRef.Random(srcShape, dtype, seed++);
                var index = Index(values, a % 2 == 0 ? DType.I64 : DType.I32, stepped: layout != "contiguous");
                // dst and src in the layout (a view of another storage: "contiguous" is dstSource itself).
                var dst = IndexRef.Layout(dstSource, layout);
                var src = IndexRef.Layout(srcSource, layout == "transposed" ? "stepped" : "transposed");
                CpuBackend.Instance.IndexCopy(dst, a, index, src);
                var expected = Naive(before, shape, a, values, srcSource.ToDoubleArray());
                Assert.That(dst.ToDoubleArray(), Is.EqualTo(expected), $"{dtype.Name()} shape {IndexRef.Text(shape)} axis {a} {layout}");
            }
        }
    }

    [Test]
    public void WritesANarrowedRowOfAVocabularyAndLeavesTheOtherRowsAlone([Values(DType.F64, DType.F32, DType.BF16)] DType dtype)
    {
        // The sampler's use: row r of float64 rows [B, vocab], at the row's seen ids (including the first and the last id).
        using var scope = TensorScope.Begin();
        const int vocab = 3001;
        var rows = IndexRef.Random([4, vocab], dtype, 41);
        var before = rows.ToDoubleArray();
        var ids = Distinct(vocab - 2, 298, 42).Select(i => i + 1).Append(vocab - 1).Append(0).ToArray();
        var values = IndexRef.Random([1, 300], dtype, 43);
        using var row = rows.Narrow(0, 2, 1);
        using var index = Tensor.FromArray(ids, 300);
        CpuBackend.Instance.IndexCopy(row, 1, index, values);
        var expected = (double[])before.Clone();
        var v = values.ToDoubleArray();
        for (int j = 0; j < ids.Length; j++) expected[2 * vocab + ids[j]] = v[j];
        Assert.That(rows.ToDoubleArray(), Is.EqualTo(expected));
    }

    [Test]
    public void KeepsTheBitsOfNegativeZeroNaNAndInfinities()
    {
        // The sampler's values are copied, not added to zeros: a −0 stays −0 (a scatter-add into +0 gave +0).
        using var scope = TensorScope.Begin();
        var dst = Tensor.FromArray(new double[] { 1, 2, 3, 4, 5 }, 1, 5);
        var src = Tensor.FromArray(new[] { -0.0, double.NaN, double.NegativeInfinity, double.PositiveInfinity }, 1, 4);
        CpuBackend.Instance.IndexCopy(dst, 1, Tensor.FromArray(new long[] { 4, 0, 2, 1 }, 4), src);
        var got = dst.ToArray<double>().Select(BitConverter.DoubleToInt64Bits);
        var want = new[] { double.NaN, double.PositiveInfinity, double.NegativeInfinity, 4, -0.0 }.Select(BitConverter.DoubleToInt64Bits);
        Assert.That(got, Is.EqualTo(want));
    }

    [Test]
    public void LargeCopiesRunInParallelAndMatch([Values(1, 2)] int workers)
    {
        int saved = CpuParallel.Workers;
        CpuParallel.Workers = workers;
        try
        {
            using var scope = TensorScope.Begin();
            // 150,000 ids into one row of 151,936 (past the parallel threshold), and whole rows along axis 0.
            var row = IndexRef.Random([1, 151_936], DType.F32, 51);
            var before = row.ToDoubleArray();
            var ids = Distinct(151_936, 150_000, 52);
            var src = IndexRef.Random([1, 150_000], DType.F32, 53);
            CpuBackend.Instance.IndexCopy(row, 1, Tensor.FromArray(ids, ids.Length), src);
            Assert.That(row.ToDoubleArray(), Is.EqualTo(Naive(before, [1, 151_936], 1, ids, src.ToDoubleArray())));

            var table = IndexRef.Random([700, 257], DType.BF16, 54);
            before = table.ToDoubleArray();
            var rowIds = Distinct(700, 500, 55);
            var rowsSrc = IndexRef.Random([500, 257], DType.BF16, 56);
            CpuBackend.Instance.IndexCopy(table, 0, Index(rowIds, DType.I32, stepped: true), rowsSrc);
            Assert.That(table.ToDoubleArray(), Is.EqualTo(Naive(before, [700, 257], 0, rowIds, rowsSrc.ToDoubleArray())));
        }
        finally { CpuParallel.Workers = saved; }
    }

    [Test]
    public void AnEmptyIndexWritesNothing()
    {
        using var scope = TensorScope.Begin();
        var dst = IndexRef.Random([3, 4], DType.F32, 61);
        var before = dst.ToArray<float>();
        CpuBackend.Instance.IndexCopy(dst, 1, Tensor.Zeros([0], DType.I64), Tensor.Zeros([3, 0]));
        CpuBackend.Instance.IndexCopy(dst, 0, Tensor.Zeros([0], DType.I32), Tensor.Zeros([0, 4]));
        Assert.That(dst.ToArray<float>(), Is.EqualTo(before));
    }

    [Test]
    public void RefusesRepeatedIndicesBeforeWriting([Values(DType.I64, DType.I32)] DType idType, [Values(5, 70_000)] int size)
    {
        // Which copy landed last would decide the result (the CUDA kernel does not fix an order). Both the dense table
        // (a short axis) and the dictionary (a long axis, few ids) find the repeat.
        using var scope = TensorScope.Begin();
        var dst = Tensor.Zeros([2, size]);
        using var l = Tensor.FromArray(new long[] { 0, 3, 1, 4, 3 }, 5);
        var index = l.To(idType);
        var ex = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.IndexCopy(dst, 1, index, Tensor.Ones([2, 5])));
        Assert.That(ex!.Message, Does.Contain("IndexCopy").And.Contain("index 3").And.Contain("positions [1] and [4]").And.Contain("distinct"));
        Assert.That(dst.ToArray<float>(), Is.All.EqualTo(0f), "nothing written");
    }

    [Test]
    public void RefusesOutOfRangeIndicesBeforeWriting([Values(DType.I64, DType.I32)] DType idType)
    {
        using var scope = TensorScope.Begin();
        var dst = Tensor.Zeros([2, 5]);
        using var high = Tensor.FromArray(new long[] { 0, 4, 5 }, 3);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => CpuBackend.Instance.IndexCopy(dst, 1, high.To(idType), Tensor.Ones([2, 3])));
        Assert.That(ex!.Message, Does.Contain("IndexCopy").And.Contain("index 5").And.Contain("position [2]").And.Contain("size 5"));
        using var negative = Tensor.FromArray(new long[] { 1, -1 }, 2);
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => CpuBackend.Instance.IndexCopy(dst, 1, negative.To(idType), Tensor.Ones([2, 2])));
        Assert.That(ex!.Message, Does.Contain("index -1").And.Contain("negative"));
        Assert.That(dst.ToArray<float>(), Is.All.EqualTo(0f), "nothing written");
    }

    /// <summary>Every call the CPU refuses before reading an index value: src of another shape, rank, dtype; a 2-D or float index; axis out of range; a broadcast dst.</summary>
    private static IEnumerable<(string What, Tensor Dst, int Axis, Tensor Index, Tensor Src)> BadCalls()
    {
        var dst = Tensor.Zeros([3, 5]);
        var index = Tensor.FromArray(new long[] { 4, 1 }, 2);
        yield return ("src too long on the axis", dst, 1, index, Tensor.Ones([3, 3]));
        // Longer than dst along another dimension: CUDA's index_copy would store past dst's end.
        yield return ("src longer off the axis", dst, 1, index, Tensor.Ones([4, 2]));
        yield return ("src shorter off the axis", dst, 1, index, Tensor.Ones([2, 2]));
        yield return ("src of another rank", dst, 1, index, Tensor.Ones([3, 2, 1]));
        yield return ("src of a lower rank", dst, 0, index, Tensor.Ones([2]));
        // The kernel copies dst's element size: from a narrower src it would read past src's end.
        yield return ("src float64 into float32", dst, 1, index, Tensor.Ones([3, 2], DType.F64));
        yield return ("src float32 into float64", Tensor.Zeros([3, 5], DType.F64), 1, index, Tensor.Ones([3, 2]));
        yield return ("index 2-D", dst, 1, Tensor.FromArray(new long[] { 4, 1 }, 1, 2), Tensor.Ones([3, 2]));
        yield return ("index float", dst, 1, Tensor.FromArray(new float[] { 4, 1 }), Tensor.Ones([3, 2]));
        yield return ("axis 2", dst, 2, index, Tensor.Ones([3, 2]));
        yield return ("axis -1", dst, -1, index, Tensor.Ones([3, 2]));
        var column = Tensor.Zeros([3, 1]);
        yield return ("dst broadcast", column.Expand(3, 5), 0, Tensor.FromArray(new long[] { 2 }), Tensor.Ones([1, 5]));
    }

    [Test]
    public void TheCudaLauncherRefusesWhatTheCpuRefusesWithTheSameWords()
    {
        // CudaBackend.IndexCopy runs these host checks before its launch; without them a mismatched src made index_copy
        // store past dst's end (src [4, 2] into [3, 5]) or read past src's end (a wider dtype). The CPU's exception is the
        // reference: the same type and message.
        using var scope = TensorScope.Begin();
        foreach (var (what, dst, axis, index, src) in BadCalls())
        {
            var cpu = Assert.Catch(() => CpuBackend.Instance.IndexCopy(dst, axis, index, src), what)!;
            var cuda = Assert.Catch(() => Cuda.CudaBackend.CheckIndexCopy(Device.Cpu, dst, axis, index, src), what)!;
            Assert.That((cuda.GetType(), cuda.Message), Is.EqualTo((cpu.GetType(), cpu.Message)), what);
            Assert.That(cuda, Is.InstanceOf<ArgumentException>(), what);
        }
        // The sampler's call passes; tensors on another device than the backend's are refused (the kernel would
        // dereference host pointers).
        var rows = Tensor.Zeros([4, 3001], DType.F64);
        using var row = rows.Narrow(0, 2, 1);
        var ids = Tensor.FromArray(new long[] { 0, 3000, 7 }, 3);
        var values = Tensor.Ones([1, 3], DType.F64);
        Assert.DoesNotThrow(() => Cuda.CudaBackend.CheckIndexCopy(Device.Cpu, row, 1, ids, values));
        Assert.That(() => Cuda.CudaBackend.CheckIndexCopy(new Device(DeviceKind.Cuda, 0), row, 1, ids, values),
            Throws.ArgumentException.With.Message.Contains("IndexCopy").And.Message.Contains("cuda:0"));
        // Empty calls are checked too (both backends return before any work only after the checks).
        Assert.That(() => Cuda.CudaBackend.CheckIndexCopy(Device.Cpu, rows, 1, Tensor.Zeros([0], DType.I64), Tensor.Zeros([3, 0], DType.F64)),
            Throws.ArgumentException.With.Message.Contains("src [3, 0]"));
    }

    [Test]
    public void RejectsBadShapesAndTypes()
    {
        using var scope = TensorScope.Begin();
        var dst = Tensor.Zeros([3, 5]);
        var index = Tensor.FromArray(new long[] { 4, 1 }, 2);
        var cpu = CpuBackend.Instance;
        Assert.That(() => cpu.IndexCopy(dst, 1, index, Tensor.Ones([3, 3])), Throws.ArgumentException.With.Message.Contains("IndexCopy").And.Message.Contains("src [3, 3]"));
        Assert.That(() => cpu.IndexCopy(dst, 1, index, Tensor.Ones([2, 2])), Throws.ArgumentException.With.Message.Contains("src [2, 2]"));
        Assert.That(() => cpu.IndexCopy(dst, 1, index, Tensor.Ones([3, 2], DType.F64)), Throws.ArgumentException.With.Message.Contains("float64"));
        Assert.That(() => cpu.IndexCopy(dst, 1, Tensor.FromArray(new long[] { 4, 1 }, 1, 2), Tensor.Ones([3, 2])), Throws.ArgumentException.With.Message.Contains("1-D"));
        Assert.That(() => cpu.IndexCopy(dst, 1, Tensor.FromArray(new float[] { 4, 1 }), Tensor.Ones([3, 2])), Throws.ArgumentException.With.Message.Contains("int64"));
        using var column = Tensor.Zeros([3, 1]);
        using var broadcast = column.Expand(3, 5);
        Assert.That(() => cpu.IndexCopy(broadcast, 0, Tensor.FromArray(new long[] { 2 }), Tensor.Ones([1, 5])), Throws.ArgumentException.With.Message.Contains("broadcast"));
        Assert.That(dst.ToArray<float>(), Is.All.EqualTo(0f), "nothing written");
    }
}
