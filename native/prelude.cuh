// Shared by every kernel file (given to NVRTC as an in-memory header, to nvcc by include path).
// Header-free: no CUDA headers; bf16 and f16 travel as 16-bit integers with our own conversions.
#pragma once

typedef unsigned short u16;
typedef long long i64;

// Element types, numbered as Parrot.Tensors.DType.
#define DT_F32 0
#define DT_F64 1
#define DT_BF16 2
#define DT_F16 3
#define DT_I32 4
#define DT_I64 5
#define DT_U8 6
#define DT_BOOL 7

#define MAX_RANK 8
#define MAX_OPERANDS 4

// Shape of an iteration space and each operand's strides (in elements) over it; operand 0 is the output.
struct Layout
{
    i64 rank;
    i64 size[MAX_RANK];
    i64 stride[MAX_OPERANDS][MAX_RANK];
};

// Element offsets of the first `count` operands for C-order position `flat`.
__device__ __forceinline__ void offsets(const Layout& L, i64 flat, int count, i64* off)
{
    if (L.rank == 1)
    {
        // Most layouts merge to one dim: no 64-bit division (which the GPU emulates in software).
        for (int k = 0; k < MAX_OPERANDS; k++) off[k] = k < count ? flat * L.stride[k][0] : 0;
        return;
    }
    for (int k = 0; k < MAX_OPERANDS; k++) off[k] = 0;
    bool narrow = flat <= 0x7fffffffLL;
    for (int d = 0; d < (int)L.rank; d++) narrow = narrow && L.size[d] <= 0x7fffffffLL; // merged dims can be larger
    if (narrow)
    {
        // Positions and dims below 2^31 (nearly every tensor): 32-bit division, several times cheaper than the
        // 64-bit kind (a rank-4 RoPE or transposed copy spent most of its time here).
        unsigned f = (unsigned)flat;
        for (int d = (int)L.rank - 1; d >= 0; d--)
        {
            unsigned s = (unsigned)L.size[d];
            unsigned c = f % s;
            f /= s;
            for (int k = 0; k < count; k++) off[k] += (i64)c * L.stride[k][d];
        }
        return;
    }
    for (int d = (int)L.rank - 1; d >= 0; d--)
    {
        i64 s = L.size[d];
        i64 c = flat % s;
        flat /= s;
        for (int k = 0; k < count; k++) off[k] += c * L.stride[k][d];
    }
}

__device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((unsigned)h) << 16); }

// Round to nearest even; NaN stays NaN (quiet bit set), infinities stay infinite.
__device__ __forceinline__ u16 f32_to_bf16(float f)
{
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
}

