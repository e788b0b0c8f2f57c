using NUnit.Framework;
using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Which top-k kernel and launch a shape gets on CUDA (the kernels themselves are checked by tools/cuda-emu's
/// topk_test against a stable sort and, on a GPU, by `parrot selftest --device cuda` bit for bit against the CPU).
/// </summary>
public class CudaTopKDispatchTests
{
    [Test]
    public void RouterRowsTakeAWarpEachAndVocabularyRowsABlock()
    {
        var router = CudaBackend.PlanTopK(rows: 8192, n: 64, k: 2, multiprocessors: 132);
        Assert.That(router.Kernel, Is.EqualTo("topk_small"), "MoE router: many short rows");
        Assert.That(router.Grid * CudaBackend.TopKWarpRows, Is.EqualTo(8192), "a warp per row");
        Assert.That(router.Block, Is.EqualTo(32 * CudaBackend.TopKWarpRows));
        Assert.That(CudaBackend.PlanTopK(1, CudaBackend.TopKSmallN, CudaBackend.TopKSmallN, 132).Kernel, Is.EqualTo("topk_small"), "up to TOPK_SMALL_N");
        Assert.That(CudaBackend.PlanTopK(1, CudaBackend.TopKSmallN + 1, 1, 132).Kernel, Is.EqualTo("topk_rows"));

        var vocab = CudaBackend.PlanTopK(rows: 4, n: 152_064, k: 1024, multiprocessors: 132);
        Assert.That((vocab.Kernel, vocab.Grid, vocab.Block, vocab.Scratch), Is.EqualTo(("topk_rows", 4u, 1024u, false)), "a block of 1024 per row, sorted in shared memory");
        Assert.That(CudaBackend.PlanTopK(rows: 3, n: 1000, k: 50, multiprocessors: 132).Block, Is.EqualTo(256u), "short rows: fewer idle threads");
        Assert.That(CudaBackend.PlanTopK(rows: 1L << 22, n: 1000, k: 50, multiprocessors: 132).Grid, Is.EqualTo(1u << 20), "blocks loop over rows past the grid limit");
    }

    [Test]
    public void KAboveTheSharedSortTakesBoundedScratch()
    {
        var atLimit = CudaBackend.PlanTopK(rows: 64, n: 152_064, k: CudaBackend.TopKSharedItems, multiprocessors: 132);
        Assert.That(atLimit.Scratch, Is.False);
        var all = CudaBackend.PlanTopK(rows: 64, n: 152_064, k: 152_064, multiprocessors: 132);
        Assert.That(all.Scratch, Is.True, "k = n of a vocabulary: the sort runs in scratch");
        Assert.That(all.Grid * 16L * 152_064, Is.LessThanOrEqualTo(CudaBackend.TopKScratchBytes), "scratch stays bounded: fewer blocks loop over the rows");
        Assert.That(all.Grid, Is.GreaterThanOrEqualTo(1u));
        var huge = CudaBackend.PlanTopK(rows: 2, n: 100_000_000, k: 100_000_000, multiprocessors: 132);
        Assert.That(huge.Grid, Is.EqualTo(1u), "at least one block even when one row's scratch is above the bound");
        Assert.That(CudaBackend.PlanTopK(rows: 10_000, n: 5000, k: 3000, multiprocessors: 132).Grid, Is.EqualTo(264u), "two blocks an SM");
    }

    [Test]
    public void TheLaunchersConstantsAreTopKCusDefines()
    {
        string src = KernelSources.Read("topk.cu");
        Assert.That(src, Does.Match($@"#define TOPK_SMALL_N {CudaBackend.TopKSmallN}\b"));
        Assert.That(src, Does.Match($@"#define TOPK_WARP_ROWS {CudaBackend.TopKWarpRows}\b"));
        Assert.That(src, Does.Match($@"#define TOPK_SHARED_ITEMS {CudaBackend.TopKSharedItems}\b"));
        Assert.That(src, Does.Match(@"struct TopKItem\s*\{\s*u64 key;\s*int idx;\s*\};"), "the launcher sizes scratch as 16-byte items");
    }
}
