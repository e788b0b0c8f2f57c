// Scaled-dot-product attention forward, o = softmax(q·kᵀ·scale + mask)·v, without materialising the scores:
// one warp per query row walks the keys with an online softmax (FlashAttention's recurrence). A first,
// simple kernel (correct for any strides, grouped-query heads, causal and additive masks, head dims up to
// 256), float32 math (float64 for f64 tensors); the fallback for what the tiled kernel below
// (attention_flash_forward: f32/bf16, head dims up to 128) does not cover.
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

// ---------------------------------------------------------------------------------------------------------------
// Tiled flash-attention forward (FlashAttention-2's loop order, plain FMA math): one block of 256 threads per
// (batch, head, tile of FA_BM = 64 query rows), four threads per query row, each owning a quarter of the head
// dims (chunks of four: dims 16e + 4g .. 16e + 4g + 3 for thread g of the row). K and V tiles of FA_BN keys are
// staged through shared memory as float32; the query row (pre-scaled), the output accumulator and the running
// max and sum of the online softmax stay in registers (float32). Covers f32 and bf16 inputs, head dims up to 128
// (q/k and v dims may differ), grouped-query heads, causal with a query offset (key j is visible to query t when
// j <= query_offset + t), an additive float mask of any strides, any q/k/v/o strides and the log-sum-exp.
// Query tiles are scheduled last-first so that the longest causal tiles start first.
#define FA_BM 64
#define FA_BN 32
#define FA_THREADS 256
#define FA_DMAX 128

struct alignas(16) FaChunk
{
    float x, y, z, w;
};

template <int DT, int DMAX>
__device__ void flash_forward_tile(const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt,
                                   const AttnStrides& st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal,
                                   i64 query_offset, float scale, FaChunk* ks, FaChunk* vs)
{
    constexpr int E = DMAX / 16; // chunks of four dims per thread
    const float ninf = -__int_as_float(0x7f800000);
    int tid = threadIdx.x, r = tid >> 2, g = tid & 3;
    i64 BH = B * H, tiles = (T + FA_BM - 1) / FA_BM;
    i64 bh = (i64)blockIdx.x % BH, tile = tiles - 1 - (i64)blockIdx.x / BH;
    i64 b = bh / H, h = bh % H, hk = h / (H / Hkv);
    i64 t = tile * FA_BM + r;
    bool live = t < T;
    float qr[4 * E], acc[4 * E];
#pragma unroll
    for (int e = 0; e < E; e++)
#pragma unroll
        for (int c = 0; c < 4; c++)
        {
            i64 d = 16 * e + 4 * g + c;
            qr[4 * e + c] = live && d < D ? load<float>(q, DT, b * st.q[0] + h * st.q[1] + t * st.q[2] + d * st.q[3]) * scale : 0.0f;
            acc[4 * e + c] = 0.0f;
        }
    float m = ninf, l = 0.0f;
    i64 last = causal ? query_offset + t : S - 1; // the last key this row sees
    i64 kend = S;                                 // keys any row of the tile sees: [0, kend)
    if (causal)
    {
        i64 tmax = tile * FA_BM + FA_BM - 1;
        if (tmax > T - 1) tmax = T - 1;
        if (query_offset + tmax + 1 < kend) kend = query_offset + tmax + 1;
    }
    const i64 kbase = b * st.k[0] + hk * st.k[1], vbase = b * st.v[0] + hk * st.v[1];
    const i64 mbase = b * st.m[0] + h * st.m[1] + t * st.m[2];
    float* kf = (float*)ks;
    float* vf = (float*)vs;
    for (i64 j0 = 0; j0 < kend; j0 += FA_BN)
    {
        __syncthreads(); // the previous tile is no longer read
        for (int i = tid; i < FA_BN * DMAX; i += FA_THREADS)
        {
            int jj = i / DMAX, d = i % DMAX;
            i64 j = j0 + jj;
            kf[jj * DMAX + d] = j < S && d < D ? load<float>(k, DT, kbase + j * st.k[2] + d * st.k[3]) : 0.0f;
            vf[jj * DMAX + d] = j < S && d < Dv ? load<float>(v, DT, vbase + j * st.v[2] + d * st.v[3]) : 0.0f;
        }
        __syncthreads();
        float s[FA_BN];
        float mt = m;
#pragma unroll
        for (int jj = 0; jj < FA_BN; jj++)
        {
            float part = 0.0f;
#pragma unroll
            for (int e = 0; e < E; e++)
            {
                FaChunk kc = ks[jj * (DMAX / 4) + 4 * e + g];
                part += qr[4 * e] * kc.x + qr[4 * e + 1] * kc.y + qr[4 * e + 2] * kc.z + qr[4 * e + 3] * kc.w;
            }
            part += __shfl_xor_sync(0xffffffffu, part, 1);
            part += __shfl_xor_sync(0xffffffffu, part, 2);
            i64 j = j0 + jj;
            bool visible = live && j < S && j <= last;
            float sc = ninf;
            if (visible) sc = mask ? part + load<float>(mask, mdt, mbase + j * st.m[3]) : part;
            s[jj] = sc;
            mt = fmaxf(mt, sc);
        }
        if (mt == ninf) continue; // nothing visible to this row yet
        float corr = exp(m - mt); // m = -inf: 0
        l *= corr;
#pragma unroll
        for (int i = 0; i < 4 * E; i++) acc[i] *= corr;
#pragma unroll
        for (int jj = 0; jj < FA_BN; jj++)
        {
            float p = exp(s[jj] - mt); // hidden keys: exp(-inf) = 0
            l += p;
#pragma unroll
            for (int e = 0; e < E; e++)
            {
                FaChunk vc = vs[jj * (DMAX / 4) + 4 * e + g];
                acc[4 * e] += p * vc.x;
                acc[4 * e + 1] += p * vc.y;
                acc[4 * e + 2] += p * vc.z;
                acc[4 * e + 3] += p * vc.w;
            }
        }
        m = mt;
    }
    if (!live) return;
    const i64 obase = b * st.o[0] + h * st.o[1] + t * st.o[2];
#pragma unroll
    for (int e = 0; e < E; e++)
#pragma unroll
        for (int c = 0; c < 4; c++)
        {
            i64 d = 16 * e + 4 * g + c;
            if (d < Dv) store<float>(o, DT, obase + d * st.o[3], acc[4 * e + c] / l); // l = 0: NaN, as the composite
        }
    if (lse && g == 0) store<float>(lse, ldt, b * st.l[0] + h * st.l[1] + t * st.l[2], l > 0.0f ? m + log(l) : ninf);
}

// Grid: B·H·ceil(T / FA_BM) blocks of FA_THREADS threads. dt: DT_F32 or DT_BF16; max(D, Dv) <= FA_DMAX.
extern "C" __global__ void attention_flash_forward(const void* q, const void* k, const void* v, void* o, int dt, const void* mask, int mdt,
                                                   void* lse, int ldt, AttnStrides st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv,
                                                   int causal, i64 query_offset, double scale)
{
    __shared__ FaChunk ks[FA_BN * FA_DMAX / 4], vs[FA_BN * FA_DMAX / 4];
    bool small = D <= 64 && Dv <= 64;
    float sc = (float)scale;
    if (dt == DT_BF16)
    {
        if (small) flash_forward_tile<DT_BF16, 64>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, ks, vs);
        else flash_forward_tile<DT_BF16, 128>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, ks, vs);
    }
    else
    {
        if (small) flash_forward_tile<DT_F32, 64>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, ks, vs);
        else flash_forward_tile<DT_F32, 128>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, ks, vs);
    }
}
