// Scaled-dot-product attention forward, o = softmax(q·kᵀ·scale + mask)·v, without materialising the scores:
// one warp per query row walks the keys with an online softmax (FlashAttention's recurrence). A first,
// simple kernel (correct for any strides, grouped-query heads, causal and additive masks, head dims up to
// 256), float32 math (float64 for f64 tensors); the fallback for what the tiled kernel below
// (attention_flash_forward: f32/bf16, head dims up to 128) does not cover.
#include "prelude.cuh"

#define ATT_MAX_PER_LANE 8 // head dims up to 32 × 8 = 256

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

// Loads a row into registers as this thread's share of it (thread g of the row owns dims 16e + 4g .. 16e + 4g + 3,
// e < E): x[4e + c] = px[xbase + d·xs] · scale for d = 16e + 4g + c, zero past the row's xn dims and for a row that
// is not live; with PAIR, a second row into y alike (element by element with the first, unscaled).
template <int DT, int E, bool PAIR>
__device__ __forceinline__ void flash_load_rows(bool live, int g, float scale, float* x, const void* px, i64 xbase, i64 xs, i64 xn,
                                                float* y = nullptr, const void* py = nullptr, i64 ybase = 0, i64 ys = 0, i64 yn = 0)
{
#pragma unroll
    for (int e = 0; e < E; e++)
#pragma unroll
        for (int c = 0; c < 4; c++)
        {
            i64 d = 16 * e + 4 * g + c;
            x[4 * e + c] = live && d < xn ? load<float>(px, DT, xbase + d * xs) * scale : 0.0f;
            if (PAIR) y[4 * e + c] = live && d < yn ? load<float>(py, DT, ybase + d * ys) : 0.0f;
        }
}

// Stages rows r0 .. r0 + FA_BN - 1 of two tensors into shared memory as float32 rows of DMAX dims (all the block's
// threads take part; the caller synchronises): af[(r - r0)·DMAX + d] = a[abase + r·as[2] + d·as[3]], zero for rows
// r >= rows and dims d >= ad; likewise b into bf (as, bs: the tensors' [B, H, rows, dims] strides).
template <int DT, int DMAX>
__device__ __forceinline__ void flash_stage_tiles(float* af, const void* a, i64 abase, const i64* as, i64 ad,
                                                  float* bf, const void* b, i64 bbase, const i64* bs, i64 bd, i64 r0, i64 rows)
{
    for (int i = threadIdx.x; i < FA_BN * DMAX; i += FA_THREADS)
    {
        int rr = i / DMAX, d = i % DMAX;
        i64 r = r0 + rr;
        af[rr * DMAX + d] = r < rows && d < ad ? load<float>(a, DT, abase + r * as[2] + d * as[3]) : 0.0f;
        bf[rr * DMAX + d] = r < rows && d < bd ? load<float>(b, DT, bbase + r * bs[2] + d * bs[3]) : 0.0f;
    }
}

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
    flash_load_rows<DT, E, false>(live, g, scale, qr, q, b * st.q[0] + h * st.q[1] + t * st.q[2], st.q[3], D);
