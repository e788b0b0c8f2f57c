// dK and dV of the tensor-core flash-attention backward (CudaBackend.AttentionBackward; the dq kernel of
// attention_mma_backward.cu runs first and writes delta). Layouts and conventions: attention_mma.cu, attention_mma_backward.cu.
// 16 keys per warp with K and V as A fragments in registers, tiles of 32 queries (Q, dO staged in shared memory),
//   Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ, Pᵀ = exp(Sᵀ·scale + mask − lse), dSᵀ = Pᵀ ⊙ (dPᵀ − delta),
//   dV += Pᵀ·dO and dK += dSᵀ·Q.
// The second version of this kernel (the "2"): the first (one block per (batch, kv head, 64 keys), one kernel over the
// head dims) was deleted after the H200 run of 2026-11-27 (B4 H16 T2048 D128 fwd+bwd 2.511 ms against this one's 1.880;
// Qwen2-0.5B's B8 H14 Hkv2 T512 D64 0.430 against 0.231). What this one does differently, and why:
//  - Grouped-query heads: a block per (batch, kv head, 64 keys, split), the split taking a contiguous share of the
//    (query head, query tile) pairs of its keys; the launcher (CudaBackend.DkdvSplits) takes up to one split per query
//    head, for about 1024 blocks. A block per (batch, kv head, 64 keys) gave Hkv/H of the dq kernel's blocks: 7 times
//    fewer, each 7 times longer, for Qwen2-0.5B (14 heads over 2 kv heads; 128 blocks at bench train's batch 8 × 512,
//    under one wave on an H200). With splits > 1 each block writes float32 partial sums and
//    attention_mma_backward_dkdv2_reduce adds them in split order (deterministic, no atomics), scales dK and rounds to
//    bf16; with one split the block writes dK and dV.
//  - A kernel per head dim, each with its own register allocation: one kernel over the three spilled 172 bytes on
//    sm_90, the head dim 128 body alone ≤ 60; head dim 64 fits 168 registers (3 blocks per SM).
//  - lse and delta of the next tile come by cp.async with Q and dO (not plain loads in one warp right before the
//    barrier, which stopped all four warps for a global-memory latency every tile).
//  - No 64-bit division in the loop (the pair's head and tile are counters), and tiles wholly visible (no mask, inside
//    T and S, below the causal diagonal) skip the per-element visibility checks, as the forward does.
#include "attention_mma.cuh"

#define DKDV2_QT 32 // queries per tile

