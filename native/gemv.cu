// Matrix-vector products for decode: y[m, n] = Σ_k x[m, k] · W[n, k] (+ bias[n]) (then GELU, tanh form) for M = 1..4
// rows of x, W a row-major [N, K] weight (a Linear layer's, read through its transposed view). At M ≤ 4 the product
// is bound by reading W once from memory, not by arithmetic, so the kernel is built for bandwidth, not for reuse:
// - W is read with 16-byte loads (8 bf16 or 4 f32 per lane; a warp reads 512 contiguous bytes of a row per load),
//   GEMV_UNROLL(M) loads per lane issued before any of their products, so many bytes are in flight per SM;
// - each warp owns one row n of W and a slice of K; x is read from global memory (7–38 KB at the Qwen2-7B shapes;
//   every block reads it, so it stays in L1/L2);
// - a block is 4 warps: 4 / kw rows with K split over kw warps each (kw = 1, 2 or 4, chosen by the launcher so that
//   few rows, such as N = 512, still give every SM several blocks); each warp sums its lanes by shuffles, the kw
//   partial sums of a row are added in shared memory in warp order, so results are deterministic;
// - 4-warp blocks because registers bound the warps an SM holds (95 per thread at M = 1: 20 warps in 4-warp blocks,
//   16 in 8-warp ones), and the loads in flight per SM, which decide the bandwidth, grow with those warps;
// - float32 accumulation; the bias (y's dtype, as cuBLASLt's BIAS epilogue) is added and GELU applied before y is
//   rounded to its dtype (bf16 or f32).
// Requirements (checked by CudaBackend.PlanGemv): W's data and row stride ldw 16-byte aligned (ldw a multiple of 8
// bf16 / 4 f32), K ≥ 1; x with unit stride along K and any row stride ldx (xvec = 1 when x's rows are 16-byte aligned
// too, else x is read element by element); y with unit stride along N and any row stride ldy.
#include "prelude.cuh"

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

template <typename T, int M>
__device__ __forceinline__ void gemv_block(const T* __restrict__ w, i64 ldw, const T* __restrict__ x, i64 ldx, int xvec,
                                           void* y, i64 ldy, int ydt, const void* bias, int gelu, i64 N, i64 K, int kw)
{
    const int VEC = 16 / (int)sizeof(T), U = GEMV_UNROLL(M);
    const i64 step = 32 * VEC; // elements a warp covers with one load per lane
    __shared__ float part[GEMV_WARPS][M];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, rows = GEMV_WARPS / kw;
    i64 n = (i64)blockIdx.x * rows + warp / kw;
    float acc[M];
    for (int m = 0; m < M; m++) acc[m] = 0;
    if (n < N)
    {
        // This warp's slice of K: whole warp steps (so loads stay aligned and coalesced), the last one cut at K.
        i64 slice = (K + kw * step - 1) / (kw * step) * step;
        // With kw = 4 the last warps' slices can start at or past K (K = 513 f32: slices of 256 from 0, 256, 512,
        // 768): such a warp has no elements, and must not take the row's tail [vend, K) that its predecessor owns.
        i64 begin = (warp % kw) * slice;
        if (begin > K) begin = K;
        i64 end = begin + slice < K ? begin + slice : K;
        i64 vend = end - end % VEC; // full vectors end here; [vend, end) is the row's tail of fewer than VEC elements
        if (vend < begin) vend = begin;
        const T* wr = w + n * ldw;
        for (i64 k0 = begin + lane * VEC; k0 < vend; k0 += U * step)
        {
            Vec16 wv[U], xv[U][M];
#pragma unroll
            for (int u = 0; u < U; u++)
            {
                i64 k = k0 + u * step;
                if (k < vend)
                {
                    wv[u] = *(const Vec16*)(wr + k);
#pragma unroll
                    for (int m = 0; m < M; m++) xv[u][m] = load16(x + m * ldx + k, xvec);
                }
            }
#pragma unroll
            for (int u = 0; u < U; u++)
                if (k0 + u * step < vend)
                {
#pragma unroll
                    for (int m = 0; m < M; m++) acc[m] = dot16(wv[u], xv[u][m], acc[m], w);
                }
        }
        for (i64 k = vend + lane; k < end; k += 32)
        {
            float wk = to_f32(wr[k]);
            for (int m = 0; m < M; m++) acc[m] += wk * to_f32(x[m * ldx + k]);
        }
    }
    for (int m = 0; m < M; m++) acc[m] = warp_reduce<SumOp>(acc[m]);
    if (lane == 0)
        for (int m = 0; m < M; m++) part[warp][m] = acc[m];
    __syncthreads();
    if ((int)threadIdx.x < rows * M)
    {
        int r = threadIdx.x / M, m = threadIdx.x % M;
        i64 nn = (i64)blockIdx.x * rows + r;
        if (nn < N)
        {
            float v = 0;
            for (int j = 0; j < kw; j++) v += part[r * kw + j][m];
            if (bias) v += load<float>(bias, ydt, nn);
            if (gelu) v = gelu_tanh(v);
            store<float>(y, ydt, m * ldy + nn, v);
        }
    }
}

// One kernel per input dtype and row count M, all with these parameters: W [N, K] (row stride ldw), x [M, K] (row
// stride ldx; xvec as above), y [M, N] (row stride ldy, dtype ydt: DT_BF16 or DT_F32), bias [N] of ydt or null,
// gelu 0/1, kw warps per row. Grid: ceil(N / (GEMV_WARPS / kw)) blocks of GEMV_THREADS.
#define GEMV_PARAMS const void* w, i64 ldw, const void* x, i64 ldx, int xvec, void* y, i64 ldy, int ydt, const void* bias, int gelu, i64 N, i64 K, int kw
#define GEMV_ARGS(T) (const T*)w, ldw, (const T*)x, ldx, xvec, y, ldy, ydt, bias, gelu, N, K, kw
extern "C" __global__ void gemv_bf16_1(GEMV_PARAMS) { gemv_block<u16, 1>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_bf16_2(GEMV_PARAMS) { gemv_block<u16, 2>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_bf16_3(GEMV_PARAMS) { gemv_block<u16, 3>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_bf16_4(GEMV_PARAMS) { gemv_block<u16, 4>(GEMV_ARGS(u16)); }
extern "C" __global__ void gemv_f32_1(GEMV_PARAMS) { gemv_block<float, 1>(GEMV_ARGS(float)); }
extern "C" __global__ void gemv_f32_2(GEMV_PARAMS) { gemv_block<float, 2>(GEMV_ARGS(float)); }
extern "C" __global__ void gemv_f32_3(GEMV_PARAMS) { gemv_block<float, 3>(GEMV_ARGS(float)); }
extern "C" __global__ void gemv_f32_4(GEMV_PARAMS) { gemv_block<float, 4>(GEMV_ARGS(float)); }
