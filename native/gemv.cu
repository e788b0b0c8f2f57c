// Matrix-vector products for decode: y[m, n] = Σ_k x[m, k] · W[n, k] (+ bias[n]) (then GELU, tanh form) for M = 1..4
// rows of x, W a row-major [N, K] weight (a Linear layer's, read through its transposed view). At M ≤ 4 the product
// is bound by reading W once from memory, not by arithmetic, so the kernel is built for bandwidth, not for reuse:
// - W is read with 16-byte loads (8 bf16 or 4 f32 per lane; a warp reads 512 contiguous bytes of a row per load),
//   GEMV_UNROLL(M) loads per lane issued before any of their products, so many bytes are in flight per SM; the first
//   step's loads of W go out before pdl_wait (prelude.cuh), so under a programmatic launch they overlap the kernel
//   that makes x;
// - each warp owns one row n of W and a slice of K; x is read from global memory (7–38 KB at the Qwen2-7B shapes;
//   every block reads it, so it stays in L1/L2);
// - a block is 4 warps: 4 / kw rows with K split over kw warps each (kw = 1, 2 or 4, chosen by the launcher so that
//   few rows, such as N = 512, still give every SM several blocks); each warp sums its lanes by shuffles, the kw
//   partial sums of a row are added in shared memory in warp order, so results are deterministic;
// - 4-warp blocks because registers bound the warps an SM holds (95 per thread at M = 1: 20 warps in 4-warp blocks,
//   16 in 8-warp ones), and the loads in flight per SM, which decide the bandwidth, grow with those warps;
// - float32 accumulation; the bias (y's dtype, as cuBLASLt's BIAS epilogue) is added and GELU applied before y is
//   rounded to its dtype (bf16 or f32).
// gemv_lean_* / swiglu_gemv_lean_* (bf16; CudaBackend.GemvLean, PARROT_GEMV_LEAN=1, off until timed): the same sums in
// the same order, bit for bit, but each step's x vectors are loaded as each is used instead of all U of them ahead:
// ptxas (sm_90) 55 registers instead of 96 for gemv_bf16_1 (9 blocks an SM instead of 5: 36 warps with W loads in
// flight instead of 20), 62 instead of 75 for swiglu_gemv_bf16_1 (8 blocks instead of 6); x comes from L1, so a
// warp waits a little longer per step, which the extra warps should more than cover — to be timed.
// swiglu_gemv_* fuse a gated MLP's gate and up products with the SwiGLU between them (decode: one launch, not three):
// each warp reads row n of both weights in the same pass over x, and the epilogue rounds both sums to y's dtype and
// applies native/swiglu.cuh's swiglu_value, so the result is bit for bit gemv, gemv, swiglu_forward (same kw).
// L2 prefetch (CudaBackend.GemvPrefetchBytes, PARROT_GEMV_PREFETCH; off until timed): before pdl_wait each warp also
// hints the next pf steps of its slice into L2, so a product that follows a kernel with little memory traffic (the
// norm, RoPE, the decode attention) starts its weight's stream while that kernel runs; the sums are unchanged.
// Requirements (checked by CudaBackend.PlanGemv): W's data and row stride ldw 16-byte aligned (ldw a multiple of 8
// bf16 / 4 f32), K ≥ 1; x with unit stride along K and any row stride ldx (xvec = 1 when x's rows are 16-byte aligned
// too, else x is read element by element); y with unit stride along N and any row stride ldy.
#include "prelude.cuh"
#include "swiglu.cuh" // swiglu_value, shared with elementwise.cu

#define GEMV_THREADS 128
#define GEMV_WARPS (GEMV_THREADS / 32)
// Independent 16-byte loads of W per lane per loop step: fewer for more rows of x (their registers grow with M).
#define GEMV_UNROLL(M) ((M) == 1 ? 8 : 4)

struct alignas(16) Vec16
{
    unsigned v[4];
};

