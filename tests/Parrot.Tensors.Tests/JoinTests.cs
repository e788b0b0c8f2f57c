using Parrot.Tensors;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Concat, Stack, Split and Chunk against naive index arithmetic. They move values without arithmetic,
/// so results must be exact for every dtype; mixed dtypes are promoted (exact for the values used).
/// </summary>
public class JoinTests
{
    private static readonly DType[] AllTypes = [DType.F32, DType.F64, DType.BF16, DType.F16, DType.I32, DType.I64, DType.U8, DType.Bool];

    /// <summary>torch.cat by index arithmetic: output position → (which input, position in it).</summary>
    private static double[] NaiveConcat(int axis, double[][] values, int[][] shapes)
    {
        var outShape = (int[])shapes[0].Clone();
        outShape[axis] = shapes.Sum(s => s[axis]);
        var y = new double[IndexRef.Count(outShape)];
        for (long p = 0; p < y.Length; p++)
        {
            var at = IndexRef.Unravel(p, outShape);
            int k = 0;
            while (at[axis] >= shapes[k][axis]) { at[axis] -= shapes[k][axis]; k++; }
            y[p] = values[k][IndexRef.Ravel(at, shapes[k])];
        }
        return y;
    }

    [Test]
    public void ConcatMatchesNaiveForEveryDtypeAxisAndLayout(
        [ValueSource(nameof(AllTypes))] DType dtype,
        [Values("contiguous", "transposed", "stepped")] string layout)
    {
        int[] baseShape = [3, 5, 7];
        ulong seed = 1;
        for (int axis = -3; axis < 3; axis++)
        {
            int a = axis < 0 ? axis + 3 : axis;
            using var scope = TensorScope.Begin();
            var shapes = new[] { 1, 0, 17, 2 }.Select(n => { var s = (int[])baseShape.Clone(); s[a] = n; return s; }).ToArray();
            var sources = shapes.Select(s => IndexRef.Random(s, dtype, seed++)).ToArray();
            var inputs = sources.Select(s => IndexRef.Layout(s, layout)).ToArray();
            var y = Tensor.Concat(axis, inputs);
            Assert.That(y.DType, Is.EqualTo(dtype));
            Assert.That(y.IsContiguous, Is.True);
            var expected = NaiveConcat(a, sources.Select(s => s.ToDoubleArray()).ToArray(), shapes);
            Assert.That(y.Shape[a], Is.EqualTo(20));
            Assert.That(y.ToDoubleArray(), Is.EqualTo(expected), $"axis {axis}");
        }
    }

    [Test]
    public void ConcatPromotesDtypes()
    {
        using var scope = TensorScope.Begin();
        var ints = Tensor.FromArray(new int[] { 1, -2 });
        var floats = Tensor.FromArray(new float[] { 0.5f });
        var bytes = Tensor.FromArray(new byte[] { 255 });
        var flags = Tensor.FromArray(new bool[] { true, false });
        var y = Tensor.Concat(0, ints, floats, bytes, flags);
        Assert.That(y.DType, Is.EqualTo(DType.F32));
        Assert.That(y.ToArray<float>(), Is.EqualTo(new float[] { 1, -2, 0.5f, 255, 1, 0 }));
        var longs = Tensor.Concat(0, ints, Tensor.FromArray(new long[] { 1L << 40 }));
        Assert.That(longs.DType, Is.EqualTo(DType.I64));
        Assert.That(longs.ToArray<long>(), Is.EqualTo(new long[] { 1, -2, 1L << 40 }));
        var bf = Tensor.Full([2], 1.5, DType.BF16);
        var half = Tensor.Full([1], -0.25, DType.F16);
        var mixed = Tensor.Concat(0, bf, half);
        Assert.That(mixed.DType, Is.EqualTo(DType.F32));
        Assert.That(mixed.ToArray<float>(), Is.EqualTo(new float[] { 1.5f, 1.5f, -0.25f }));
        var u8 = Tensor.Concat(0, bytes, flags);
        Assert.That(u8.DType, Is.EqualTo(DType.U8));
        Assert.That(u8.ToArray<byte>(), Is.EqualTo(new byte[] { 255, 1, 0 }));
    }

