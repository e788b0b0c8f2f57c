using Parrot.Tensors;
using Parrot.Tensors.Cpu;

namespace Parrot.Tensors.Tests;

/// <summary>
/// IndexSelect, Gather, ScatterAdd and Embedding against naive loops over C-order double arrays.
/// Tolerances: IndexSelect/Gather/Embedding copy bits, so every dtype must match exactly. ScatterAdd
/// must equal, bit for bit, the same additions done one by one in the storage type in ascending order
/// along the axis (F32, F64, BF16 rounded per addition, wrapping integers), and be within 1e-5
/// (F32) / 1e-12 (F64) relative of the float64 sum.
/// </summary>
public class IndexingTests
{
    private static readonly DType[] AllTypes = [DType.F32, DType.F64, DType.BF16, DType.F16, DType.I32, DType.I64, DType.U8, DType.Bool];

    // ---------------- IndexSelect ----------------

    [Test]
    public void IndexSelectMatchesNaiveForEveryDtypeAxisAndLayout(
        [ValueSource(nameof(AllTypes))] DType dtype,
        [Values("contiguous", "transposed", "stepped")] string layout)
    {
        int[][] shapes = [[7], [5, 17], [3, 4, 33], [2, 1, 3, 5]];
        ulong seed = 100;
        foreach (var shape in shapes)
        {
            for (int axis = -shape.Length; axis < shape.Length; axis++)
            {
                int a = axis < 0 ? axis + shape.Length : axis;
                foreach (int k in new[] { 1, 3, 9 })
                {
                    using var scope = TensorScope.Begin();
                    var source = IndexRef.Random(shape, dtype, seed++);
                    var x = IndexRef.Layout(source, layout);
                    var index = IndexRef.RandomIndex([k], shape[a], seed++, k % 2 == 0 ? DType.I32 : DType.I64);
                    var y = x.IndexSelect(axis, index);
                    var expected = IndexRef.IndexSelect(source.ToDoubleArray(), shape, a, index.ToLongArray());
                    int[] outShape = (int[])shape.Clone();
                    outShape[a] = k;
                    Assert.That(y.Shape.ToArray(), Is.EqualTo(outShape));
                    Assert.That(y.DType, Is.EqualTo(dtype));
                    Assert.That(y.ToDoubleArray(), Is.EqualTo(expected), $"shape {IndexRef.Text(shape)} axis {axis} k {k}");
                }
            }
        }
    }

    [Test]
    public void IndexSelectTakesStridedAndInt32AndZeroDimIndices()
    {
        using var scope = TensorScope.Begin();
        var x = IndexRef.Random([10, 6], DType.F32, 1);
        var wide = Tensor.FromArray(new long[] { 9, 0, 4, 4, 7, 1, 2, 3 });
        var stepped = wide.Slice(0, 1, null, 2);                // 0, 4, 1, 3
        var y = x.IndexSelect(0, stepped);
        Assert.That(y.ToDoubleArray(), Is.EqualTo(IndexRef.IndexSelect(x.ToDoubleArray(), [10, 6], 0, [0, 4, 1, 3])));
        var narrow = Tensor.FromArray(new int[] { 5, 5, 2 });
        Assert.That(x.IndexSelect(1, narrow).ToDoubleArray(), Is.EqualTo(IndexRef.IndexSelect(x.ToDoubleArray(), [10, 6], 1, [5, 5, 2])));
        var scalar = Tensor.Full([], 3, DType.I64);
        var one = x.IndexSelect(0, scalar);
        Assert.That(one.Shape.ToArray(), Is.EqualTo(new[] { 1, 6 }));
        Assert.That(one.ToDoubleArray(), Is.EqualTo(IndexRef.IndexSelect(x.ToDoubleArray(), [10, 6], 0, [3])));
    }