// The two float32 values held by the bf16 pair in a 32-bit word (low element first).
__device__ __forceinline__ float bf16_lo(unsigned u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(unsigned u) { return __uint_as_float(u & 0xffff0000u); }

// acc += Σ w[i] · x[i] over the elements of one 16-byte vector (8 bf16 or 4 f32).
__device__ __forceinline__ float dot16(const Vec16& w, const Vec16& x, float acc, const u16*)
{
    for (int j = 0; j < 4; j++)
    {
        acc += bf16_lo(w.v[j]) * bf16_lo(x.v[j]);
        acc += bf16_hi(w.v[j]) * bf16_hi(x.v[j]);
    }
    return acc;
}

__device__ __forceinline__ float dot16(const Vec16& w, const Vec16& x, float acc, const float*)
{
    for (int j = 0; j < 4; j++) acc += __uint_as_float(w.v[j]) * __uint_as_float(x.v[j]);
    return acc;
}

__device__ __forceinline__ float to_f32(u16 v) { return bf16_to_f32(v); }
__device__ __forceinline__ float to_f32(float v) { return v; }

// The 16 bytes at p, p 16-byte aligned when vec; else gathered element by element (x rows at odd offsets).
__device__ __forceinline__ Vec16 load16(const u16* __restrict__ p, int vec)
{
    if (vec) return *(const Vec16*)p;
    Vec16 r;
    for (int j = 0; j < 4; j++) r.v[j] = (unsigned)p[2 * j] | ((unsigned)p[2 * j + 1] << 16);
    return r;
}

__device__ __forceinline__ Vec16 load16(const float* __restrict__ p, int vec)
{
    if (vec) return *(const Vec16*)p;
    Vec16 r;
    for (int j = 0; j < 4; j++) r.v[j] = __float_as_uint(p[j]);
    return r;
}

__device__ __forceinline__ float gelu_tanh(float v)
{
    return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
}

// Independent 16-byte loads of each weight per lane per loop step for G weights read together: the fused SwiGLU
// product (G = 2) halves the steps, so the bytes of W in flight per lane, and the registers holding them, stay those
// of one weight.
#define GEMV_UNROLL_G(M, G) ((G) == 1 ? GEMV_UNROLL(M) : GEMV_UNROLL(M) / 2)

// One loop step's 16-byte loads of the G weights' rows (U per lane, from element k0, none at or past vend).
template <typename T, int U, int G>
__device__ __forceinline__ void gemv_load_w(Vec16 (&wv)[U][G], const T* (&wr)[G], i64 k0, i64 vend, i64 step)
{
#pragma unroll
    for (int u = 0; u < U; u++)
        if (k0 + u * step < vend)
        {
#pragma unroll
            for (int g = 0; g < G; g++) wv[u][g] = *(const Vec16*)(wr[g] + k0 + u * step);
        }
}

// A hint that the 16 bytes at p go to L2 (prefetch.global.L2: no register, no wait), for gemv_sums' prefetch of the
// weight's next steps. The emulation (no __CUDA_ARCH__) calls a test's hook instead, which checks that p lies inside
// the weight.
#ifdef __CUDA_ARCH__
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }
#else
inline void (*emu_prefetch_hook)(const void*) = nullptr;
inline void prefetch_l2(const void* p)
{
    if (emu_prefetch_hook) emu_prefetch_hook(p);
}
#endif

// What a kernel does between pdl_wait and its first read of x (gemv_sums): nothing for the plain products; the fused
// norm's prologue (add_rms_norm_gemv) makes x there.
struct NoPrologue
{
    enum { writes_x = 0 };
    __device__ __forceinline__ void operator()() const {}
};

// x's pointer type in gemv_sums: restrict where x is only read (the plain products), plain where the prologue writes the
// rows x points at (the fused norm): restrict would promise the compiler that nothing else writes *x in gemv_sums, and
// so allow it to move x's loads above the prologue's stores and barrier.
template <typename T, bool Written>
struct XPointer
{
    typedef const T* __restrict__ type;
};

template <typename T>
struct XPointer<T, true>
{
    typedef const T* type;
};

