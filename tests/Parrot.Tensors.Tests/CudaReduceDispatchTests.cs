using NUnit.Framework;
using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Which CUDA reduction kernel a shape gets (the kernels themselves are checked by tools/cuda-emu's rows_test and,
/// on a GPU, by `parrot selftest --device cuda` against the CPU).
/// </summary>
public class CudaReduceDispatchTests
{
    [Test]
    public void ManyOutputsOfFewElementsTakeTheColumnKernel()
    {
        Assert.That(CudaBackend.UsesColumnReduce(rows: 4864L * 896, count: 8), Is.True, "a weight gradient summed over a batch of 8");
        Assert.That(CudaBackend.UsesColumnReduce(rows: 4096, count: 8), Is.True);
        Assert.That(CudaBackend.UsesColumnReduce(rows: 80, count: 48), Is.False, "few outputs: a block each");
        Assert.That(CudaBackend.UsesColumnReduce(rows: 4096, count: 896), Is.False, "row sums: a block per row reads them coalesced");
        Assert.That(CudaBackend.UsesColumnReduce(rows: 1, count: 1 << 20), Is.False, "a full reduction");
    }

    [Test]
    public void FewOutputsOfVeryManyElementsSplitOverChunksFromTheShapeAlone()
    {
        Assert.That(CudaBackend.ReduceChunks(rows: 1, count: 136_134_656), Is.EqualTo(1024), "a whole embedding's sum: 1024 blocks");
        Assert.That(CudaBackend.ReduceChunks(rows: 1, count: 70_000), Is.EqualTo(3), "chunks of at least 32,768 elements");
        Assert.That(CudaBackend.ReduceChunks(rows: 1, count: 65_535), Is.EqualTo(1), "below 65,536 elements: one block");
        Assert.That(CudaBackend.ReduceChunks(rows: 64, count: 1 << 24), Is.EqualTo(16), "at most 1024 blocks in all");
        Assert.That(CudaBackend.ReduceChunks(rows: 65, count: 1 << 24), Is.EqualTo(1), "more outputs than ReduceSplitRows: a block each");
        Assert.That(CudaBackend.ReduceSplitRows, Is.LessThanOrEqualTo(CudaBackend.ArgTicketCount), "a ticket per split output");
    }

    [Test]
    public void FewLongRowsSplitTheArgmaxOverChunks()
    {
        long chunks = CudaBackend.ArgReduceChunks(rows: 1, n: 152064, multiprocessors: 132);
        Assert.That(chunks, Is.GreaterThan(16), "decode's argmax over the vocabulary spreads over the SMs");
        Assert.That((152064 + chunks - 1) / chunks, Is.GreaterThanOrEqualTo(4096 - 1), "chunks stay long enough to pay for the second pass");
        Assert.That(CudaBackend.ArgReduceChunks(rows: 4096, n: 152064, multiprocessors: 132), Is.EqualTo(1), "many rows: a block per row fills the GPU");
        Assert.That(CudaBackend.ArgReduceChunks(rows: 1, n: 1000, multiprocessors: 132), Is.EqualTo(1), "short rows: one pass");
        Assert.That(CudaBackend.ArgReduceChunks(rows: 8, n: 152064, multiprocessors: 132) * 8, Is.LessThanOrEqualTo(2 * 132 + 8));
        Assert.That(CudaBackend.ArgReduceChunks(rows: CudaBackend.ArgTicketCount + 1, n: 152064, multiprocessors: 4000), Is.EqualTo(1), "a ticket per split row");
        Assert.That(CudaBackend.ArgReduceChunks(rows: CudaBackend.ArgTicketCount, n: 152064, multiprocessors: 4000), Is.GreaterThan(1));
    }

    [Test]
    public void TheArgKernelsOpCodesAreArgReduceOpsValues()
    {
        // The launcher passes (int)op; reduce.cu names the codes.
        string src = KernelSources.Read("reduce.cu");
        Assert.That(src, Does.Match($@"#define A_MAX {(int)ArgReduceOp.ArgMax}\b"));
        Assert.That(src, Does.Match($@"#define A_MIN {(int)ArgReduceOp.ArgMin}\b"));
        Assert.That(src, Does.Match($@"#define A_MAX_NAN_LOWEST {(int)ArgReduceOp.ArgMaxNaNLowest}\b"));
        Assert.That(src, Does.Match($@"#define A_MAX_NUMBER {(int)ArgReduceOp.ArgMaxNumber}\b"));
        Assert.That(Enum.GetValues<ArgReduceOp>(), Has.Length.EqualTo(4), "a new op needs its code in reduce.cu");
    }
}
