namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// Whether <see cref="ScatterAdd"/> runs the deterministic kernels (each destination element adds its contributions in
    /// ascending order along the axis in the dtype's arithmetic: the CPU's bits). On unless the environment variable
    /// PARROT_DETERMINISTIC_SCATTER is "0" when the backend is created; off, the atomic kernel (float sums in no fixed
    /// order) runs, as before: for side-by-side timings while the deterministic path is unmeasured on a GPU.
    /// </summary>
    public bool DeterministicScatter { get; set; } = DeterministicScatterDefault(Environment.GetEnvironmentVariable("PARROT_DETERMINISTIC_SCATTER"));

    /// <summary>The default of <see cref="DeterministicScatter"/> for a value of PARROT_DETERMINISTIC_SCATTER: off only for "0".</summary>
    internal static bool DeterministicScatterDefault(string? value) => value?.Trim() != "0";

    /// <summary>Axis lengths up to this are walked by one thread per fiber (no sort): the CPU's loop as it is.</summary>
    internal const int ScatterWalkMaxAxis = 32;

    /// <summary>Most keys (fiber groups × destination axis) the sorted path counts: two int64 arrays of this many.</summary>
    internal const long ScatterMaxSortKeys = 1L << 27;

    /// <summary>
    /// Keys the sorted path counts whatever the positions (two int64 arrays of 16 MiB); above it, only while the
    /// destination axis is at most <see cref="ScatterSparseKeyRatio"/> × the scattered axis. The sort's passes and its
    /// scratch grow with the keys (groups × D), the walk with the positions: an index [800, 40] into [800, 151936] along
    /// the vocabulary would count 121M keys (2 GiB) for 32,000 additions, where the walk is 800 threads of 40 adds.
    /// </summary>
    internal const long ScatterDenseKeys = 1L << 20;

    /// <inheritdoc cref="ScatterDenseKeys"/>
    internal const long ScatterSparseKeyRatio = 8;

    /// <summary>
    /// How a deterministic scatter-add runs. The index's dims other than the axis are split into group dims (the index
    /// varies along them) and vector dims (index stride 0: an expanded id column), laid out as [group dims..., vector
    /// dims...] for dst, src and the index; <see cref="Groups"/> × <see cref="Width"/> fibers of <see cref="K"/>
    /// positions each. Sorted: the counting sort by key g·D + p (<see cref="Keys"/> keys), else one thread per fiber.
    /// </summary>
    internal sealed record ScatterAddPlan(int[] Shape, long[] DstStrides, long[] SrcStrides, long[] IndexStrides, long Groups, long Width, long K, long Keys, bool Sorted);

    internal static ScatterAddPlan PlanScatterAdd(ReadOnlySpan<int> indexShape, ReadOnlySpan<long> indexStrides, ReadOnlySpan<long> srcStrides,
        ReadOnlySpan<long> dstStrides, int axis, long dstAxisSize)
    {
        var order = new List<int>();
        for (int d = 0; d < indexShape.Length; d++) if (d != axis && indexStrides[d] != 0) order.Add(d);
        int groupDims = order.Count;
        for (int d = 0; d < indexShape.Length; d++) if (d != axis && indexStrides[d] == 0) order.Add(d);
        long groups = 1, width = 1;
        for (int i = 0; i < order.Count; i++)
            if (i < groupDims) groups *= indexShape[order[i]]; else width *= indexShape[order[i]];
        long k = indexShape[axis], keys = groups * dstAxisSize;
        bool sorted = k > ScatterWalkMaxAxis && keys <= ScatterMaxSortKeys && groups * k <= int.MaxValue
            && (keys <= ScatterDenseKeys || dstAxisSize <= ScatterSparseKeyRatio * k);
        int r = order.Count;
        var (shape, ds, ss, ist) = (new int[r], new long[r], new long[r], new long[r]);
        for (int i = 0; i < r; i++) (shape[i], ds[i], ss[i], ist[i]) = (indexShape[order[i]], dstStrides[order[i]], srcStrides[order[i]], indexStrides[order[i]]);
        return new ScatterAddPlan(shape, ds, ss, ist, groups, width, k, keys, sorted);
    }

    /// <summary>
    /// Deterministic (see <see cref="DeterministicScatter"/>): each destination element receives its contributions in
    /// ascending order along the axis, each added and stored in the dtype's arithmetic, so the bits are the CPU's. A
    /// short axis (≤ <see cref="ScatterWalkMaxAxis"/>) is walked by one thread per fiber; a longer one is counting-sorted
    /// by (fiber group, index value) first (<see cref="SortByKey"/>: the embedding backward's sort) and each key's
    /// contributions are added by one thread per vector element. An index out of range (a deferred check reports it)
    /// adds nothing.
    /// </summary>
    public void ScatterAdd(Tensor dst, int axis, Tensor index, Tensor src)
    {
        long n = index.Count;
        if (n == 0) return;
        if (!DeterministicScatter) { ScatterAddAtomic(dst, axis, index, src); return; }
        var plan = PlanScatterAdd(index.Shape, index.Strides, src.Strides, dst.Strides, axis, dst.Shape[axis]);
        var L = KernelLayout.Create("ScatterAdd", plan.Shape, plan.DstStrides, plan.SrcStrides, plan.IndexStrides);
        long daxis = dst.Strides[axis], dsize = dst.Shape[axis], saxis = src.Strides[axis], iaxis = index.Strides[axis];
        int idt = Code(index.DType), dt = Code(dst.DType);
        long fibers = plan.Groups * plan.Width;
        if (!plan.Sorted)
        {
            using var w = new KernelArgs().Add(L).Add(fibers).Add(plan.K).Ptr(dst).Add(daxis).Add(dsize).Ptr(src).Add(saxis).Ptr(index).Add(iaxis).Add(idt).Add(dt);
            _kernels.Launch("indexing.cu", "scatter_add_walk", _kernels.GridFor(fibers), 256, w);
            return;
        }
        long positions = plan.Groups * plan.K;
        using var keys = Tensor.Empty([(int)positions], DType.I64, Device);
        using (var a = new KernelArgs().Add(L).Add(positions).Add(plan.K).Add(plan.Width).Ptr(index).Add(iaxis).Add(idt).Add(dsize).Ptr(keys))
            _kernels.Launch("indexing.cu", "scatter_keys", _kernels.GridFor(positions), 256, a);
        var (starts, sorted) = SortByKey(keys, positions, plan.Keys, perGroup: dsize, group: plan.K);
        using (starts)
        using (sorted)
        using (var a = new KernelArgs().Add(L).Add(plan.Keys).Add(plan.Width).Add(plan.K).Add(dsize).Ptr(dst).Add(daxis).Ptr(src).Add(saxis).Ptr(starts).Ptr(sorted).Add(dt))
            _kernels.Launch("indexing.cu", "scatter_add_sorted", _kernels.GridFor(plan.Keys * plan.Width), 256, a);
    }

    /// <summary>
    /// Scatter-add with atomics (PARROT_DETERMINISTIC_SCATTER=0): contributions to one element are summed in no fixed
    /// order (float results may differ from the CPU's in the last bits). An index out of range adds nothing.
    /// </summary>
    private void ScatterAddAtomic(Tensor dst, int axis, Tensor index, Tensor src)
    {
        long n = index.Count;
        var ds = dst.Strides.ToArray(); ds[axis] = 0;
        var L = KernelLayout.Create("ScatterAdd", index.Shape, ds, src.Strides.ToArray(), index.Strides.ToArray());
        using var a = new KernelArgs().Add(L).Add(n).Ptr(dst).Add(dst.Strides[axis]).Add((long)dst.Shape[axis]).Ptr(src).Ptr(index).Add(Code(index.DType)).Add(Code(dst.DType));
        _kernels.Launch("indexing.cu", "scatter_add", _kernels.GridFor(n), 256, a);
    }
}
