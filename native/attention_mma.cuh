// The pieces the tensor-core attention kernels share (attention_mma.cu: forward, attention_mma_backward.cu and
// attention_mma_dkdv2.cu: backward): tile sizes, the inline-PTX wrappers (mma.sync m16n8k16 bf16, ldmatrix, cvt.rn.bf16x2, cp.async),
// fragment packing and loading, the cp.async tile stager. Fragment layouts: see attention_mma.cu.
// tools/cuda-emu defines PARROT_CUDA_EMU and supplies the functions of the #ifndef block itself (emu_mma.h).
#pragma once
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

// A lane's shared-memory address for ldmatrix as a 32-bit byte address, computed once outside a loop: the loop adds
// constant offsets (immediates of the instruction) instead of converting a 64-bit generic pointer per read, which costs
// registers the 128-row forward does not have. (tools/cuda-emu/emu_mma.h: a plain pointer, the same element offsets.)
typedef unsigned mma_sptr;
__device__ __forceinline__ mma_sptr mma_sptr_of(const u16* p) { return shared_address(p); }
__device__ __forceinline__ mma_sptr mma_sptr_add(mma_sptr a, int elems) { return a + 2 * elems; }

__device__ __forceinline__ void ldmatrix_x4_at(unsigned* r, mma_sptr a)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans_at(unsigned* r, mma_sptr a)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
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

// cp.async of 4 bytes (a float): .ca, as .cg takes only 16-byte copies; same groups as cp_async16.
__device__ __forceinline__ void cp_async4(void* dst, const void* src)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" :: "r"(shared_address(dst)), "l"(src) : "memory");
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

// mma_stage_async for head dims whose 16-byte chunks per row divide MMA_THREADS (64, 128; others take it): src
// points at row 0 of the rows, a thread copies one chunk column of every (MMA_THREADS / chunks)-th row, its
// addresses computed once (fewer live 64-bit values than the general loop).
template <int D, int LD, int ROWS>
__device__ __forceinline__ void mma_stage_rows_async(u16* dst, const u16* src, i64 row_stride, i64 j0, i64 S)
{
    constexpr int CH = D / 8;
    if constexpr (MMA_THREADS % CH == 0 && ROWS % (MMA_THREADS / CH) == 0)
    {
        constexpr int R = MMA_THREADS / CH;
        const int r = threadIdx.x / CH, cc = threadIdx.x % CH;
        const u16* s = src + (j0 + r) * row_stride + 8 * cc;
        u16* d = dst + r * LD + 8 * cc;
        const i64 left = S - j0 - r; // rows of this thread's column that exist: m·R < left
#pragma unroll
        for (int m = 0; m < ROWS / R; m++)
        {
            if (R * m < left) cp_async16(d + R * m * LD, s + R * m * row_stride);
            else *(MmaChunk*)(d + R * m * LD) = MmaChunk{0u, 0u, 0u, 0u};
        }
    }
    else mma_stage_async<D, LD, ROWS>(dst, src, 0, row_stride, j0, S);
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

// Stores a warp's C fragments (rows r and r + 8 of this lane's quad at base0 / base1, dims 8n + 2tq and 8n + 2tq + 1
// at element stride ds, n < DN) as bf16, row r scaled by s0 and row r + 8 by s1; a row that is not live is skipped.
template <int DN>
__device__ __forceinline__ void mma_store_c(void* out, const float (*acc)[4], i64 base0, i64 base1, i64 ds, float s0, float s1,
                                            bool live0, bool live1)
{
    int tq = threadIdx.x & 3;
#pragma unroll
    for (int n = 0; n < DN; n++)
#pragma unroll
        for (int e = 0; e < 2; e++)
        {
            i64 d = 8 * n + 2 * tq + e;
            if (live0) store<float>(out, DT_BF16, base0 + d * ds, acc[n][e] * s0);
            if (live1) store<float>(out, DT_BF16, base1 + d * ds, acc[n][2 + e] * s1);
        }
}

// C += P·B for MT m16 tiles of rows and DN n-tiles of 8 dims (DN even) over the PN/2 k-steps of 16 rows of the shared
// tile t (B = the tile, rows LD elements apart): P [16 × 8PN] of m-tile mt comes as the float C fragments of PN n-tiles
// (p[mt]) and is rounded to bf16 here; the C fragments of n-tiles 2kk, 2kk + 1 are exactly the A fragment of k-step kk.
// Matrices of one ldmatrix.x4.trans: rows 16kk + 8(mi%2) + 0..7, dims 16dp + 8(mi/2) + 0..7, so registers 0,1 are the
// B fragment of dim n-tile 2dp and registers 2,3 that of n-tile 2dp + 1 (lane l gives row l % 8 of matrix l / 8); each
// feeds the MT m-tiles. For O += P·V (forward) and dQ += dS·K (backward).
template <int MT, int PN, int DN, int LD>
__device__ __forceinline__ void mma_acc_pb_tiles(float (*c)[DN][4], const float (*p)[PN][4], const u16* t)
{
    const int lane = threadIdx.x & 31, mi = lane >> 3, mr = lane & 7;
    const mma_sptr tl = mma_sptr_of(t + (8 * (mi & 1) + mr) * LD + 8 * (mi >> 1)); // this lane's row at kk = dp = 0
#pragma unroll
    for (int kk = 0; kk < PN / 2; kk++)
    {
        unsigned pa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
        {
            pa[mt][0] = mma_pack_bf16(p[mt][2 * kk][0], p[mt][2 * kk][1]);
            pa[mt][1] = mma_pack_bf16(p[mt][2 * kk][2], p[mt][2 * kk][3]);
            pa[mt][2] = mma_pack_bf16(p[mt][2 * kk + 1][0], p[mt][2 * kk + 1][1]);
            pa[mt][3] = mma_pack_bf16(p[mt][2 * kk + 1][2], p[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < DN / 2; dp++)
        {
            unsigned b[4];
            ldmatrix_x4_trans_at(b, mma_sptr_add(tl, 16 * kk * LD + 16 * dp));
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
            {
                mma_bf16_16816(c[mt][2 * dp], pa[mt], b);
                mma_bf16_16816(c[mt][2 * dp + 1], pa[mt], b + 2);
            }
        }
    }
}

// mma_acc_pb_tiles for one m16 tile (the backward's dQ += dS·K).
template <int PN, int DN, int LD>
__device__ __forceinline__ void mma_acc_pb(float (*c)[4], const float (*p)[4], const u16* t)
{
    mma_acc_pb_tiles<1, PN, DN, LD>((float (*)[DN][4])c, (const float (*)[PN][4])p, t);
}