__device__ __forceinline__ float f16_to_f32(u16 h)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ u16 f32_to_f16(float f)
{
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// Load element i of a tensor of element type dt as T (float, double or i64).
template <typename T>
__device__ __forceinline__ T load(const void* p, int dt, i64 i)
{
    switch (dt)
    {
        case DT_F32: return (T)((const float*)p)[i];
        case DT_F64: return (T)((const double*)p)[i];
        case DT_BF16: return (T)bf16_to_f32(((const u16*)p)[i]);
        case DT_F16: return (T)f16_to_f32(((const u16*)p)[i]);
        case DT_I32: return (T)((const int*)p)[i];
        case DT_I64: return (T)((const i64*)p)[i];
        default: return (T)((const unsigned char*)p)[i];
    }
}

// Integer results as the CPU backend's casts give them (.NET's CreateTruncating): a float rounds toward zero and
// saturates at the type's range, NaN gives 0; an integer keeps its low bits (wraps). Spelled out because a plain cast
// of an out-of-range float is undefined in C++ and, to uint8, the GPU converts to 32 bits and keeps the low byte
// (300.0 gave 44 where the CPU gives 255).
__device__ __forceinline__ int to_i32(double v) { return v != v ? 0 : v >= 2147483647.0 ? 2147483647 : v <= -2147483648.0 ? (-2147483647 - 1) : (int)v; }
__device__ __forceinline__ int to_i32(float v) { return to_i32((double)v); }
__device__ __forceinline__ int to_i32(i64 v) { return (int)v; }
__device__ __forceinline__ i64 to_i64(double v)
{
    return v != v ? 0 : v >= 9223372036854775808.0 ? 9223372036854775807LL : v <= -9223372036854775808.0 ? (-9223372036854775807LL - 1) : (i64)v;
}
__device__ __forceinline__ i64 to_i64(float v) { return to_i64((double)v); }
__device__ __forceinline__ i64 to_i64(i64 v) { return v; }
__device__ __forceinline__ unsigned char to_u8(double v) { return v != v || v <= 0.0 ? 0 : v >= 255.0 ? 255 : (unsigned char)(int)v; }
__device__ __forceinline__ unsigned char to_u8(float v) { return to_u8((double)v); }
__device__ __forceinline__ unsigned char to_u8(i64 v) { return (unsigned char)v; }

// Store v as element i of a tensor of element type dt (16-bit floats rounded to nearest even; integers as to_i32,
// to_i64 and to_u8 give them). T is float, double or i64.
template <typename T>
__device__ __forceinline__ void store(void* p, int dt, i64 i, T v)
{
    switch (dt)
    {
        case DT_F32: ((float*)p)[i] = (float)v; break;
        case DT_F64: ((double*)p)[i] = (double)v; break;
        case DT_BF16: ((u16*)p)[i] = f32_to_bf16((float)v); break;
        case DT_F16: ((u16*)p)[i] = f32_to_f16((float)v); break;
        case DT_I32: ((int*)p)[i] = to_i32(v); break;
        case DT_I64: ((i64*)p)[i] = to_i64(v); break;
        case DT_BOOL: ((unsigned char*)p)[i] = v != (T)0 ? 1 : 0; break;
        default: ((unsigned char*)p)[i] = to_u8(v); break;
    }
}

__device__ __forceinline__ int elem_size(int dt)
{
    return dt == DT_F64 || dt == DT_I64 ? 8 : dt == DT_F32 || dt == DT_I32 ? 4 : dt == DT_BF16 || dt == DT_F16 ? 2 : 1;
}

// Copies element bits (every dtype) from src[si] to dst[di].
__device__ __forceinline__ void copy_bits(void* dst, i64 di, const void* src, i64 si, int size)
{
    switch (size)
    {
        case 8: ((i64*)dst)[di] = ((const i64*)src)[si]; break;
        case 4: ((int*)dst)[di] = ((const int*)src)[si]; break;
        case 2: ((u16*)dst)[di] = ((const u16*)src)[si]; break;
        default: ((unsigned char*)dst)[di] = ((const unsigned char*)src)[si]; break;
    }
}

// Element strides of the attention operands q, k, v, o, mask ([B, H|Hkv, T|S, D]) and of the log-sum-exp
// ([B, H, T]); here because two kernel files take them (attention.cu, attention_mma.cu).
struct AttnStrides
{
    i64 q[4], k[4], v[4], o[4], m[4], l[3];
};

// The attention backward's: the forward's operands plus dO, dQ, dK, dV (delta has the log-sum-exp's layout).
struct FaBwdStrides
{
    AttnStrides a;
    i64 dout[4], dq[4], dk[4], dv[4];
};

// Programmatic dependent launch (Hopper and newer). The backend launches the kernels it lists in
// CudaKernels.ProgrammaticKernels with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, so such a kernel may
// start while the kernel before it in the stream is still running: its launch and whatever it does before pdl_wait()
// overlap the predecessor's tail. Every listed kernel therefore calls pdl_wait() before it reads anything earlier work
// wrote and before it writes anything (reading its own weights first is the point: gemv.cu); pdl_wait() returns once
// the predecessor grid has finished and its writes are visible, and since that grid waited for its own predecessor,
// all earlier work is done too. pdl_release() lets the next kernel launch as soon as every block of this one has
// started (else it launches when this one ends). Both are no-ops below sm_90 and on a launch without the attribute.
__device__ __forceinline__ void pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_release()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The split kernels' ticket (attention_decode*.cu, reduce.cu's reduce_split and arg_reduce_split): each block publishes
// its partial result, then one thread (after a barrier, so the block's writes come first) orders those writes before its
// ticket (fence), draws the ticket (atomicInc with limit count − 1: the last of the `count` arrivals wraps it back to 0,
// so a CUDA graph's next replay starts from 0 again) and, when it drew the last one, orders its own later reads of the
// other blocks' partials after their writes (fence; read them with ld_cg). True for the block that merges.
__device__ __forceinline__ bool draw_last_ticket(unsigned* ticket, unsigned count)
{
    __threadfence();
    const bool last = atomicInc(ticket, count - 1) == count - 1;
    if (last) __threadfence();
    return last;
}

