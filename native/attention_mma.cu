// Flash attention on tensor cores, bf16 (FlashAttention-2's loop order), forward here and backward below: the fast
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
// Tiles move global → shared by cp.async, each while the other operand is being used (see the loops).
//
// tools/cuda-emu emulates mma.sync, ldmatrix, cvt.rn.bf16x2 and cp.async (it defines PARROT_CUDA_EMU and supplies
// the functions of the #ifndef block below) and runs these kernels against float64 (flash_mma_test.cpp).
#include "prelude.cuh"

#define MMA_BM 64       // query rows per block, 16 per warp
#define MMA_BN 64       // keys per K/V tile
#define MMA_THREADS 128
#define MMA_PAD 8       // bf16 elements of padding per shared row: row strides of 144/176/272 bytes
#define MMA_DMAX 128

#ifndef PARROT_CUDA_EMU
// d += a·b for one m16n8k16 tile: a four, b two packed bf16x2 registers, d four floats (layouts above).
__device__ __forceinline__ void mma_bf16_16816(float* d, const unsigned* a, const unsigned* b)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ unsigned shared_address(const void* p)
{
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// Four 8×8 bf16 matrices from shared memory; p: this lane's row address (see above). Volatile with a memory
// clobber: it must not move across the __syncthreads that guard the tiles.
__device__ __forceinline__ void ldmatrix_x4(unsigned* r, const u16* p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(shared_address(p)) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned* r, const u16* p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(shared_address(p)) : "memory");
}

// cvt.rn.bf16x2.f32 d, a, b: a rounded to nearest even into the upper half of d, b into the lower (PTX ISA, cvt).
__device__ __forceinline__ unsigned cvt_rn_bf16x2(float a, float b)
{
    unsigned d;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(a), "f"(b));
    return d;
}

// cp.async of 16 bytes global → shared (L2 only, .cg), in the group that the next cp_async_commit closes;
// cp_async_wait<N> waits until at most N of this thread's committed groups are still in flight (PTX ISA, cp.async).
__device__ __forceinline__ void cp_async16(void* dst, const void* src)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(shared_address(dst)), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
#endif

struct alignas(16) MmaChunk
{
    unsigned x, y, z, w;
};

// Two floats as a bf16x2 register (round to nearest even), lo in the low half.
__device__ __forceinline__ unsigned mma_pack_bf16(float lo, float hi)
{
    return cvt_rn_bf16x2(hi, lo);
}

// Element e (0: the low half) of a bf16x2 register.
__device__ __forceinline__ u16 mma_half(unsigned r, int e)
{
    return (u16)(e ? r >> 16 : r & 0xffffu);
}

// Two adjacent bf16 elements p[i], p[i + s] as a bf16x2 register (raw bits), zero when !live.
__device__ __forceinline__ unsigned mma_pair(bool live, const u16* p, i64 i, i64 s)
{
    return live ? (unsigned)p[i] | ((unsigned)p[i + s] << 16) : 0u;
}

// Stages rows j0 .. j0 + ROWS - 1 of a [.., S, D] bf16 tensor (contiguous rows, 16-byte aligned) into shared rows
// of LD elements by cp.async, zeros past row S by plain stores (a zero V row keeps 0·garbage out of the output);
// the caller commits the group and waits for it.
template <int D, int LD, int ROWS = MMA_BN>
__device__ __forceinline__ void mma_stage_async(u16* dst, const u16* src, i64 base, i64 row_stride, i64 j0, i64 S)
{
    constexpr int CH = D / 8;
    for (int c = threadIdx.x; c < ROWS * CH; c += MMA_THREADS)
    {
        int r = c / CH, cc = c % CH;
        i64 j = j0 + r;
        u16* d = dst + r * LD + 8 * cc;
        if (j < S) cp_async16(d, src + base + j * row_stride + 8 * cc);
        else *(MmaChunk*)d = MmaChunk{0u, 0u, 0u, 0u};
    }
}

