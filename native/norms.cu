// RMSNorm (Hugging Face Qwen2RMSNorm semantics) and LayerNorm over the last axis, forward and backward,
// one block per row. `rows` lays out the leading dims (operands: y, x); xcol, ycol, wcol are last-axis strides.
// Optional per-row statistics (rstd, mean; float32, contiguous) are saved for the backward kernels.
#include "prelude.cuh"

extern "C" __global__ void rms_norm(Layout rows_layout, i64 rows, i64 n, void* y, int ydt, i64 ycol,
                                    const void* x, int xdt, i64 xcol, const void* w, int wdt, i64 wcol, float eps, float* rstd_out)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels
    __shared__ double shared[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 o[MAX_OPERANDS];
        offsets(rows_layout, row, 2, o);
        if (xdt == DT_F64)
        {
            double s = 0;
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) { double v = load<double>(x, xdt, o[1] + j * xcol); s += v * v; }
            s = block_sum(s, shared);
            double r = 1.0 / sqrt(s / (double)n + (double)eps);
            for (i64 j = threadIdx.x; j < n; j += blockDim.x)
                store<double>(y, ydt, o[0] + j * ycol, load<double>(w, wdt, j * wcol) * (load<double>(x, xdt, o[1] + j * xcol) * r));
            if (rstd_out && threadIdx.x == 0) rstd_out[row] = (float)r;
        }
        else
        {
            float s = 0;
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) { float v = load<float>(x, xdt, o[1] + j * xcol); s += v * v; }
            s = block_sum(s, (float*)shared);
            float r = 1.0f / sqrtf(s / (float)n + eps);
            for (i64 j = threadIdx.x; j < n; j += blockDim.x)
            {
                float h = load<float>(x, xdt, o[1] + j * xcol) * r;
                // HF rounds the normalised value to the input dtype before the weight multiplies it.
                if (xdt == DT_BF16) h = bf16_to_f32(f32_to_bf16(h));
                else if (xdt == DT_F16) h = f16_to_f32(f32_to_f16(h));
                store<float>(y, ydt, o[0] + j * ycol, load<float>(w, wdt, j * wcol) * h);
            }
            if (rstd_out && threadIdx.x == 0) rstd_out[row] = r;
        }
        __syncthreads();
    }
}

// Inference's residual step: sum = x + res (rounded to the dtype, as the add alone) and y = rms_norm(sum) in one pass
// over contiguous [rows, n] rows of one float dtype (f32 or bf16; weight the same); the arithmetic is rms_norm's float
// path exactly. Decode runs it on one row per launch, where its time is a chain of latencies, so the chain is kept
// short: each thread's first ADD_NORM_KEEP sums are rounded in registers (not read back after their store) and kept
// there for the second pass, and their weights are loaded before the block's reduction rather than after it. Longer
// rows' further elements (past ADD_NORM_KEEP · blockDim) take the plain loops, in the same element order.
#define ADD_NORM_KEEP 4

// T's value as float, and float rounded to T and back (what store then load give): bf16 (u16) or f32.
__device__ __forceinline__ float as_f32(u16 v) { return bf16_to_f32(v); }
__device__ __forceinline__ float as_f32(float v) { return v; }
__device__ __forceinline__ float rounded(float v, const u16*) { return bf16_to_f32(f32_to_bf16(v)); }
__device__ __forceinline__ float rounded(float v, const float*) { return v; }
__device__ __forceinline__ void put_f32(u16* p, float v) { *p = f32_to_bf16(v); }
__device__ __forceinline__ void put_f32(float* p, float v) { *p = v; }

// y = w · round(sum · r) (rounded before the weight multiplies it, as rms_norm).
template <typename T>
__device__ __forceinline__ float add_norm_out(float sum, float r, float w, const T* t)
{
    return w * rounded(sum * r, t);
}

