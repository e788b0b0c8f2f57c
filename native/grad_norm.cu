// Global gradient-norm clipping (GradClip.ClipGradNorm) over many tensors in few launches, with no host round trip
// until the caller reads the norm. Per table of up to GN_TABLE gradients (blockIdx.y picks the tensor, the table
// travels by value in the kernel parameters, as adamw_multi's):
//   grad_sumsq_multi  each (tensor, block) writes the float64 sum of squares of its elements to its own partial slot,
//                     after optionally scaling the gradient in place (DataParallel's scale, rounded as `g * scale`);
//   grad_norm_finish  adds each tensor's partials in a fixed order, rounds the tensor's sum to float32 (float64 for
//                     f64 tensors: what the per-tensor path, GradClip.TotalNorm, stores) and adds it to the running total in tensor order; the last
//                     table's call takes the square root and the clip coefficient and writes [norm, coef, Σ];
//   grad_scale_multi  g ← g·coef rounded as `g * coef` (the scalar filled into g's dtype, multiplied in float32 for
//                     the 16/32-bit dtypes); every block returns at once when coef is 1 (no clipping).
// A tensor's block count is a function of its size only (gn_blocks), and no float atomics are used: the norm is the
// same on every GPU and every run. Gradients are contiguous, of dtype f32, bf16, f16 or f64.
#include "prelude.cuh"

#define GN_TABLE 64
// Elements per sum-of-squares block and the most blocks a tensor gets (CudaBackend.GradNormBlocks mirrors them).
#define GN_BLOCK_ELEMENTS 8192
#define GN_MAX_BLOCKS 256

struct GradNormEntry
{
    void* g;
    i64 n;
    i64 first;  // the tensor's first partial slot (in this table's partials)
    int blocks; // its sum-of-squares blocks: gn_blocks(n)
    int dt;
};

struct GradNormTable
{
    GradNormEntry e[GN_TABLE];
};

// A float32 value as the binary kernel stores it in dtype dt (f32, bf16 or f16) and reads it back.
__device__ __forceinline__ float gn_round(int dt, float v)
{
    switch (dt)
    {
        case DT_BF16: return bf16_to_f32(f32_to_bf16(v));
        case DT_F16: return f16_to_f32(f32_to_f16(v));
        default: return v;
    }
}

// A double as the old path stores it in a tensor of dtype dt and reads it back (store<double> then load<double>):
// float64 kept, float32 rounded once, bf16 and f16 through float32 (a Fill of the scalar).
__device__ __forceinline__ double gn_as_stored(int dt, double v) { return dt == DT_F64 ? v : (double)gn_round(dt, (float)v); }

__device__ __forceinline__ int gn_blocks(i64 n)
{
    i64 b = (n + GN_BLOCK_ELEMENTS - 1) / GN_BLOCK_ELEMENTS;
    return b < 1 ? 1 : b > GN_MAX_BLOCKS ? GN_MAX_BLOCKS : (int)b;
}

// Block (x, y) sums the squares of tensor y's elements x·blockDim + t (stride blockDim·blocks) into
// partials[first + x]. With scale ≠ 1 each element is first replaced by g·scale, rounded as `g * scale`, and its
// square is taken of the stored value.
extern "C" __global__ void grad_sumsq_multi(GradNormTable table, int count, double* partials, double scale)
{
    __shared__ double shared32[32];
    if ((int)blockIdx.y >= count) return;
    const GradNormEntry& t = table.e[blockIdx.y];
    if ((int)blockIdx.x >= t.blocks) return; // the whole block leaves: no barrier is missed
    bool rescale = scale != 1;
    i64 stride = (i64)blockDim.x * t.blocks;
    double acc = 0;
    if (t.dt == DT_F64)
    {
        double* g = (double*)t.g;
        for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < t.n; i += stride)
        {
            double v = g[i];
            if (rescale)
            {
                v = v * scale;
                g[i] = v;
            }
            acc += v * v;
        }
    }
    else
    {
        float s = (float)gn_as_stored(t.dt, scale);
        for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < t.n; i += stride)
        {
            float v = load<float>(t.g, t.dt, i);
            if (rescale)
            {
                v = gn_round(t.dt, v * s);
                store<float>(t.g, t.dt, i, v); // exact: v is already in g's dtype
            }
            acc += (double)v * (double)v; // exact product of two floats
        }
    }
    double sum = block_sum(acc, shared32);
    if (threadIdx.x == 0) partials[t.first + blockIdx.x] = sum;
}

// One block (a multiple of 32 threads): warp w sums the partials of tensors w, w + warps, ... (lane l those at
// l, l + 32, ..., then a fixed butterfly), rounds the sum to float32 (f64 tensors: kept); thread 0 adds the tensors' sums in
// table order to out[0] (0 when `first_table`). The last table's call leaves out = [norm, coef, Σ]: coef is
// max_norm / (norm + 1e-6) when the norm and max_norm are finite and that is below 1, else exactly 1.
extern "C" __global__ void grad_norm_finish(GradNormTable table, int count, const double* partials, int first_table, int last_table,
                                            double max_norm, double* out)
{
    __shared__ double sums[GN_TABLE];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int k = warp; k < count; k += warps)
    {
        const GradNormEntry& t = table.e[k];
        double s = 0;
        for (int j = lane; j < t.blocks; j += 32) s += partials[t.first + j];
        s = warp_reduce<SumOp>(s);
        if (lane == 0) sums[k] = t.dt == DT_F64 ? s : (double)(float)s; // GradClip.TotalNorm's float32 sum (f16 would overflow)
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    double acc = first_table ? 0.0 : out[0];
    for (int k = 0; k < count; k++) acc += sums[k];
    if (!last_table)
    {
        out[0] = acc;
        return;
    }
    double norm = sqrt(acc);
    double coef = 1;
    // x - x == 0 is false exactly for NaN and ±∞ (no isfinite without headers).
    if (norm - norm == 0 && max_norm - max_norm == 0)
    {
        double c = max_norm / (norm + 1e-6);
        if (c < 1) coef = c;
    }
    out[0] = norm;
    out[1] = coef;
    out[2] = acc; // the sum of squares itself: a ZeRO-2 rank's share of the global norm
}

// g ← g·coef for every tensor of the table, coef = norm_coef[1] rounded as `g * coef` rounds its scalar.
extern "C" __global__ void grad_scale_multi(GradNormTable table, int count, const double* norm_coef)
{
    double coef = norm_coef[1];
    if (coef == 1 || (int)blockIdx.y >= count) return;
    const GradNormEntry& t = table.e[blockIdx.y];
    i64 stride = (i64)blockDim.x * gridDim.x;
    if (t.dt == DT_F64)
    {
        double* g = (double*)t.g;
        for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < t.n; i += stride) g[i] = g[i] * coef;
        return;
    }
    float s = (float)gn_as_stored(t.dt, coef);
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < t.n; i += stride)
        store<float>(t.g, t.dt, i, load<float>(t.g, t.dt, i) * s);
}
