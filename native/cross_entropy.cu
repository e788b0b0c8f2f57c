// Fused cross-entropy over the vocabulary, one block per row, never materialising the probabilities:
// forward loss = logsumexp(row) − row[target] (0 for ignored rows) and the row's log-sum-exp for backward;
// backward dlogits = (exp(x − lse) − [j = target]) · dloss[row]. float32 math (float64 for f64 logits).
// The targets are checked by the deferred index check (indexing.cu's index_check), not here: a target outside
// [0, n) that is not the ignore index gives its row a NaN loss (and no out-of-bounds read) until that check's
// error is thrown at the host's next read.
#include "prelude.cuh"

template <typename T>
__device__ T row_lse(const void* x, int dt, i64 base, i64 col, i64 n, T* shared)
{
    // Online log-sum-exp per thread (one pass), then merged across the block.
    T m = -(T)__int_as_float(0x7f800000), s = 0;
    for (i64 j = threadIdx.x; j < n; j += blockDim.x)
    {
        T v = load<T>(x, dt, base + j * col);
        if (v > m) { s = s * exp(m - v) + 1; m = v; }
        else if (v != v) s = v;                 // NaN poisons the row
        else if (m != -(T)__int_as_float(0x7f800000)) s += exp(v - m); // while all seen are −∞, they add nothing
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
    {
        T om = __shfl_xor_sync(0xffffffffu, m, o), os = __shfl_xor_sync(0xffffffffu, s, o);
        T nm = om > m ? om : m;
        s = (s == 0 ? (T)0 : s * exp(m - nm)) + (os == 0 ? (T)0 : os * exp(om - nm));
        m = nm;
    }
    __syncthreads();
    if (lane == 0) { shared[warp] = m; shared[32 + warp] = s; }
    __syncthreads();
    T M = shared[0];
    for (int w = 1; w < warps; w++) M = shared[w] > M ? shared[w] : M;
    T S = 0;
    for (int w = 0; w < warps; w++) if (shared[32 + w] != 0) S += shared[32 + w] * exp(shared[w] - M);
    __syncthreads();
    return M + log(S);
}

extern "C" __global__ void cross_entropy_forward(i64 rows, i64 n, const void* logits, int dt, i64 rstride, i64 col,
                                                 const i64* targets, i64 tstride, i64 ignore, void* loss, int ldt, i64 lstride, float* lse_out)
{
    __shared__ double shared[64];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 base = row * rstride, t = targets[row * tstride];
        bool bad = t != ignore && (t < 0 || t >= n);
        if (dt == DT_F64)
        {
            double lse = row_lse<double>(logits, dt, base, col, n, shared);
            if (threadIdx.x == 0)
                store<double>(loss, ldt, row * lstride, t == ignore ? 0.0 : bad ? __longlong_as_double(0x7ff8000000000000LL) : lse - load<double>(logits, dt, base + t * col));
            if (threadIdx.x == 0 && lse_out) lse_out[row] = (float)lse;
        }
        else
        {
            float lse = row_lse<float>(logits, dt, base, col, n, (float*)shared);
            if (threadIdx.x == 0)
                store<float>(loss, ldt, row * lstride, t == ignore ? 0.0f : bad ? __int_as_float(0x7fc00000) : lse - load<float>(logits, dt, base + t * col));
            if (threadIdx.x == 0 && lse_out) lse_out[row] = lse;
        }
    }
}

// dlogits contiguous [rows, n] in the logits' dtype; dloss [rows] float32 (already divided for a mean).
extern "C" __global__ void cross_entropy_backward(i64 rows, i64 n, void* dlogits, const void* logits, int dt,
                                                  const i64* targets, i64 ignore, const float* lse, const float* dloss)
{
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 t = targets[row];
        float g = t == ignore ? 0.0f : dloss[row], l = lse[row];
        for (i64 j = threadIdx.x; j < n; j += blockDim.x)
        {
            float p = expf(load<float>(logits, dt, row * n + j) - l);
            store<float>(dlogits, dt, row * n + j, (p - (j == t ? 1.0f : 0.0f)) * g);
        }
    }
}
