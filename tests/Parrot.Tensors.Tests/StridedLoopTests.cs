using Parrot.Tensors.Cpu;

namespace Parrot.Tensors.Tests;

/// <summary>How the CPU's strided loop merges dimensions.</summary>
public class StridedLoopTests
{
    [Test]
    public void ContiguousDimsMergeWhileTheirProductFitsAnInt()
    {
        StridedLoop.Coalesce([4, 1, 6, 5], [[30, 30, 5, 1]], out var shape, out var strides);
        Assert.That(shape, Is.EqualTo(new[] { 120 }));
        Assert.That(strides[0], Is.EqualTo(new long[] { 1 }));
        // 65537 × 65536 = 2^32 + 2^16 elements (a u8 tensor of 4 GiB): one merged dim would wrap to 65536.
        StridedLoop.Coalesce([65537, 65536], [[65536, 1]], out shape, out strides);
        Assert.That(shape, Is.EqualTo(new[] { 65537, 65536 }));
        Assert.That(strides[0], Is.EqualTo(new long[] { 65536, 1 }));
        StridedLoop.Coalesce([3, 32768, 65536], [[1L << 31, 65536, 1]], out shape, out _);
        Assert.That(shape.Aggregate(1L, (p, d) => p * d), Is.EqualTo(3L << 31), "no elements lost");
        Assert.That(shape.All(d => d > 0), Is.True);
    }

    [Test]
    public void RowsWithinAChunkOfIntMaxAreWalkedWhole()
    {
        // (inner + Chunk − 1) / Chunk in int arithmetic wrapped for rows longer than int.MaxValue − 4095 elements: the
        // chunk count came out negative and the loop ran over nothing (an op on such a tensor silently did no work).
        // Stride 0 (an expanded view) walks 2^31 − 1 elements without the memory.
        foreach (int[] shape in new[] { new[] { int.MaxValue }, new[] { 3, 715827882 } })
        {
            var count = new ElementCount();
            StridedLoop.Run(shape, [new long[shape.Length]], [0], new Counting(count), parallel: false);
            Assert.That(count.Elements, Is.EqualTo(shape.Aggregate(1L, (p, d) => p * d)), $"[{string.Join(", ", shape)}]");
        }
    }

    private sealed class ElementCount { public long Elements; }

    private readonly struct Counting(ElementCount count) : IRowKernel
    {
        public void Row(ReadOnlySpan<long> offsets, ReadOnlySpan<long> strides, int n) => count.Elements += n;
    }
}
