using Parrot.Tensors;

namespace Parrot.Tensors.Tests;

public class ViewTests
{
    private static Tensor Iota(params int[] shape)
    {
        using var a = Tensor.Arange(0, shape.Aggregate(1, (x, y) => x * y), 1, DType.F32);
        return a.Reshape(shape);
    }

    private static float At(Tensor t, params int[] idx)
    {
        long off = t.Offset;
        for (int d = 0; d < idx.Length; d++) off += idx[d] * t.Stride(d);
        unsafe { return ((float*)t.Storage.Pointer)[off]; }
    }

    [Test]
    public void ViewsShareStorageAndNeverCopy()
    {
        using var scope = TensorScope.Begin();
        var a = Iota(2, 3, 4);
        var views = new[] { a.Reshape(6, 4), a.Permute(2, 0, 1), a.Transpose(0, 2), a.Narrow(1, 1, 2), a.Slice(2, 1, null, 2),
            a.Expand(5, 2, 3, 4), a.Unsqueeze(1), a.Select(1, 2), a.ViewAs(-1), a.Reshape(1, 2, 12).Squeeze() };
        foreach (var v in views) Assert.That(v.Storage, Is.SameAs(a.Storage), v.ShapeString());
        // Writing through a view is visible in the base.
        var narrow = a.Narrow(2, 1, 2);
        narrow.Fill(-1);
        var d = a.ToArray<float>();
        for (int i = 0; i < 24; i++) Assert.That(d[i], Is.EqualTo(i % 4 is 1 or 2 ? -1 : i));
    }

    [Test]
    public void PermuteAndTransposeIndexCorrectly()
    {
        using var scope = TensorScope.Begin();
        var a = Iota(2, 3, 4);
        var p = a.Permute(2, 0, 1);
        Assert.That(p.Shape.ToArray(), Is.EqualTo(new[] { 4, 2, 3 }));
        for (int i = 0; i < 4; i++) for (int j = 0; j < 2; j++) for (int k = 0; k < 3; k++)
            Assert.That(At(p, i, j, k), Is.EqualTo(j * 12 + k * 4 + i));
        var c = p.Contiguous();
        Assert.That(c.IsContiguous, Is.True);
        var cd = c.ToArray<float>();
        Assert.That(cd[0 * 6 + 1 * 3 + 2], Is.EqualTo(1 * 12 + 2 * 4 + 0));
        Assert.That(a.Transpose(-1, 0).Shape.ToArray(), Is.EqualTo(new[] { 4, 3, 2 }));
        Assert.Throws<ArgumentException>(() => a.Permute(0, 0, 1));
        Assert.Throws<ArgumentException>(() => a.Permute(0, 1));
    }

    [Test]
    public void SliceWithStepAndNegativeIndices()
    {
        using var scope = TensorScope.Begin();
        var a = Iota(10);
        Assert.That(a.Slice(0, 1, 8, 3).ToArray<float>(), Is.EqualTo(new float[] { 1, 4, 7 }));
        Assert.That(a.Slice(0, -3).ToArray<float>(), Is.EqualTo(new float[] { 7, 8, 9 }));
        Assert.That(a.Slice(0, 5, 2).Count, Is.EqualTo(0));
        Assert.That(a.Slice(0, 0, 100).Count, Is.EqualTo(10));
        Assert.That(a.Narrow(0, -2, 2).ToArray<float>(), Is.EqualTo(new float[] { 8, 9 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Narrow(0, 8, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Select(0, 10));
        Assert.That(a.Select(0, -1).Item(), Is.EqualTo(9));
    }

    [Test]
    public void ReshapeViewsWhenPossibleAndCopiesOtherwise()
    {
        using var scope = TensorScope.Begin();
        var a = Iota(4, 6);
        var t = a.Transpose();                         // [6, 4], not contiguous
        Assert.Throws<InvalidOperationException>(() => t.ViewAs(24));
        var r = t.Reshape(24);                          // must copy
        Assert.That(r.Storage, Is.Not.SameAs(a.Storage));
        Assert.That(r.ToArray<float>()[1], Is.EqualTo(6));
        // Splitting a dim of a narrowed tensor is still a view.
        var n = a.Narrow(1, 0, 4).ViewAs(4, 2, 2);
        Assert.That(n.Storage, Is.SameAs(a.Storage));
        Assert.That(n.ToArray<float>(), Is.EqualTo(new float[] { 0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 14, 15, 18, 19, 20, 21 }));
        // Merging across the narrowed dim is not.
        Assert.Throws<InvalidOperationException>(() => a.Narrow(1, 0, 4).ViewAs(16));
        Assert.That(a.Reshape(-1, 3).Shape.ToArray(), Is.EqualTo(new[] { 8, 3 }));
        Assert.Throws<ArgumentException>(() => a.Reshape(5, -1));
        Assert.Throws<ArgumentException>(() => a.Reshape(-1, -1));
        // Size-1 dims anywhere.
        var u = a.Reshape(1, 4, 1, 6, 1);
        Assert.That(u.Storage, Is.SameAs(a.Storage));
        Assert.That(u.Flatten(1, 3).Shape.ToArray(), Is.EqualTo(new[] { 1, 24, 1 }));
    }

    [Test]
    public void ExpandSqueezeUnsqueeze()
    {
        using var scope = TensorScope.Begin();
        var a = Iota(3, 1);
        var e = a.Expand(2, 3, 4);
        Assert.That(e.Strides.ToArray(), Is.EqualTo(new long[] { 0, 1, 0 }));
        var ed = e.ToArray<float>();
        Assert.That(ed, Has.Length.EqualTo(24));
        Assert.That(ed[12 + 2 * 4 + 3], Is.EqualTo(2));
        Assert.That(a.Expand(-1, 5).Shape.ToArray(), Is.EqualTo(new[] { 3, 5 }));
        Assert.Throws<ArgumentException>(() => a.Expand(4, 1));
        Assert.That(a.Squeeze().Shape.ToArray(), Is.EqualTo(new[] { 3 }));
        Assert.That(a.Squeeze(0).Shape.ToArray(), Is.EqualTo(new[] { 3, 1 }));
        Assert.That(a.Unsqueeze(0).Shape.ToArray(), Is.EqualTo(new[] { 1, 3, 1 }));
        Assert.That(a.Unsqueeze(-1).Shape.ToArray(), Is.EqualTo(new[] { 3, 1, 1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Unsqueeze(4));
    }

    [Test]
    public void EmptyAndZeroDimensionalTensors()
    {
        using var scope = TensorScope.Begin();
        var s = Tensor.Scalar(3.5);
        Assert.That(s.Rank, Is.EqualTo(0));
        Assert.That(s.Item(), Is.EqualTo(3.5));
        Assert.That((s * 2).Item(), Is.EqualTo(7));
        var e = Tensor.Zeros([0, 5]);
        Assert.That(e.Count, Is.EqualTo(0));
        Assert.That((e + 1).Shape.ToArray(), Is.EqualTo(new[] { 0, 5 }));
        Assert.That(e.Transpose().Reshape(5, 0).Count, Is.EqualTo(0));
        Assert.That(e.ToArray<float>(), Is.Empty);
    }
}
