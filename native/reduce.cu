// Reductions. `outer` lays out the kept positions (operands: y, x); `inner` lays out the reduced positions of x
// (operand 0). Floats accumulate in float64, integers in wrapping int64; Max/Min propagate NaN. `reduce` gives each
// output element a block (few outputs, many elements each); `reduce_columns` gives it a column of 8 threads, so a
// warp covers 32 neighbouring outputs (many outputs, few elements each: a sum over a leading axis reads coalesced).
// A few outputs of very many elements each (a whole tensor's sum: every element of a 136M-element embedding on one
// SM took milliseconds) run reduce_split: chunks of an output on many blocks, the last of an output merging.
// ArgMax/ArgMin/ArgMaxNaNLowest/ArgMaxNumber reduce the last axis of a [rows, n] view: one block per row, or for few long rows (the
// argmax over a vocabulary in decode) arg_reduce_split over chunks of a row on many blocks, the last of a row merging.
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

// Folds the elements j = first, first + step, … < count of one output (x offset base) into (ad, ai), in order;
// `any` says whether there was one (Max/Min start from the first element, the others from the identity).
__device__ __forceinline__ void reduce_fold(int op, bool integer, const Layout& inner, i64 count, i64 first, i64 step,
                                            const void* x, int xdt, i64 base, double& ad, i64& ai, bool& any)
{
    ad = op == R_PROD ? 1.0 : 0.0;
    ai = op == R_PROD ? 1 : 0;
    any = false;
    i64 q[MAX_OPERANDS];
    for (i64 j = first; j < count; j += step)
    {
        offsets(inner, j, 1, q);
        if (integer)
        {
            i64 v = load<i64>(x, xdt, base + q[0]);
            if (op == R_SUMSQ) v = (i64)((unsigned long long)v * (unsigned long long)v);
            ai = any || (op != R_MAX && op != R_MIN) ? combine_i(op, ai, v) : v;
        }
        else
        {
            double v = load<double>(x, xdt, base + q[0]);
            if (op == R_SUMSQ) v = v * v;
            ad = any || (op != R_MAX && op != R_MIN) ? combine_d(op, ad, v) : v;
        }
        any = true;
    }
}

// Writes an output from its combined partials; `has` 0 (no element) gives the identity, NaN for Mean.
__device__ __forceinline__ void reduce_store(int op, bool integer, i64 count, double rd, i64 ri, int has, void* y, int ydt, i64 at)
{
    if (!has) { rd = op == R_PROD ? 1.0 : (op == R_MEAN ? __longlong_as_double(0x7ff8000000000000LL) : 0.0); ri = op == R_PROD ? 1 : 0; }
    else if (op == R_MEAN) rd = rd / (double)count;
    if (integer) store<i64>(y, ydt, at, ri);
    else store<double>(y, ydt, at, rd);
}

// Combines the block's partials (ad, ai; `any` whether the thread had an element) into (rd, ri, rh), valid in thread 0:
// a tree over each warp, then the warps in order. Lanes without data are skipped (Max/Min have no identity). Ends
// with a barrier, so the shared slots may be reused at once.
__device__ __forceinline__ void reduce_block(int op, double ad, i64 ai, bool any, double& rd, i64& ri, int& rh)
{
    __shared__ double sd[32];
    __shared__ i64 si[32];
    __shared__ int sh[32];
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
    __syncthreads();
    if (lane == 0) { sd[warp] = ad; si[warp] = ai; sh[warp] = has; }
    __syncthreads();
    rd = 0; ri = 0; rh = 0;
    if (threadIdx.x == 0)
        for (int w = 0; w < warps; w++)
        {
            if (!sh[w]) continue;
            if (rh) { rd = combine_d(op, rd, sd[w]); ri = combine_i(op, ri, si[w]); }
            else { rd = sd[w]; ri = si[w]; rh = 1; }
        }
    __syncthreads();
}

extern "C" __global__ void reduce(Layout outer, i64 rows, Layout inner, i64 count, int op, void* y, int ydt, const void* x, int xdt)
{
    bool integer = xdt >= DT_I32;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 o[MAX_OPERANDS];
        offsets(outer, row, 2, o);
        double ad; i64 ai; bool any;
        reduce_fold(op, integer, inner, count, threadIdx.x, blockDim.x, x, xdt, o[1], ad, ai, any);
        double rd; i64 ri; int rh;
        reduce_block(op, ad, ai, any, rd, ri, rh);
        if (threadIdx.x == 0) reduce_store(op, integer, count, rd, ri, rh, y, ydt, o[0]);
    }
}

