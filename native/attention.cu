// Scaled-dot-product attention forward, o = softmax(q·kᵀ·scale + mask)·v, without materialising the scores:
// one warp per query row walks the keys with an online softmax (FlashAttention's recurrence). A first,
// simple kernel (correct for any strides, grouped-query heads, causal and additive masks, head dims up to
// 256); the tiled tensor-core version replaces it for speed. float32 math (float64 for f64 tensors).
#include "prelude.cuh"

#define ATT_MAX_PER_LANE 8 // head dims up to 32 × 8 = 256

// Element strides of q, k, v, o, mask ([B, H|Hkv, T|S, D]) and of the log-sum-exp ([B, H, T]).
struct AttnStrides
{
    i64 q[4], k[4], v[4], o[4], m[4], l[3];
};

template <typename T>
__device__ void attention_row(const void* q, const void* k, const void* v, void* o, int dt, const void* mask, int mdt,
                              void* lse, int ldt, const AttnStrides& st, i64 b, i64 h, i64 t, i64 hkv_group,
                              i64 S, i64 D, i64 Dv, int causal, i64 query_offset, T scale)
{
    int lane = threadIdx.x & 31;
    i64 hk = h / hkv_group;
    T qv[ATT_MAX_PER_LANE], acc[ATT_MAX_PER_LANE];
#pragma unroll
    for (int e = 0; e < ATT_MAX_PER_LANE; e++)
    {
        i64 d = lane + 32 * e;
        qv[e] = d < D ? load<T>(q, dt, b * st.q[0] + h * st.q[1] + t * st.q[2] + d * st.q[3]) : (T)0;
        acc[e] = 0;
    }
    T ninf = -(T)__int_as_float(0x7f800000);
    T m = ninf, l = 0;
    i64 last = causal ? query_offset + t : S - 1;
    if (last > S - 1) last = S - 1;
    for (i64 j = 0; j <= last; j++)
    {
        T part = 0;
#pragma unroll
        for (int e = 0; e < ATT_MAX_PER_LANE; e++)
        {
            i64 d = lane + 32 * e;
            if (d < D) part += qv[e] * load<T>(k, dt, b * st.k[0] + hk * st.k[1] + j * st.k[2] + d * st.k[3]);
        }
        for (int off = 16; off > 0; off >>= 1) part += __shfl_xor_sync(0xffffffffu, part, off);
        T s = part * scale;
        if (mask) s += load<T>(mask, mdt, b * st.m[0] + h * st.m[1] + t * st.m[2] + j * st.m[3]);
        if (s == ninf) continue; // a hidden key adds nothing
        T mn = s > m ? s : m;
        T corr = exp(m - mn), p = exp(s - mn);
        l = l * corr + p;
#pragma unroll
        for (int e = 0; e < ATT_MAX_PER_LANE; e++)
        {
            i64 d = lane + 32 * e;
            if (d < Dv) acc[e] = acc[e] * corr + p * load<T>(v, dt, b * st.v[0] + hk * st.v[1] + j * st.v[2] + d * st.v[3]);
        }
        m = mn;
    }
#pragma unroll
    for (int e = 0; e < ATT_MAX_PER_LANE; e++)
    {
        i64 d = lane + 32 * e;
        if (d < Dv) store<T>(o, dt, b * st.o[0] + h * st.o[1] + t * st.o[2] + d * st.o[3], acc[e] / l); // l = 0: NaN, as the composite
    }
    if (lse && lane == 0) store<T>(lse, ldt, b * st.l[0] + h * st.l[1] + t * st.l[2], l > 0 ? m + log(l) : ninf);
}

extern "C" __global__ void attention_forward(const void* q, const void* k, const void* v, void* o, int dt, const void* mask, int mdt,
                                             void* lse, int ldt, AttnStrides st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv,
                                             int causal, i64 query_offset, double scale)
{
    i64 warps = (i64)gridDim.x * (blockDim.x >> 5);
    i64 rows = B * H * T;
    for (i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps)
    {
        i64 t = row % T, bh = row / T, h = bh % H, b = bh / H;
        if (dt == DT_F64) attention_row<double>(q, k, v, o, dt, mask, mdt, lse, ldt, st, b, h, t, H / Hkv, S, D, Dv, causal, query_offset, scale);
        else attention_row<float>(q, k, v, o, dt, mask, mdt, lse, ldt, st, b, h, t, H / Hkv, S, D, Dv, causal, query_offset, (float)scale);
    }
}
