// The rotary arithmetic shared by rope.cu (rope, rope_kv_append, rope_kv_append_at) and the decode attention kernel
// that rotates its q rows and the new key itself (attention_decode.cu, attention_decode_rope_*): one definition, so
// that the fused kernel's numbers are the rope kernels' bits by construction. Hugging Face rotate-half convention
// over a last axis of 2h: y[d] = x[d]·c[d] − x[d + h]·s[d], y[d + h] = x[d + h]·c[d + h] + x[d]·s[d + h], each
// product rounded before the sum (no fused multiply-add), as PyTorch.
#pragma once
#include "prelude.cuh"

// The first half's element from its own x (a), its partner x[d + h] (b) and the tables at d.
__device__ __forceinline__ float rope_lo(float a, float b, float c, float s) { return __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)); }

// The second half's element from its own x (b), its partner x[d − h] (a) and the tables at its own index.
__device__ __forceinline__ float rope_hi(float a, float b, float c, float s) { return __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)); }

// One rotated pair: y[d], y[d + h] from x[d], x[d + h]; o holds the offsets of y, x, cos and sin at d.
__device__ __forceinline__ void rope_pair(const i64* o, i64 half, void* y, i64 ylast, const void* x, i64 xlast,
                                          const void* c, const void* s, int tdt, i64 clast, i64 slast, int dt)
{
    i64 yh = half * ylast, xh = half * xlast, ch = half * clast, sh = half * slast;
    if (dt == DT_F64)
    {
        double a = load<double>(x, dt, o[1]), b = load<double>(x, dt, o[1] + xh);
        double r0 = __dsub_rn(__dmul_rn(a, load<double>(c, tdt, o[2])), __dmul_rn(b, load<double>(s, tdt, o[3])));
        double r1 = __dadd_rn(__dmul_rn(b, load<double>(c, tdt, o[2] + ch)), __dmul_rn(a, load<double>(s, tdt, o[3] + sh)));
        store<double>(y, dt, o[0], r0);
        store<double>(y, dt, o[0] + yh, r1);
    }
    else
    {
        float a = load<float>(x, dt, o[1]), b = load<float>(x, dt, o[1] + xh);
        float r0 = rope_lo(a, b, load<float>(c, tdt, o[2]), load<float>(s, tdt, o[3]));
        float r1 = rope_hi(a, b, load<float>(c, tdt, o[2] + ch), load<float>(s, tdt, o[3] + sh));
        store<float>(y, dt, o[0], r0);
        store<float>(y, dt, o[0] + yh, r1);
    }
}

// The decode step's rotary embedding and KV-cache append, done by the attention kernel itself (attention_decode.cu's
// attention_decode_rope_*, attention_decode_mma.cu's attention_decode_mma_rope_*): q and the new key/value rows are the
// projections as they come (views into the packed q/k/v product, not yet rotated), and the new keys' positions
// p .. p + T - 1 (T = 1 in attention_decode.cu) are rows of the cache the kernel attends over. Element d of table row
// r is at r·crow + d·clast (the host form passes the new rows' tables: r = t, crow = 0 for one row).
struct DecRope
{
    const void* k;   // the new keys [B, Hkv, T, D], strides ks
    const void* v;   // the new values [B, Hkv, T, D], strides vs
    const void* cos; // the tables, dtype tdt
    const void* sin;
    i64 ks[4], vs[4];
    i64 clast, slast, crow, srow;
    int tdt;
};

// q's element d of one row, rotated and rounded to DT: the value rope_kv_append(_at) stores into qRot and the
// attention loads back (rope_lo/rope_hi as rope_pair computes them, f32_to_bf16/bf16_to_f32 as store/load round),
// so the fused kernel's q is the two launches' q bit for bit. NaN for a position outside the cache (ok false), as
// rope_kv_append_at writes there. p: the table row.
template <int DT>
__device__ __forceinline__ float dec_rope_q(const void* q, i64 qb, i64 qs, int d, int D, int p, bool ok, const DecRope& rp)
{
    float y = __int_as_float(0x7fc00000);
    if (ok)
    {
        const int half = D / 2, pd = d < half ? d + half : d - half;
        const float self = load<float>(q, DT, qb + d * qs), partner = load<float>(q, DT, qb + pd * qs);
        const float c = load<float>(rp.cos, rp.tdt, p * rp.crow + d * rp.clast), s = load<float>(rp.sin, rp.tdt, p * rp.srow + d * rp.slast);
        y = d < half ? rope_lo(self, partner, c, s) : rope_hi(partner, self, c, s);
    }
    return DT == DT_BF16 ? bf16_to_f32(f32_to_bf16(y)) : y;
}