    [Test]
    public void ConcatOfOneTensorIsACopyAndBroadcastInputsWork()
    {
        using var scope = TensorScope.Begin();
        var x = IndexRef.Random([4, 3], DType.F32, 50);
        var y = Tensor.Concat(1, x);
        Assert.That(y.ToArray<float>(), Is.EqualTo(x.ToArray<float>()));
        Assert.That(y.Storage, Is.Not.SameAs(x.Storage));
        var row = Tensor.FromArray(new float[] { 1, 2, 3 }, 1, 3).Expand(2, 3);
        var z = Tensor.Concat(0, x, row);
        Assert.That(z.Shape.ToArray(), Is.EqualTo(new[] { 6, 3 }));
        Assert.That(z.ToArray<float>().Skip(12), Is.EqualTo(new float[] { 1, 2, 3, 1, 2, 3 }));
    }

    [Test]
    public void ConcatLargeMatches()
    {
        using var scope = TensorScope.Begin();
        var a = IndexRef.Random([1000, 333], DType.F32, 51);
        var b = IndexRef.Layout(IndexRef.Random([1000, 129], DType.F32, 52), "transposed");
        var y = Tensor.Concat(1, a, b);
        Assert.That(y.ToDoubleArray(), Is.EqualTo(NaiveConcat(1, [a.ToDoubleArray(), b.ToDoubleArray()], [[1000, 333], [1000, 129]])));
    }

    [Test]
    public void ConcatRejectsBadInput()
    {
        using var scope = TensorScope.Begin();
        var a = Tensor.Zeros([2, 3]);
        Assert.That(() => Tensor.Concat(0), Throws.ArgumentException.With.Message.Contains("Concat"));
        Assert.That(() => Tensor.Concat(0, a, Tensor.Zeros([2, 4])), Throws.ArgumentException.With.Message.Contains("Concat").And.Message.Contains("[2, 4]"));
        Assert.That(() => Tensor.Concat(0, a, Tensor.Zeros([2, 3, 1])), Throws.ArgumentException.With.Message.Contains("Concat").And.Message.Contains("[2, 3, 1]"));
        Assert.That(() => Tensor.Concat(2, a, a), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("Concat"));
        Assert.That(() => Tensor.Concat(0, a, null!), Throws.ArgumentNullException.With.Message.Contains("Concat"));
        var dead = Tensor.Zeros([2, 3]);
        dead.Dispose();
        Assert.That(() => Tensor.Concat(0, a, dead), Throws.InstanceOf<ObjectDisposedException>().With.Message.Contains("Concat"));
    }

    [Test]
    public void StackInsertsANewAxis([Values(0, 1, 2, -1, -3)] int axis)
    {
        using var scope = TensorScope.Begin();
        var parts = Enumerable.Range(0, 4).Select(i => IndexRef.Random([3, 5], DType.F64, 60 + (ulong)i)).ToArray();
        var inputs = parts.Select((p, i) => i % 2 == 0 ? p : IndexRef.Layout(p, "transposed")).ToArray();
        var y = Tensor.Stack(axis, inputs);
        int a = axis < 0 ? axis + 3 : axis;
        var expectedShape = new List<int> { 3, 5 };
        expectedShape.Insert(a, 4);
        Assert.That(y.Shape.ToArray(), Is.EqualTo(expectedShape.ToArray()));
        var values = parts.Select(p => p.ToDoubleArray()).ToArray();
        var got = y.ToDoubleArray();
        var shape = expectedShape.ToArray();
        for (long p = 0; p < got.Length; p++)
        {
            var at = IndexRef.Unravel(p, shape);
            int k = at[a];
            var inner = at.Where((_, d) => d != a).ToArray();
            Assert.That(got[p], Is.EqualTo(values[k][IndexRef.Ravel(inner, [3, 5])]));
        }
    }

    [Test]
    public void StackRejectsBadInput()
    {
        using var scope = TensorScope.Begin();
        var a = Tensor.Zeros([2, 3]);
        Assert.That(() => Tensor.Stack(0, a, Tensor.Zeros([3, 2])), Throws.ArgumentException.With.Message.Contains("Stack").And.Message.Contains("[3, 2]"));
        Assert.That(() => Tensor.Stack(3, a, a), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("Stack"));
        Assert.That(() => Tensor.Stack(0), Throws.ArgumentException.With.Message.Contains("Stack"));
        var s = Tensor.Stack(0, Tensor.Scalar(1), Tensor.Scalar(2));
        Assert.That(s.ToArray<float>(), Is.EqualTo(new float[] { 1, 2 }));
    }

