// Flash-attention backward on tensor cores, bf16 (FlashAttention-2's), from the forward's log-sum-exp
// (attention_mma.cu; layouts and conventions there): the same two kernels and the same parameters as the FMA pair
// of attention.cu (CudaBackend.AttentionBackward picks one pair or the other); deterministic, no atomics.
//  attention_mma_backward_dq: a block per (batch, head, 64 query rows), 16 rows per warp, Q and dO as A fragments in
//    registers; delta_t = dO_t·O_t (stored for the second kernel); per tile of 64 keys (K, V staged in shared memory):
//      S = Q·Kᵀ and dP = dO·Vᵀ (K and V rows read by ldmatrix as col-major B), P = exp(S·scale + mask − lse),
//      dS = P ⊙ (dP − delta), dQ += dS·K (dS as bf16 A fragments, K by ldmatrix.trans); dQ·scale at the end.
//  attention_mma_backward_dkdv: a block per (batch, kv head, 64 keys), 16 keys per warp, K and V as A fragments; for
//    every query head of the group, tiles of MMA_QT = 32 queries (Q, dO, lse, delta staged in shared memory):
//      Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ (Q and dO rows by ldmatrix), Pᵀ and dSᵀ as above,
//      dV += Pᵀ·dO and dK += dSᵀ·Q (Pᵀ, dSᵀ as bf16 A fragments, dO and Q by ldmatrix.trans); dK·scale at the end.
// A query row whose log-sum-exp is -inf (it sees no key) contributes nothing, as in the FMA kernels.
#include "attention_mma.cuh"

#define MMA_QT 32

