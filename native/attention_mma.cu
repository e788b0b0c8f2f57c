// Flash attention on tensor cores, bf16 (FlashAttention-2's loop order), forward here, backward in
// attention_mma_backward.cu: the fast
// path of CudaBackend.Attention / AttentionBackward for bf16 with equal q/k and v head dims of 64, 80 or 128,
// contiguous head dims and 16-byte aligned K/V rows (and Q/dO rows for the backward); everything else takes the FMA
// kernels of attention.cu (same parameters).
//
// A block of MMA_THREADS = 128 threads (4 warps) owns 64 query rows of one (batch, head), 16 rows per warp.
// Each warp keeps its Q rows in registers as m16n8k16 A fragments, walks the keys in tiles of 64 staged in
// shared memory as bf16 (K and V, rows padded by 8 elements so that ldmatrix reads are free of bank
// conflicts), and per tile:
//   S = Q·Kᵀ          mma.m16n8k16 (B = K tile read with ldmatrix: a K row is a column of the col-major B),
//   online softmax    on the f32 C fragments, in the log2 domain (exp2, scale·log2e folded into one factor);
//                     a thread holds two rows (groupID, groupID + 8) and reduces across its quad with shuffles,
//   O += P·V          P rounded to bf16 and used in place as the A fragment (the C fragments of two adjacent
//                     key n-tiles are exactly the A fragment of a 16-key k-step), V read with ldmatrix.trans.
// Accumulation is float32. Covers causal with a query offset (key j visible to query t when
// j <= query_offset + t), an additive mask of any dtype and strides, grouped-query heads, any q/o strides,
// and the log-sum-exp (natural log, -inf for a row that sees no key; such a row's output is NaN, as the
// composite and the other kernels give).
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"; lane = 4·groupID
// + threadID_in_group, written g and tq here):
//   A (16×16, row): a0,a1: (g, 2tq+{0,1}); a2,a3: (g+8, 2tq+{0,1}); a4,a5: (g, 2tq+8+{0,1}); a6,a7: (g+8, 2tq+8+{0,1})
//   B (16×8, col):  b0,b1: (k 2tq+{0,1}, n g); b2,b3: (k 2tq+8+{0,1}, n g)
//   C (16×8):       c0,c1: (g, 2tq+{0,1}); c2,c3: (g+8, 2tq+{0,1})
// two 16-bit elements per 32-bit register, the lower-numbered one in the low half.
// ldmatrix .m8n8.x4 (PTX ISA, "ldmatrix"): lanes 8i..8i+7 give the row addresses of matrix i, lane l receives
// in register i the elements (row l/4, cols 2(l%4), 2(l%4)+1) of matrix i; with .trans the elements
// (rows 2(l%4), 2(l%4)+1, col l/4).
//
// Tiles move global → shared by cp.async, each while the other operand is being used (see the loops). The shared
// pieces (tile sizes, PTX wrappers, stager) are in attention_mma.cuh.
//
// tools/cuda-emu emulates mma.sync, ldmatrix, cvt.rn.bf16x2 and cp.async (it defines PARROT_CUDA_EMU and supplies
// the functions of the #ifndef block of attention_mma.cuh) and runs these kernels against float64 (flash_mma_test.cpp).
#include "attention_mma.cuh"