    [Test]
    public void SplitByChunkSizeGivesViews([Values(1, 3, 4, 7, 8)] int chunk)
    {
        using var scope = TensorScope.Begin();
        var x = IndexRef.Random([7, 3], DType.F32, 70);
        var parts = x.Split(0, chunk);
        Assert.That(parts, Has.Length.EqualTo((7 + chunk - 1) / chunk));
        var values = x.ToArray<float>();
        int row = 0;
        foreach (var p in parts)
        {
            Assert.That(p.Storage, Is.SameAs(x.Storage), "a split piece is a view");
            Assert.That(p.Shape[1], Is.EqualTo(3));
            Assert.That(p.ToArray<float>(), Is.EqualTo(values.Skip(row * 3).Take(p.Shape[0] * 3).ToArray()));
            row += p.Shape[0];
            p.Dispose();
        }
        Assert.That(row, Is.EqualTo(7));
    }

    [Test]
    public void SplitBySizesAlongAnyAxis()
    {
        using var scope = TensorScope.Begin();
        var x = IndexRef.Random([2, 10, 3], DType.I64, 71);
        var parts = x.Split(-2, 4, 0, 5, 1);
        Assert.That(parts.Select(p => p.Shape[1]), Is.EqualTo(new[] { 4, 0, 5, 1 }));
        var rejoined = Tensor.Concat(1, parts);
        Assert.That(rejoined.ToArray<long>(), Is.EqualTo(x.ToArray<long>()));
        var single = x.Split(2, new[] { 3 });
        Assert.That(single, Has.Length.EqualTo(1));
        // Writes through a piece land in the original: they share storage.
        parts[2].Fill(7);
        using var middle = x.Narrow(1, 4, 5);
        Assert.That(middle.ToArray<long>(), Is.All.EqualTo(7L));
    }