#pragma unroll
    for (int i = 0; i < 4 * E; i++) acc[i] = 0.0f;
    float m = ninf, l = 0.0f;
    i64 last = causal ? query_offset + t : S - 1;                // the last key this row sees
    i64 kend = causal_key_end(causal, tile * FA_BM, FA_BM, T, S, query_offset); // keys any row of the tile sees: [0, kend)
    const i64 kbase = b * st.k[0] + hk * st.k[1], vbase = b * st.v[0] + hk * st.v[1];
    const i64 mbase = b * st.m[0] + h * st.m[1] + t * st.m[2];
    float* kf = (float*)ks;
    float* vf = (float*)vs;
    for (i64 j0 = 0; j0 < kend; j0 += FA_BN)
    {
        __syncthreads(); // the previous tile is no longer read
        flash_stage_tiles<DT, DMAX>(kf, k, kbase, st.k, D, vf, v, vbase, st.v, Dv, j0, S);
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
        float corr = expf(m - mt); // m = -inf: 0
        l *= corr;
#pragma unroll
        for (int i = 0; i < 4 * E; i++) acc[i] *= corr;
#pragma unroll
        for (int jj = 0; jj < FA_BN; jj++)
        {
            float p = expf(s[jj] - mt); // hidden keys: expf(-inf) = 0
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
    if (lse && g == 0) store<float>(lse, ldt, b * st.l[0] + h * st.l[1] + t * st.l[2], l > 0.0f ? m + logf(l) : ninf);
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

// ---------------------------------------------------------------------------------------------------------------
// Flash-attention backward (FMA math, deterministic: no atomics), from the forward's saved log-sum-exp, in two
// kernels with the forward's thread layout (four threads per row, 256 threads, 64 rows per block):
//  attention_flash_backward_dq: a block per (batch, head, 64 query rows); computes delta_t = dO_t·O_t (stored for
//    the second kernel), walks the key tiles recomputing p = exp(s·scale + mask − lse) and dp = dO·v, and
//    accumulates dQ = scale · Σ_j p (dp − delta) k_j in registers.
//  attention_flash_backward_dkdv: a block per (batch, kv head, 64 keys); walks the query heads of the group and
//    their query tiles (Q, dO, lse and delta staged through shared memory) and accumulates
//    dV = Σ_t p dO_t and dK = scale · Σ_t p (dp − delta_t) q_t in registers.
// Launched by CudaBackend.AttentionBackward (IBackend.AttentionBackward, which the autograd attention rule calls).
template <int DT, int DMAX>
__device__ void flash_backward_dq_tile(const void* q, const void* k, const void* v, const void* o, const void* dout, void* dq,
                                       const void* mask, int mdt, const float* lse, float* delta, const FaBwdStrides& bs,
                                       i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal, i64 query_offset,
                                       float scale, FaChunk* ks, FaChunk* vs)
{
    constexpr int E = DMAX / 16;
    const AttnStrides& st = bs.a;
    const float ninf = -__int_as_float(0x7f800000);
    int tid = threadIdx.x, r = tid >> 2, g = tid & 3;
    i64 BH = B * H, tiles = (T + FA_BM - 1) / FA_BM;
    i64 bh = (i64)blockIdx.x % BH, tile = tiles - 1 - (i64)blockIdx.x / BH;
    i64 b = bh / H, h = bh % H, hk = h / (H / Hkv);
    i64 t = tile * FA_BM + r;
    bool live = t < T;
    float qr[4 * E], dor[4 * E], acc[4 * E];
    flash_load_rows<DT, E, true>(live, g, 1.0f, qr, q, b * st.q[0] + h * st.q[1] + t * st.q[2], st.q[3], D,
                                 dor, dout, b * bs.dout[0] + h * bs.dout[1] + t * bs.dout[2], bs.dout[3], Dv);
    float dl = 0.0f; // delta_t = dO_t·O_t, this thread's dims, then the row's
#pragma unroll
    for (int e = 0; e < E; e++)
#pragma unroll
        for (int c = 0; c < 4; c++)
        {
            i64 d = 16 * e + 4 * g + c;
            if (live && d < Dv) dl += dor[4 * e + c] * load<float>(o, DT, b * st.o[0] + h * st.o[1] + t * st.o[2] + d * st.o[3]);
            acc[4 * e + c] = 0.0f;
        }
    dl += __shfl_xor_sync(0xffffffffu, dl, 1);
    dl += __shfl_xor_sync(0xffffffffu, dl, 2);
    const i64 li = b * st.l[0] + h * st.l[1] + t * st.l[2];
    float lt = live ? lse[li] : ninf;
    if (live && g == 0 && delta) delta[li] = dl;
    i64 last = causal ? query_offset + t : S - 1;
    i64 kend = causal_key_end(causal, tile * FA_BM, FA_BM, T, S, query_offset);
    const i64 kbase = b * st.k[0] + hk * st.k[1], vbase = b * st.v[0] + hk * st.v[1];
    const i64 mbase = b * st.m[0] + h * st.m[1] + t * st.m[2];
    float* kf = (float*)ks;
    float* vf = (float*)vs;
    for (i64 j0 = 0; j0 < kend; j0 += FA_BN)
    {
        __syncthreads();
        flash_stage_tiles<DT, DMAX>(kf, k, kbase, st.k, D, vf, v, vbase, st.v, Dv, j0, S);
        __syncthreads();
#pragma unroll 4
        for (int jj = 0; jj < FA_BN; jj++)
        {
            float sp = 0.0f, dp = 0.0f;
#pragma unroll
            for (int e = 0; e < E; e++)
            {
                FaChunk kc = ks[jj * (DMAX / 4) + 4 * e + g], vc = vs[jj * (DMAX / 4) + 4 * e + g];
                sp += qr[4 * e] * kc.x + qr[4 * e + 1] * kc.y + qr[4 * e + 2] * kc.z + qr[4 * e + 3] * kc.w;
                dp += dor[4 * e] * vc.x + dor[4 * e + 1] * vc.y + dor[4 * e + 2] * vc.z + dor[4 * e + 3] * vc.w;
            }
            sp += __shfl_xor_sync(0xffffffffu, sp, 1);
            sp += __shfl_xor_sync(0xffffffffu, sp, 2);
            dp += __shfl_xor_sync(0xffffffffu, dp, 1);
            dp += __shfl_xor_sync(0xffffffffu, dp, 2);
            i64 j = j0 + jj;
            if (!(live && j < S && j <= last) || lt == ninf) continue;
            float s = sp * scale;
            if (mask) s += load<float>(mask, mdt, mbase + j * st.m[3]);
            float ds = expf(s - lt) * (dp - dl);
#pragma unroll
            for (int e = 0; e < E; e++)
            {
                FaChunk kc = ks[jj * (DMAX / 4) + 4 * e + g];
                acc[4 * e] += ds * kc.x;
                acc[4 * e + 1] += ds * kc.y;
                acc[4 * e + 2] += ds * kc.z;
                acc[4 * e + 3] += ds * kc.w;
            }
        }
    }
    if (!live) return;
#pragma unroll
    for (int e = 0; e < E; e++)
#pragma unroll
        for (int c = 0; c < 4; c++)
        {
            i64 d = 16 * e + 4 * g + c;
            if (d < D) store<float>(dq, DT, b * bs.dq[0] + h * bs.dq[1] + t * bs.dq[2] + d * bs.dq[3], acc[4 * e + c] * scale);
        }
}

template <int DT, int DMAX>
__device__ void flash_backward_dkdv_tile(const void* q, const void* k, const void* v, const void* dout, void* dk, void* dv,
                                         const void* mask, int mdt, const float* lse, const float* delta, const FaBwdStrides& bs,
                                         i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal, i64 query_offset,
                                         float scale, FaChunk* qs, FaChunk* ds_, float* ls, float* dls)
{
    constexpr int E = DMAX / 16;
    const AttnStrides& st = bs.a;
    const float ninf = -__int_as_float(0x7f800000);
    int tid = threadIdx.x, r = tid >> 2, g = tid & 3;
    i64 BH = B * Hkv; // key tiles in order: with a causal mask the first ones see the most queries
    i64 bh = (i64)blockIdx.x % BH, tile = (i64)blockIdx.x / BH;
    i64 b = bh / Hkv, hk = bh % Hkv, G = H / Hkv;
    i64 j = tile * FA_BM + r;
    bool live = j < S;
    float kr[4 * E], vr[4 * E], dka[4 * E], dva[4 * E];
    flash_load_rows<DT, E, true>(live, g, 1.0f, kr, k, b * st.k[0] + hk * st.k[1] + j * st.k[2], st.k[3], D,
                                 vr, v, b * st.v[0] + hk * st.v[1] + j * st.v[2], st.v[3], Dv);
#pragma unroll
    for (int i = 0; i < 4 * E; i++) dka[i] = dva[i] = 0.0f;
    // Queries that see any key of this tile: t >= tile start − query_offset when causal.
    i64 tstart = 0;
    if (causal && tile * FA_BM - query_offset > 0) tstart = tile * FA_BM - query_offset;
    float* qf = (float*)qs;
    float* df = (float*)ds_;
    for (i64 h = hk * G; h < hk * G + G; h++)
        for (i64 t0 = tstart; t0 < T; t0 += FA_BN)
        {
            __syncthreads();
            flash_stage_tiles<DT, DMAX>(qf, q, b * st.q[0] + h * st.q[1], st.q, D, df, dout, b * bs.dout[0] + h * bs.dout[1], bs.dout, Dv, t0, T);
            if (tid < FA_BN)
            {
                i64 t = t0 + tid, li = b * st.l[0] + h * st.l[1] + t * st.l[2];
                ls[tid] = t < T ? lse[li] : ninf;
                dls[tid] = t < T ? delta[li] : 0.0f;
            }
            __syncthreads();
#pragma unroll 4
            for (int tt = 0; tt < FA_BN; tt++)
            {
                float sp = 0.0f, dp = 0.0f;
#pragma unroll
                for (int e = 0; e < E; e++)
                {
                    FaChunk qc = qs[tt * (DMAX / 4) + 4 * e + g], dc = ds_[tt * (DMAX / 4) + 4 * e + g];
                    sp += kr[4 * e] * qc.x + kr[4 * e + 1] * qc.y + kr[4 * e + 2] * qc.z + kr[4 * e + 3] * qc.w;
                    dp += vr[4 * e] * dc.x + vr[4 * e + 1] * dc.y + vr[4 * e + 2] * dc.z + vr[4 * e + 3] * dc.w;
                }
                sp += __shfl_xor_sync(0xffffffffu, sp, 1);
                sp += __shfl_xor_sync(0xffffffffu, sp, 2);
                dp += __shfl_xor_sync(0xffffffffu, dp, 1);
                dp += __shfl_xor_sync(0xffffffffu, dp, 2);
                i64 t = t0 + tt;
                float lt = ls[tt];
                if (!live || t >= T || (causal && j > query_offset + t) || lt == ninf) continue;
                float s = sp * scale;
                if (mask) s += load<float>(mask, mdt, b * st.m[0] + h * st.m[1] + t * st.m[2] + j * st.m[3]);
                float p = expf(s - lt), dsc = p * (dp - dls[tt]);
#pragma unroll
                for (int e = 0; e < E; e++)
                {
                    FaChunk qc = qs[tt * (DMAX / 4) + 4 * e + g], dc = ds_[tt * (DMAX / 4) + 4 * e + g];
                    dva[4 * e] += p * dc.x;
                    dva[4 * e + 1] += p * dc.y;
                    dva[4 * e + 2] += p * dc.z;
                    dva[4 * e + 3] += p * dc.w;
                    dka[4 * e] += dsc * qc.x;
                    dka[4 * e + 1] += dsc * qc.y;
                    dka[4 * e + 2] += dsc * qc.z;
                    dka[4 * e + 3] += dsc * qc.w;
                }
            }
        }
    if (!live) return;
#pragma unroll
    for (int e = 0; e < E; e++)
#pragma unroll
        for (int c = 0; c < 4; c++)
        {
            i64 d = 16 * e + 4 * g + c;
            if (d < D) store<float>(dk, DT, b * bs.dk[0] + hk * bs.dk[1] + j * bs.dk[2] + d * bs.dk[3], dka[4 * e + c] * scale);
            if (d < Dv) store<float>(dv, DT, b * bs.dv[0] + hk * bs.dv[1] + j * bs.dv[2] + d * bs.dv[3], dva[4 * e + c]);
        }
}

// Grid: B·H·ceil(T / FA_BM) blocks of FA_THREADS threads; lse and delta float32 in the lse's layout (delta written).
extern "C" __global__ void attention_flash_backward_dq(const void* q, const void* k, const void* v, const void* o, const void* dout, void* dq, int dt,
                                                       const void* mask, int mdt, const float* lse, float* delta, FaBwdStrides bs,
                                                       i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal, i64 query_offset, double scale)
{
    __shared__ FaChunk ks[FA_BN * FA_DMAX / 4], vs[FA_BN * FA_DMAX / 4];
    bool small = D <= 64 && Dv <= 64;
    float sc = (float)scale;
    if (dt == DT_BF16)
    {
        if (small) flash_backward_dq_tile<DT_BF16, 64>(q, k, v, o, dout, dq, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, ks, vs);
        else flash_backward_dq_tile<DT_BF16, 128>(q, k, v, o, dout, dq, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, ks, vs);
    }
    else
    {
        if (small) flash_backward_dq_tile<DT_F32, 64>(q, k, v, o, dout, dq, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, ks, vs);
        else flash_backward_dq_tile<DT_F32, 128>(q, k, v, o, dout, dq, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, ks, vs);
    }
}

// Grid: B·Hkv·ceil(S / FA_BM) blocks of FA_THREADS threads; run after attention_flash_backward_dq (reads its delta).
extern "C" __global__ void attention_flash_backward_dkdv(const void* q, const void* k, const void* v, const void* dout, void* dk, void* dv, int dt,
                                                         const void* mask, int mdt, const float* lse, const float* delta, FaBwdStrides bs,
                                                         i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal, i64 query_offset, double scale)
{
    __shared__ FaChunk qs[FA_BN * FA_DMAX / 4], ds_[FA_BN * FA_DMAX / 4];
    __shared__ float ls[FA_BN], dls[FA_BN];
    bool small = D <= 64 && Dv <= 64;
    float sc = (float)scale;
    if (dt == DT_BF16)
    {
        if (small) flash_backward_dkdv_tile<DT_BF16, 64>(q, k, v, dout, dk, dv, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, qs, ds_, ls, dls);
        else flash_backward_dkdv_tile<DT_BF16, 128>(q, k, v, dout, dk, dv, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, qs, ds_, ls, dls);
    }
    else
    {
        if (small) flash_backward_dkdv_tile<DT_F32, 64>(q, k, v, dout, dk, dv, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, qs, ds_, ls, dls);
        else flash_backward_dkdv_tile<DT_F32, 128>(q, k, v, dout, dk, dv, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, qs, ds_, ls, dls);
    }
}