template <int D>
__device__ void mma_backward_dq_tile(const u16* q, const u16* k, const u16* v, const u16* o, const u16* dout, void* dq,
                                     const void* mask, int mdt, const float* lse, float* delta, const FaBwdStrides& bs,
                                     i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset, float scale, u16* smem)
{
    constexpr int LD = D + MMA_PAD, KS = D / 16, DN = D / 8, SN = MMA_BN / 8;
    const AttnStrides& st = bs.a;
    const float ninf = -__int_as_float(0x7f800000);
    const float log2e = 1.4426950408889634f;
    const float sl2 = scale * log2e;
    u16* ks = smem;
    u16* vs = smem + MMA_BN * LD;
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    i64 BH = B * H, tiles = (T + MMA_BM - 1) / MMA_BM;
    i64 bh = (i64)blockIdx.x % BH, tile = tiles - 1 - (i64)blockIdx.x / BH;
    i64 b = bh / H, h = bh % H, hk = h / (H / Hkv);
    i64 t0 = tile * MMA_BM + warp * 16 + g, t1 = t0 + 8;
    bool live0 = t0 < T, live1 = t1 < T;
    unsigned qa[KS][4], da[KS][4];
    mma_load_a<KS>(qa, q, b * st.q[0] + h * st.q[1] + t0 * st.q[2], st.q[2], st.q[3], live0, live1);
    mma_load_a<KS>(da, dout, b * bs.dout[0] + h * bs.dout[1] + t0 * bs.dout[2], bs.dout[2], bs.dout[3], live0, live1);

    // delta = dO·O per row: this thread's dims (those of its dO fragments), then the quad's.
    float dl0 = 0.0f, dl1 = 0.0f;
    {
        const i64 ob0 = b * st.o[0] + h * st.o[1] + t0 * st.o[2], ob1 = ob0 + 8 * st.o[2];
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int half = 0; half < 2; half++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                {
                    i64 d = 16 * kk + 8 * half + 2 * tq + e;
                    if (live0) dl0 += bf16_to_f32(mma_half(da[kk][2 * half], e)) * bf16_to_f32(o[ob0 + d * st.o[3]]);
                    if (live1) dl1 += bf16_to_f32(mma_half(da[kk][2 * half + 1], e)) * bf16_to_f32(o[ob1 + d * st.o[3]]);
                }
    }
    dl0 += __shfl_xor_sync(0xffffffffu, dl0, 1);
    dl0 += __shfl_xor_sync(0xffffffffu, dl0, 2);
    dl1 += __shfl_xor_sync(0xffffffffu, dl1, 1);
    dl1 += __shfl_xor_sync(0xffffffffu, dl1, 2);
    const i64 li0 = b * st.l[0] + h * st.l[1] + t0 * st.l[2], li1 = li0 + 8 * st.l[2];
    if (tq == 0)
    {
        if (live0) delta[li0] = dl0;
        if (live1) delta[li1] = dl1;
    }
    // log-sum-exp in log2 units; -inf (no visible key, or a row past T) hides the whole row
    float lt0 = live0 ? lse[li0] * log2e : ninf, lt1 = live1 ? lse[li1] * log2e : ninf;

    float acc[DN][4];
#pragma unroll
    for (int n = 0; n < DN; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    i64 kend = causal_key_end(causal, tile * MMA_BM, MMA_BM, T, S, query_offset);
    const i64 kbase = b * st.k[0] + hk * st.k[1], vbase = b * st.v[0] + hk * st.v[1];
    const i64 mb0 = b * st.m[0] + h * st.m[1] + t0 * st.m[2], mb1 = mb0 + 8 * st.m[2];
    const int mi = lane >> 3, mr = lane & 7;
    // K and V tiles by cp.async: V first (dP needs only V), the next V while S, dS and dQ are computed, the next K
    // while dP is.
    if (kend > 0)
    {
        mma_stage_async<D, LD>(vs, v, vbase, st.v[2], 0, S);
        cp_async_commit();
        mma_stage_async<D, LD>(ks, k, kbase, st.k[2], 0, S);
        cp_async_commit();
    }
    for (i64 j0 = 0; j0 < kend; j0 += MMA_BN)
    {
        bool next = j0 + MMA_BN < kend;
        cp_async_wait<1>(); // the V tile has landed (the K tile may still be on its way)
        __syncthreads();
        // dP = dO·Vᵀ and S = Q·Kᵀ: V and K rows are columns of the col-major B (addressing as in the forward).
        float s[SN][4], dp[SN][4];
#pragma unroll
        for (int n = 0; n < SN; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int np = 0; np < SN / 2; np++)
            {
                unsigned vb[4];
                ldmatrix_x4(vb, vs + (16 * np + 8 * (mi >> 1) + mr) * LD + 16 * kk + 8 * (mi & 1));
                mma_bf16_16816(dp[2 * np], da[kk], vb);
                mma_bf16_16816(dp[2 * np + 1], da[kk], vb + 2);
            }
        cp_async_wait<0>(); // the K tile has landed
        __syncthreads();    // for everyone; and every warp is done with the V tile
        if (next)
        {
            mma_stage_async<D, LD>(vs, v, vbase, st.v[2], j0 + MMA_BN, S);
            cp_async_commit();
        }
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int np = 0; np < SN / 2; np++)
            {
                unsigned kb[4];
                ldmatrix_x4(kb, ks + (16 * np + 8 * (mi >> 1) + mr) * LD + 16 * kk + 8 * (mi & 1));
                mma_bf16_16816(s[2 * np], qa[kk], kb);
                mma_bf16_16816(s[2 * np + 1], qa[kk], kb + 2);
            }
        // dS = P ⊙ (dP − delta), P = 0 for hidden keys and hidden rows.
#pragma unroll
        for (int n = 0; n < SN; n++)
#pragma unroll
            for (int e = 0; e < 4; e++)
            {
                i64 j = j0 + 8 * n + 2 * tq + (e & 1);
                bool r0 = e < 2;
                i64 t = r0 ? t0 : t1;
                float lt = r0 ? lt0 : lt1;
                bool visible = j < S && !(causal && j > query_offset + t) && lt != ninf;
                float x = s[n][e] * sl2;
                if (mask && visible) x += load<float>(mask, mdt, (r0 ? mb0 : mb1) + j * st.m[3]) * log2e;
                // a hidden row's delta may be NaN (its o is): 0, not 0·NaN
                s[n][e] = visible ? exp2f(x - lt) * (dp[n][e] - (r0 ? dl0 : dl1)) : 0.0f;
            }
        // dQ += dS·K over k-steps of 16 keys: B[key][dim] = K[key][dim], rows of K are rows of B (as V in the forward).
        mma_acc_pb<SN, DN, LD>(acc, s, ks);
        __syncthreads(); // every warp is done with the K tile
        if (next)
        {
            mma_stage_async<D, LD>(ks, k, kbase, st.k[2], j0 + MMA_BN, S);
            cp_async_commit();
        }
    }
    const i64 q0 = b * bs.dq[0] + h * bs.dq[1] + t0 * bs.dq[2], q1 = q0 + 8 * bs.dq[2];
    mma_store_c<DN>(dq, acc, q0, q1, bs.dq[3], scale, scale, live0, live1);
}

