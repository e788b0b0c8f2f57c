// Reductions: one block per output element. `outer` lays out the kept positions (operands: y, x);
// `inner` lays out the reduced positions of x (operand 0). Floats accumulate in float64, integers in
// wrapping int64; Max/Min propagate NaN. ArgMax/ArgMin reduce the last axis of a [rows, n] view.
#include "prelude.cuh"

#define R_SUM 0
#define R_MEAN 1
#define R_MAX 2
#define R_MIN 3
#define R_PROD 4
#define R_SUMSQ 5

__device__ __forceinline__ double combine_d(int op, double a, double b)
{
    switch (op)
    {
        case R_MAX: return (a != a || a > b) ? a : b;
        case R_MIN: return (a != a || a < b) ? a : b;
        case R_PROD: return a * b;
        default: return a + b;
    }
}

__device__ __forceinline__ i64 combine_i(int op, i64 a, i64 b)
{
    switch (op)
    {
        case R_MAX: return a > b ? a : b;
        case R_MIN: return a < b ? a : b;
        case R_PROD: return (i64)((unsigned long long)a * (unsigned long long)b);
        default: return (i64)((unsigned long long)a + (unsigned long long)b);
    }
}

extern "C" __global__ void reduce(Layout outer, i64 rows, Layout inner, i64 count, int op, void* y, int ydt, const void* x, int xdt)
{
    __shared__ double sd[32];
    __shared__ i64 si[32];
    bool integer = xdt >= DT_I32;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 o[MAX_OPERANDS], q[MAX_OPERANDS];
        offsets(outer, row, 2, o);
        double ad = op == R_PROD ? 1.0 : 0.0;
        i64 ai = op == R_PROD ? 1 : 0;
        bool any = false;
        for (i64 j = threadIdx.x; j < count; j += blockDim.x)
        {
            offsets(inner, j, 1, q);
            if (integer)
            {
                i64 v = load<i64>(x, xdt, o[1] + q[0]);
                if (op == R_SUMSQ) v = (i64)((unsigned long long)v * (unsigned long long)v);
                ai = any || (op != R_MAX && op != R_MIN) ? combine_i(op, ai, v) : v;
            }
            else
            {
                double v = load<double>(x, xdt, o[1] + q[0]);
                if (op == R_SUMSQ) v = v * v;
                ad = any || (op != R_MAX && op != R_MIN) ? combine_d(op, ad, v) : v;
            }
            any = true;
        }
        // Tree over the block: lanes without data hold the identity (or are skipped for Max/Min).
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
        int has = any ? 1 : 0;
        for (int s = 16; s > 0; s >>= 1)
        {
            double od = __shfl_down_sync(0xffffffffu, ad, s);
            i64 oi = __shfl_down_sync(0xffffffffu, ai, s);
            int oh = __shfl_down_sync(0xffffffffu, has, s);
            if (lane + s < 32 && oh)
            {
                if (has) { ad = combine_d(op, ad, od); ai = combine_i(op, ai, oi); }
                else { ad = od; ai = oi; has = 1; }
            }
        }
        __shared__ int sh[32];
        __syncthreads();
        if (lane == 0) { sd[warp] = ad; si[warp] = ai; sh[warp] = has; }
        __syncthreads();
        if (threadIdx.x == 0)
        {
            double rd = 0; i64 ri = 0; int rh = 0;
            for (int w = 0; w < warps; w++)
            {
                if (!sh[w]) continue;
                if (rh) { rd = combine_d(op, rd, sd[w]); ri = combine_i(op, ri, si[w]); }
                else { rd = sd[w]; ri = si[w]; rh = 1; }
            }
            if (!rh) { rd = op == R_PROD ? 1.0 : (op == R_MEAN ? __longlong_as_double(0x7ff8000000000000LL) : 0.0); ri = op == R_PROD ? 1 : 0; }
            else if (op == R_MEAN) rd = rd / (double)count;
            if (integer) store<i64>(y, ydt, o[0], ri);
            else store<double>(y, ydt, o[0], rd);
        }
        __syncthreads();
    }
}

// Index of the largest (argmax) or smallest value along the last axis; ties give the lowest index, NaN wins.
extern "C" __global__ void arg_reduce(Layout rows_layout, i64 rows, i64 n, i64 xcol, int is_max, i64* y, const void* x, int xdt)
{
    __shared__ double sv[32];
    __shared__ i64 sidx[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 o[MAX_OPERANDS];
        offsets(rows_layout, row, 2, o);
        double best = 0; i64 bi = -1;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x)
        {
            double v = load<double>(x, xdt, o[1] + j * xcol);
            bool better = bi < 0 || (v != v && best == best) || (best == best && (is_max ? v > best : v < best));
            if (better) { best = v; bi = j; }
        }
        for (int s = 16; s > 0; s >>= 1)
        {
            double ov = __shfl_down_sync(0xffffffffu, best, s);
            i64 oi = __shfl_down_sync(0xffffffffu, bi, s);
            if ((threadIdx.x & 31) + s < 32 && oi >= 0)
            {
                bool onan = ov != ov, bnan = best != best;
                bool better = bi < 0 || (onan && !bnan) || (onan && bnan && oi < bi)
                              || (!onan && !bnan && ((is_max ? ov > best : ov < best) || (ov == best && oi < bi)));
                if (better) { best = ov; bi = oi; }
            }
        }
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
        __syncthreads();
        if (lane == 0) { sv[warp] = best; sidx[warp] = bi; }
        __syncthreads();
        if (threadIdx.x == 0)
        {
            double b = 0; i64 i = -1;
            for (int w = 0; w < warps; w++)
            {
                double ov = sv[w]; i64 oi = sidx[w];
                if (oi < 0) continue;
                bool onan = ov != ov, bnan = b != b;
                bool better = i < 0 || (onan && !bnan) || (onan && bnan && oi < i)
                              || (!onan && !bnan && ((is_max ? ov > b : ov < b) || (ov == b && oi < i)));
                if (better) { b = ov; i = oi; }
            }
            y[o[0]] = i;
        }
        __syncthreads();
    }
}