// Output blockIdx.y's elements j in [chunk·len, (chunk + 1)·len), chunk = blockIdx.x (every chunk holds at least one:
// the launcher sizes them so), folded as `reduce` folds a row; each block writes its partial, takes a ticket of its
// output, and the block drawing the last one combines the partials in chunk order and stores the result. The tickets
// wrap back to 0 (atomicInc with limit chunks − 1), as arg_reduce_split's, whose buffer they share (the launches of
// one stream do not overlap). The chunking depends on the shape alone, so the bits do not depend on the GPU.
extern "C" __global__ void reduce_split(Layout outer, Layout inner, i64 count, int op, i64 len, double* pd, i64* pi,
                                        unsigned* tickets, void* y, int ydt, const void* x, int xdt)
{
    __shared__ int last;
    bool integer = xdt >= DT_I32;
    i64 row = blockIdx.y, chunk = blockIdx.x, chunks = gridDim.x;
    i64 o[MAX_OPERANDS];
    offsets(outer, row, 2, o);
    i64 j0 = chunk * len, j1 = j0 + len < count ? j0 + len : count;
    double ad; i64 ai; bool any;
    reduce_fold(op, integer, inner, j1, j0 + threadIdx.x, blockDim.x, x, xdt, o[1], ad, ai, any);
    double rd; i64 ri; int rh;
    reduce_block(op, ad, ai, any, rd, ri, rh);
    if (threadIdx.x == 0)
    {
        pd[row * chunks + chunk] = rd;
        pi[row * chunks + chunk] = ri;
        last = draw_last_ticket(&tickets[row], (unsigned)chunks);
    }
    __syncthreads();
    if (!last || threadIdx.x != 0) return;
    rd = ld_cg(pd + row * chunks);
    ri = ld_cg(pi + row * chunks);
    for (i64 c = 1; c < chunks; c++)
    {
        rd = combine_d(op, rd, ld_cg(pd + row * chunks + c));
        ri = combine_i(op, ri, ld_cg(pi + row * chunks + c));
    }
    reduce_store(op, integer, count, rd, ri, 1, y, ydt, o[0]);
}

// Columns of REDUCE_COL_GROUPS threads: thread (c, g) of a block of 32 × REDUCE_COL_GROUPS folds the elements
// j ≡ g (mod groups) of output row blockIdx.x·32 + c in order; the groups' partials are combined in order in
// shared memory (deterministic). Launched with 256 threads.
#define REDUCE_COL_GROUPS 8

extern "C" __global__ void reduce_columns(Layout outer, i64 rows, Layout inner, i64 count, int op, void* y, int ydt, const void* x, int xdt)
{
    __shared__ double sd[REDUCE_COL_GROUPS][32];
    __shared__ i64 si[REDUCE_COL_GROUPS][32];
    __shared__ int sh[REDUCE_COL_GROUPS][32];
    bool integer = xdt >= DT_I32;
    int c = threadIdx.x & 31, g = threadIdx.x >> 5;
    for (i64 base = (i64)blockIdx.x * 32; base < rows; base += (i64)gridDim.x * 32)
    {
        i64 row = base + c;
        double ad = 0; i64 ai = 0; bool any = false;
        i64 o[MAX_OPERANDS];
        if (row < rows)
        {
            offsets(outer, row, 2, o);
            reduce_fold(op, integer, inner, count, g, REDUCE_COL_GROUPS, x, xdt, o[1], ad, ai, any);
        }
        sd[g][c] = ad; si[g][c] = ai; sh[g][c] = any ? 1 : 0;
        __syncthreads();
        if (g == 0 && row < rows)
        {
            double rd = 0; i64 ri = 0; int rh = 0;
            for (int w = 0; w < REDUCE_COL_GROUPS; w++)
            {
                if (!sh[w][c]) continue;
                if (rh) { rd = combine_d(op, rd, sd[w][c]); ri = combine_i(op, ri, si[w][c]); }
                else { rd = sd[w][c]; ri = si[w][c]; rh = 1; }
            }
            reduce_store(op, integer, count, rd, ri, rh, y, ydt, o[0]);
        }
        __syncthreads();
    }
}

// Index of the largest (argmax) or smallest value along the last axis; ties give the lowest index, -0 = +0. `op` is
// ArgReduceOp's order: A_MAX and A_MIN let NaN win (the first NaN), as PyTorch; A_MAX_NAN_LOWEST puts NaN below every
// number, -inf included (a row of NaN only gives the first NaN, index 0); A_MAX_NUMBER is A_MAX_NAN_LOWEST's choice
// where it is a number above -inf, else -1 (the generator's greedy pick: a row of NaN and -inf only holds no token).
#define A_MAX 0
#define A_MIN 1
#define A_MAX_NAN_LOWEST 2
#define A_MAX_NUMBER 3

// arg_better: whether candidate (ov, oi) beats the best so far (best, bi); oi < 0 is "no candidate", bi < 0 "none yet".
// A total order on (value, index), so any merge order of partial results gives the same winner.
__device__ __forceinline__ bool arg_better(int op, double ov, i64 oi, double best, i64 bi)
{
    if (oi < 0) return false;
    if (bi < 0) return true;
    bool onan = ov != ov, bnan = best != best;
    if (onan != bnan) return op == A_MAX_NAN_LOWEST || op == A_MAX_NUMBER ? bnan : onan;
    if (onan) return oi < bi;
    return (op == A_MIN ? ov < best : ov > best) || (ov == best && oi < bi);
}

