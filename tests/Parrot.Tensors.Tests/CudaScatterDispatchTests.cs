using NUnit.Framework;
using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// How the CUDA scatter-add runs a shape (CudaBackend.PlanScatterAdd): the group/vector split of the index's other dims,
/// and the walk or the counting sort. The kernels themselves are checked bit for bit against a port of the CPU's loop by
/// tools/cuda-emu's scatter_test and, on a GPU, by `parrot selftest --device cuda` against the CPU.
/// </summary>
public class CudaScatterDispatchTests
{
    [Test]
    public void AnExpandedIdColumnIsTheVectorWidthAndALongAxisIsSorted()
    {
        // Gather's backward of an embedding-like lookup: ids [4096, 1] expanded to [4096, 896] (stride 0 on dim 1),
        // scattered along axis 0 into [151936, 896].
        var p = CudaBackend.PlanScatterAdd([4096, 896], [1, 0], [896, 1], [896, 1], axis: 0, dstAxisSize: 151_936);
        Assert.That((p.Groups, p.Width, p.K, p.Keys, p.Sorted), Is.EqualTo((1L, 896L, 4096L, 151_936L, true)));
        Assert.That(p.Shape, Is.EqualTo(new[] { 896 }), "the axis is left out");
        Assert.That(p.IndexStrides, Is.EqualTo(new long[] { 0 }));
    }

    [Test]
    public void GroupDimsComeFirstInTheirOrderThenVectorDims()
    {
        // index [2, 64, 3, 4] with stride 0 on dim 2, axis 1: groups over dims 0 and 3, the vector over dim 2.
        var p = CudaBackend.PlanScatterAdd([2, 64, 3, 4], [256, 4, 0, 1], [768, 12, 4, 1], [120, 12, 4, 1], axis: 1, dstAxisSize: 10);
        Assert.That(p.Shape, Is.EqualTo(new[] { 2, 4, 3 }));
        Assert.That(p.IndexStrides, Is.EqualTo(new long[] { 256, 1, 0 }));
        Assert.That(p.SrcStrides, Is.EqualTo(new long[] { 768, 1, 4 }));
        Assert.That(p.DstStrides, Is.EqualTo(new long[] { 120, 1, 4 }));
        Assert.That((p.Groups, p.Width, p.K, p.Keys, p.Sorted), Is.EqualTo((8L, 3L, 64L, 80L, true)));
    }

    [Test]
    public void AShortAxisIsWalkedAndTooManyKeysFallBackToTheWalk()
    {
        // Gather of log-probs along the vocabulary (one target per row): K = 1, one thread per row.
        var walk = CudaBackend.PlanScatterAdd([8, 512, 1], [512, 1, 1], [512, 1, 1], [512 * 151_936L, 151_936, 1], axis: 2, dstAxisSize: 151_936);
        Assert.That((walk.Groups, walk.K, walk.Sorted), Is.EqualTo((4096L, 1L, false)));
        Assert.That(CudaBackend.PlanScatterAdd([5, 32], [32, 1], [32, 1], [9, 1], axis: 1, dstAxisSize: 9).Sorted, Is.False,
            $"K = {CudaBackend.ScatterWalkMaxAxis} is still walked");
        Assert.That(CudaBackend.PlanScatterAdd([5, 33], [33, 1], [33, 1], [9, 1], axis: 1, dstAxisSize: 9).Sorted, Is.True);
        // A materialised index over a large destination: groups × D keys past the cap would cost two int64 arrays of
        // that many, so it is walked (slower, the same bits).
        var big = CudaBackend.PlanScatterAdd([4096, 4096], [4096, 1], [4096, 1], [4096, 1], axis: 0, dstAxisSize: 1 << 16);
        Assert.That(big.Keys, Is.GreaterThan(CudaBackend.ScatterMaxSortKeys));
        Assert.That(big.Sorted, Is.False);
        // Few positions over a wide destination (the reviewer's case): 121M keys would be counted for 32,000 additions.
        var sparse = CudaBackend.PlanScatterAdd([800, 40], [40, 1], [40, 1], [151_936, 1], axis: 1, dstAxisSize: 151_936);
        Assert.That((sparse.Keys, sparse.Sorted), Is.EqualTo((800L * 151_936, false)));
        // The same destination with as many positions as 1/8 of its axis, per row, sorts again.
        Assert.That(CudaBackend.PlanScatterAdd([800, 18_992], [18_992, 1], [18_992, 1], [151_936, 1], axis: 1, dstAxisSize: 151_936).Sorted, Is.True);
        // Under 2²⁰ keys the sort runs however sparse (the embedding-shaped 1 × 151,936 of the first test).
        Assert.That(CudaBackend.PlanScatterAdd([40], [1], [1], [1], axis: 0, dstAxisSize: 1 << 20).Sorted, Is.True);
    }

    [Test]
    public void OneDimensionalIndexIsOneGroup()
    {
        var p = CudaBackend.PlanScatterAdd([5000], [1], [1], [1], axis: 0, dstAxisSize: 64);
        Assert.That((p.Groups, p.Width, p.Keys, p.Sorted, p.Shape.Length), Is.EqualTo((1L, 1L, 64L, true, 0)));
    }

    [Test]
    public void TheSwitchIsOnUnlessZero()
    {
        Assert.That(CudaBackend.DeterministicScatterDefault(null), Is.True);
        Assert.That(CudaBackend.DeterministicScatterDefault("1"), Is.True);
        Assert.That(CudaBackend.DeterministicScatterDefault(" 0 "), Is.False);
    }
}
