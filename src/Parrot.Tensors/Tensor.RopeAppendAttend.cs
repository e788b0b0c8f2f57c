namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// A decode step's attention with its rotary embedding and KV-cache append: writes rope(k) and v into the last T
    /// rows of <paramref name="kAll"/>/<paramref name="vAll"/> ([B, Hkv, past + T, D] views of a cache: what is stored
    /// plus the new slots) and returns the attention of rope(q) over all past + T keys, the queries at positions
    /// past.. (<paramref name="causal"/>, <paramref name="mask"/> and <paramref name="scale"/> as
    /// <see cref="ScaledDotProductAttention(Tensor, Tensor, Tensor, Tensor?, bool, int, double?)"/>, whose output
    /// layout it has). Operands as <see cref="RopeAppend"/>'s (cos/sin ApplyRope's tables for the new positions).
    /// The numbers are, bit for bit, <see cref="RopeAppend"/> into those rows then ScaledDotProductAttention(rope(q),
    /// kAll, vAll, mask, causal, queryOffset: past, scale): what this runs, except on a GPU with PARROT_DECODE_ROPE_FUSED=1
    /// (off by default: slower in the timed 7B step) for one new token a row (f32/bf16, head dim ≤ 128, one table row, no
    /// mask), where one kernel rotates, appends and attends (<see cref="Cuda.CudaBackend.RopeAppendAttend"/>), and where
    /// the tensor-core decode kernel takes the attention (PARROT_DECODE_MMA=1), up to 8 new tokens a row with tables of
    /// those rows: its fused form. Not differentiable.
    /// </summary>
    public static Tensor RopeAppendAttend(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor kAll, Tensor vAll, bool causal, Tensor? mask = null, double? scale = null)
    {
        const string op = "RopeAppendAttend";
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(kAll);
        ArgumentNullException.ThrowIfNull(vAll);
        kAll.EnsureAlive(op); vAll.EnsureAlive(op);
        if (kAll.Rank != 4 || vAll.Rank != 4 || k.Rank != 4 || k.Dim(2) > kAll.Dim(2) || vAll.Dim(2) != kAll.Dim(2))
            throw new ArgumentException($"{op}: the caches {kAll.ShapeString()}, {vAll.ShapeString()} must be [B, kv_heads, past + T, head_dim] with T = k's {(k is { Rank: 4 } ? k.Dim(2) : -1)} new rows last");
        int t = k.Dim(2), past = kAll.Dim(2) - t;
        using var kSlot = kAll.Narrow(2, past, t);
        using var vSlot = vAll.Narrow(2, past, t);
        CheckRopeAppend(op, q, k, v, cos, sin, kSlot, vSlot);
        double sc = scale ?? (q.Dim(3) > 0 ? 1 / Math.Sqrt(q.Dim(3)) : 1);
        if (q.Backend is Cuda.CudaBackend cuda
            && cuda.FusedRopeAttendKernel(q, kAll, vAll, cos, sin, mask, atPositions: false) is var kernel and not Cuda.CudaBackend.RopeAttendKernel.None)
        {
            if (q.Dim(1) % kAll.Dim(1) != 0) throw new ArgumentException($"{op}: the {q.Dim(1)} query heads must be a multiple of the {kAll.Dim(1)} key/value heads");
            if (!double.IsFinite(sc)) throw new ArgumentOutOfRangeException(nameof(scale), $"{op}: the scale {sc} must be finite");
            return RopeAppendAttendFused(cuda, kernel, q, k, v, cos, sin, null, kAll, vAll, causal, sc);
        }
        using var qRot = RopeAppend(q, k, v, cos, sin, kSlot, vSlot);
        return ScaledDotProductAttention(qRot, kAll, vAll, mask, causal, past, scale);
    }

    /// <summary>
    /// <see cref="RopeAppendAttend"/> at positions held on the device, into whole caches (a decode step whose launches
    /// are the same every token, so a CUDA graph replays it): <see cref="RopeAppendAt"/> then
    /// <see cref="AttentionAt"/>, bit for bit (what this runs, except on a GPU for one new token a row, f32/bf16, head
    /// dim ≤ 128, or up to 8 where the tensor-core decode kernel attends: one kernel,
    /// <see cref="Cuda.CudaBackend.RopeAppendAttend"/>). Operands as RopeAppendAt's
    /// (cos/sin whole tables); returns AttentionAt's [B, H, T, D]. Not differentiable.
    /// </summary>
    public static Tensor RopeAppendAttendAt(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor positions, Tensor kCache, Tensor vCache, double? scale = null)
    {
        const string op = "RopeAppendAttendAt";
        CheckRopeAppendAt(op, q, k, v, cos, sin, positions, kCache, vCache);
        if (q.Backend is Cuda.CudaBackend cuda
            && cuda.FusedRopeAttendKernel(q, kCache, vCache, cos, sin, null, atPositions: true) is var kernel and not Cuda.CudaBackend.RopeAttendKernel.None)
        {
            double sc = scale ?? (q.Dim(3) > 0 ? 1 / Math.Sqrt(q.Dim(3)) : 1);
            if (q.Dim(1) % kCache.Dim(1) != 0) throw new ArgumentException($"{op}: the {q.Dim(1)} query heads must be a multiple of the {kCache.Dim(1)} key/value heads");
            if (!double.IsFinite(sc)) throw new ArgumentOutOfRangeException(nameof(scale), $"{op}: the scale {sc} must be finite");
            return RopeAppendAttendFused(cuda, kernel, q, k, v, cos, sin, positions, kCache, vCache, true, sc);
        }
        using var qRot = RopeAppendAt(q, k, v, cos, sin, positions, kCache, vCache);
        return AttentionAt(qRot, kCache, vCache, positions, scale);
    }

    /// <summary>
    /// The one-kernel path of both, on the <paramref name="kernel"/> the backend chose for these operands: an output laid
    /// out as ScaledDotProductAttention's ([B, T, H, D] memory), of q's dtype (the dtype the choice was asked with).
    /// </summary>
    private static Tensor RopeAppendAttendFused(Cuda.CudaBackend cuda, Cuda.CudaBackend.RopeAttendKernel kernel, Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin,
                                                Tensor? positions, Tensor kCache, Tensor vCache, bool causal, double scale)
    {
        using var scope = TensorScope.Begin();
        var o = Empty([q.Dim(0), q.Dim(2), q.Dim(1), q.Dim(3)], q.DType, q.Device).Permute(0, 2, 1, 3);
        if (o.Count > 0) cuda.RopeAppendAttend(kernel, q, k, v, cos, sin, positions, kCache, vCache, causal, scale, o);
        return scope.Keep(o);
    }
}