    [Test]
    public void SplitAndChunkOfEmptyDims()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Zeros([0, 4]);
        Assert.That(x.Split(0, 3), Has.Length.EqualTo(1));
        Assert.That(x.Split(0, 0), Has.Length.EqualTo(1));
        var chunks = x.Chunk(3, 0);
        Assert.That(chunks, Has.Length.EqualTo(3));
        Assert.That(chunks.All(c => c.Shape[0] == 0 && c.Shape[1] == 4), Is.True);
    }

    [Test]
    public void ChunkFollowsTorch()
    {
        using var scope = TensorScope.Begin();
        var x = IndexRef.Random([3, 5], DType.F32, 72);
        Assert.That(x.Chunk(3, 1).Select(c => c.Shape[1]), Is.EqualTo(new[] { 2, 2, 1 }));
        Assert.That(x.Chunk(1, 1).Select(c => c.Shape[1]), Is.EqualTo(new[] { 5 }));
        Assert.That(x.Chunk(9, 1).Select(c => c.Shape[1]), Is.EqualTo(new[] { 1, 1, 1, 1, 1 }));
        var six = Tensor.Zeros([6]);
        Assert.That(six.Chunk(4).Select(c => c.Shape[0]), Is.EqualTo(new[] { 2, 2, 2 }), "torch.chunk(6 elements, 4) gives 3 chunks of 2");
        // Qwen2-style q/k/v split of a fused projection, along the last axis.
        var qkv = IndexRef.Random([2, 4, 3 * 8], DType.BF16, 73);
        var qkvParts = qkv.Chunk(3, -1);
        Assert.That(qkvParts.Select(c => c.ShapeString()), Is.All.EqualTo("[2, 4, 8]"));
        Assert.That(Tensor.Concat(-1, qkvParts).ToBFloat16Bits(), Is.EqualTo(qkv.ToBFloat16Bits()));
    }

    [Test]
    public void SplitAndChunkRejectBadInput()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Zeros([5, 2]);
        Assert.That(() => x.Split(0, 0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("Split"));
        Assert.That(() => x.Split(0, -2), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("Split"));
        Assert.That(() => x.Split(0, 2, 2), Throws.ArgumentException.With.Message.Contains("Split").And.Message.Contains("add up to 4"));
        Assert.That(() => x.Split(0, 6, -1), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("Split").And.Message.Contains("negative"));
        Assert.That(() => x.Split(2, 1), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("Split"));
        Assert.That(() => x.Chunk(0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("Chunk"));
        var dead = Tensor.Zeros([2]);
        dead.Dispose();
        Assert.That(() => dead.Split(0, 1), Throws.InstanceOf<ObjectDisposedException>().With.Message.Contains("Split"));
    }

    [Test]
    public void ConcatViewJoinsConsecutiveViewsWithoutACopy()
    {
        using var scope = TensorScope.Begin();
        var buffer = Tensor.Normal([9, 4], 1, 0, 1, DType.F32);
        var parts = new[] { buffer.Narrow(0, 0, 5), buffer.Narrow(0, 5, 2), buffer.Narrow(0, 7, 2) };
        Assert.That(Tensor.AreConsecutive(0, parts), Is.True);
        var joined = Tensor.ConcatView(0, parts)!;
        Assert.That(joined.Shape.ToArray(), Is.EqualTo(new[] { 9, 4 }));
        Assert.That(joined.Storage, Is.SameAs(buffer.Storage));
        Assert.That(joined.ToFloatArray(), Is.EqualTo(Tensor.Concat(0, parts).ToFloatArray()));
        joined.Fill(2); // a view: writing writes the parts
        Assert.That(parts[2].ToFloatArray(), Is.All.EqualTo(2f));
        // Along an inner axis (column blocks of the same rows), and of a middle range only.
        var cols = new[] { buffer.Narrow(1, 1, 1), buffer.Narrow(1, 2, 2) };
        Assert.That(Tensor.ConcatView(1, cols)!.ToFloatArray(), Is.EqualTo(buffer.Narrow(1, 1, 3).ToFloatArray()));
        Assert.That(Tensor.ConcatView(0, parts[1], parts[2])!.ToFloatArray(), Is.EqualTo(buffer.Narrow(0, 5, 4).ToFloatArray()));
    }

    [Test]
    public void ConcatViewRefusesAnythingButConsecutiveViews()
    {
        using var scope = TensorScope.Begin();
        var buffer = Tensor.Zeros([9, 4]);
        var a = buffer.Narrow(0, 0, 3);
        var b = buffer.Narrow(0, 3, 3);
        Assert.Multiple(() =>
        {
            Assert.That(Tensor.ConcatView(0, b, a), Is.Null, "out of order");
            Assert.That(Tensor.ConcatView(0, a, buffer.Narrow(0, 4, 3)), Is.Null, "a gap");
            Assert.That(Tensor.ConcatView(0, a, a), Is.Null, "the same rows twice");
            Assert.That(Tensor.ConcatView(0, a, Tensor.Zeros([3, 4])), Is.Null, "another storage");
            Assert.That(Tensor.ConcatView(0, a, buffer.Narrow(0, 3, 0)), Is.Null, "an empty part");
            Assert.That(Tensor.ConcatView(1, a, b), Is.Null, "not adjacent along axis 1");
            // Adjacent in memory but with other strides: the transposed rows of the next block.
            var t = Tensor.Zeros([4, 6]).Transpose(0, 1);
            Assert.That(Tensor.ConcatView(0, t.Narrow(0, 0, 2), buffer.Narrow(0, 0, 2)), Is.Null, "other strides, other storage");
            var square = Tensor.Zeros([4, 4]);
            Assert.That(Tensor.ConcatView(0, square.Narrow(0, 0, 2), square.Transpose(0, 1).Narrow(0, 2, 2)), Is.Null, "other strides");
            Assert.That(Tensor.ConcatView(0, a, buffer.To(DType.F64).Narrow(0, 3, 3)), Is.Null, "another dtype");
            Assert.That(Tensor.ConcatView(0, Array.Empty<Tensor>()), Is.Null);
        });
        Assert.That(Tensor.ConcatView(0, a)!.Shape.ToArray(), Is.EqualTo(new[] { 3, 4 }), "one part: itself");
    }
}