// One block's rows, typed (the kernel's dt picks T; typed loads, row pointers and 32-bit offsets within a row keep
// the registers within the 64 a 1024-thread block allows). n is a tensor's last dimension: it fits an int. The tail
// loops count in unsigned: a column below n ≤ INT_MAX plus blockDim stays below 2^32, where an int would pass INT_MAX
// for widths within a block of it, wrap negative, stay below n and index before the row (tools/cuda-emu rows_test).
template <typename T>
__device__ __forceinline__ void add_rms_norm_rows(i64 rows, int n, T* sum, T* y, const T* x, const T* res, const T* w, float eps)
{
    __shared__ float shared[32];
    const int kept_end = ADD_NORM_KEEP * (int)blockDim.x; // elements below this are held in registers
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        T* sr = sum + row * n;
        T* yr = y + row * n;
        const T* xr = x + row * n;
        const T* rr = res + row * n;
        float s = 0, kept[ADD_NORM_KEEP], wk[ADD_NORM_KEEP];
#pragma unroll
        for (int c = 0; c < ADD_NORM_KEEP; c++)
        {
            int j = threadIdx.x + c * blockDim.x;
            if (j < n)
            {
                // The sum as the add alone stores it: rounded here, not read back after its store.
                kept[c] = rounded(as_f32(xr[j]) + as_f32(rr[j]), x);
                wk[c] = as_f32(w[j]);
                put_f32(sr + j, kept[c]);
                s += kept[c] * kept[c];
            }
        }
        for (unsigned j = threadIdx.x + kept_end; j < (unsigned)n; j += blockDim.x)
        {
            float v = rounded(as_f32(xr[j]) + as_f32(rr[j]), x);
            put_f32(sr + j, v);
            s += v * v;
        }
        s = block_sum(s, shared);
        float r = 1.0f / sqrtf(s / (float)n + eps);
#pragma unroll
        for (int c = 0; c < ADD_NORM_KEEP; c++)
        {
            int j = threadIdx.x + c * blockDim.x;
            if (j < n) put_f32(yr + j, add_norm_out(kept[c], r, wk[c], x));
        }
        for (unsigned j = threadIdx.x + kept_end; j < (unsigned)n; j += blockDim.x)
            put_f32(yr + j, add_norm_out(as_f32(sr[j]), r, as_f32(w[j]), x));
        __syncthreads();
    }
}

extern "C" __global__ void __launch_bounds__(1024) add_rms_norm(i64 rows, i64 n, void* sum, void* y, const void* x, const void* res, const void* w, int dt, float eps)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels
    if (dt == DT_BF16) add_rms_norm_rows<u16>(rows, (int)n, (u16*)sum, (u16*)y, (const u16*)x, (const u16*)res, (const u16*)w, eps);
    else add_rms_norm_rows<float>(rows, (int)n, (float*)sum, (float*)y, (const float*)x, (const float*)res, (const float*)w, eps);
}

// dx = r·(w⊙dy) − x·r³·Σ(w⊙dy⊙x)/n. Contiguous [rows, n] tensors. With recompute, each row's r = 1/√(Σx²/n + eps)
// is computed as the forward computes it and stored into rstd (then a scratch [rows]); else rstd holds the forward's.
// The weight gradient is left to norm_weight_grad_partial/reduce (deterministic, no atomics).
extern "C" __global__ void rms_norm_backward(i64 rows, i64 n, void* dx, const void* dy, const void* x, int dt,
                                             const void* w, int wdt, float* rstd, int recompute, float eps)
{
    __shared__ float shared[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 base = row * n;
        float dot = 0, ss = 0;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x)
        {
            float xv = load<float>(x, dt, base + j);
            dot += load<float>(w, wdt, j) * load<float>(dy, dt, base + j) * xv;
            ss += xv * xv;
        }
        dot = block_sum(dot, shared);
        float r;
        if (recompute)
        {
            r = 1.0f / sqrtf(block_sum(ss, shared) / (float)n + eps);
            if (threadIdx.x == 0) rstd[row] = r;
        }
        else r = rstd[row];
        float c = r * r * r * dot / (float)n;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x)
        {
            float g = load<float>(dy, dt, base + j), xv = load<float>(x, dt, base + j);
            store<float>(dx, dt, base + j, r * load<float>(w, wdt, j) * g - xv * c);
        }
        __syncthreads();
    }
}

// Weight (and bias) gradients of the norms without atomics: grid (column blocks, chunks); chunk c sums its fixed
// range of rows in ascending order, x̂ = (x − mean)·r (mean null for RMSNorm): pw[c, j] = Σ dy⊙x̂, pb[c, j] = Σ dy.
extern "C" __global__ void norm_weight_grad_partial(i64 rows, i64 n, i64 chunks, const void* dy, const void* x, int dt,
                                                    const float* mean, const float* rstd, float* pw, float* pb)
{
    i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x, c = blockIdx.y;
    if (j >= n) return;
    i64 r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks;
    float sw = 0, sb = 0;
    for (i64 r = r0; r < r1; r++)
    {
        float g = load<float>(dy, dt, r * n + j), xh = (load<float>(x, dt, r * n + j) - (mean ? mean[r] : 0.0f)) * rstd[r];
        sw += g * xh;
        sb += g;
    }
    if (pw) pw[c * n + j] = sw;
    if (pb) pb[c * n + j] = sb;
}

