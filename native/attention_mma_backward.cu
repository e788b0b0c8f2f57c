// Flash-attention backward on tensor cores, bf16 (FlashAttention-2's), from the forward's log-sum-exp
// (attention_mma.cu; layouts and conventions there): the dq kernel here, with the FMA dq kernel's parameters
// (attention_flash_backward_dq of attention.cu), then dK and dV by attention_mma_dkdv2.cu (CudaBackend.AttentionBackward
// picks these or the FMA pair); deterministic, no atomics.
//  attention_mma_backward_dq: a block per (batch, head, 64 query rows), 16 rows per warp, Q and dO as A fragments in
//    registers; delta_t = dO_t·O_t (stored for the dK/dV kernel); per tile of 64 keys (K, V staged in shared memory):
//      S = Q·Kᵀ and dP = dO·Vᵀ (K and V rows read by ldmatrix as col-major B), P = exp(S·scale + mask − lse),
//      dS = P ⊙ (dP − delta), dQ += dS·K (dS as bf16 A fragments, K by ldmatrix.trans); dQ·scale at the end.
// A query row whose log-sum-exp is -inf (it sees no key) contributes nothing, as in the FMA kernels.
#include "attention_mma.cuh"

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

// Grid: B·H·ceil(T / MMA_BM) blocks of MMA_THREADS threads; lse and delta float32 in the lse's layout (delta written).
// The launcher guarantees what the forward kernels need (attention_mma.cu), for q, k, v, o and dO alike, and bf16 dq.
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