// The first statement of a listed kernel that reads no weights ahead: let the next kernel launch, then wait for the
// previous one.
#define PDL_ENTRY() \
    do \
    { \
        pdl_release(); \
        pdl_wait(); \
    } while (0)

#define GRID_STRIDE_LOOP(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

// Block-wide reductions over blockDim.x threads (a multiple of 32, at most 1024); every thread gets the result.
// Op combines two partial results: each warp reduces by butterfly shuffles, lane 0 of each warp leaves its result
// in shared32 (32 slots), then every warp reduces the slots (identity for the slots of missing warps).
struct SumOp
{
    template <typename T>
    __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

struct MaxOp
{
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename Op, typename T>
__device__ __forceinline__ T warp_reduce(T v)
{
    for (int o = 16; o > 0; o >>= 1) v = Op()(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

template <typename Op, typename T>
__device__ __forceinline__ T block_reduce(T v, T* shared32, T identity)
{
    v = warp_reduce<Op>(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    v = lane < warps ? shared32[lane] : identity;
    return warp_reduce<Op>(v);
}

// Sum over the block, float or double (shared32 of the same type).
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* shared32) { return block_reduce<SumOp>(v, shared32, (T)0); }

__device__ __forceinline__ float block_max(float v, float* shared32) { return block_reduce<MaxOp>(v, shared32, -__int_as_float(0x7f800000)); }

// A value another block wrote in this launch (a partial result merged by the block that takes the last ticket): from
// L2 (.cg), never a line this SM's L1 may hold. The emulation reads through volatile.
#ifdef __CUDA_ARCH__
#define PARROT_LD_CG(T, SUFFIX, CONSTRAINT)                                                  \
    __device__ __forceinline__ T ld_cg(const T* p)                                           \
    {                                                                                        \
        T v;                                                                                 \
        asm volatile("ld.global.cg." SUFFIX " %0, [%1];" : "=" CONSTRAINT(v) : "l"(p));      \
        return v;                                                                            \
    }
#else
#define PARROT_LD_CG(T, SUFFIX, CONSTRAINT) \
    __device__ __forceinline__ T ld_cg(const T* p) { return *(const volatile T*)p; }
#endif
PARROT_LD_CG(float, "f32", "f")
PARROT_LD_CG(double, "f64", "d")
PARROT_LD_CG(i64, "s64", "l")
#undef PARROT_LD_CG

// The keys that query rows [first, first + rows) of an attention (T queries, S keys, queries at key positions
// query_offset + t) may see: [0, the returned end); S when not causal.
__device__ __forceinline__ i64 causal_key_end(int causal, i64 first, i64 rows, i64 T, i64 S, i64 query_offset)
{
    if (!causal) return S;
    i64 last = first + rows - 1;
    if (last > T - 1) last = T - 1;
    return query_offset + last + 1 < S ? query_offset + last + 1 : S;
}