    [Test]
    public void IndexSelectHandlesEmptyIndexAndEmptyDims()
    {
        using var scope = TensorScope.Begin();
        var x = IndexRef.Random([4, 3], DType.F32, 2);
        var none = x.IndexSelect(0, Tensor.Zeros([0], DType.I64));
        Assert.That(none.Shape.ToArray(), Is.EqualTo(new[] { 0, 3 }));
        var empty = Tensor.Zeros([4, 0], DType.F32);
        var picked = empty.IndexSelect(0, Tensor.FromArray(new long[] { 3, 1 }));
        Assert.That(picked.Shape.ToArray(), Is.EqualTo(new[] { 2, 0 }));
    }

    [Test]
    public void IndexSelectLargeRunsInParallelAndMatches([Values(1, 2)] int workers)
    {
        int saved = CpuParallel.Workers;
        CpuParallel.Workers = workers;
        try
        {
            using var scope = TensorScope.Begin();
            var x = IndexRef.Random([1000, 257], DType.F32, 3);
            var index = IndexRef.RandomIndex([1500], 1000, 4, DType.I64);
            var rows = x.IndexSelect(0, index);
            Assert.That(rows.ToDoubleArray(), Is.EqualTo(IndexRef.IndexSelect(x.ToDoubleArray(), [1000, 257], 0, index.ToLongArray())));
            var colIndex = IndexRef.RandomIndex([300], 257, 5, DType.I32);
            var cols = x.IndexSelect(1, colIndex);
            Assert.That(cols.ToDoubleArray(), Is.EqualTo(IndexRef.IndexSelect(x.ToDoubleArray(), [1000, 257], 1, colIndex.ToLongArray())));
        }
        finally { CpuParallel.Workers = saved; }
    }