template <int D>
__device__ void mma_forward_tile(const u16* q, const u16* k, const u16* v, void* o, const void* mask, int mdt, void* lse, int ldt,
                                 const AttnStrides& st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset,
                                 float scale, u16* smem)
{
    constexpr int LD = D + MMA_PAD;
    constexpr int KS = D / 16; // k-steps of Q·Kᵀ
    constexpr int DN = D / 8;  // n-tiles of the output
    constexpr int SN = MMA_BN / 8; // n-tiles of a score tile
    const float ninf = -__int_as_float(0x7f800000);
    const float log2e = 1.4426950408889634f;
    const float sl2 = scale * log2e;
    u16* ks = smem;
    u16* vs = smem + MMA_BN * LD;
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    i64 BH = B * H, tiles = (T + MMA_BM - 1) / MMA_BM;
    i64 bh = (i64)blockIdx.x % BH, tile = tiles - 1 - (i64)blockIdx.x / BH; // longest causal tiles first
    i64 b = bh / H, h = bh % H, hk = h / (H / Hkv);
    i64 t0 = tile * MMA_BM + warp * 16 + g, t1 = t0 + 8; // this thread's two query rows
    bool live0 = t0 < T, live1 = t1 < T;

    // Q as A fragments: qa[kk] covers dims 16kk .. 16kk + 15.
    unsigned qa[KS][4];
    mma_load_a<KS>(qa, q, b * st.q[0] + h * st.q[1] + t0 * st.q[2], st.q[2], st.q[3], live0, live1);
    float acc[DN][4];
#pragma unroll
    for (int n = 0; n < DN; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float m0 = ninf, m1 = ninf, l0 = 0.0f, l1 = 0.0f; // running max (log2 units) and this thread's partial sums

    i64 kend = causal_key_end(causal, tile * MMA_BM, MMA_BM, T, S, query_offset);
    const i64 kbase = b * st.k[0] + hk * st.k[1], vbase = b * st.v[0] + hk * st.v[1];
    const i64 mb0 = b * st.m[0] + h * st.m[1] + t0 * st.m[2], mb1 = mb0 + 8 * st.m[2];
    // ldmatrix row addresses: lane l gives row l % 8 of matrix l / 8.
    const int mi = lane >> 3, mr = lane & 7;
    // K and V tiles arrive by cp.async, each while the other is in use: V of this tile during S = Q·Kᵀ and the
    // softmax, K of the next tile during P·V.
    if (kend > 0)
    {
        mma_stage_async<D, LD>(ks, k, kbase, st.k[2], 0, S);
        cp_async_commit();
    }
    for (i64 j0 = 0; j0 < kend; j0 += MMA_BN)
    {
        cp_async_wait<0>(); // this thread's part of the K tile has landed
        __syncthreads();    // everyone's; and every warp is done with the previous V tile
        mma_stage_async<D, LD>(vs, v, vbase, st.v[2], j0, S);
        cp_async_commit();

        // S = Q·Kᵀ. Matrices of one ldmatrix.x4: keys 16np + 8(mi/2) + 0..7, dims 16kk + 8(mi%2) + 0..7, so
        // registers 0,1 are the B fragment of key n-tile 2np and registers 2,3 that of n-tile 2np + 1.
        float s[SN][4];
#pragma unroll
        for (int n = 0; n < SN; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
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

        // Scores in log2 units, hidden keys at -inf; the tile's row maxima. A tile with no mask, inside S and
        // wholly below the causal diagonal of the block's first row hides nothing (rows past T score 0: unused).
        float mx0 = ninf, mx1 = ninf;
        bool full = !mask && j0 + MMA_BN <= S && (!causal || j0 + MMA_BN - 1 <= query_offset + tile * MMA_BM);
        if (full)
        {
#pragma unroll
            for (int n = 0; n < SN; n++)
            {
                s[n][0] *= sl2; s[n][1] *= sl2; s[n][2] *= sl2; s[n][3] *= sl2;
                mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
                mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
            }
        }
        else
        {
#pragma unroll
            for (int n = 0; n < SN; n++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                {
                    i64 j = j0 + 8 * n + 2 * tq + (e & 1);
                    i64 t = e < 2 ? t0 : t1;
                    bool visible = (e < 2 ? live0 : live1) && j < S && !(causal && j > query_offset + t);
                    float x = s[n][e] * sl2;
                    if (mask && visible) x += load<float>(mask, mdt, (e < 2 ? mb0 : mb1) + j * st.m[3]) * log2e; // no read past the mask
                    x = visible ? x : ninf;
                    s[n][e] = x;
                    if (e < 2) mx0 = fmaxf(mx0, x);
                    else mx1 = fmaxf(mx1, x);
                }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        // A row that has seen no key yet subtracts 0, so exp2(-inf - 0) = 0 instead of NaN.
        float mu0 = mn0 == ninf ? 0.0f : mn0, mu1 = mn1 == ninf ? 0.0f : mn1;
        float c0 = exp2f(m0 - mu0), c1 = exp2f(m1 - mu1); // m = -inf: 0
        m0 = mn0;
        m1 = mn1;
        l0 *= c0;
        l1 *= c1;
#pragma unroll
        for (int n = 0; n < DN; n++)
        {
            acc[n][0] *= c0; acc[n][1] *= c0;
            acc[n][2] *= c1; acc[n][3] *= c1;
        }
#pragma unroll
        for (int n = 0; n < SN; n++)
        {
            s[n][0] = exp2f(s[n][0] - mu0); s[n][1] = exp2f(s[n][1] - mu0);
            s[n][2] = exp2f(s[n][2] - mu1); s[n][3] = exp2f(s[n][3] - mu1);
            l0 += s[n][0] + s[n][1];
            l1 += s[n][2] + s[n][3];
        }

        cp_async_wait<0>(); // the V tile has landed
        __syncthreads();    // for everyone; and every warp is done with the K tile
        if (j0 + MMA_BN < kend)
        {
            mma_stage_async<D, LD>(ks, k, kbase, st.k[2], j0 + MMA_BN, S);
            cp_async_commit();
        }

        // O += P·V over k-steps of 16 keys (P rounded to bf16 in place as the A fragments, the V tile's rows are B's rows).
        mma_acc_pb<SN, DN, LD>(acc, s, vs);
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const i64 o0 = b * st.o[0] + h * st.o[1] + t0 * st.o[2], o1 = o0 + 8 * st.o[2];
    float r0 = 1.0f / l0, r1 = 1.0f / l1; // l = 0: 0·inf = NaN, as the composite
    mma_store_c<DN>(o, acc, o0, o1, st.o[3], r0, r1, live0, live1);
    if (lse && tq == 0)
    {
        const float ln2 = 0.6931471805599453f;
        const i64 lb = b * st.l[0] + h * st.l[1];
        if (live0) store<float>(lse, ldt, lb + t0 * st.l[2], l0 > 0.0f ? m0 * ln2 + logf(l0) : ninf);
        if (live1) store<float>(lse, ldt, lb + t1 * st.l[2], l1 > 0.0f ? m1 * ln2 + logf(l1) : ninf);
    }
}

// Grid: B·H·ceil(T / MMA_BM) blocks of MMA_THREADS threads. The launcher guarantees: q, k, v, o bf16; D = Dv, one of
// 64, 80, 128; k and v with unit dim stride, row strides a multiple of 8 elements and 16-byte aligned data.
// Same parameters as attention_flash_forward (dt and Dv are checked by the launcher, not used here).
extern "C" __global__ void attention_mma_forward(const void* q, const void* k, const void* v, void* o, int dt, const void* mask, int mdt,
                                                 void* lse, int ldt, AttnStrides st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv,
                                                 int causal, i64 query_offset, double scale)
{
    __shared__ MmaChunk smem[2 * MMA_BN * (MMA_DMAX + MMA_PAD) / 8];
    const u16* qh = (const u16*)q;
    const u16* kh = (const u16*)k;
    const u16* vh = (const u16*)v;
    float sc = (float)scale;
    if (D == 64) mma_forward_tile<64>(qh, kh, vh, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, causal, query_offset, sc, (u16*)smem);
    else if (D == 80) mma_forward_tile<80>(qh, kh, vh, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, causal, query_offset, sc, (u16*)smem);
    else mma_forward_tile<128>(qh, kh, vh, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, causal, query_offset, sc, (u16*)smem);
}

// The same forward as a kernel per head dim (CudaBackend.AttentionForwardPerDim; PARROT_ATTENTION_FWD=v1 keeps
// attention_mma_forward above), same parameters. One kernel over the three head dims takes the registers of the largest
// (224–228), so head dim 64 ran 2 blocks per SM; alone it needs 152–165 and fits 168, 3 blocks (12 warps) per SM, with
// shared memory sized for its own rows.
template <int D>
__device__ __forceinline__ void mma_forward_dim(const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt,
                                                const AttnStrides& st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset, double scale)
{
    __shared__ MmaChunk smem[2 * MMA_BN * (D + MMA_PAD) / 8];
    mma_forward_tile<D>((const u16*)q, (const u16*)k, (const u16*)v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, causal, query_offset, (float)scale, (u16*)smem);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_mma_forward_d64(const void* q, const void* k, const void* v, void* o, int dt, const void* mask, int mdt,
                                                 void* lse, int ldt, AttnStrides st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv,
                                                 int causal, i64 query_offset, double scale)
{
    mma_forward_dim<64>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, causal, query_offset, scale);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_mma_forward_d80(const void* q, const void* k, const void* v, void* o, int dt, const void* mask, int mdt,
                                                 void* lse, int ldt, AttnStrides st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv,
                                                 int causal, i64 query_offset, double scale)
{
    mma_forward_dim<80>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, causal, query_offset, scale);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 2) attention_mma_forward_d128(const void* q, const void* k, const void* v, void* o, int dt, const void* mask, int mdt,
                                                 void* lse, int ldt, AttnStrides st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv,
                                                 int causal, i64 query_offset, double scale)
{
    mma_forward_dim<128>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, causal, query_offset, scale);
}
