namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// <see cref="RopeAppend"/> at positions held on the device, into whole caches: returns q rotated, and writes k
    /// rotated and v into rows positions[b] .. positions[b] + T − 1 of row b of <paramref name="kCache"/> and
    /// <paramref name="vCache"/> [B, Hkv, capacity, D]. <paramref name="cos"/>/<paramref name="sin"/> are whole tables
    /// [rows ≥ capacity, D] (e.g. <c>RotaryTables.Range(0, capacity, …)</c>), indexed by the positions on the device.
    /// Every kernel argument is the same from one token to the next (only the device positions change), which is what a
    /// CUDA graph replay needs; nothing is read back. See <see cref="IBackend.RopeAppendAt"/> for the contract.
    /// Not differentiable.
    /// </summary>
    public static Tensor RopeAppendAt(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor positions, Tensor kCache, Tensor vCache)
    {
        CheckRopeAppendAt("RopeAppendAt", q, k, v, cos, sin, positions, kCache, vCache);
        var y = Empty(q._shape, q.DType, q.Device);
        try { if (q.Count > 0 || k.Count > 0) q.Backend.RopeAppendAt(q, k, v, cos, sin, positions, kCache, vCache, y); }
        catch { y.Dispose(); throw; }
        return y;
    }

    /// <summary><see cref="RopeAppendAt"/>'s operand checks (shared with <see cref="RopeAppendAttendAt"/>).</summary>
    private static void CheckRopeAppendAt(string op, Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor positions, Tensor kCache, Tensor vCache)
    {
        foreach (var (x, name) in new[] { (q, "q"), (k, "k"), (v, "v"), (cos, "cos"), (sin, "sin"), (positions, "positions"), (kCache, "kCache"), (vCache, "vCache") })
        {
            ArgumentNullException.ThrowIfNull(x, name);
            x.EnsureAlive(op);
            if (x.Device != q.Device) throw new ArgumentException($"{op}: {name} is on {x.Device}, q on {q.Device}");
        }
        if (q.Rank != 4 || k.Rank != 4 || !k._shape.AsSpan().SequenceEqual(v._shape))
            throw new ArgumentException($"{op}: q {q.ShapeString()} must be [B, heads, T, head_dim] and k {k.ShapeString()}, v {v.ShapeString()} [B, kv_heads, T, head_dim]");
        int b = q._shape[0], t = q._shape[2], d = q._shape[3];
        if (k._shape[0] != b || k._shape[2] != t || k._shape[3] != d)
            throw new ArgumentException($"{op}: q {q.ShapeString()} and k {k.ShapeString()} differ in batch, T or head_dim");
        if (d % 2 != 0) throw new ArgumentException($"{op}: head_dim {d} must be even");
        int capacity = CheckCaches(op, kCache, vCache, b, k._shape[1], d, d);
        if (!q.DType.IsFloat() || k.DType != q.DType || v.DType != q.DType || kCache.DType != q.DType || vCache.DType != q.DType)
            throw new ArgumentException($"{op}: q, k, v and the caches must share one float dtype, got {q.DType.Name()}, {k.DType.Name()}, {v.DType.Name()}, {kCache.DType.Name()} and {vCache.DType.Name()}");
        foreach (var (tab, name) in new[] { (cos, "cos"), (sin, "sin") })
            if (tab.Rank != 2 || tab._shape[1] != d || tab._shape[0] < capacity)
                throw new ArgumentException($"{op}: {name} {tab.ShapeString()} must be a whole table [rows ≥ the cache's {capacity}, head_dim {d}]");
        if (!cos.DType.IsFloat() || sin.DType != cos.DType)
            throw new ArgumentException($"{op}: cos and sin must share one float dtype, got {cos.DType.Name()} and {sin.DType.Name()}");
        CheckPositions(op, positions, b);
        if (t > capacity) throw new ArgumentException($"{op}: {t} new positions do not fit a cache of {capacity}");
        CheckCacheApart(op, q, k, v, kCache, "kCache", vCache, "vCache");
    }

    /// <summary>
    /// Attention of a decode step over whole caches [B, Hkv, capacity, D] at positions held on the device: query t of
    /// row b sits at positions[b] + t and sees keys 0 .. positions[b] + t. The numbers of
    /// <see cref="ScaledDotProductAttention(Tensor, Tensor, Tensor, Tensor?, bool, int, double?)"/> over the first
    /// positions[b] + T keys, causal, queryOffset positions[b]; the launch is the same every token (a CUDA graph can
    /// replay it). Returns [B, H, T, Dv] laid out as [B, T, H, Dv], as ScaledDotProductAttention does.
    /// See <see cref="IBackend.AttentionAt"/>.
    /// </summary>
    public static Tensor AttentionAt(Tensor q, Tensor kCache, Tensor vCache, Tensor positions, double? scale = null)
    {
        const string op = "AttentionAt";
        foreach (var (x, name) in new[] { (q, "q"), (kCache, "kCache"), (vCache, "vCache"), (positions, "positions") })
        {
            ArgumentNullException.ThrowIfNull(x, name);
            x.EnsureAlive(op);
            if (x.Device != q.Device) throw new ArgumentException($"{op}: {name} is on {x.Device}, q on {q.Device}");
        }
        if (q.Rank != 4) throw new ArgumentException($"{op}: q {q.ShapeString()} must be [B, heads, T, head_dim]");
        int b = q._shape[0], h = q._shape[1], tq = q._shape[2], d = q._shape[3];
        if (kCache.Rank != 4 || vCache.Rank != 4)
            throw new ArgumentException($"{op}: the caches {kCache.ShapeString()}, {vCache.ShapeString()} must be [B, kv_heads, capacity, head_dim]");
        int hkv = kCache._shape[1], dv = vCache._shape[3];
        int capacity = CheckCaches(op, kCache, vCache, b, hkv, d, dv);
        if (hkv == 0 || h % hkv != 0) throw new ArgumentException($"{op}: the {h} query heads must be a multiple of the {hkv} key/value heads");
        if (!q.DType.IsFloat() || kCache.DType != q.DType || vCache.DType != q.DType)
            throw new ArgumentException($"{op}: q and the caches must share one float dtype, got {q.DType.Name()}, {kCache.DType.Name()} and {vCache.DType.Name()}");
        CheckPositions(op, positions, b);
        if (tq > capacity) throw new ArgumentException($"{op}: {tq} query positions do not fit a cache of {capacity}");
        double sc = scale ?? (d > 0 ? 1 / Math.Sqrt(d) : 1);
        if (!double.IsFinite(sc)) throw new ArgumentOutOfRangeException(nameof(scale), $"{op}: the scale {sc} must be finite");
        using var scope = TensorScope.Begin();
        var o = Empty([b, tq, h, dv], q.DType, q.Device).Permute(0, 2, 1, 3);
        if (o.Count > 0) q.Backend.AttentionAt(q, kCache, vCache, positions, sc, o);
        return scope.Keep(o);
    }

    /// <summary>Checks the two caches [B, Hkv, capacity, D/Dv] against each other and the step; returns the capacity.</summary>
    private static int CheckCaches(string op, Tensor kCache, Tensor vCache, int b, int hkv, int d, int dv)
    {
        if (kCache.Rank != 4 || vCache.Rank != 4 || kCache._shape[0] != b || vCache._shape[0] != b || kCache._shape[1] != hkv || vCache._shape[1] != hkv
            || kCache._shape[2] != vCache._shape[2] || kCache._shape[3] != d || vCache._shape[3] != dv)
            throw new ArgumentException($"{op}: the caches {kCache.ShapeString()} and {vCache.ShapeString()} must be [{b}, {hkv}, capacity, {d}] and [{b}, {hkv}, capacity, {dv}]");
        return kCache._shape[2];
    }

    /// <summary>The positions must be a contiguous [B] int32/int64 tensor (the kernels index them by batch row).</summary>
    private static void CheckPositions(string op, Tensor positions, int b)
    {
        if (positions.DType is not (DType.I32 or DType.I64) || positions.Rank != 1 || positions._shape[0] != b || !positions.IsContiguous)
            throw new ArgumentException($"{op}: positions must be a contiguous [{b}] int32 or int64 tensor (one per batch row), got {positions.DType.Name()} {positions.ShapeString()}");
    }
}
