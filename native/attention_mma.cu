// Flash attention on tensor cores, bf16 (FlashAttention-2's loop order), forward here, backward in
// attention_mma_backward.cu and attention_mma_dkdv2.cu: our path of CudaBackend.Attention / AttentionBackward for bf16
// with equal q/k and v head dims of 64, 80 or 128, contiguous head dims and 16-byte aligned K/V rows (and Q/dO rows for
// the backward), where cuDNN's fused attention does not run them (CudaBackend.CudnnAttention); everything else takes
// the FMA kernels of attention.cu (same parameters).
//
// A block of MMA_THREADS = 128 threads (4 warps) owns 64 query rows of one (batch, head), 16 rows per warp (the 128-row
// kernels at the end: 32 rows per warp).
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

// MT: m16 tiles per warp (rows 16·MT, block rows MMA_BM·MT). MT = 1: the kernels below; MT = 2 (attention_mma_forward_m128_d128,
// FlashAttention-2's split for head dim 128): every K/V fragment one ldmatrix reads feeds 2·MT mmas instead of 2, half
// the shared-memory reads per FLOP, for twice the accumulators. Each row's arithmetic is the same for either MT (keys
// a row does not see score -inf and add exact zeros), so the outputs are bit for bit the same.
template <int D, int MT = 1>
__device__ void mma_forward_tile(const u16* q, const u16* k, const u16* v, void* o, const void* mask, int mdt, void* lse, int ldt,
                                 const AttnStrides& st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset,
                                 float scale, u16* smem)
{
    constexpr int LD = D + MMA_PAD;
    constexpr int KS = D / 16; // k-steps of Q·Kᵀ
    constexpr int DN = D / 8;  // n-tiles of the output
    constexpr int SN = MMA_BN / 8; // n-tiles of a score tile
    constexpr int BM = MMA_BM * MT; // query rows per block
    const float ninf = -__int_as_float(0x7f800000);
    const float log2e = 1.4426950408889634f;
    const float sl2 = scale * log2e;
    u16* ks = smem;
    u16* vs = smem + MMA_BN * LD;
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    i64 BH = B * H, tiles = (T + BM - 1) / BM;
    i64 bh = (i64)blockIdx.x % BH, tile = tiles - 1 - (i64)blockIdx.x / BH; // longest causal tiles first
    i64 b = bh / H, h = bh % H, hk = h / (H / Hkv);
    const i64 tw = tile * BM + warp * 16 * MT + g; // this thread's rows: tw + 16mt (r = 0) and tw + 16mt + 8 (r = 1)

    // Q as A fragments: qa[mt][kk] covers rows 16mt .. 16mt + 15 of the warp's, dims 16kk .. 16kk + 15. MT = 1 keeps
    // them in registers for the whole loop; MT > 1 would need 64 more registers than there are (head dim 128), so Q waits
    // in shared memory (after K and V, rows past T zero as mma_load_a's) and each k-step reads its fragments by ldmatrix
    // (FlashAttention-2 does the same).
    constexpr bool QS = MT > 1;
    unsigned qa[QS ? 1 : MT][KS][4];
    u16* qs = smem + 2 * MMA_BN * LD;
    if constexpr (QS)
    {
        // By cp.async (in K tile 0's group, waited for before the first read) when the rows are contiguous 16-byte
        // rows, as K's; else by plain loads of dim pairs, any strides, unrolled so that several are in flight.
        const i64 qb = b * st.q[0] + h * st.q[1];
        if (st.q[3] == 1 && st.q[2] % 8 == 0 && qb % 8 == 0 && ((unsigned long long)q & 15) == 0)
            mma_stage_rows_async<D, LD, BM>(qs, q + qb, st.q[2], tile * BM, T);
        else
        {
#pragma unroll 8
            for (int c = tid; c < BM * D / 2; c += MMA_THREADS)
            {
                int r = c / (D / 2), d = 2 * (c % (D / 2));
                i64 t = tile * BM + r;
                *(unsigned*)(qs + r * LD + d) = mma_pair(t < T, q, qb + t * st.q[2] + d * st.q[3], st.q[3]);
            }
        }
    }
    else
    {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
            mma_load_a<KS>(qa[mt], q, b * st.q[0] + h * st.q[1] + (tw + 16 * mt) * st.q[2], st.q[2], st.q[3], tw + 16 * mt < T, tw + 16 * mt + 8 < T);
    }
    float acc[MT][DN][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int n = 0; n < DN; n++) acc[mt][n][0] = acc[mt][n][1] = acc[mt][n][2] = acc[mt][n][3] = 0.0f;
    float m[MT][2], l[MT][2]; // running max (log2 units) and this thread's partial sums, rows r = 0, 1 of m16 tile mt
#pragma unroll
    for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = ninf, l[mt][0] = l[mt][1] = 0.0f;

    i64 kend = causal_key_end(causal, tile * BM, BM, T, S, query_offset);
    const i64 kbase = b * st.k[0] + hk * st.k[1], vbase = b * st.v[0] + hk * st.v[1];
    const i64 mbw = b * st.m[0] + h * st.m[1] + tw * st.m[2];
    // ldmatrix row addresses: lane l gives row l % 8 of matrix l / 8.
    const int mi = lane >> 3, mr = lane & 7;
    // K and V tiles arrive by cp.async, each while the other is in use: V of this tile during S = Q·Kᵀ and the
    // softmax, K of the next tile during P·V.
    // MT > 1 stages with mma_stage_rows_async: addresses computed once, fewer live 64-bit values (registers are short).
    auto stage = [&](u16* dst, const u16* src, i64 base, i64 rs, i64 j) {
        if constexpr (QS) mma_stage_rows_async<D, LD, MMA_BN>(dst, src + base, rs, j, S);
        else mma_stage_async<D, LD>(dst, src, base, rs, j, S);
    };
    if (kend > 0)
    {
        stage(ks, k, kbase, st.k[2], 0);
        cp_async_commit();
    }
    else if (QS)
    {
        cp_async_commit(); // no key: Q's copies (unread) end before the block does
        cp_async_wait<0>();
    }
    // This lane's ldmatrix addresses at k-step 0 of n-pair / m-tile 0 (see the reads below).
    const mma_sptr kl = mma_sptr_of(ks + (8 * (mi >> 1) + mr) * LD + 8 * (mi & 1));
    const mma_sptr ql = mma_sptr_of(qs + (warp * 16 * MT + 8 * (mi & 1) + mr) * LD + 8 * (mi >> 1));
    for (i64 j0 = 0; j0 < kend; j0 += MMA_BN)
    {
        cp_async_wait<0>(); // this thread's part of the K tile has landed
        __syncthreads();    // everyone's; and every warp is done with the previous V tile
        stage(vs, v, vbase, st.v[2], j0);
        cp_async_commit();

        // S = Q·Kᵀ. Matrices of one ldmatrix.x4: keys 16np + 8(mi/2) + 0..7, dims 16kk + 8(mi%2) + 0..7, so
        // registers 0,1 are the B fragment of key n-tile 2np and registers 2,3 that of n-tile 2np + 1.
        float s[MT][SN][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int n = 0; n < SN; n++) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
        {
            // Q from shared memory: matrices of one ldmatrix.x4: rows 16mt + 8(mi%2) + 0..7, dims 16kk + 8(mi/2) + 0..7,
            // registers 0..3 = a0a1, a2a3, a4a5, a6a7 of the A fragment.
            unsigned qf[MT][4];
            if constexpr (QS)
            {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    ldmatrix_x4_at(qf[mt], mma_sptr_add(ql, 16 * mt * LD + 16 * kk));
            }
#pragma unroll
            for (int np = 0; np < SN / 2; np++)
            {
                unsigned kb[4];
                ldmatrix_x4_at(kb, mma_sptr_add(kl, 16 * np * LD + 16 * kk));
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                {
                    const unsigned* a = QS ? qf[mt] : qa[QS ? 0 : mt][kk];
                    mma_bf16_16816(s[mt][2 * np], a, kb);
                    mma_bf16_16816(s[mt][2 * np + 1], a, kb + 2);
                }
            }
        }

        // Scores in log2 units, hidden keys at -inf; the tile's row maxima. A tile with no mask, inside S and
        // wholly below the causal diagonal of the block's first row hides nothing (rows past T score 0: unused).
        bool full = !mask && j0 + MMA_BN <= S && (!causal || j0 + MMA_BN - 1 <= query_offset + tile * BM);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
        {
            float mx0 = ninf, mx1 = ninf;
            const i64 t0 = tw + 16 * mt, t1 = t0 + 8;
            if (full)
            {
#pragma unroll
                for (int n = 0; n < SN; n++)
                {
                    s[mt][n][0] *= sl2; s[mt][n][1] *= sl2; s[mt][n][2] *= sl2; s[mt][n][3] *= sl2;
                    mx0 = fmaxf(mx0, fmaxf(s[mt][n][0], s[mt][n][1]));
                    mx1 = fmaxf(mx1, fmaxf(s[mt][n][2], s[mt][n][3]));
                }
            }
            else
            {
                const i64 mb0 = mbw + 16 * mt * st.m[2], mb1 = mb0 + 8 * st.m[2];
                // Keys j0 + jl a row sees: jl < cap (inside S, not past the causal diagonal, none for a row past T); 32-bit
                // compares in the loop below instead of 64-bit ones.
                auto cap = [&](i64 t) {
                    i64 c = t < T ? S - j0 : 0;
                    i64 d = query_offset + t - j0 + 1;
                    if (causal && d < c) c = d;
                    return c <= 0 ? 0 : c >= MMA_BN ? MMA_BN : (int)c;
                };
                const int cap0 = cap(t0), cap1 = cap(t1);
#pragma unroll
                for (int n = 0; n < SN; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                    {
                        int jl = 8 * n + 2 * tq + (e & 1);
                        bool visible = jl < (e < 2 ? cap0 : cap1);
                        float x = s[mt][n][e] * sl2;
                        if (mask && visible) x += load<float>(mask, mdt, (e < 2 ? mb0 : mb1) + (j0 + jl) * st.m[3]) * log2e; // no read past the mask
                        x = visible ? x : ninf;
                        s[mt][n][e] = x;
                        if (e < 2) mx0 = fmaxf(mx0, x);
                        else mx1 = fmaxf(mx1, x);
                    }
            }
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            float mn0 = fmaxf(m[mt][0], mx0), mn1 = fmaxf(m[mt][1], mx1);
            // A row that has seen no key yet subtracts 0, so exp2(-inf - 0) = 0 instead of NaN.
            float mu0 = mn0 == ninf ? 0.0f : mn0, mu1 = mn1 == ninf ? 0.0f : mn1;
            float c0 = exp2f(m[mt][0] - mu0), c1 = exp2f(m[mt][1] - mu1); // m = -inf: 0
            m[mt][0] = mn0;
            m[mt][1] = mn1;
            l[mt][0] *= c0;
            l[mt][1] *= c1;
#pragma unroll
            for (int n = 0; n < DN; n++)
            {
                acc[mt][n][0] *= c0; acc[mt][n][1] *= c0;
                acc[mt][n][2] *= c1; acc[mt][n][3] *= c1;
            }
#pragma unroll
            for (int n = 0; n < SN; n++)
            {
                s[mt][n][0] = exp2f(s[mt][n][0] - mu0); s[mt][n][1] = exp2f(s[mt][n][1] - mu0);
                s[mt][n][2] = exp2f(s[mt][n][2] - mu1); s[mt][n][3] = exp2f(s[mt][n][3] - mu1);
                l[mt][0] += s[mt][n][0] + s[mt][n][1];
                l[mt][1] += s[mt][n][2] + s[mt][n][3];
            }
        }

        cp_async_wait<0>(); // the V tile has landed
        __syncthreads();    // for everyone; and every warp is done with the K tile
        if (j0 + MMA_BN < kend)
        {
            stage(ks, k, kbase, st.k[2], j0 + MMA_BN);
            cp_async_commit();
        }

        // O += P·V over k-steps of 16 keys (P rounded to bf16 in place as the A fragments, the V tile's rows are B's rows).
        mma_acc_pb_tiles<MT, SN, DN, LD>(acc, s, vs);
    }

    const i64 lb = b * st.l[0] + h * st.l[1];
    const float ln2 = 0.6931471805599453f;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
    {
        float l0 = l[mt][0], l1 = l[mt][1];
        l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
        l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
        const i64 t0 = tw + 16 * mt, t1 = t0 + 8;
        const i64 o0 = b * st.o[0] + h * st.o[1] + t0 * st.o[2], o1 = o0 + 8 * st.o[2];
        float r0 = 1.0f / l0, r1 = 1.0f / l1; // l = 0: 0·inf = NaN, as the composite
        mma_store_c<DN>(o, acc[mt], o0, o1, st.o[3], r0, r1, t0 < T, t1 < T);
        if (lse && tq == 0)
        {
            if (t0 < T) store<float>(lse, ldt, lb + t0 * st.l[2], l0 > 0.0f ? m[mt][0] * ln2 + logf(l0) : ninf);
            if (t1 < T) store<float>(lse, ldt, lb + t1 * st.l[2], l1 > 0.0f ? m[mt][1] * ln2 + logf(l1) : ninf);
        }
    }
}

// The forward kernels, one per head dim so that each gets its own registers and shared memory (one kernel over the
// three head dims took the registers of the largest, 224–228, and ran head dim 64 at 2 blocks per SM; alone it needs
// 152–165 and fits 168, 3 blocks of 4 warps per SM). Grid: B·H·ceil(T / MMA_BM) blocks of MMA_THREADS threads, 64
// query rows a block (CudaBackend.AttentionForwardPerDim; the default for head dim 80, and for 64 and 128 under
// PARROT_ATTENTION_FWD=per-dim). The launcher guarantees: q, k, v, o bf16; D = Dv, the kernel's head dim; k and v with
// unit dim stride, row strides a multiple of 8 elements and 16-byte aligned data. Same parameters as
// attention_flash_forward (dt, D and Dv are checked by the launcher, not used here).
// The forward kernels' parameters (one list for every head dim and tile shape; dt and D, Dv are the launcher's, unused
// here), and what each passes on to its tile function.
#define MMA_FORWARD_PARAMS const void* q, const void* k, const void* v, void* o, int dt, const void* mask, int mdt, void* lse, int ldt, \
    AttnStrides st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal, i64 query_offset, double scale
#define MMA_FORWARD_ARGS q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, causal, query_offset, scale

template <int D>
__device__ __forceinline__ void mma_forward_dim(const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt,
                                                const AttnStrides& st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset, double scale)
{
    __shared__ MmaChunk smem[2 * MMA_BN * (D + MMA_PAD) / 8];
    mma_forward_tile<D>((const u16*)q, (const u16*)k, (const u16*)v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, causal, query_offset, (float)scale, (u16*)smem);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_mma_forward_d64(MMA_FORWARD_PARAMS)
{
    mma_forward_dim<64>(MMA_FORWARD_ARGS);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_mma_forward_d80(MMA_FORWARD_PARAMS)
{
    mma_forward_dim<80>(MMA_FORWARD_ARGS);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 2) attention_mma_forward_d128(MMA_FORWARD_PARAMS)
{
    mma_forward_dim<128>(MMA_FORWARD_ARGS);
}

// FlashAttention-2's split of the forward: 128 query rows per block, 32 per warp (two m16 tiles, mma_forward_tile<D, 2>),
// so each K/V fragment read from shared memory feeds four mmas instead of two; Q waits in shared memory. Shared memory
// (dynamic): K and V tiles, then the Q rows, MMA_M128_SMEM(D) bytes (69632 for head dim 128: above the 48 KiB a launch
// gets without cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES), which the launcher sets). Grid: B·H·ceil(T / 128)
// blocks of MMA_THREADS; same parameters and launcher guarantees as the per-dim kernels. The default for head dims 64
// and 128 (CudaBackend.AttentionForwardM128; H200 2026-11-27, B4 H16 T2048 causal: 0.349 ms against the per-dim
// kernel's 0.404 at D128, 0.192 against 0.222 at D64); same outputs bit for bit as attention_mma_forward_d128 / _d64.
#define MMA_M128_SMEM(D) ((2 * MMA_BN + 2 * MMA_BM) * ((D) + MMA_PAD) * 2)

template <int D>
__device__ __forceinline__ void mma_forward_m128(const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt,
                                                 const AttnStrides& st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, int causal, i64 query_offset, double scale)
{
#ifdef PARROT_CUDA_EMU
    __shared__ MmaChunk smem[MMA_M128_SMEM(D) / 16]; // the emulation has no dynamic shared memory
#else
    extern __shared__ MmaChunk smem[];
#endif
    mma_forward_tile<D, 2>((const u16*)q, (const u16*)k, (const u16*)v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, causal, query_offset, (float)scale, (u16*)smem);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 2) attention_mma_forward_m128_d128(MMA_FORWARD_PARAMS)
{
    mma_forward_m128<128>(MMA_FORWARD_ARGS);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 2) attention_mma_forward_m128_d64(MMA_FORWARD_PARAMS)
{
    mma_forward_m128<64>(MMA_FORWARD_ARGS);
}