// The block's sums s[g][m] = Σ_k x[m, k] · W_g[n, k] for the rows n of row group `group` (rows = GEMV_WARPS / kw per
// group) and the G weights W_0 = w0, W_1 = w1 (same shape, row stride and dtype), accumulated in the same order
// whatever G (a lane walks its k in increasing order, then the warp and warp-order reductions), so a fused product's
// sums are bit for bit those of separate ones with the same kw, and a block's sums do not depend on which group it
// takes. After pdl_wait and before any read of x, every thread of the block calls prologue() when run_prologue.
// Returns true on the threads t < rows·M that own an output: row nn (< N), x row mm, sums v[g].
template <typename T, int M, int G, typename Prologue, bool Lean = false>
__device__ __forceinline__ bool gemv_sums(const T* __restrict__ w0, const T* __restrict__ w1, i64 ldw, typename XPointer<T, Prologue::writes_x>::type x, i64 ldx,
                                          int xvec, i64 N, i64 K, int kw, int pf, float (&v)[G], i64& nn, int& mm, i64 group,
                                          const Prologue& prologue, bool run_prologue)
{
    const int VEC = 16 / (int)sizeof(T), U = GEMV_UNROLL_G(M, G);
    const i64 step = 32 * VEC; // elements a warp covers with one load per lane
    __shared__ float part[GEMV_WARPS][G][M];
    pdl_release();
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, rows = GEMV_WARPS / kw;
    i64 n = group * rows + warp / kw;
    float acc[G][M];
    for (int g = 0; g < G; g++)
        for (int m = 0; m < M; m++) acc[g][m] = 0;
    // The weights are no earlier kernel's output: the first loop step's loads of W go out before pdl_wait, so under a
    // programmatic launch they are in flight while the previous kernel (the norm or attention that makes x) finishes.
    Vec16 wv[U][G];
    const T* wr[G];
    i64 begin = 0, end = 0, vend = 0;
    if (n < N)
    {
        // This warp's slice of K: whole warp steps (so loads stay aligned and coalesced), the last one cut at K.
        i64 slice = (K + kw * step - 1) / (kw * step) * step;
        // With kw = 4 the last warps' slices can start at or past K (K = 513 f32: slices of 256 from 0, 256, 512,
        // 768): such a warp has no elements, and must not take the row's tail [vend, K) that its predecessor owns.
        begin = (warp % kw) * slice;
        if (begin > K) begin = K;
        end = begin + slice < K ? begin + slice : K;
        vend = end - end % VEC; // full vectors end here; [vend, end) is the row's tail of fewer than VEC elements
        if (vend < begin) vend = begin;
        wr[0] = w0 + n * ldw;
        if (G > 1) wr[G - 1] = w1 + n * ldw;
        gemv_load_w<T, U, G>(wv, wr, begin + lane * VEC, vend, step);
        // L2 prefetches of the slice's next pf steps (CudaBackend.GemvPrefetchBytes; pf 0: none). They hold no
        // register, so under a programmatic launch the weight streams into L2 while the kernels before this one
        // (a norm, RoPE, the attention: little memory traffic) still run, and the loop's loads of those steps come
        // from L2. The values read are the same whatever pf: same bits.
#pragma unroll 1
        for (int s = 0; s < pf; s++)
        {
            i64 k = begin + lane * VEC + (i64)(U + s) * step;
            if (k >= vend) break;
#pragma unroll
            for (int g = 0; g < G; g++) prefetch_l2(wr[g] + k);
        }
    }
    pdl_wait();
    if (run_prologue) prologue();
    if (n < N)
    {
        // Each step: x's loads, the products with the W loaded before, then the next step's W (the order of loads and
        // products the loop always had: W, x, products).
        for (i64 k0 = begin + lane * VEC; k0 < vend; k0 += U * step)
        {
            if (Lean)
            {
                // x vector by vector as each is used (fewer registers: see the file's head); the same sums in the same order.
#pragma unroll
                for (int u = 0; u < U; u++)
                    if (k0 + u * step < vend)
                    {
                        Vec16 xv[M];
#pragma unroll
                        for (int m = 0; m < M; m++) xv[m] = load16(x + m * ldx + k0 + u * step, xvec);
#pragma unroll
                        for (int g = 0; g < G; g++)
#pragma unroll
                            for (int m = 0; m < M; m++) acc[g][m] = dot16(wv[u][g], xv[m], acc[g][m], w0);
                    }
            }
            else
            {
                Vec16 xv[U][M];
#pragma unroll
                for (int u = 0; u < U; u++)
                    if (k0 + u * step < vend)
                    {
#pragma unroll
                        for (int m = 0; m < M; m++) xv[u][m] = load16(x + m * ldx + k0 + u * step, xvec);
                    }
#pragma unroll
                for (int u = 0; u < U; u++)
                    if (k0 + u * step < vend)
                    {
#pragma unroll
                        for (int g = 0; g < G; g++)
#pragma unroll
                            for (int m = 0; m < M; m++) acc[g][m] = dot16(wv[u][g], xv[u][m], acc[g][m], w0);
                    }
            }
            gemv_load_w<T, U, G>(wv, wr, k0 + U * step, vend, step);
        }
        for (i64 k = vend + lane; k < end; k += 32)
            for (int g = 0; g < G; g++)
            {
                float wk = to_f32(wr[g][k]);
                for (int m = 0; m < M; m++) acc[g][m] += wk * to_f32(x[m * ldx + k]);
            }
    }
    for (int g = 0; g < G; g++)
        for (int m = 0; m < M; m++) acc[g][m] = warp_reduce<SumOp>(acc[g][m]);
    if (lane == 0)
        for (int g = 0; g < G; g++)
            for (int m = 0; m < M; m++) part[warp][g][m] = acc[g][m];
    __syncthreads();
    if ((int)threadIdx.x >= rows * M) return false;
    int r = threadIdx.x / M;
    mm = threadIdx.x % M;
    nn = group * rows + r;
    if (nn >= N) return false;
    for (int g = 0; g < G; g++)
    {
        v[g] = 0;
        for (int j = 0; j < kw; j++) v[g] += part[r * kw + j][g][mm];
    }
    return true;
}