template <int D>
__device__ void mma_backward_dkdv_tile(const u16* q, const u16* k, const u16* v, const u16* dout, void* dk, void* dv,
                                       const void* mask, int mdt, const float* lse, const float* delta, const FaBwdStrides& bs,
                                       i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset, float scale,
                                       u16* smem, float* ls, float* dls)
{
    constexpr int LD = D + MMA_PAD, KS = D / 16, DN = D / 8, QN = MMA_QT / 8;
    const AttnStrides& st = bs.a;
    const float ninf = -__int_as_float(0x7f800000);
    const float log2e = 1.4426950408889634f;
    const float sl2 = scale * log2e;
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    i64 BH = B * Hkv; // key tiles in order: with a causal mask the first ones see the most queries
    i64 bh = (i64)blockIdx.x % BH, tile = (i64)blockIdx.x / BH;
    i64 b = bh / Hkv, hk = bh % Hkv, G = H / Hkv;
    i64 j0 = tile * MMA_BN + warp * 16 + g, j1 = j0 + 8; // this thread's two keys
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
    if (causal && tile * MMA_BN - query_offset > 0) tstart = tile * MMA_BN - query_offset;
    const int mi = lane >> 3, mr = lane & 7;
    // The (query head, query tile) pairs in order, it = (h − hk·G)·nt + tile index; Q, dO, lse and delta of pair it
    // go to buffer it % 2 by cp.async while pair it − 1 is computed on the other.
    const i64 nt = T > tstart ? (T - tstart + MMA_QT - 1) / MMA_QT : 0, total = G * nt;
    auto issue = [&](i64 it) {
        int buf = (int)(it & 1);
        i64 h = hk * G + it / nt, t0 = tstart + (it % nt) * MMA_QT;
        u16* qb = smem + buf * 2 * MMA_QT * LD;
        mma_stage_async<D, LD, MMA_QT>(qb, q, b * st.q[0] + h * st.q[1], st.q[2], t0, T);
        mma_stage_async<D, LD, MMA_QT>(qb + MMA_QT * LD, dout, b * bs.dout[0] + h * bs.dout[1], bs.dout[2], t0, T);
        cp_async_commit();
        if (tid < MMA_QT)
        {
            i64 t = t0 + tid, li = b * st.l[0] + h * st.l[1] + t * st.l[2];
            ls[buf * MMA_QT + tid] = t < T ? lse[li] * log2e : ninf;
            dls[buf * MMA_QT + tid] = t < T ? delta[li] : 0.0f;
        }
    };
    if (total > 0) issue(0);
    for (i64 it = 0; it < total; it++)
    {
        if (it + 1 < total)
        {
            issue(it + 1); // into the buffer every warp finished with at the end of the previous pair
            cp_async_wait<1>();
        }
        else cp_async_wait<0>();
        __syncthreads(); // pair it has landed for everyone
        const int buf = (int)(it & 1);
        const i64 h = hk * G + it / nt, t0 = tstart + (it % nt) * MMA_QT;
        const u16* qs = smem + buf * 2 * MMA_QT * LD;
        const u16* ds = qs + MMA_QT * LD;
        const float* lsb = ls + buf * MMA_QT;
        const float* dlsb = dls + buf * MMA_QT;
        const i64 mb0 = b * st.m[0] + h * st.m[1] + j0 * st.m[3], mb1 = mb0 + 8 * st.m[3];
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
            // Pᵀ and dSᵀ = Pᵀ ⊙ (dPᵀ − delta): element (key j, query t); lse and delta are per column.
#pragma unroll
            for (int n = 0; n < QN; n++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                {
                    int c = 8 * n + 2 * tq + (e & 1);
                    i64 t = t0 + c;
                    bool r0 = e < 2;
                    i64 j = r0 ? j0 : j1;
                    float lt = lsb[c];
                    bool visible = (r0 ? live0 : live1) && t < T && !(causal && j > query_offset + t) && lt != ninf;
                    float x = s[n][e] * sl2;
                    if (mask && visible) x += load<float>(mask, mdt, (r0 ? mb0 : mb1) + t * st.m[2]) * log2e;
                    float p = visible ? exp2f(x - lt) : 0.0f;
                    s[n][e] = p;
                    dp[n][e] = visible ? p * (dp[n][e] - dlsb[c]) : 0.0f; // a hidden row's delta may be NaN
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
        __syncthreads(); // every warp is done with buffer it % 2 (pair it + 2 goes there)
    }
    const i64 k0 = b * bs.dk[0] + hk * bs.dk[1] + j0 * bs.dk[2], k1 = k0 + 8 * bs.dk[2];
    const i64 v0 = b * bs.dv[0] + hk * bs.dv[1] + j0 * bs.dv[2], v1 = v0 + 8 * bs.dv[2];
    mma_store_c<DN>(dk, dka, k0, k1, bs.dk[3], scale, scale, live0, live1);
    mma_store_c<DN>(dv, dva, v0, v1, bs.dv[3], 1.0f, 1.0f, live0, live1);
}

// Grid: B·H·ceil(T / MMA_BM) blocks of MMA_THREADS threads; lse and delta float32 in the lse's layout (delta written).
// The launcher guarantees what attention_mma_forward needs, for q, k, v, o and dO alike, and bf16 dq.
extern "C" __global__ void attention_mma_backward_dq(const void* q, const void* k, const void* v, const void* o, const void* dout, void* dq, int dt,
                                                     const void* mask, int mdt, const float* lse, float* delta, FaBwdStrides bs,
                                                     i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal, i64 query_offset, double scale)
{
    __shared__ MmaChunk smem[2 * MMA_BN * (MMA_DMAX + MMA_PAD) / 8];
    const u16 *qh = (const u16*)q, *kh = (const u16*)k, *vh = (const u16*)v, *oh = (const u16*)o, *dh = (const u16*)dout;
    float sc = (float)scale;
    if (D == 64) mma_backward_dq_tile<64>(qh, kh, vh, oh, dh, dq, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, causal, query_offset, sc, (u16*)smem);
    else if (D == 80) mma_backward_dq_tile<80>(qh, kh, vh, oh, dh, dq, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, causal, query_offset, sc, (u16*)smem);
    else mma_backward_dq_tile<128>(qh, kh, vh, oh, dh, dq, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, causal, query_offset, sc, (u16*)smem);
}

// Grid: B·Hkv·ceil(S / MMA_BN) blocks of MMA_THREADS threads; run after attention_mma_backward_dq (reads its delta).
extern "C" __global__ void attention_mma_backward_dkdv(const void* q, const void* k, const void* v, const void* dout, void* dk, void* dv, int dt,
                                                       const void* mask, int mdt, const float* lse, const float* delta, FaBwdStrides bs,
                                                       i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal, i64 query_offset, double scale)
{
    __shared__ MmaChunk smem[2 * 2 * MMA_QT * (MMA_DMAX + MMA_PAD) / 8]; // two buffers of Q and dO tiles
    __shared__ float ls[2 * MMA_QT], dls[2 * MMA_QT];
    const u16 *qh = (const u16*)q, *kh = (const u16*)k, *vh = (const u16*)v, *dh = (const u16*)dout;
    float sc = (float)scale;
    if (D == 64) mma_backward_dkdv_tile<64>(qh, kh, vh, dh, dk, dv, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, causal, query_offset, sc, (u16*)smem, ls, dls);
    else if (D == 80) mma_backward_dkdv_tile<80>(qh, kh, vh, dh, dk, dv, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, causal, query_offset, sc, (u16*)smem, ls, dls);
    else mma_backward_dkdv_tile<128>(qh, kh, vh, dh, dk, dv, mask, mdt, lse, delta, bs, B, H, Hkv, T, S, causal, query_offset, sc, (u16*)smem, ls, dls);
}
