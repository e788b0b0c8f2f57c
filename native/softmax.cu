// Softmax and log-softmax over the last axis, one block per row. `rows` lays out the leading dims
// (operands: y, x); xcol and ycol are the last axis' strides. float32 math (float64 for f64 tensors).
#include "prelude.cuh"

template <typename T>
__device__ void softmax_row(const void* x, int dt, i64 xo, i64 xcol, void* y, i64 yo, i64 ycol, i64 n, int log_softmax, T* shared)
{
    T m = -(T)__int_as_float(0x7f800000);
    bool nan = false;
    for (i64 j = threadIdx.x; j < n; j += blockDim.x)
    {
        T v = load<T>(x, dt, xo + j * xcol);
        nan |= v != v;
        m = v > m ? v : m;
    }
    // Block max (NaN handled through the flag), then block sum of exp(x - max).
    for (int o = 16; o > 0; o >>= 1) { T w = __shfl_xor_sync(0xffffffffu, m, o); m = w > m ? w : m; }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = m;
    __syncthreads();
    m = shared[0];
    for (int w = 1; w < warps; w++) m = shared[w] > m ? shared[w] : m;
    int anynan = __syncthreads_or(nan ? 1 : 0);
    T s = 0;
    for (i64 j = threadIdx.x; j < n; j += blockDim.x) s += exp(load<T>(x, dt, xo + j * xcol) - m);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    __syncthreads();
    if (lane == 0) shared[warp] = s;
    __syncthreads();
    s = 0;
    for (int w = 0; w < warps; w++) s += shared[w];
    T nanv = (T)__int_as_float(0x7fc00000);
    T lse = log(s);
    for (i64 j = threadIdx.x; j < n; j += blockDim.x)
    {
        T v = load<T>(x, dt, xo + j * xcol) - m;
        T r = log_softmax ? v - lse : exp(v) / s;
        store<T>(y, dt, yo + j * ycol, anynan ? nanv : r);
    }
    __syncthreads();
}

extern "C" __global__ void softmax(Layout rows_layout, i64 rows, i64 n, void* y, i64 ycol, const void* x, i64 xcol, int dt, int log_softmax)
{
    __shared__ double shared[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 o[MAX_OPERANDS];
        offsets(rows_layout, row, 2, o);
        if (dt == DT_F64) softmax_row<double>(x, dt, o[1], xcol, y, o[0], ycol, n, log_softmax, shared);
        else softmax_row<float>(x, dt, o[1], xcol, y, o[0], ycol, n, log_softmax, (float*)shared);
    }
}

// Softmax backward from the output: dx = y * (dy - Σ dy·y), or for log-softmax dx = dy - exp(y) · Σ dy.
extern "C" __global__ void softmax_backward(i64 rows, i64 n, void* dx, const void* dy, const void* y, int dt, int log_softmax)
{
    __shared__ float shared[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 base = row * n;
        float acc = 0;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x)
        {
            float g = load<float>(dy, dt, base + j);
            acc += log_softmax ? g : g * load<float>(y, dt, base + j);
        }
        acc = block_sum(acc, shared);
        for (i64 j = threadIdx.x; j < n; j += blockDim.x)
        {
            float g = load<float>(dy, dt, base + j), v = load<float>(y, dt, base + j);
            store<float>(dx, dt, base + j, log_softmax ? g - expf(v) * acc : v * (g - acc));
        }
        __syncthreads();
    }
}
