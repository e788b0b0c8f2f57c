namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// The deferred index check (see <see cref="DeferredIndexChecks"/>): one kernel takes the minimum bad position into the
    /// slot with an atomic, a one-thread kernel after it (stream order) fetches the value there. No host wait.
    /// </summary>
    void IDeferredIndexChecks.CheckIndices(Tensor index, long size, long? ignore, Tensor slots, int slot)
    {
        long n = index.Count;
        if (n == 0) return;
        var L = KernelLayout.Create("IndexCheck", index.Shape, index.Strides.ToArray());
        using var at = slots.Narrow(0, slot, 1);
        using (var a = new KernelArgs().Add(L).Add(n).Ptr(index).Add(Code(index.DType)).Add(size).Add(ignore is null ? 0 : 1).Add(ignore ?? 0L).Ptr(at))
            _kernels.Launch("indexing.cu", "index_check", _kernels.GridFor(n), 256, a);
        using (var v = new KernelArgs().Add(L).Ptr(index).Add(Code(index.DType)).Ptr(at))
            _kernels.Launch("indexing.cu", "index_check_value", 1, 32, v);
    }

    /// <inheritdoc/>
    /// <remarks>An index out of range (a deferred check reports it) gives a zero element and reads nothing.</remarks>
    public void IndexSelect(Tensor x, int axis, Tensor index, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        var xs = x.Strides.ToArray(); xs[axis] = 0;
        var idx = new long[y.Rank]; idx[axis] = index.Strides[0];
        var L = KernelLayout.Create("IndexSelect", y.Shape, y.Strides.ToArray(), xs, idx);
        using var a = new KernelArgs().Add(L).Add(n).Ptr(y).Ptr(x).Add(x.Strides[axis]).Add((long)x.Shape[axis]).Ptr(index).Add(Code(index.DType)).Add(Code(x.DType));
        _kernels.Launch("indexing.cu", "index_select", _kernels.GridFor(n), 256, a);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// One launch of indexing.cu's index_copy, a thread per src element (IndexSelect's layout with the roles of the two
    /// tensors swapped), no host wait and no temporaries. The index values are not checked here: reading the index back
    /// for a range or duplicate check would be a host wait per call, and the one caller (the sampler's penalised chunk
    /// sums) passes ids it checked on the host. An index out of range writes nothing (the kernel skips it, as scatter_add
    /// does), so dst's memory is safe whatever the index holds; of repeated values, whichever thread stores last wins.
    /// Everything else is checked on the host first (<see cref="CheckIndexCopy"/>): the kernel trusts the layout.
    /// </remarks>
    public void IndexCopy(Tensor dst, int axis, Tensor index, Tensor src)
    {
        CheckIndexCopy(Device, dst, axis, index, src);
        long n = src.Count;
        if (n == 0) return;
        var ds = dst.Strides.ToArray(); ds[axis] = 0;
        var idx = new long[src.Rank]; idx[axis] = index.Strides[0];
        var L = KernelLayout.Create("IndexCopy", src.Shape, ds, src.Strides.ToArray(), idx);
        using var a = new KernelArgs().Add(L).Add(n).Ptr(dst).Add(dst.Strides[axis]).Add((long)dst.Shape[axis]).Ptr(src).Ptr(index).Add(Code(index.DType)).Add(Code(dst.DType));
        _kernels.Launch("indexing.cu", "index_copy", _kernels.GridFor(n), 256, a);
    }

    /// <summary>
    /// IndexCopy's host-side checks on CUDA (no index value is read): the CPU's (<see cref="IndexCopyArgs.Check"/>: one
    /// device, dtypes, src's shape, no broadcast dst) — without them a mismatched src would make index_copy store past
    /// dst's end or read past src's — and the tensors on <paramref name="device"/>, this backend's (the kernel would
    /// dereference another device's or the host's pointers).
    /// </summary>
    internal static void CheckIndexCopy(Device device, Tensor dst, int axis, Tensor index, Tensor src)
    {
        IndexCopyArgs.Check(dst, axis, index, src);
        if (dst.Device != device)
            throw new ArgumentException($"IndexCopy: the tensors are on {dst.Device}, not on this backend's {device}");
    }

    /// <inheritdoc/>
    /// <remarks>An index out of range (a deferred check reports it) gives a zero element and reads nothing.</remarks>
    public void Gather(Tensor x, int axis, Tensor index, Tensor y)
    {
        long n = y.Count;
        if (n == 0) return;
        var xs = x.Strides.ToArray(); xs[axis] = 0;
        var L = KernelLayout.Create("Gather", index.Shape, y.Strides.ToArray(), xs, index.Strides.ToArray());
        using var a = new KernelArgs().Add(L).Add(n).Ptr(y).Ptr(x).Add(x.Strides[axis]).Add((long)x.Shape[axis]).Ptr(index).Add(Code(index.DType)).Add(Code(x.DType));
        _kernels.Launch("indexing.cu", "gather", _kernels.GridFor(n), 256, a);
    }

    /// <inheritdoc/>
    public void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y)
    {
        int last = x.Rank - 1;
        int half = x.Shape[last] / 2;
        var shape = x.Shape.ToArray(); shape[last] = half;
        long n = x.Count / 2;
        if (n == 0) return;
        if (cos.DType != sin.DType)
        {
            if (!cos.DType.IsFloat() || !sin.DType.IsFloat()) throw Missing("Rope", $"cos {cos.DType.Name()} with sin {sin.DType.Name()}");
            // The kernel reads both tables with one dtype code: the narrower converted (exactly) to one holding both.
            var common = PairDType(cos.DType, sin.DType);
            using var c = ConvertedOrNull(cos, common);
            using var s = ConvertedOrNull(sin, common);
            Rope(x, c ?? cos, s ?? sin, y);
            return;
        }
        var L = KernelLayout.Create("Rope", shape, y.Strides.ToArray(), x.Strides.ToArray(), cos.Strides.ToArray(), sin.Strides.ToArray());
        using var a = new KernelArgs().Add(L).Add(n).Add((long)half).Ptr(y).Add(y.Strides[last]).Ptr(x).Add(x.Strides[last])
            .Ptr(cos).Ptr(sin).Add(Code(cos.DType)).Add(cos.Strides[last]).Add(sin.Strides[last]).Add(Code(x.DType));
        _kernels.Launch("rope.cu", "rope", _kernels.GridFor(n), 256, a);
    }

    /// <summary>
    /// Inference's rotary step into a KV cache in one launch (rope.cu's rope_kv_append): qRot = rope(q), kSlot =
    /// rope(k) and vSlot = v, each element as <see cref="Rope"/> and a copy give it. q [B, H, T, D]; k, v, kSlot and
    /// vSlot [B, Hkv, T, D]; any strides; cos and sin broadcastable to both shapes (the front-end,
    /// <see cref="Tensor.RopeAppend"/>, checked that and the rest of <see cref="CanRopeAppend"/>).
    /// </summary>
    public void RopeAppend(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor kSlot, Tensor vSlot, Tensor qRot)
    {
        if (!CanRopeAppend(q, k, v, cos, sin, kSlot, vSlot, qRot))
            throw Missing("RopeAppend", "operands of more than one dtype, or tables of two dtypes");
        int last = q.Rank - 1, half = q.Shape[last] / 2;
        long nq = q.Count / 2, nk = k.Count / 2;
        if (nq + nk == 0) return;
        var qh = q.Shape.ToArray(); qh[last] = half;
        var kh = k.Shape.ToArray(); kh[last] = half;
        var LQ = KernelLayout.Create("RopeAppend", qh, qRot.Strides.ToArray(), q.Strides.ToArray(), StridesOver(cos, qh), StridesOver(sin, qh));
        var LK = KernelLayout.Create("RopeAppend", kh, kSlot.Strides.ToArray(), k.Strides.ToArray(), StridesOver(cos, kh), StridesOver(sin, kh));
        var LV = KernelLayout.Create("RopeAppend", kh, vSlot.Strides.ToArray(), v.Strides.ToArray());
        using var a = new KernelArgs().Add(LQ).Add(LK).Add(LV).Add(nq).Add(nk).Add((long)half)
            .Ptr(qRot).Add(qRot.Strides[last]).Ptr(q).Add(q.Strides[last])
            .Ptr(kSlot).Add(kSlot.Strides[last]).Ptr(k).Add(k.Strides[last])
            .Ptr(vSlot).Add(vSlot.Strides[last]).Ptr(v).Add(v.Strides[last])
            .Ptr(cos).Ptr(sin).Add(Code(cos.DType)).Add(cos.Strides[^1]).Add(sin.Strides[^1]).Add(Code(q.DType));
        _kernels.Launch("rope.cu", "rope_kv_append", _kernels.GridFor(nq + nk), 256, a);
    }

    /// <summary>Whether <see cref="RopeAppend"/> takes these operands: q, k, v, the slots and qRot of one float dtype, the tables of one.</summary>
    public static bool CanRopeAppend(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor kSlot, Tensor vSlot, Tensor qRot) =>
        q.DType.IsFloat() && k.DType == q.DType && v.DType == q.DType && kSlot.DType == q.DType && vSlot.DType == q.DType
        && qRot.DType == q.DType && cos.DType == sin.DType && cos.DType.IsFloat();

    /// <summary>
    /// The strides of table <paramref name="t"/> broadcast (right-aligned, NumPy rules) over <paramref name="shape"/>: 0 on
    /// its size-1 and missing dims. The last dim keeps its stride (the kernel takes that apart). No view is made: host time.
    /// </summary>
    internal static long[] StridesOver(Tensor t, ReadOnlySpan<int> shape)
    {
        var r = new long[shape.Length];
        int lead = shape.Length - t.Rank;
        for (int d = Math.Max(0, lead); d < shape.Length; d++)
            r[d] = t.Shape[d - lead] == 1 && d < shape.Length - 1 ? 0 : t.Strides[d - lead];
        return r;
    }
}