    [Test]
    public void IndexSelectRejectsBadInput()
    {
        using var scope = TensorScope.Begin();
        var x = IndexRef.Random([4, 3], DType.F32, 6);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.IndexSelect(0, Tensor.FromArray(new long[] { 1, 4 })));
        Assert.That(ex!.Message, Does.Contain("IndexSelect").And.Contain("index 4").And.Contain("position [1]").And.Contain("size 4"));
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.IndexSelect(1, Tensor.FromArray(new int[] { -1 })));
        Assert.That(ex!.Message, Does.Contain("IndexSelect").And.Contain("-1").And.Contain("negative"));
        Assert.That(() => x.IndexSelect(0, Tensor.FromArray(new float[] { 1 })), Throws.ArgumentException.With.Message.Contains("IndexSelect").And.Message.Contains("float32"));
        Assert.That(() => x.IndexSelect(0, Tensor.Zeros([2, 2], DType.I64)), Throws.ArgumentException.With.Message.Contains("IndexSelect").And.Message.Contains("1-D"));
        Assert.That(() => x.IndexSelect(2, Tensor.Zeros([1], DType.I64)), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("IndexSelect"));
        var dead = Tensor.Zeros([2], DType.I64);
        dead.Dispose();
        Assert.That(() => x.IndexSelect(0, dead), Throws.InstanceOf<ObjectDisposedException>().With.Message.Contains("IndexSelect"));
    }

    // ---------------- Gather ----------------

    [Test]
    public void GatherMatchesNaiveForEveryDtypeAxisAndLayout(
        [ValueSource(nameof(AllTypes))] DType dtype,
        [Values("contiguous", "transposed", "stepped")] string layout)
    {
        int[][] shapes = [[17], [6, 33], [3, 5, 7], [2, 3, 1, 4]];
        ulong seed = 200;
        foreach (var shape in shapes)
        {
            for (int a = 0; a < shape.Length; a++)
            {
                using var scope = TensorScope.Begin();
                var source = IndexRef.Random(shape, dtype, seed++);
                var x = IndexRef.Layout(source, layout);
                // The index may be smaller than x outside the axis and any size along it.
                var indexShape = shape.Select((s, d) => d == a ? 2 * s + 1 : Math.Max(1, s - d % 2)).ToArray();
                var index = IndexRef.RandomIndex(indexShape, shape[a], seed++, a % 2 == 0 ? DType.I64 : DType.I32);
                var indexView = IndexRef.Layout(index, layout);
                var y = x.Gather(a - shape.Length, indexView);
                Assert.That(y.Shape.ToArray(), Is.EqualTo(indexShape));
                var expected = IndexRef.Gather(source.ToDoubleArray(), shape, a, index.ToLongArray(), indexShape);
                Assert.That(y.ToDoubleArray(), Is.EqualTo(expected), $"shape {IndexRef.Text(shape)} axis {a}");
            }
        }
    }

    [Test]
    public void GatherTakesBroadcastIndexAndLargeSizes([Values(1, 2)] int workers)
    {
        int saved = CpuParallel.Workers;
        CpuParallel.Workers = workers;
        try
        {
            using var scope = TensorScope.Begin();
            // The cross-entropy shape: pick one logit per row.
            var logits = IndexRef.Random([2048, 1000], DType.F32, 7);
            var targets = IndexRef.RandomIndex([2048, 1], 1000, 8, DType.I64);
            var picked = logits.Gather(1, targets);
            Assert.That(picked.ToDoubleArray(), Is.EqualTo(IndexRef.Gather(logits.ToDoubleArray(), [2048, 1000], 1, targets.ToLongArray(), [2048, 1])));
            // An expanded (stride 0) index.
            var row = IndexRef.RandomIndex([1, 300], 2048, 9, DType.I64);
            var expanded = row.Expand(400, 300);
            var y = logits.Gather(0, expanded);
            using var dense = expanded.Contiguous();
            Assert.That(y.ToDoubleArray(), Is.EqualTo(IndexRef.Gather(logits.ToDoubleArray(), [2048, 1000], 0, dense.ToLongArray(), [400, 300])));
        }
        finally { CpuParallel.Workers = saved; }
    }

    [Test]
    public void GatherRejectsBadInput()
    {
        using var scope = TensorScope.Begin();
        var x = IndexRef.Random([3, 4], DType.F32, 10);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.Gather(1, Tensor.FromArray(new long[] { 0, 1, 4, 2 }, 2, 2)));
        Assert.That(ex!.Message, Does.Contain("Gather").And.Contain("index 4").And.Contain("position [1, 0]"));
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.Gather(0, Tensor.FromArray(new long[] { -2 }, 1, 1)));
        Assert.That(ex!.Message, Does.Contain("Gather").And.Contain("negative"));
        Assert.That(() => x.Gather(1, Tensor.Zeros([4, 1], DType.I64)), Throws.ArgumentException.With.Message.Contains("Gather").And.Message.Contains("[4, 1]"));
        Assert.That(() => x.Gather(1, Tensor.Zeros([3], DType.I64)), Throws.ArgumentException.With.Message.Contains("Gather").And.Message.Contains("rank"));
        Assert.That(() => x.Gather(1, Tensor.Zeros([3, 1], DType.U8)), Throws.ArgumentException.With.Message.Contains("Gather").And.Message.Contains("uint8"));
    }

    // ---------------- ScatterAdd ----------------

    private static readonly DType[] ScatterTypes = [DType.F32, DType.F64, DType.BF16, DType.F16, DType.I32, DType.I64, DType.U8];

    [Test]
    public void ScatterAddMatchesOrderedNaiveForEveryDtype(
        [ValueSource(nameof(ScatterTypes))] DType dtype,
        [Values("contiguous", "transposed", "stepped")] string layout)
    {
        int[][] shapes = [[9], [5, 17], [3, 4, 7], [2, 3, 1, 5]];
        ulong seed = 300;
        foreach (var shape in shapes)
        {
            for (int a = 0; a < shape.Length; a++)
            {
                using var scope = TensorScope.Begin();
                var dstSource = IndexRef.Random(shape, dtype, seed++);
                // src larger than the index, index larger than dst along the axis (duplicates guaranteed).
                var indexShape = shape.Select((s, d) => d == a ? 3 * s + 2 : Math.Max(1, s - 1)).ToArray();
                var srcShape = indexShape.Select(s => s + 1).ToArray();
                var srcSource = IndexRef.Random(srcShape, dtype, seed++);
                var index = IndexRef.RandomIndex(indexShape, shape[a], seed++, a % 2 == 0 ? DType.I64 : DType.I32);

                var result = IndexRef.Layout(dstSource, layout).ScatterAdd(a, IndexRef.Layout(index, layout), IndexRef.Layout(srcSource, layout));
                var expected = IndexRef.ScatterAddInOrder(dtype, dstSource, srcSource, index, a);
                Assert.That(IndexRef.Bits(result), Is.EqualTo(IndexRef.Bits(expected)), $"shape {IndexRef.Text(shape)} axis {a}");
                if (dtype is DType.F32 or DType.F64)
                {
                    var exact = IndexRef.ScatterAddFloat64(dstSource.ToDoubleArray(), shape, srcSource.ToDoubleArray(), srcShape, index.ToLongArray(), indexShape, a);
                    var got = result.ToDoubleArray();
                    double tol = dtype == DType.F32 ? 1e-5 : 1e-12;
                    for (int i = 0; i < got.Length; i++)
                        Assert.That(got[i], Is.EqualTo(exact[i]).Within(tol * (1 + Math.Abs(exact[i]))));
                }
            }
        }
    }

    [Test]
    public void ScatterAddIsDeterministicWhateverTheThreadCount([Values(DType.F32, DType.BF16, DType.F64, DType.I32)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        // Embedding backward: many duplicate rows scattered into a small table (one index per row).
        var grads = IndexRef.Random([4096, 96], dtype, 11);
        var ids = IndexRef.RandomIndex([4096], 37, 12, DType.I64).Unsqueeze(1).Expand(4096, 96);
        var results = new List<double[]>();
        int saved = CpuParallel.Workers;
        try
        {
            foreach (int workers in new[] { 1, 2, 3, 5 })
            {
                CpuParallel.Workers = workers;
                var table = Tensor.Zeros([37, 96], dtype);
                table.ScatterAddInPlace(0, ids, grads);
                results.Add(table.ToDoubleArray());
            }
        }
        finally { CpuParallel.Workers = saved; }
        for (int i = 1; i < results.Count; i++) Assert.That(results[i], Is.EqualTo(results[0]));
        using var dense = ids.Contiguous();
        using var zeros = Tensor.Zeros([37, 96], dtype);
        var expected = IndexRef.ScatterAddInOrder(dtype, zeros, grads, dense, 0);
        Assert.That(results[0], Is.EqualTo(expected.ToDoubleArray()));
    }

    [Test]
    public void ScatterAddLargeAlongLastAxisMatches()
    {
        using var scope = TensorScope.Begin();
        var dst = IndexRef.Random([64, 50, 40], DType.F64, 13);
        var src = IndexRef.Random([64, 50, 30], DType.F64, 14);
        var index = IndexRef.RandomIndex([64, 50, 30], 40, 15, DType.I64);
        var result = dst.ScatterAdd(-1, index, src);
        var expected = IndexRef.ScatterAddInOrder(DType.F64, dst, src, index, 2);
        Assert.That(result.ToDoubleArray(), Is.EqualTo(expected.ToDoubleArray()));
    }

    [Test]
    public void ScatterAddInPlaceWritesIntoViewsAndLeavesTheRestAlone()
    {
        using var scope = TensorScope.Begin();
        var baseTensor = Tensor.Zeros([4, 6]);
        var view = baseTensor.Slice(1, 1, null, 2);      // columns 1, 3, 5
        var index = Tensor.FromArray(new long[] { 0, 2, 2, 3, 1, 0 }, 2, 3);
        var src = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        var same = view.ScatterAddInPlace(0, index, src);
        Assert.That(same, Is.SameAs(view));
        Assert.That(baseTensor.ToArray<float>(), Is.EqualTo(new float[]
        {
            0, 1, 0, 0, 0, 6,
            0, 0, 0, 5, 0, 0,
            0, 0, 0, 2, 0, 3,
            0, 4, 0, 0, 0, 0,
        }));
    }

    [Test]
    public void ScatterAddValidatesEveryIndexBeforeWriting()
    {
        using var scope = TensorScope.Begin();
        var dst = Tensor.Zeros([3, 2]);
        var index = Tensor.FromArray(new long[] { 0, 1, 2, 0, 1, 3 }, 3, 2);   // the last one is out of range
        var src = Tensor.Ones([3, 2]);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => dst.ScatterAddInPlace(0, index, src));
        Assert.That(ex!.Message, Does.Contain("ScatterAddInPlace").And.Contain("index 3").And.Contain("position [2, 1]"));
        Assert.That(dst.ToArray<float>(), Is.All.EqualTo(0f), "nothing may be written before the check");
        Assert.That(() => dst.ScatterAdd(0, Tensor.FromArray(new long[] { -1, 0 }, 1, 2), src),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("ScatterAdd").And.Message.Contains("negative"));
    }

    [Test]
    public void ScatterAddRejectsBadInput()
    {
        using var scope = TensorScope.Begin();
        var dst = Tensor.Zeros([3, 4]);
        var index = Tensor.Zeros([2, 2], DType.I64);
        Assert.That(() => dst.ScatterAdd(0, index, Tensor.Ones([2, 2], DType.F64)), Throws.ArgumentException.With.Message.Contains("ScatterAdd").And.Message.Contains("float64"));
        Assert.That(() => dst.ScatterAdd(0, index, Tensor.Ones([1, 2])), Throws.ArgumentException.With.Message.Contains("ScatterAdd").And.Message.Contains("src [1, 2]"));
        Assert.That(() => dst.ScatterAdd(0, Tensor.Zeros([2, 5], DType.I64), Tensor.Ones([2, 5])), Throws.ArgumentException.With.Message.Contains("ScatterAdd").And.Message.Contains("dimension 1"));
        Assert.That(() => dst.ScatterAdd(0, Tensor.Zeros([2], DType.I64), Tensor.Ones([2])), Throws.ArgumentException.With.Message.Contains("ScatterAdd").And.Message.Contains("rank"));
        Assert.That(() => dst.ScatterAdd(0, Tensor.Zeros([2, 2], DType.F32), Tensor.Ones([2, 2])), Throws.ArgumentException.With.Message.Contains("ScatterAdd"));
        var flags = Tensor.Zeros([3, 4], DType.Bool);
        Assert.That(() => flags.ScatterAdd(0, index, Tensor.Zeros([2, 2], DType.Bool)), Throws.ArgumentException.With.Message.Contains("ScatterAdd").And.Message.Contains("bool"));
        var broadcast = Tensor.Zeros([1, 4]).Expand(3, 4);
        Assert.That(() => broadcast.ScatterAddInPlace(0, index, Tensor.Ones([2, 2])), Throws.ArgumentException.With.Message.Contains("ScatterAddInPlace").And.Message.Contains("broadcast"));
        var dead = Tensor.Zeros([3, 4]);
        dead.Dispose();
        Assert.That(() => dead.ScatterAddInPlace(0, index, Tensor.Ones([2, 2])), Throws.InstanceOf<ObjectDisposedException>().With.Message.Contains("ScatterAddInPlace"));
    }

    [Test]
    public void ScatterAddInPlaceRefusesSrcOrIndexSharingTheDestinationsMemory()
    {
        // On CUDA a long axis is summed per key after a sort: a src that is the destination would be read while other
        // keys write it, so the sums would depend on the block order (and differ from the CPU's loop). PyTorch refuses it too.
        using var scope = TensorScope.Begin();
        var x = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 3, 2);
        var index = Tensor.FromArray(new long[] { 1, 0, 2, 1 }, 2, 2);
        Assert.That(() => x.ScatterAddInPlace(0, index, x), Throws.ArgumentException.With.Message.Contains("ScatterAddInPlace").And.Message.Contains("src").And.Message.Contains("shares memory"));
        var rows = Tensor.Zeros([6, 2]);
        Assert.That(() => rows.Narrow(0, 0, 4).ScatterAddInPlace(0, index, rows.Narrow(0, 2, 4)), Throws.ArgumentException.With.Message.Contains("shares memory"));
        var ints = Tensor.FromArray(new long[] { 0, 1, 1, 0, 2, 2 }, 3, 2);
        Assert.That(() => ints.ScatterAddInPlace(0, ints.Narrow(0, 0, 2), Tensor.Ones([2, 2], DType.I64)), Throws.ArgumentException.With.Message.Contains("index").And.Message.Contains("shares memory"));
        Assert.That(x.ToArray<float>(), Is.EqualTo(new float[] { 1, 2, 3, 4, 5, 6 }), "nothing written");
        // Disjoint views of one storage are fine.
        var both = Tensor.FromArray(new float[] { 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6 }, 6, 2);
        both.Narrow(0, 0, 3).ScatterAddInPlace(0, index, both.Narrow(0, 3, 3));
        Assert.That(both.ToArray<float>(), Is.EqualTo(new float[] { 0, 2, 1, 4, 3, 0, 1, 2, 3, 4, 5, 6 }));
    }

    [Test]
    public void ScatterAddWithEmptyIndexReturnsACopy()
    {
        using var scope = TensorScope.Begin();
        var dst = IndexRef.Random([3, 4], DType.F32, 16);
        var y = dst.ScatterAdd(1, Tensor.Zeros([3, 0], DType.I64), Tensor.Zeros([3, 0]));
        Assert.That(y.ToArray<float>(), Is.EqualTo(dst.ToArray<float>()));
        Assert.That(y.Storage, Is.Not.SameAs(dst.Storage));
    }

    // ---------------- Embedding ----------------

    [Test]
    public void EmbeddingLooksUpRowsForIdsOfAnyShape(
        [Values(DType.F32, DType.BF16, DType.F64)] DType dtype,
        [Values(DType.I64, DType.I32)] DType idType)
    {
        using var scope = TensorScope.Begin();
        var weight = IndexRef.Random([50, 33], dtype, 17);
        var w = weight.ToDoubleArray();
        foreach (var idShape in new[] { new int[0], [1], [7], [2, 3], [2, 1, 4] })
        {
            var ids = IndexRef.RandomIndex(idShape, 50, 18, idType);
            var y = Tensor.Embedding(weight, ids);
            Assert.That(y.Shape.ToArray(), Is.EqualTo(idShape.Append(33).ToArray()));
            Assert.That(y.DType, Is.EqualTo(dtype));
            var flat = ids.ToLongArray();
            var expected = flat.SelectMany(id => w.Skip((int)id * 33).Take(33)).ToArray();
            Assert.That(y.ToDoubleArray(), Is.EqualTo(expected));
        }
        var transposedIds = IndexRef.RandomIndex([3, 5], 50, 19, idType).Transpose();
        var yt = Tensor.Embedding(weight, transposedIds);
        Assert.That(yt.Shape.ToArray(), Is.EqualTo(new[] { 5, 3, 33 }));
        Assert.That(yt.ToDoubleArray(), Is.EqualTo(transposedIds.ToLongArray().SelectMany(id => w.Skip((int)id * 33).Take(33)).ToArray()));
    }

    [Test]
    public void EmbeddingNamesTheBadIdItsPositionAndTheVocabulary()
    {
        using var scope = TensorScope.Begin();
        var weight = Tensor.Zeros([10, 4]);
        var ids = Tensor.FromArray(new long[] { 1, 2, 3, 4, 10, 5 }, 2, 3);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Embedding(weight, ids));
        Assert.That(ex!.Message, Does.Contain("Embedding").And.Contain("id 10").And.Contain("position [1, 1]").And.Contain("vocabulary of 10"));
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Embedding(weight, Tensor.FromArray(new int[] { -3 })));
        Assert.That(ex!.Message, Does.Contain("id -3"));
        Assert.That(() => Tensor.Embedding(Tensor.Zeros([10]), ids), Throws.ArgumentException.With.Message.Contains("Embedding").And.Message.Contains("2-D"));
        Assert.That(() => Tensor.Embedding(weight, Tensor.Zeros([2], DType.F32)), Throws.ArgumentException.With.Message.Contains("Embedding"));
    }

    [Test]
    public void BackendRefusesOutOfRangeIndicesItself()
    {
        // A caller that skips the front-end still cannot make the kernels touch memory outside a tensor.
        using var scope = TensorScope.Begin();
        var x = Tensor.Zeros([4, 3]);
        var y = Tensor.Zeros([1, 3]);
        var bad = Tensor.FromArray(new long[] { 4 });
        Assert.That(() => x.Backend.IndexSelect(x, 0, bad, y), Throws.InstanceOf<IndexOutOfRangeException>());
        var badGather = Tensor.FromArray(new long[] { 0, 0, 99 }, 1, 3);
        Assert.That(() => x.Backend.Gather(x, 0, badGather, y), Throws.InstanceOf<IndexOutOfRangeException>());
        Assert.That(() => x.Backend.ScatterAdd(x, 0, badGather, y), Throws.InstanceOf<IndexOutOfRangeException>());
    }

    /// <summary>
    /// The kernels' shared id reader (CpuBackend.ReadIndex) sign-extends int32 ids as it reads int64 ones, so a negative
    /// id of either type is refused and named as itself (read as unsigned it would be refused too, but as 4294967295).
    /// </summary>
    [TestCase(DType.I32)]
    [TestCase(DType.I64)]
    public unsafe void BackendRefusesNegativeIdsOfEitherIndexTypeByValue(DType indexType)
    {
        int i32 = -7;
        long i64 = -7;
        Assert.That(CpuBackend.ReadIndex(&i32), Is.EqualTo(-7L));
        Assert.That(CpuBackend.ReadIndex(&i64), Is.EqualTo(-7L));

        using var scope = TensorScope.Begin();
        Tensor Ids(params long[] v) => indexType == DType.I32 ? Tensor.FromArray(v.Select(i => (int)i).ToArray(), 1, v.Length) : Tensor.FromArray(v, 1, v.Length);
        var x = Tensor.Zeros([4, 3]);
        var y = Tensor.Zeros([1, 3]);
        var row = indexType == DType.I32 ? Tensor.FromArray(new int[] { -1 }, 1) : Tensor.FromArray(new long[] { -1 }, 1);
        foreach (var (name, call) in new (string, TestDelegate)[]
        {
            ("IndexSelect", () => x.Backend.IndexSelect(x, 0, row, y)),
            ("Gather, one id per row", () => x.Backend.Gather(x, 0, Ids(0, -1, 0), y)),
            ("Gather along the last axis", () => x.Backend.Gather(x, 1, Ids(0, 2, -1), y)),
            ("ScatterAdd", () => x.Backend.ScatterAdd(x, 0, Ids(0, -1, 0), y)),
            ("ScatterAdd along the last axis", () => x.Backend.ScatterAdd(x, 1, Ids(0, 2, -1), y)),
        })
            Assert.That(call, Throws.InstanceOf<IndexOutOfRangeException>().With.Message.Contains("index -1 "), name);
        // IndexCopy checks its ids (in range, distinct) before its kernel runs, with the front-end's exception.
        Assert.That(() => x.Backend.IndexCopy(x, 0, row, y), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("index -1 "));
    }
}