// dw[j] += Σ_c pw[c, j] and db[j] += Σ_c pb[c, j], chunks in ascending order.
extern "C" __global__ void norm_weight_grad_reduce(i64 n, i64 chunks, const float* pw, float* dw, const float* pb, float* db)
{
    GRID_STRIDE_LOOP(j, n)
    {
        float sw = 0, sb = 0;
        for (i64 c = 0; c < chunks; c++) { if (pw) sw += pw[c * n + j]; if (pb) sb += pb[c * n + j]; }
        if (dw) dw[j] += sw;
        if (db) db[j] += sb;
    }
}

// y = (x − mean)/√(var + eps)·w + b with the biased variance; statistics in float64. w, b may be null.
extern "C" __global__ void layer_norm(Layout rows_layout, i64 rows, i64 n, void* y, i64 ycol, const void* x, i64 xcol, int dt,
                                      const void* w, const void* b, int wdt, i64 wcol, i64 bcol, double eps, float* mean_out, float* rstd_out)
{
    __shared__ double shared[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 o[MAX_OPERANDS];
        offsets(rows_layout, row, 2, o);
        double s = 0;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) s += load<double>(x, dt, o[1] + j * xcol);
        double mean = block_sum(s, shared) / (double)n;
        double q = 0;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) { double d = load<double>(x, dt, o[1] + j * xcol) - mean; q += d * d; }
        double var = block_sum(q, shared) / (double)n;
        double r = 1.0 / sqrt(var + eps);
        for (i64 j = threadIdx.x; j < n; j += blockDim.x)
        {
            if (dt == DT_F64)
            {
                double h = (load<double>(x, dt, o[1] + j * xcol) - mean) * r;
                if (w) h *= load<double>(w, wdt, j * wcol);
                if (b) h += load<double>(b, wdt, j * bcol);
                store<double>(y, dt, o[0] + j * ycol, h);
            }
            else
            {
                float h = (load<float>(x, dt, o[1] + j * xcol) - (float)mean) * (float)r;
                if (w) h *= load<float>(w, wdt, j * wcol);
                if (b) h += load<float>(b, wdt, j * bcol);
                store<float>(y, dt, o[0] + j * ycol, h);
            }
        }
        if (threadIdx.x == 0) { if (mean_out) mean_out[row] = (float)mean; if (rstd_out) rstd_out[row] = (float)r; }
        __syncthreads();
    }
}

// x̂ = (x − mean)·r, g = dy⊙w; dx = r·(g − mean(g) − x̂·mean(g⊙x̂)). With recompute, the statistics are computed in
// float64 as the forward computes them and stored into mean and rstd (scratch [rows]); else they hold the forward's.
// Weight and bias gradients: norm_weight_grad_partial/reduce.
extern "C" __global__ void layer_norm_backward(i64 rows, i64 n, void* dx, const void* dy, const void* x, int dt, const void* w, int wdt,
                                               float* mean, float* rstd, int recompute, double eps)
{
    __shared__ double shared_d[32];
    float* shared = (float*)shared_d;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 base = row * n;
        float mu, r;
        if (!recompute) { mu = mean[row]; r = rstd[row]; }
        else
        {
            double s = 0;
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) s += load<double>(x, dt, base + j);
            double m = block_sum(s, shared_d) / (double)n, q = 0;
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) { double d = load<double>(x, dt, base + j) - m; q += d * d; }
            q = block_sum(q, shared_d) / (double)n;
            mu = (float)m; r = (float)(1.0 / sqrt(q + eps));
            if (threadIdx.x == 0) { mean[row] = mu; rstd[row] = r; }
        }
        float sg = 0, sgx = 0;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x)
        {
            float xh = (load<float>(x, dt, base + j) - mu) * r;
            float g = load<float>(dy, dt, base + j) * (w ? load<float>(w, wdt, j) : 1.0f);
            sg += g; sgx += g * xh;
        }
        sg = block_sum(sg, shared) / (float)n;
        sgx = block_sum(sgx, shared) / (float)n;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x)
        {
            float d = load<float>(dy, dt, base + j);
            float xh = (load<float>(x, dt, base + j) - mu) * r;
            float g = d * (w ? load<float>(w, wdt, j) : 1.0f);
            store<float>(dx, dt, base + j, r * (g - sg - xh * sgx));
        }
        __syncthreads();
    }
}