template <int D>
__device__ void mma_dkdv2_tile(const u16* q, const u16* k, const u16* v, const u16* dout, void* dk, void* dv, float* part,
                               const void* mask, int mdt, const float* lse, const float* delta, const FaBwdStrides& bs,
                               i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset, float scale, i64 splits,
                               u16* smem, float* ls, float* dls)
{
    constexpr int QT = DKDV2_QT, LD = D + MMA_PAD, KS = D / 16, DN = D / 8, QN = QT / 8;
    const AttnStrides& st = bs.a;
    const float ninf = -__int_as_float(0x7f800000);
    const float log2e = 1.4426950408889634f;
    const float sl2 = scale * log2e;
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    // Blocks in key-tile order (with a causal mask the first tiles see the most queries), splits of a tile adjacent.
    i64 BHP = B * Hkv * splits;
    i64 r = (i64)blockIdx.x % BHP, tile = (i64)blockIdx.x / BHP;
    i64 sp = r % splits, bh = r / splits;
    i64 b = bh / Hkv, hk = bh % Hkv, G = H / Hkv;
    i64 jb = tile * MMA_BN;
    i64 j0 = jb + warp * 16 + g, j1 = j0 + 8; // this thread's two keys
    bool live0 = j0 < S, live1 = j1 < S;
    unsigned ka[KS][4], va[KS][4];
    mma_load_a<KS>(ka, k, b * st.k[0] + hk * st.k[1] + j0 * st.k[2], st.k[2], st.k[3], live0, live1);
    mma_load_a<KS>(va, v, b * st.v[0] + hk * st.v[1] + j0 * st.v[2], st.v[2], st.v[3], live0, live1);
    float dka[DN][4], dva[DN][4];
#pragma unroll
    for (int n = 0; n < DN; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[n][e] = dva[n][e] = 0.0f;
    // Queries that see any key of this tile: t >= tile start − query_offset when causal.
    i64 tstart = 0;
    if (causal && jb - query_offset > 0) tstart = jb - query_offset;
    const int mi = lane >> 3, mr = lane & 7;
    // The tile's (query head, query tile) pairs in order, item = (h − hk·G)·nt + tile index; this split's share is
    // items [first, last). Q, dO, lse and delta of the i-th go to buffer i % 2 while the one before is computed.
    const i64 nt = T > tstart ? (T - tstart + QT - 1) / QT : 0, total = G * nt;
    const i64 first = total * sp / splits, last = total * (sp + 1) / splits;
    i64 h = hk * G + (nt > 0 ? first / nt : 0), tt = nt > 0 ? first % nt : 0; // the pair being computed
    auto issue = [&](int buf, i64 hh, i64 t0) {
        u16* qb = smem + buf * 2 * QT * LD;
        mma_stage_rows_async<D, LD, QT>(qb, q + b * st.q[0] + hh * st.q[1], st.q[2], t0, T);
        mma_stage_rows_async<D, LD, QT>(qb + QT * LD, dout + b * bs.dout[0] + hh * bs.dout[1], bs.dout[2], t0, T);
        if (tid < QT)
        {
            float* lsd = ls + buf * QT + tid;
            float* dld = dls + buf * QT + tid;
            if (t0 + tid < T)
            {
                i64 li = b * st.l[0] + hh * st.l[1] + (t0 + tid) * st.l[2];
                cp_async4(lsd, lse + li);
                cp_async4(dld, delta + li);
            }
            else
            {
                *lsd = ninf; // a row past T is hidden
                *dld = 0.0f;
            }
        }
        cp_async_commit();
    };
    const i64 n = last - first;
    if (n > 0) issue(0, h, tstart + tt * QT);
    i64 hn = h, tn = tt; // the pair after (h, tt)
    for (i64 i = 0; i < n; i++)
    {
        if (++tn == nt)
        {
            tn = 0;
            hn++;
        }
        if (i + 1 < n)
        {
            issue((int)((i + 1) & 1), hn, tstart + tn * QT); // into the buffer every warp finished with at the end of i − 1
            cp_async_wait<1>();
        }
        else cp_async_wait<0>();
        __syncthreads(); // pair i has landed for everyone
        const int buf = (int)(i & 1);
        const i64 t0 = tstart + tt * QT;
        const u16* qs = smem + buf * 2 * QT * LD;
        const u16* ds = qs + QT * LD;
        const float* lsb = ls + buf * QT;
        const float* dlsb = dls + buf * QT;
        {
            // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ (keys × queries): Q and dO rows are columns of the col-major B.
            float s[QN][4], dp[QN][4];
#pragma unroll
            for (int n = 0; n < QN; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KS; kk++)
#pragma unroll
                for (int np = 0; np < QN / 2; np++)
                {
                    unsigned qb[4], db[4];
                    int off = (16 * np + 8 * (mi >> 1) + mr) * LD + 16 * kk + 8 * (mi & 1);
                    ldmatrix_x4(qb, qs + off);
                    ldmatrix_x4(db, ds + off);
                    mma_bf16_16816(s[2 * np], ka[kk], qb);
                    mma_bf16_16816(s[2 * np + 1], ka[kk], qb + 2);
                    mma_bf16_16816(dp[2 * np], va[kk], db);
                    mma_bf16_16816(dp[2 * np + 1], va[kk], db + 2);
                }
            // Pᵀ and dSᵀ = Pᵀ ⊙ (dPᵀ − delta): element (key j, query t); lse and delta are per column. A tile with no
            // mask, inside T and S, whose first query sees the block's last key hides nothing, and its rows' lse are
            // finite (each sees a key).
            bool full = !mask && t0 + QT <= T && jb + MMA_BN <= S && (!causal || jb + MMA_BN - 1 <= query_offset + t0);
            if (full)
            {
#pragma unroll
                for (int n = 0; n < QN; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                    {
                        int c = 8 * n + 2 * tq + (e & 1);
                        float p = exp2f(s[n][e] * sl2 - lsb[c] * log2e);
                        s[n][e] = p;
                        dp[n][e] = p * (dp[n][e] - dlsb[c]);
                    }
            }
            else
            {
                const i64 mb0 = b * st.m[0] + h * st.m[1] + j0 * st.m[3], mb1 = mb0 + 8 * st.m[3];
                // In 32 bits, relative to the tile: query t0 + c exists when c < rows; key j is hidden from it by the
                // causal mask when j − query_offset − t0 > c (clamped: only the comparison with 0 .. QT − 1 matters).
                const int rows = (int)(T - t0 < QT ? T - t0 : QT);
                const i64 h0 = causal ? j0 - query_offset - t0 : -1, h1 = causal ? h0 + 8 : -1;
                const int hide0 = (int)(h0 < -1 ? -1 : h0 > QT ? QT : h0), hide1 = (int)(h1 < -1 ? -1 : h1 > QT ? QT : h1);
#pragma unroll
                for (int n = 0; n < QN; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                    {
                        int c = 8 * n + 2 * tq + (e & 1);
                        bool r0 = e < 2;
                        float lt = lsb[c] * log2e;
                        bool visible = (r0 ? live0 : live1) && c < rows && (r0 ? hide0 : hide1) <= c && lt != ninf;
                        float x = s[n][e] * sl2;
                        if (mask && visible) x += load<float>(mask, mdt, (r0 ? mb0 : mb1) + (t0 + c) * st.m[2]) * log2e;
                        float p = visible ? exp2f(x - lt) : 0.0f;
                        s[n][e] = p;
                        dp[n][e] = visible ? p * (dp[n][e] - dlsb[c]) : 0.0f; // a hidden row's delta may be NaN
                    }
            }
            // dV += Pᵀ·dO and dK += dSᵀ·Q over k-steps of 16 queries (dO and Q rows are rows of B: ldmatrix.trans).
#pragma unroll
            for (int kq = 0; kq < QN / 2; kq++)
            {
                unsigned pa[4] = {mma_pack_bf16(s[2 * kq][0], s[2 * kq][1]), mma_pack_bf16(s[2 * kq][2], s[2 * kq][3]),
                                  mma_pack_bf16(s[2 * kq + 1][0], s[2 * kq + 1][1]), mma_pack_bf16(s[2 * kq + 1][2], s[2 * kq + 1][3])};
                unsigned sa[4] = {mma_pack_bf16(dp[2 * kq][0], dp[2 * kq][1]), mma_pack_bf16(dp[2 * kq][2], dp[2 * kq][3]),
                                  mma_pack_bf16(dp[2 * kq + 1][0], dp[2 * kq + 1][1]), mma_pack_bf16(dp[2 * kq + 1][2], dp[2 * kq + 1][3])};
#pragma unroll
                for (int dp2 = 0; dp2 < DN / 2; dp2++)
                {
                    unsigned db[4], qb[4];
                    int off = (16 * kq + 8 * (mi & 1) + mr) * LD + 16 * dp2 + 8 * (mi >> 1);
                    ldmatrix_x4_trans(db, ds + off);
                    ldmatrix_x4_trans(qb, qs + off);
                    mma_bf16_16816(dva[2 * dp2], pa, db);
                    mma_bf16_16816(dva[2 * dp2 + 1], pa, db + 2);
                    mma_bf16_16816(dka[2 * dp2], sa, qb);
                    mma_bf16_16816(dka[2 * dp2 + 1], sa, qb + 2);
                }
            }
        }
        __syncthreads(); // every warp is done with buffer i % 2 (pair i + 2 goes there)
        h = hn;
        tt = tn;
    }
    if (splits == 1)
    {
        const i64 k0 = b * bs.dk[0] + hk * bs.dk[1] + j0 * bs.dk[2], k1 = k0 + 8 * bs.dk[2];
        const i64 v0 = b * bs.dv[0] + hk * bs.dv[1] + j0 * bs.dv[2], v1 = v0 + 8 * bs.dv[2];
        mma_store_c<DN>(dk, dka, k0, k1, bs.dk[3], scale, scale, live0, live1);
        mma_store_c<DN>(dv, dva, v0, v1, bs.dv[3], 1.0f, 1.0f, live0, live1);
        return;
    }
    // Partial sums, float32 [2][splits][B·Hkv][S][D] (dK's, then dV's), unscaled; every block writes its keys' rows.
    const i64 plane = B * Hkv * S * D, row0 = ((sp * B * Hkv + bh) * S + j0) * D;
    float* pk = part + row0;
    float* pv = part + splits * plane + row0;
#pragma unroll
    for (int nn = 0; nn < DN; nn++)
#pragma unroll
        for (int e = 0; e < 2; e++)
        {
            int d = 8 * nn + 2 * tq + e;
            if (live0) { pk[d] = dka[nn][e]; pv[d] = dva[nn][e]; }
            if (live1) { pk[8 * D + d] = dka[nn][2 + e]; pv[8 * D + d] = dva[nn][2 + e]; }
        }
}

// Grid: B·Hkv·ceil(S / MMA_BN)·splits blocks of MMA_THREADS threads; run after attention_mma_backward_dq (reads its
// delta). The launcher guarantees what the dq kernel needs; part: float32 scratch of
// 2·splits·B·Hkv·S·D elements when splits > 1 (then attention_mma_backward_dkdv2_reduce writes dk and dv), unused when 1.
template <int D>
__device__ __forceinline__ void mma_dkdv2(const void* q, const void* k, const void* v, const void* dout, void* dk, void* dv, float* part,
                                          const void* mask, int mdt, const float* lse, const float* delta, const FaBwdStrides& bs,
                                          i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset, double scale, i64 splits)
{
    __shared__ MmaChunk smem[2 * 2 * DKDV2_QT * (D + MMA_PAD) / 8]; // two buffers of Q and dO tiles
    __shared__ float ls[2 * DKDV2_QT], dls[2 * DKDV2_QT];
    mma_dkdv2_tile<D>((const u16*)q, (const u16*)k, (const u16*)v, (const u16*)dout, dk, dv, part, mask, mdt, lse, delta, bs,
                      B, H, Hkv, T, S, causal, query_offset, (float)scale, splits, (u16*)smem, ls, dls);
}

// Head dim 64 (Qwen2-0.5B's): three blocks per SM (168 registers, no spills), the others two.
extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_mma_backward_dkdv2_d64(const void* q, const void* k, const void* v, const void* dout, void* dk, void* dv, float* part, const void* mask, int mdt,
                                 const float* lse, const float* delta, FaBwdStrides bs, i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset,
                                 double scale, i64 splits)
{
    mma_dkdv2<64>(q, k, v, dout, dk, dv, part, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, causal, query_offset, scale, splits);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 2) attention_mma_backward_dkdv2_d80(const void* q, const void* k, const void* v, const void* dout, void* dk, void* dv, float* part, const void* mask, int mdt,
                                 const float* lse, const float* delta, FaBwdStrides bs, i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset,
                                 double scale, i64 splits)
{
    mma_dkdv2<80>(q, k, v, dout, dk, dv, part, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, causal, query_offset, scale, splits);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 2) attention_mma_backward_dkdv2_d128(const void* q, const void* k, const void* v, const void* dout, void* dk, void* dv, float* part, const void* mask, int mdt,
                                  const float* lse, const float* delta, FaBwdStrides bs, i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset,
                                  double scale, i64 splits)
{
    mma_dkdv2<128>(q, k, v, dout, dk, dv, part, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, causal, query_offset, scale, splits);
}

// dk = scale·Σ_splits partial dK, dv = Σ partial dV (in split order), rounded to bf16 at dk's and dv's strides.
// Grid-stride over the B·Hkv·S·D elements, D fastest (the partials' reads coalesce).
extern "C" __global__ void attention_mma_backward_dkdv2_reduce(const float* part, void* dk, void* dv, FaBwdStrides bs,
                                                               i64 B, i64 Hkv, i64 S, i64 D, i64 splits, double scale)
{
    const i64 plane = B * Hkv * S * D;
    const float sc = (float)scale;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < plane; e += (i64)gridDim.x * blockDim.x)
    {
        float sk = 0.0f, sv = 0.0f;
        for (i64 p = 0; p < splits; p++)
        {
            sk += part[p * plane + e];
            sv += part[(splits + p) * plane + e];
        }
        i64 d, j, b, hk;
        if (plane <= 0x7fffffffLL) // 32-bit division, several times cheaper than the 64-bit kind
        {
            unsigned u = (unsigned)e, row = u / (unsigned)D, bh = row / (unsigned)S;
            d = u % (unsigned)D; j = row % (unsigned)S; b = bh / (unsigned)Hkv; hk = bh % (unsigned)Hkv;
        }
        else
        {
            i64 row = e / D, bh = row / S;
            d = e % D; j = row % S; b = bh / Hkv; hk = bh % Hkv;
        }
        store<float>(dk, DT_BF16, b * bs.dk[0] + hk * bs.dk[1] + j * bs.dk[2] + d * bs.dk[3], sk * sc);
        store<float>(dv, DT_BF16, b * bs.dv[0] + hk * bs.dv[1] + j * bs.dv[2] + d * bs.dv[3], sv);
    }
}
