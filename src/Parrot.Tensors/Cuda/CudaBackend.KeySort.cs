namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>Entries per tile of the multi-block scan (key_scan_tiles' blockDim).</summary>
    internal const int ScanTile = 1024;

    /// <summary>
    /// The counting sort of native/indexing.cu (key_count, the multi-block scan, key_place, key_sort_rows): positions
    /// [0, n) of <paramref name="keys"/> (dense int64; a key outside [0, nkeys) is left out) grouped by key, each key's
    /// positions in ascending order, on the device without a host wait. Key v belongs to group v / perGroup, whose
    /// positions are [g·group, (g + 1)·group): a hot key's order comes from a stable compaction of its group's keys,
    /// O(group), where ranking would be O(len²). Returns Starts (nkeys + 1 entries: key v's positions are
    /// Sorted[Starts[v] .. Starts[v + 1])) and Sorted (n); the caller disposes both.
    /// </summary>
    private (Tensor Starts, Tensor Sorted) SortByKey(Tensor keys, long n, long nkeys, long perGroup, long group)
    {
        var counts = Tensor.Zeros([checked((int)(nkeys + 1))], DType.I64, Device);  // counts, then starts
        Tensor? sorted = null;
        try
        {
            sorted = Tensor.Empty([checked((int)n)], DType.I64, Device);
            using var cursor = Tensor.Empty([(int)(nkeys + 1)], DType.I64, Device);
            using var order = Tensor.Empty([(int)n], DType.I64, Device);
            using (var h = new KernelArgs().Add(n).Add(nkeys).Ptr(keys).Ptr(counts))
                _kernels.Launch("indexing.cu", "key_count", _kernels.GridFor(n), 256, h);
            InclusiveScan(counts, nkeys + 1, cursor);
            using (var o = new KernelArgs().Add(n).Add(nkeys).Ptr(keys).Ptr(cursor).Ptr(order))
                _kernels.Launch("indexing.cu", "key_place", _kernels.GridFor(n), 256, o);
            using (var r = new KernelArgs().Add(nkeys).Add(perGroup).Add(group).Ptr(counts).Ptr(order).Ptr(sorted).Ptr(keys))
                _kernels.Launch("indexing.cu", "key_sort_rows", CudaKernels.RowGrid(nkeys), 128, r);
            return (counts, sorted);
        }
        catch
        {
            counts.Dispose();
            sorted?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// a[0, n) (int64) replaced by its inclusive prefix sums, copied into <paramref name="cursor"/>: tiles of
    /// <see cref="ScanTile"/> scanned by a block each, the tile totals scanned by one block, added back per entry.
    /// </summary>
    private void InclusiveScan(Tensor a, long n, Tensor cursor)
    {
        long tiles = (n + ScanTile - 1) / ScanTile;
        using var sums = Tensor.Empty([checked((int)tiles)], DType.I64, Device);
        using (var t = new KernelArgs().Add(n).Ptr(a).Ptr(sums))
            _kernels.Launch("indexing.cu", "key_scan_tiles", CudaKernels.RowGrid(tiles), ScanTile, t);
        using (var s = new KernelArgs().Add(tiles).Ptr(sums))
            _kernels.Launch("indexing.cu", "key_scan_sums", 1, 1024, s);
        using (var d = new KernelArgs().Add(n).Add((long)ScanTile).Ptr(a).Ptr(sums).Ptr(cursor))
            _kernels.Launch("indexing.cu", "key_scan_add", _kernels.GridFor(n), 256, d);
    }
}