template <typename T, int M, bool Lean = false>
__device__ __forceinline__ void gemv_block(const T* __restrict__ w, i64 ldw, const T* __restrict__ x, i64 ldx, int xvec,
                                           void* y, i64 ldy, int ydt, const void* bias, int gelu, i64 N, i64 K, int kw, int pf)
{
    float v[1];
    i64 nn;
    int m;
    if (!gemv_sums<T, M, 1, NoPrologue, Lean>(w, w, ldw, x, ldx, xvec, N, K, kw, pf, v, nn, m, blockIdx.x, NoPrologue(), false)) return;
    if (bias) v[0] += load<float>(bias, ydt, nn);
    if (gelu) v[0] = gelu_tanh(v[0]);
    store<float>(y, ydt, m * ldy + nn, v[0]);
}

// The fused SwiGLU's output from the gate and up sums v[0], v[1]: both rounded to y's dtype first, as the separate
// products would store them, then the elementwise kernel's swiglu_value.
__device__ __forceinline__ void store_swiglu(void* y, int ydt, i64 i, const float (&v)[2])
{
    float g = v[0], u = v[1];
    if (ydt == DT_BF16) { g = bf16_to_f32(f32_to_bf16(g)); u = bf16_to_f32(f32_to_bf16(u)); }
    store<float>(y, ydt, i, swiglu_value(g, u, ydt));
}

