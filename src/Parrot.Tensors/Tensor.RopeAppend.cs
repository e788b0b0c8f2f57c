namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// Inference's rotary step into a KV cache: returns q rotated (<see cref="ApplyRope(Tensor, Tensor)"/>), writes k rotated into
    /// <paramref name="kSlot"/> and copies v into <paramref name="vSlot"/>. q is [B, H, T, D], k and v [B, Hkv, T, D]
    /// (usually transposed views of the projections' outputs; any strides), the slots have k's shape (views of the
    /// cache at the current positions, <see cref="Narrow"/> of [B, Hkv, MaxLen, D]), and cos/sin are ApplyRope's
    /// tables, broadcastable to q and to k. q, k, v and the slots share one float dtype (the append is a copy, not a
    /// cast); the tables share one float dtype. On a GPU this is one kernel instead of four launches (decode is
    /// host-bound); elsewhere, and for operands the kernel does not take, the four ops apart. The numbers are the same
    /// bits either way. The slots must not overlap q, k or v. Not differentiable (no graph records it).
    /// </summary>
    public static Tensor RopeAppend(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor kSlot, Tensor vSlot)
    {
        CheckRopeAppend("RopeAppend", q, k, v, cos, sin, kSlot, vSlot);
        if (q.Backend is Cuda.CudaBackend cuda && cos.DType == sin.DType)
        {
            var y = Empty(q._shape, q.DType, q.Device);
            try { cuda.RopeAppend(q, k, v, cos, sin, kSlot, vSlot, y); }
            catch { y.Dispose(); throw; }
            return y;
        }
        var qRot = q.ApplyRope(cos, sin);
        try
        {
            using (var kRot = k.ApplyRope(cos, sin)) kSlot.CopyFrom(kRot);
            vSlot.CopyFrom(v);
        }
        catch { qRot.Dispose(); throw; }
        return qRot;
    }

    /// <summary><see cref="RopeAppend"/>'s operand checks (shared with <see cref="RopeAppendAttend"/>).</summary>
    private static void CheckRopeAppend(string op, Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor kSlot, Tensor vSlot)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(kSlot);
        ArgumentNullException.ThrowIfNull(vSlot);
        q.CheckRope(op, "q", cos, sin);
        k.CheckRope(op, "k", cos, sin);
        v.EnsureAlive(op); kSlot.EnsureAlive(op); vSlot.EnsureAlive(op);
        if (q.Rank != 4 || k.Rank != 4)
            throw new ArgumentException($"{op}: q {q.ShapeString()} and k {k.ShapeString()} must be [batch, heads, seq, head_dim]");
        if (q._shape[0] != k._shape[0] || q._shape[2] != k._shape[2] || q._shape[3] != k._shape[3])
            throw new ArgumentException($"{op}: q {q.ShapeString()} and k {k.ShapeString()} differ in batch, seq or head_dim");
        foreach (var (t, name) in new[] { (v, "v"), (kSlot, "kSlot"), (vSlot, "vSlot") })
        {
            if (!t._shape.AsSpan().SequenceEqual(k._shape))
                throw new ArgumentException($"{op}: {name} {t.ShapeString()} must have k's shape {k.ShapeString()}");
            if (t.Device != q.Device) throw new ArgumentException($"{op}: {name} is on {t.Device}, q on {q.Device}");
        }
        if (k.Device != q.Device) throw new ArgumentException($"{op}: k is on {k.Device}, q on {q.Device}");
        if (k.DType != q.DType || v.DType != q.DType || kSlot.DType != q.DType || vSlot.DType != q.DType)
            throw new ArgumentException($"{op}: q, k, v, kSlot and vSlot must share one dtype, got {q.DType.Name()}, {k.DType.Name()}, {v.DType.Name()}, {kSlot.DType.Name()} and {vSlot.DType.Name()}");
        CheckCacheApart(op, q, k, v, kSlot, "kSlot", vSlot, "vSlot");
    }

    /// <summary>
    /// The cache tensors written must not share memory with q, k or v, nor with each other: the fused kernels read the
    /// new rows while blocks write the cache (a block could rotate a row already rotated), and the two launches apart
    /// would give other bits than the kernel. A conservative byte-range test (<see cref="SharesMemoryWith"/>).
    /// </summary>
    private static void CheckCacheApart(string op, Tensor q, Tensor k, Tensor v, Tensor kc, string kcName, Tensor vc, string vcName)
    {
        foreach (var (c, cName) in new[] { (kc, kcName), (vc, vcName) })
            foreach (var (x, xName) in new[] { (q, "q"), (k, "k"), (v, "v") })
                if (c.SharesMemoryWith(x)) throw new ArgumentException($"{op}: {cName} {c.ShapeString()} shares memory with {xName} {x.ShapeString()}; the cache must be apart from the new rows");
        if (kc.SharesMemoryWith(vc)) throw new ArgumentException($"{op}: {kcName} and {vcName} share memory");
    }
}
