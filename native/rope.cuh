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