// Rows r0 and r0 + 8 of a bf16 tensor (element p[base0 + d·ds] is dim d of row r0, row r0 + 8 is 8·rs further) as
// the A fragments of KS k-steps (dims 16kk .. 16kk + 15); zeros for a row that is not live.
template <int KS>
__device__ __forceinline__ void mma_load_a(unsigned (*a)[4], const u16* p, i64 base0, i64 rs, i64 ds, bool live0, bool live1)
{
    int tq = threadIdx.x & 3;
    const i64 base1 = base0 + 8 * rs;
#pragma unroll
    for (int kk = 0; kk < KS; kk++)
#pragma unroll
        for (int half = 0; half < 2; half++)
        {
            i64 d = 16 * kk + 8 * half + 2 * tq;
            a[kk][2 * half] = mma_pair(live0, p, base0 + d * ds, ds);
            a[kk][2 * half + 1] = mma_pair(live1, p, base1 + d * ds, ds);
        }
}

// The keys any query row of the tile of MMA_BM rows from row tile·MMA_BM sees: [0, the returned end).
__device__ __forceinline__ i64 mma_key_end(int causal, i64 tile, i64 T, i64 S, i64 query_offset)
{
    i64 kend = S;
    if (causal)
    {
        i64 tmax = tile * MMA_BM + MMA_BM - 1;
        if (tmax > T - 1) tmax = T - 1;
        if (query_offset + tmax + 1 < kend) kend = query_offset + tmax + 1;
    }
    return kend;
}

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

    i64 kend = mma_key_end(causal, tile, T, S, query_offset);
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

        // O += P·V over k-steps of 16 keys. P's A fragment for keys 16kk2 .. 16kk2 + 15 is the C fragments of
        // score n-tiles 2kk2 (registers 0, 1) and 2kk2 + 1 (registers 2, 3). Matrices of one ldmatrix.x4.trans:
        // keys 16kk2 + 8(mi%2) + 0..7, dims 16dp + 8(mi/2) + 0..7 (stored rows are keys), so registers 0,1 are the
        // B fragment of dim n-tile 2dp and registers 2,3 that of n-tile 2dp + 1.
#pragma unroll
        for (int kk2 = 0; kk2 < SN / 2; kk2++)
        {
            unsigned pa[4] = {mma_pack_bf16(s[2 * kk2][0], s[2 * kk2][1]), mma_pack_bf16(s[2 * kk2][2], s[2 * kk2][3]),
                              mma_pack_bf16(s[2 * kk2 + 1][0], s[2 * kk2 + 1][1]), mma_pack_bf16(s[2 * kk2 + 1][2], s[2 * kk2 + 1][3])};
#pragma unroll
            for (int dp = 0; dp < DN / 2; dp++)
            {
                unsigned vb[4];
                ldmatrix_x4_trans(vb, vs + (16 * kk2 + 8 * (mi & 1) + mr) * LD + 16 * dp + 8 * (mi >> 1));
                mma_bf16_16816(acc[2 * dp], pa, vb);
                mma_bf16_16816(acc[2 * dp + 1], pa, vb + 2);
            }
        }
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const i64 o0 = b * st.o[0] + h * st.o[1] + t0 * st.o[2], o1 = o0 + 8 * st.o[2];
    float r0 = 1.0f / l0, r1 = 1.0f / l1; // l = 0: 0·inf = NaN, as the composite
#pragma unroll
    for (int n = 0; n < DN; n++)
    {
        i64 d = 8 * n + 2 * tq;
        if (live0)
        {
            store<float>(o, DT_BF16, o0 + d * st.o[3], acc[n][0] * r0);
            store<float>(o, DT_BF16, o0 + (d + 1) * st.o[3], acc[n][1] * r0);
        }
        if (live1)
        {
            store<float>(o, DT_BF16, o1 + d * st.o[3], acc[n][2] * r1);
            store<float>(o, DT_BF16, o1 + (d + 1) * st.o[3], acc[n][3] * r1);
        }
    }
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

