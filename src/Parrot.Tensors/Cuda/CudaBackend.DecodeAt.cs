namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// <see cref="IBackend.RopeAppendAt"/> in one launch (rope.cu's rope_kv_append_at): rope_kv_append's element work,
    /// with the cache rows and table rows picked by the device positions. Every argument depends only on the shapes and
    /// the (fixed) addresses of the step's tensors, never on a position.
    /// </summary>
    public void RopeAppendAt(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor positions, Tensor kCache, Tensor vCache, Tensor qRot)
    {
        int last = q.Rank - 1, half = q.Shape[last] / 2;
        int H = q.Shape[1], Hkv = k.Shape[1], T = q.Shape[2], capacity = kCache.Shape[2];
        long nq = q.Count / 2, nk = k.Count / 2;
        if (nq + nk == 0) return;
        var qh = q.Shape.ToArray(); qh[last] = half;
        var kh = k.Shape.ToArray(); kh[last] = half;
        // The tables move along their last axis only; the row (position + t) is added in the kernel.
        long[] cs = [0, 0, 0, cos.Strides[1]], ss = [0, 0, 0, sin.Strides[1]];
        // The caches' first T rows; the kernel adds position rows.
        long[] kc = kCache.Strides.ToArray(), vc = vCache.Strides.ToArray();
        var LQ = KernelLayout.Create("RopeAppendAt", qh, qRot.Strides.ToArray(), q.Strides.ToArray(), cs, ss);
        var LK = KernelLayout.Create("RopeAppendAt", kh, kc, k.Strides.ToArray(), cs, ss);
        var LV = KernelLayout.Create("RopeAppendAt", kh, vc, v.Strides.ToArray());
        using var a = new KernelArgs().Add(LQ).Add(LK).Add(LV).Add(nq).Add(nk).Add((long)half)
            .Ptr(qRot).Add(qRot.Strides[last]).Ptr(q).Add(q.Strides[last])
            .Ptr(kCache).Add(kCache.Strides[3]).Ptr(k).Add(k.Strides[last])
            .Ptr(vCache).Add(vCache.Strides[3]).Ptr(v).Add(v.Strides[last])
            .Ptr(cos).Ptr(sin).Add(Code(cos.DType)).Add(cos.Strides[1]).Add(sin.Strides[1]).Add(Code(q.DType))
            .Ptr(positions).Add(Code(positions.DType)).Add((long)H).Add((long)Hkv).Add((long)T).Add((long)capacity)
            .Add(cos.Strides[0]).Add(sin.Strides[0]).Add(kCache.Strides[2]).Add(vCache.Strides[2]);
        _kernels.Launch("rope.cu", "rope_kv_append_at", _kernels.GridFor(nq + nk), 256, a);
    }

    /// <summary>
    /// <see cref="IBackend.AttentionAt"/>: the decode kernel with the positions on the device (attention_decode_at_bf16 /
    /// _f32), its grid sized for the whole cache (<see cref="DecodeSplits"/> of the capacity), so the grid, the scratch
    /// and every argument are the same every token; each row group takes the ranges the rule gives its own keys (the
    /// blocks past them return), the same as the eager launch over those keys: the same bits. f32/bf16, T ≤ 8, head
    /// dims ≤ 128 (there is no other path without reading the positions back).
    /// </summary>
    public unsafe void AttentionAt(Tensor q, Tensor kCache, Tensor vCache, Tensor positions, double scale, Tensor output)
    {
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = kCache.Shape[1], S = kCache.Shape[2], Dv = vCache.Shape[3];
        if (!UsesDecodeAttention(q.DType, output.DType, T, D, Dv))
            throw Missing("AttentionAt", $"{q.DType.Name()} with {T} query rows and head dims {D}/{Dv} (the decode kernel takes f32 or bf16, at most {DecodeMaxRows} rows, head dims up to 128)");
        long rows = (long)B * H * T;
        if (rows == 0 || Dv == 0) return;
        var st = AttnStrides.Of(q, kCache, vCache, output);
        if (DecodeMmaTakes(q, kCache, vCache, null, output)) // by the capacity: the launch cannot read the positions
        {
            AttentionDecodeMma(q, kCache, vCache, true, 0, scale, output, null, positions, st);
            return;
        }
        long chunks = ((long)(H / Hkv) * T + DecodeRowsPerBlock - 1) / DecodeRowsPerBlock, groups = (long)B * Hkv * chunks;
        int splits = DecodeSplits(Hkv * chunks, S, _context.MultiprocessorCount, DecodeMinKeys);
        if (groups * splits > int.MaxValue) throw Missing("AttentionAt", $"more than {int.MaxValue} decode blocks ({groups} × {splits})");
        bool vec = DecodeVectorLoads(q.DType, D, Dv, kCache.Strides, vCache.Strides, kCache.DataPointer, vCache.DataPointer);
        var tickets = splits > 1 ? DecodeTickets(groups) : null;
        using var part = splits > 1 ? Tensor.Empty([ScratchLength(groups * splits * DecodeRowsPerBlock * (Dv + 2), "decode attention at positions")], DType.F32, Device) : null;
        using var a = new KernelArgs().Ptr(q).Ptr(kCache).Ptr(vCache).Ptr(output).Ptr(null).Add(Code(DType.F32)).Add(st)
            .Add(H).Add(Hkv).Add(T).Add(S).Add(D).Add(Dv).Add(scale).Add(vec ? 1 : 0).Add(splits).Add(Math.Max(1, DecodeMinKeys))
            .Ptr(part).Ptr(tickets).Ptr(positions).Add(Code(positions.DType));
        _kernels.Launch("attention_decode.cu", q.DType == DType.BF16 ? "attention_decode_at_bf16" : "attention_decode_at_f32", (uint)(groups * splits), DecodeThreads, a);
    }
}