// What a row's winner (best, bi) writes: bi, or for A_MAX_NUMBER -1 where the winner is no number above -inf (NaN
// ranks lowest there, so that is a row of NaN and -inf only). Decided from the value the merge already holds: no pass more.
__device__ __forceinline__ i64 arg_result(int op, double best, i64 bi)
{
    return op == A_MAX_NUMBER && !(best > -__longlong_as_double(0x7ff0000000000000LL)) ? -1 : bi;
}

// The block's best of its threads' (best, bi); thread 0 gets the answer. Callers synchronise around it.
__device__ __forceinline__ void arg_block(int op, double& best, i64& bi, double* sv, i64* sidx)
{
    for (int s = 16; s > 0; s >>= 1)
    {
        double ov = __shfl_down_sync(0xffffffffu, best, s);
        i64 oi = __shfl_down_sync(0xffffffffu, bi, s);
        if ((threadIdx.x & 31) + s < 32 && arg_better(op, ov, oi, best, bi)) { best = ov; bi = oi; }
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) { sv[warp] = best; sidx[warp] = bi; }
    __syncthreads();
    if (threadIdx.x == 0)
    {
        best = 0; bi = -1;
        for (int w = 0; w < warps; w++)
            if (arg_better(op, sv[w], sidx[w], best, bi)) { best = sv[w]; bi = sidx[w]; }
    }
}

// The best of elements [j0, j1) of a row (strided by xcol), per thread; j ascending, so ties keep the lowest index.
__device__ __forceinline__ void arg_scan(int op, const void* x, int xdt, i64 base, i64 xcol, i64 j0, i64 j1, double& best, i64& bi)
{
    best = 0; bi = -1;
    for (i64 j = j0 + threadIdx.x; j < j1; j += blockDim.x)
    {
        double v = load<double>(x, xdt, base + j * xcol);
        if (arg_better(op, v, j, best, bi)) { best = v; bi = j; }
    }
}

extern "C" __global__ void arg_reduce(Layout rows_layout, i64 rows, i64 n, i64 xcol, int op, i64* y, const void* x, int xdt)
{
    __shared__ double sv[32];
    __shared__ i64 sidx[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x)
    {
        i64 o[MAX_OPERANDS];
        offsets(rows_layout, row, 2, o);
        double best; i64 bi;
        arg_scan(op, x, xdt, o[1], xcol, 0, n, best, bi);
        arg_block(op, best, bi, sv, sidx);
        if (threadIdx.x == 0) y[o[0]] = arg_result(op, best, bi);
        __syncthreads();
    }
}

// Few long rows in one launch: block (chunk blockIdx.x, row blockIdx.y) writes the best of elements
// [chunk·len, chunk·len + len) of its row to pv/pi[row·chunks + chunk] (pi = −1 for an empty chunk), then takes a ticket
// of its row; the block that draws the last one merges the row's chunks in chunk order into y. arg_better is a total
// order on (value, index), so the winner is the one-block arg_reduce's whichever block comes last. atomicInc with limit
// chunks − 1 wraps the ticket back to 0 at that last arrival, so the tickets (a buffer the launcher zeroed once) are 0
// between launches, as a CUDA graph replay needs. One fence by thread 0 after the block's result is written orders it
// before the ticket; the merging block's fence after its ticket orders its reads after every other chunk's writes.
extern "C" __global__ void arg_reduce_split(Layout rows_layout, i64 n, i64 xcol, int op, i64 len, double* pv, i64* pi,
                                            unsigned* tickets, i64* y, const void* x, int xdt)
{
    __shared__ double sv[32];
    __shared__ i64 sidx[32];
    __shared__ int last;
    i64 row = blockIdx.y, chunk = blockIdx.x, chunks = gridDim.x;
    i64 o[MAX_OPERANDS];
    offsets(rows_layout, row, 2, o);
    i64 j0 = chunk * len, j1 = j0 + len < n ? j0 + len : n;
    double best; i64 bi;
    arg_scan(op, x, xdt, o[1], xcol, j0, j1, best, bi);
    arg_block(op, best, bi, sv, sidx);
    if (threadIdx.x == 0)
    {
        pv[row * chunks + chunk] = best;
        pi[row * chunks + chunk] = bi;
        last = draw_last_ticket(&tickets[row], (unsigned)chunks);
    }
    __syncthreads();
    if (!last) return;
    best = 0; bi = -1;
    for (i64 c = threadIdx.x; c < chunks; c += blockDim.x)
    {
        double v = ld_cg(pv + row * chunks + c);
        i64 i = ld_cg(pi + row * chunks + c);
        if (arg_better(op, v, i, best, bi)) { best = v; bi = i; }
    }
    arg_block(op, best, bi, sv, sidx);
    if (threadIdx.x == 0) y[o[0]] = arg_result(op, best, bi);
}