// y[m, n] = silu(g) · u with g = x[m]·Wg[n], u = x[m]·Wu[n]: the gate and up products of a gated MLP and the SwiGLU
// between them in one launch. g and u are rounded to y's dtype first, as the separate products would store them,
// and swiglu_value is the elementwise kernel's, so y is bit for bit gemv(gate), gemv(up), swiglu_forward with the
// same kw.
template <typename T, int M, bool Lean = false>
__device__ __forceinline__ void swiglu_gemv_block(const T* __restrict__ wg, const T* __restrict__ wu, i64 ldw, const T* __restrict__ x, i64 ldx,
                                                  int xvec, void* y, i64 ldy, int ydt, i64 N, i64 K, int kw, int pf)
{
    float v[2];
    i64 nn;
    int m;
    if (!gemv_sums<T, M, 2, NoPrologue, Lean>(wg, wu, ldw, x, ldx, xvec, N, K, kw, pf, v, nn, m, blockIdx.x, NoPrologue(), false)) return;
    store_swiglu(y, ydt, m * ldy + nn, v);
}

// One kernel per input dtype and row count M, all with these parameters: W [N, K] (row stride ldw), x [M, K] (row
// stride ldx; xvec as above), y [M, N] (row stride ldy, dtype ydt: DT_BF16 or DT_F32), bias [N] of ydt or null,
// gelu 0/1, kw warps per row, pf steps of each warp's slice of W prefetched into L2 ahead of the first (0: none;
// CudaBackend.GemvPrefetchSteps). Grid: ceil(N / (GEMV_WARPS / kw)) blocks of GEMV_THREADS.
#define GEMV_PARAMS const void* w, i64 ldw, const void* x, i64 ldx, int xvec, void* y, i64 ldy, int ydt, const void* bias, int gelu, i64 N, i64 K, int kw, int pf
#define GEMV_ARGS(T) (const T*)w, ldw, (const T*)x, ldx, xvec, y, ldy, ydt, bias, gelu, N, K, kw, pf
extern "C" __global__ void gemv_bf16_1(GEMV_PARAMS) { gemv_block<u16, 1>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_bf16_2(GEMV_PARAMS) { gemv_block<u16, 2>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_bf16_3(GEMV_PARAMS) { gemv_block<u16, 3>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_bf16_4(GEMV_PARAMS) { gemv_block<u16, 4>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_f32_1(GEMV_PARAMS) { gemv_block<float, 1>(GEMV_ARGS(float)); }
extern "C" __global__ void gemv_f32_2(GEMV_PARAMS) { gemv_block<float, 2>(GEMV_ARGS(float)); }
extern "C" __global__ void gemv_f32_3(GEMV_PARAMS) { gemv_block<float, 3>(GEMV_ARGS(float)); }
extern "C" __global__ void gemv_f32_4(GEMV_PARAMS) { gemv_block<float, 4>(GEMV_ARGS(float)); }
extern "C" __global__ void gemv_lean_bf16_1(GEMV_PARAMS) { gemv_block<u16, 1, true>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_lean_bf16_2(GEMV_PARAMS) { gemv_block<u16, 2, true>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_lean_bf16_3(GEMV_PARAMS) { gemv_block<u16, 3, true>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_lean_bf16_4(GEMV_PARAMS) { gemv_block<u16, 4, true>(GEMV_ARGS(u16)); }

// The fused SwiGLU products, per input dtype and M, with gemv's parameters less bias and gelu, and two weights of one
// shape and row stride: wg (gate) and wu (up), pf as gemv's for both. Same grid as gemv with the same kw.
#define SWIGLU_GEMV_PARAMS const void* wg, const void* wu, i64 ldw, const void* x, i64 ldx, int xvec, void* y, i64 ldy, int ydt, i64 N, i64 K, int kw, int pf
#define SWIGLU_GEMV_ARGS(T) (const T*)wg, (const T*)wu, ldw, (const T*)x, ldx, xvec, y, ldy, ydt, N, K, kw, pf
extern "C" __global__ void swiglu_gemv_bf16_1(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<u16, 1>(SWIGLU_GEMV_ARGS(u16)); }
extern "C" __global__ void swiglu_gemv_bf16_2(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<u16, 2>(SWIGLU_GEMV_ARGS(u16)); }
extern "C" __global__ void swiglu_gemv_bf16_3(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<u16, 3>(SWIGLU_GEMV_ARGS(u16)); }
extern "C" __global__ void swiglu_gemv_bf16_4(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<u16, 4>(SWIGLU_GEMV_ARGS(u16)); }
extern "C" __global__ void swiglu_gemv_f32_1(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<float, 1>(SWIGLU_GEMV_ARGS(float)); }
extern "C" __global__ void swiglu_gemv_f32_2(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<float, 2>(SWIGLU_GEMV_ARGS(float)); }
extern "C" __global__ void swiglu_gemv_f32_3(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<float, 3>(SWIGLU_GEMV_ARGS(float)); }
extern "C" __global__ void swiglu_gemv_f32_4(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<float, 4>(SWIGLU_GEMV_ARGS(float)); }
extern "C" __global__ void swiglu_gemv_lean_bf16_1(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<u16, 1, true>(SWIGLU_GEMV_ARGS(u16)); }
extern "C" __global__ void swiglu_gemv_lean_bf16_2(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<u16, 2, true>(SWIGLU_GEMV_ARGS(u16)); }
extern "C" __global__ void swiglu_gemv_lean_bf16_3(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<u16, 3, true>(SWIGLU_GEMV_ARGS(u16)); }
extern "C" __global__ void swiglu_gemv_lean_bf16_4(SWIGLU_GEMV_PARAMS) { swiglu_gemv_block<u16, 4, true>(SWIGLU_GEMV_ARGS(u16)); }

// The residual step of a decoder and the product that reads its norm, in one launch (decode):
// add_rms_norm_gemv_*: sum = x + res, y = rms_norm(sum)·γ (norms.cu's add_rms_norm), out = y·Wᵀ + bias (gemv);
// add_rms_norm_swiglu_gemv_*: the same, then out = SwiGLU(y·Wgᵀ, y·Wuᵀ) (swiglu_gemv). Bit for bit the two launches
// they replace:
// - each block computes the norm in a prologue (after pdl_wait; the first loads of W are already in flight) into
//   shared memory as the dtype y would be stored in, then runs gemv_sums on it (same kw: same sums);
// - the sum of squares is reduced in add_rms_norm's order for its block of `vblock` threads (CudaBackend.RowBlock:
//   64 … 1024, a multiple of 32): real thread t of this 128-thread block plays add_rms_norm's threads t + 128·i, which
//   are lanes of its warps w + 4i; each of those warps is reduced with warp_reduce's tree into slot w + 4i, then the
//   slots with block_reduce's last pass;
// - only block 0 writes sum (every block computes the same values); the launcher guarantees sum and out overlap
//   neither x nor res (another block may still be reading them);
// - the prologue is paid per block, so the grid is capped at the blocks the GPU holds at once and each block loops
//   over row groups (a group's sums do not depend on the block that takes it).
// Operands: x, res, sum [M, K] contiguous; γ [K]; W (Wg, and Wu) [N, K] with row stride ldw; bias [N] or null
// (linear only); out [M, N] with row stride ldy; all of T's dtype. Dynamic shared memory: NORM_GEMV_SHARED(T, M, K).
#define NORM_GEMV_SHARED(T, M, K) ((M) * (((K) + 16 / sizeof(T) - 1) / (16 / sizeof(T)) * (16 / sizeof(T))) * sizeof(T))
#define NORM_GEMV_EMU_SHARED (64 * 1024) // the emulation has no dynamic shared memory: a static buffer this large

__device__ __forceinline__ float round_to(float v, const u16*) { return bf16_to_f32(f32_to_bf16(v)); }
__device__ __forceinline__ float round_to(float v, const float*) { return v; }
__device__ __forceinline__ void put(u16* p, float v) { *p = f32_to_bf16(v); }
__device__ __forceinline__ void put(float* p, float v) { *p = v; }

// add_rms_norm's rows in a gemv block: xs[m, j] (row stride ldxs) = y, and sum = x + res where sum is not null.
template <typename T, int M>
struct AddRmsNormRows
{
    enum { writes_x = 1 }; // the normalised rows, which gemv_sums then reads as x
    const T* x;
    const T* res;
    const T* gamma;
    T* sum;
    T* xs;
    i64 n, ldxs;
    int vblock;
    float eps;

    __device__ __forceinline__ void operator()() const
    {
        __shared__ float slots[M][32];
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        // One of add_rms_norm's threads t = threadIdx.x + 128·i at a time (the loop kept rolled, so that only M partial
        // sums hold registers while the first loads of W are in flight): the sums, rounded as add_rms_norm stores and
        // reloads them, and t's sum of squares over its elements t, t + vblock, … in add_rms_norm's order, reduced as its
        // warp w + 4i (whole warps: the bound is uniform) into slot w + 4i.
#pragma unroll 1
        for (int i = 0; GEMV_THREADS * i < vblock; i++)
        {
            float s[M];
#pragma unroll
            for (int m = 0; m < M; m++) s[m] = 0;
            int t = threadIdx.x + GEMV_THREADS * i;
            if (t < vblock)
                for (i64 j = t; j < n; j += vblock)
#pragma unroll
                    for (int m = 0; m < M; m++)
                    {
                        float v = round_to(to_f32(x[m * n + j]) + to_f32(res[m * n + j]), x);
                        put(xs + m * ldxs + j, v);
                        if (sum) put(sum + m * n + j, v);
                        s[m] += v * v;
                    }
#pragma unroll
            for (int m = 0; m < M; m++)
            {
                float w = warp_reduce<SumOp>(s[m]);
                if (lane == 0 && warp + GEMV_WARPS * i < vblock / 32) slots[m][warp + GEMV_WARPS * i] = w;
            }
        }
        __syncthreads();
        float r[M];
#pragma unroll
        for (int m = 0; m < M; m++)
        {
            float w = lane < vblock / 32 ? slots[m][lane] : 0.0f;
            w = warp_reduce<SumOp>(w);
            r[m] = 1.0f / sqrtf(w / (float)n + eps);
        }
        for (i64 j = threadIdx.x; j < n; j += GEMV_THREADS)
        {
            float g = to_f32(gamma[j]);
#pragma unroll
            for (int m = 0; m < M; m++)
            {
                float h = round_to(to_f32(xs[m * ldxs + j]) * r[m], x); // as rms_norm: rounded before γ multiplies it
                put(xs + m * ldxs + j, g * h);
            }
        }
        __syncthreads();
    }
};

// The outputs of one row: gemv's (plus the bias) and swiglu_gemv's.
__device__ __forceinline__ void norm_gemv_store(void* y, int ydt, i64 i, float (&v)[1], const void* bias, i64 nn)
{
    if (bias) v[0] += load<float>(bias, ydt, nn);
    store<float>(y, ydt, i, v[0]);
}

__device__ __forceinline__ void norm_gemv_store(void* y, int ydt, i64 i, float (&v)[2], const void*, i64) { store_swiglu(y, ydt, i, v); }

template <typename T, int M, int G, bool Lean = false>
__device__ __forceinline__ void add_rms_norm_gemv(const T* x, const T* res, const T* gamma, float eps, int vblock, T* sum, const T* w0,
                                                  const T* w1, i64 ldw, void* y, i64 ldy, const void* bias, i64 N, i64 K, int kw)
{
#ifdef PARROT_CUDA_EMU
    __shared__ Vec16 xs_mem[NORM_GEMV_EMU_SHARED / 16];
#else
    extern __shared__ Vec16 xs_mem[];
#endif
    const int VEC = 16 / (int)sizeof(T);
    const int ydt = sizeof(T) == 2 ? DT_BF16 : DT_F32;
    T* xs = (T*)xs_mem;
    i64 ldxs = (K + VEC - 1) / VEC * VEC; // rows 16-byte aligned: gemv_sums reads them as vectors
    AddRmsNormRows<T, M> prologue{x, res, gamma, blockIdx.x == 0 ? sum : nullptr, xs, K, ldxs, vblock, eps};
    int rows = GEMV_WARPS / kw;
    i64 groups = (N + rows - 1) / rows;
    for (i64 group = blockIdx.x; group < groups; group += gridDim.x)
    {
        if (group != (i64)blockIdx.x) __syncthreads(); // the previous group's partial sums are read before they are rewritten
        float v[G];
        i64 nn;
        int mm;
        if (gemv_sums<T, M, G, AddRmsNormRows<T, M>, Lean>(w0, w1, ldw, xs, ldxs, 1, N, K, kw, 0, v, nn, mm, group, prologue, group == (i64)blockIdx.x))
            norm_gemv_store(y, ydt, mm * ldy + nn, v, bias, nn);
    }
}

// Per dtype and M: x, res, γ (gamma), eps, add_rms_norm's block size vblock, sum; W (w), the up weight wu (SwiGLU;
// null for the linear), ldw; out y, ldy; bias (linear; null for none or SwiGLU); N, K, kw. Grid: at most
// ceil(N / (GEMV_WARPS / kw)) blocks of GEMV_THREADS.
#define NORM_GEMV_PARAMS const void* x, const void* res, const void* gamma, float eps, int vblock, void* sum, const void* w, const void* wu, i64 ldw, \
                         void* y, i64 ldy, const void* bias, i64 N, i64 K, int kw
#define NORM_GEMV_ARGS(T) (const T*)x, (const T*)res, (const T*)gamma, eps, vblock, (T*)sum, (const T*)w, (const T*)wu, ldw, y, ldy, bias, N, K, kw
extern "C" __global__ void add_rms_norm_gemv_bf16_1(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 1, 1>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_gemv_bf16_2(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 2, 1>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_gemv_bf16_3(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 3, 1>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_gemv_bf16_4(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 4, 1>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_gemv_f32_1(NORM_GEMV_PARAMS) { add_rms_norm_gemv<float, 1, 1>(NORM_GEMV_ARGS(float)); }
extern "C" __global__ void add_rms_norm_gemv_f32_2(NORM_GEMV_PARAMS) { add_rms_norm_gemv<float, 2, 1>(NORM_GEMV_ARGS(float)); }
extern "C" __global__ void add_rms_norm_gemv_f32_3(NORM_GEMV_PARAMS) { add_rms_norm_gemv<float, 3, 1>(NORM_GEMV_ARGS(float)); }
extern "C" __global__ void add_rms_norm_gemv_f32_4(NORM_GEMV_PARAMS) { add_rms_norm_gemv<float, 4, 1>(NORM_GEMV_ARGS(float)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_bf16_1(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 1, 2>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_bf16_2(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 2, 2>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_bf16_3(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 3, 2>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_bf16_4(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 4, 2>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_f32_1(NORM_GEMV_PARAMS) { add_rms_norm_gemv<float, 1, 2>(NORM_GEMV_ARGS(float)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_f32_2(NORM_GEMV_PARAMS) { add_rms_norm_gemv<float, 2, 2>(NORM_GEMV_ARGS(float)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_f32_3(NORM_GEMV_PARAMS) { add_rms_norm_gemv<float, 3, 2>(NORM_GEMV_ARGS(float)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_f32_4(NORM_GEMV_PARAMS) { add_rms_norm_gemv<float, 4, 2>(NORM_GEMV_ARGS(float)); }
// The lean forms (x per step, as gemv_lean_*: the same bits, fewer registers; CudaBackend.GemvLean).
extern "C" __global__ void add_rms_norm_gemv_lean_bf16_1(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 1, 1, true>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_gemv_lean_bf16_2(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 2, 1, true>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_gemv_lean_bf16_3(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 3, 1, true>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_gemv_lean_bf16_4(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 4, 1, true>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_lean_bf16_1(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 1, 2, true>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_lean_bf16_2(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 2, 2, true>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_lean_bf16_3(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 3, 2, true>(NORM_GEMV_ARGS(u16)); }
extern "C" __global__ void add_rms_norm_swiglu_gemv_lean_bf16_4(NORM_GEMV_PARAMS) { add_rms_norm_gemv<u16, 4, 2, true>(NORM_GEMV_ARGS(u16)); }
