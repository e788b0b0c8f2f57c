namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// Top-k on the device (native/topk.cu), bit for bit the CPU backend's (Cpu/TopK.cs): elements compared through
    /// order-preserving integer keys, so no rounding and the CPU's order exactly (NaN first, -0 = +0, ties by index).
    /// One launch, no host synchronisation; k above <see cref="TopKSharedItems"/> sorts in scratch from the caching
    /// allocator, taken before the launch (so a CUDA graph capture records it as any other temporary).
    /// </summary>
    public void TopK(Tensor x, int k, Tensor values, Tensor indices)
    {
        Cpu.CpuBackend.CheckTopK(x, k, values, indices);
        int n = x.Shape[^1];
        int[] rowShape = x.Shape[..^1].ToArray();
        long rows = 1;
        foreach (var s in rowShape) rows *= s;
        if (rows == 0 || k == 0) return;
        var layout = KernelLayout.Create("TopK", rowShape, values.Strides[..^1].ToArray(), indices.Strides[..^1].ToArray(), x.Strides[..^1].ToArray());
        var plan = PlanTopK(rows, n, k, _context.MultiprocessorCount);
        // TopKItem of topk.cu: a 64-bit key and a 32-bit index, 16 bytes.
        using var scratch = plan.Scratch ? Tensor.Empty([(int)plan.Grid, 2 * k], DType.I64, Device) : null;
        using var a = new KernelArgs().Add(layout).Add(rows).Add(n).Add(k).Ptr(values).Add(values.Strides[^1]).Ptr(indices).Add(indices.Strides[^1])
            .Ptr(x).Add(x.Strides[^1]).Add(Code(x.DType));
        if (plan.Kernel == "topk_rows") a.Ptr(scratch);
        _kernels.Launch("topk.cu", plan.Kernel, plan.Grid, plan.Block, a);
    }

    /// <summary>topk.cu's TOPK_SMALL_N: rows up to this long take topk_small (a warp per row).</summary>
    internal const int TopKSmallN = 256;

    /// <summary>topk.cu's TOPK_WARP_ROWS: rows (warps) per block of topk_small.</summary>
    internal const int TopKWarpRows = 8;

    /// <summary>topk.cu's TOPK_SHARED_ITEMS: the largest k topk_rows sorts in shared memory.</summary>
    internal const int TopKSharedItems = 2048;

    /// <summary>The most scratch a launch of topk_rows with k above <see cref="TopKSharedItems"/> takes (it runs fewer blocks instead).</summary>
    internal const long TopKScratchBytes = 256L << 20;

    /// <summary>A top-k launch: kernel, blocks, threads a block, whether it sorts in scratch (k items a block).</summary>
    internal readonly record struct TopKPlan(string Kernel, uint Grid, uint Block, bool Scratch);

    /// <summary>
    /// Short rows (the MoE router's ≤ 64 experts, any count of rows): a warp each, 8 rows a block. Longer rows: a block
    /// each, 1024 threads for vocabulary rows (≥ 16384), 512 from 2048, else 256 (threads beyond the row's length would
    /// idle through every pass). With k above <see cref="TopKSharedItems"/> the blocks sort in scratch, k items each:
    /// at most 2 per SM and <see cref="TopKScratchBytes"/>, each looping over rows.
    /// </summary>
    internal static TopKPlan PlanTopK(long rows, int n, int k, int multiprocessors)
    {
        if (n <= TopKSmallN)
            return new("topk_small", (uint)Math.Clamp((rows + TopKWarpRows - 1) / TopKWarpRows, 1, 1 << 20), 32 * TopKWarpRows, false);
        uint block = n >= 16384 ? 1024u : n >= 2048 ? 512u : 256u;
        long grid = Math.Clamp(rows, 1, 1 << 20);
        bool scratch = k > TopKSharedItems;
        if (scratch) grid = Math.Min(grid, Math.Max(1, Math.Min(2L * multiprocessors, TopKScratchBytes / (16L * k))));
        return new("topk_rows", (uint)grid, block, scratch);
    }
}