// ---------------------------------------------------------------------------------------------------------------
// Backward on tensor cores (FlashAttention-2's), from the forward's log-sum-exp, the same two kernels and the same
// parameters as the FMA pair of attention.cu (the launcher picks one pair or the other): deterministic, no atomics.
//  attention_mma_backward_dq: a block per (batch, head, 64 query rows), 16 rows per warp, Q and dO as A fragments in
//    registers; delta_t = dO_t·O_t (stored for the second kernel); per tile of 64 keys (K, V staged in shared memory):
//      S = Q·Kᵀ and dP = dO·Vᵀ (K and V rows read by ldmatrix as col-major B), P = exp(S·scale + mask − lse),
//      dS = P ⊙ (dP − delta), dQ += dS·K (dS as bf16 A fragments, K by ldmatrix.trans); dQ·scale at the end.
//  attention_mma_backward_dkdv: a block per (batch, kv head, 64 keys), 16 keys per warp, K and V as A fragments; for
//    every query head of the group, tiles of MMA_QT = 32 queries (Q, dO, lse, delta staged in shared memory):
//      Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ (Q and dO rows by ldmatrix), Pᵀ and dSᵀ as above,
//      dV += Pᵀ·dO and dK += dSᵀ·Q (Pᵀ, dSᵀ as bf16 A fragments, dO and Q by ldmatrix.trans); dK·scale at the end.
// A query row whose log-sum-exp is -inf (it sees no key) contributes nothing, as in the FMA kernels.
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
    i64 kend = mma_key_end(causal, tile, T, S, query_offset);
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
        // dQ += dS·K over k-steps of 16 keys: B[key][dim] = K[key][dim], rows of K are rows of B (ldmatrix.trans,
        // addressing as V in the forward).
#pragma unroll
        for (int kk2 = 0; kk2 < SN / 2; kk2++)
        {
            unsigned sa[4] = {mma_pack_bf16(s[2 * kk2][0], s[2 * kk2][1]), mma_pack_bf16(s[2 * kk2][2], s[2 * kk2][3]),
                              mma_pack_bf16(s[2 * kk2 + 1][0], s[2 * kk2 + 1][1]), mma_pack_bf16(s[2 * kk2 + 1][2], s[2 * kk2 + 1][3])};
#pragma unroll
            for (int dp2 = 0; dp2 < DN / 2; dp2++)
            {
                unsigned kb[4];
                ldmatrix_x4_trans(kb, ks + (16 * kk2 + 8 * (mi & 1) + mr) * LD + 16 * dp2 + 8 * (mi >> 1));
                mma_bf16_16816(acc[2 * dp2], sa, kb);
                mma_bf16_16816(acc[2 * dp2 + 1], sa, kb + 2);
            }
        }
        __syncthreads(); // every warp is done with the K tile
        if (next)
        {
            mma_stage_async<D, LD>(ks, k, kbase, st.k[2], j0 + MMA_BN, S);
            cp_async_commit();
        }
    }
    const i64 q0 = b * bs.dq[0] + h * bs.dq[1] + t0 * bs.dq[2], q1 = q0 + 8 * bs.dq[2];
#pragma unroll
    for (int n = 0; n < DN; n++)
    {
        i64 d = 8 * n + 2 * tq;
        if (live0)
        {
            store<float>(dq, DT_BF16, q0 + d * bs.dq[3], acc[n][0] * scale);
            store<float>(dq, DT_BF16, q0 + (d + 1) * bs.dq[3], acc[n][1] * scale);
        }
        if (live1)
        {
            store<float>(dq, DT_BF16, q1 + d * bs.dq[3], acc[n][2] * scale);
            store<float>(dq, DT_BF16, q1 + (d + 1) * bs.dq[3], acc[n][3] * scale);
        }
    }
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
#pragma unroll
    for (int n = 0; n < DN; n++)
#pragma unroll
        for (int e = 0; e < 2; e++)
        {
            i64 d = 8 * n + 2 * tq + e;
            if (live0)
            {
                store<float>(dk, DT_BF16, k0 + d * bs.dk[3], dka[n][e] * scale);
                store<float>(dv, DT_BF16, v0 + d * bs.dv[3], dva[n][e]);
            }
            if (live1)
            {
                store<float>(dk, DT_BF16, k1 + d * bs.dk[3], dka[n][2 + e] * scale);
                store<float>(dv, DT_BF16, v1 + d * bs.dv[3], dva[n][2 + e]);
            }
        }
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
