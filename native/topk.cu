// Top-k along the last axis (Cpu/TopK.cs is the reference): per row the k best elements, best first; a larger value
// ranks first, NaN above every number, -0 and +0 equal, equal values by lower index. Values are x's elements, indices
// int64. Exact: elements are compared through order-preserving unsigned keys (topk_key), never through arithmetic.
//
// Rows of up to TOPK_SMALL_N elements (the MoE router: many rows of <= 64 experts): topk_small, a warp per row; every
// element's rank is the count of elements that beat it, and an element of rank < k goes straight to output slot rank.
// Longer rows (a vocabulary): topk_rows, a block per row:
//  1. radix select over the key's 8-bit digits, most significant first (a 256-bin histogram in shared memory per
//     pass), down to the cut: the elements whose key is above it are all in, and of the keys equal to it the lowest
//     indices fill the rest (or all of them, when they fill it exactly: the select stops early then);
//  2. one pass over the row in index order gathers the chosen (key, index) items, ranks within a chunk by ballots, so
//     the ties taken are the lowest indices;
//  3. a bitonic sort of the k items by (key descending, index ascending): in shared memory for k <= TOPK_SHARED_ITEMS,
//     else in the launcher's scratch (global memory, one k-item slice per block) — the same code, slower, still on
//     the device.
// No host synchronisation and no allocation inside; the scratch comes from the caching allocator before the launch.
#include "prelude.cuh"

typedef unsigned long long u64;

#define TOPK_SMALL_N 256
#define TOPK_WARP_ROWS 8
#define TOPK_SHARED_ITEMS 2048

// Key of a float of width bits whose magnitude bits above `inf` are NaN: NaN (any sign or payload) the largest key,
// -0 the key of +0, negative numbers below positive ones and ordered by magnitude reversed.
__device__ __forceinline__ u64 topk_float_key(u64 u, int bits, u64 inf)
{
    u64 sign = 1ull << (bits - 1), all = sign | (sign - 1);
    u64 mag = u & (sign - 1);
    if (mag > inf) return all;
    if (mag == 0) return sign;
    return (u & sign) ? ~u & all : u | sign;
}

// The order-preserving key of element i: a larger key ranks first; equal keys are equal as the CPU compares them.
__device__ __forceinline__ u64 topk_key(const void* x, int dt, i64 i)
{
    switch (dt)
    {
        case DT_F32: return topk_float_key(((const unsigned*)x)[i], 32, 0x7f800000ull);
        case DT_F64: return topk_float_key(((const u64*)x)[i], 64, 0x7ff0000000000000ull);
        case DT_BF16: return topk_float_key(((const u16*)x)[i], 16, 0x7f80ull);
        case DT_F16: return topk_float_key(((const u16*)x)[i], 16, 0x7c00ull);
        case DT_I32: return (unsigned)((const int*)x)[i] ^ 0x80000000u;
        case DT_I64: return (u64)((const i64*)x)[i] ^ 0x8000000000000000ull;
        default: return ((const unsigned char*)x)[i];
    }
}

// Bits a key of dt occupies (the radix select's passes: 8 bits each).
__device__ __forceinline__ int topk_key_bits(int dt)
{
    return dt == DT_F64 || dt == DT_I64 ? 64 : dt == DT_BF16 || dt == DT_F16 ? 16 : dt == DT_U8 ? 8 : 32;
}

// values[vi] = x[xi] as the CPU gives it: the element itself, except that the CPU's round trip of a 16-bit float
// through float32 sets a NaN's quiet bit (BFloat16.FromFloat, Half's conversions); every other value is unchanged.
__device__ __forceinline__ void topk_store_value(void* v, i64 vi, const void* x, i64 xi, int dt)
{
    if (dt == DT_BF16 || dt == DT_F16)
    {
        u16 h = ((const u16*)x)[xi];
        bool nan = dt == DT_BF16 ? (h & 0x7fff) > 0x7f80 : (h & 0x7fff) > 0x7c00;
        ((u16*)v)[vi] = nan ? (u16)(h | (dt == DT_BF16 ? 0x40 : 0x200)) : h;
    }
    else copy_bits(v, vi, x, xi, elem_size(dt));
}

// The kernels' parameters after the rows' Layout (operands values, indices, x): row count, row length, k, x's dtype,
// and each operand's pointer and last-axis stride.
struct TopKArgs
{
    i64 rows;
    int n, k, dt;
    void* values;
    i64* indices;
    const void* x;
    i64 vcol, icol, xcol;
};

#define TOPK_PARAMS Layout rows_layout, i64 rows, int n, int k, void* values, i64 vcol, i64* indices, i64 icol, const void* x, i64 xcol, int dt
#define TOPK_ARGS TopKArgs{rows, n, k, dt, values, indices, x, vcol, icol, xcol}

extern "C" __global__ void __launch_bounds__(32 * TOPK_WARP_ROWS) topk_small(TOPK_PARAMS)
{
    const TopKArgs a = TOPK_ARGS;
    __shared__ u64 keys[TOPK_WARP_ROWS][TOPK_SMALL_N];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    u64* kw = keys[warp];
    for (i64 row = (i64)blockIdx.x * TOPK_WARP_ROWS + warp; row < a.rows; row += (i64)gridDim.x * TOPK_WARP_ROWS)
    {
        i64 o[MAX_OPERANDS];
        offsets(rows_layout, row, 3, o);
        for (int j = lane; j < a.n; j += 32) kw[j] = topk_key(a.x, a.dt, o[2] + j * a.xcol);
        __syncwarp();
        for (int j = lane; j < a.n; j += 32)
        {
            // Rank: the elements that beat j (a total order, so the ranks are 0 .. n-1, each once).
            u64 kj = kw[j];
            int rank = 0;
            for (int i = 0; i < a.n && rank < a.k; i++)
            {
                u64 ki = kw[i];
                rank += ki > kj || (ki == kj && i < j);
            }
            if (rank < a.k)
            {
                a.indices[o[1] + rank * a.icol] = j;
                topk_store_value(a.values, o[0] + rank * a.vcol, a.x, o[2] + j * a.xcol, a.dt);
            }
        }
        __syncwarp(); // the warp's keys are rewritten for its next row
    }
}

struct TopKItem
{
    u64 key;
    int idx;
};

__device__ __forceinline__ bool topk_before(const TopKItem& p, const TopKItem& q)
{
    return p.key != q.key ? p.key > q.key : p.idx < q.idx;
}

// Where the k best of a row end: keys whose bits under `mask` are above `prefix` are in; of those equal to it under
// the mask, all are in when `all`, else the `take` lowest indices (then mask covers the whole key).
struct TopKCut
{
    u64 prefix, mask;
    int take, all;
};

// Radix select of the cut (block-wide; every thread returns it). hist: 256 bins of shared memory.
__device__ __forceinline__ TopKCut topk_select(const TopKArgs& a, i64 xo, unsigned* hist, TopKCut* shared_cut)
{
    TopKCut cut = {0, 0, a.k, a.k == a.n};
    for (int shift = topk_key_bits(a.dt) - 8; shift >= 0 && !cut.all; shift -= 8)
    {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
        __syncthreads();
        for (i64 j = threadIdx.x; j < a.n; j += blockDim.x)
        {
            u64 key = topk_key(a.x, a.dt, xo + j * a.xcol);
            if ((key & cut.mask) == cut.prefix) atomicAdd(&hist[(unsigned)(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x < 32)
        {
            // Lane l holds digits 255 - 8l down to 248 - 8l; the counts above its digits come from a warp scan. The lane
            // whose digits hold the take-th largest picks the digit d: the count above d is < take <= that count plus d's.
            int lane = threadIdx.x, top = 255 - 8 * lane;
            unsigned mine = 0;
            for (int d = top; d > top - 8; d--) mine += hist[d];
            unsigned incl = mine;
            for (int s = 1; s < 32; s <<= 1)
            {
                unsigned up = __shfl_up_sync(0xffffffffu, incl, s);
                if (lane >= s) incl += up;
            }
            unsigned above = incl - mine, take = (unsigned)cut.take;
            if (above < take && take <= incl)
            {
                for (int d = top; d > top - 8; d--)
                {
                    if (above + hist[d] >= take)
                    {
                        TopKCut next = {cut.prefix | ((u64)d << shift), cut.mask | (255ull << shift), (int)(take - above), 0};
                        next.all = hist[d] == take - above;
                        *shared_cut = next;
                        break;
                    }
                    above += hist[d];
                }
            }
        }
        __syncthreads();
        cut = *shared_cut;
    }
    return cut;
}

// Gathers the k items the cut chooses into items[0, k) (those above the cut first, then the ties taken), in chunks of
// blockDim elements in index order; counts: 2 x 32 shared slots.
__device__ __forceinline__ void topk_gather(const TopKArgs& a, i64 xo, TopKCut cut, TopKItem* items, unsigned (*counts)[32])
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    unsigned below = (1u << lane) - 1u;
    int above_total = cut.all ? a.k : a.k - cut.take, take = cut.all ? 0 : cut.take;
    int above_base = 0, tie_base = 0;
    for (i64 base = 0; base < a.n; base += blockDim.x)
    {
        i64 j = base + threadIdx.x;
        bool above = false, tie = false;
        u64 key = 0;
        if (j < a.n)
        {
            key = topk_key(a.x, a.dt, xo + j * a.xcol);
            u64 t = key & cut.mask;
            above = t > cut.prefix || (cut.all && t == cut.prefix);
            tie = !cut.all && t == cut.prefix;
        }
        unsigned ba = __ballot_sync(0xffffffffu, above), bt = __ballot_sync(0xffffffffu, tie);
        if (lane == 0) { counts[0][warp] = __popc(ba); counts[1][warp] = __popc(bt); }
        __syncthreads();
        int a_off = above_base, t_off = tie_base, a_sum = 0, t_sum = 0;
        for (int w = 0; w < warps; w++)
        {
            int ca = (int)counts[0][w], ct = (int)counts[1][w];
            if (w < warp) { a_off += ca; t_off += ct; }
            a_sum += ca;
            t_sum += ct;
        }
        if (above) items[a_off + __popc(ba & below)] = TopKItem{key, (int)j};
        if (tie)
        {
            int r = t_off + __popc(bt & below);
            if (r < take) items[above_total + r] = TopKItem{key, (int)j};
        }
        above_base += a_sum;
        tie_base += t_sum;
        __syncthreads(); // counts are rewritten by the next chunk
        if (above_base == above_total && tie_base >= take) break; // the same for every thread
    }
}

// Sorts items[0, k) best first: a bitonic network in its one-direction form (each merge starts by comparing i with
// its mirror in the block, then half-cleaners), so every comparator puts the better item at the lower position and
// the positions from k up to the next power of two can be taken as worst-of-all padding: their comparators are
// skipped, no padding is stored.
__device__ __forceinline__ void topk_sort(TopKItem* items, int k)
{
    int p2 = 1;
    while (p2 < k) p2 <<= 1;
    for (int size = 2; size <= p2; size <<= 1)
    {
        for (int stride = size >> 1; stride > 0; stride >>= 1)
        {
            for (int p = threadIdx.x; p < p2 / 2; p += blockDim.x)
            {
                int lo = ((p & ~(stride - 1)) << 1) | (p & (stride - 1));
                int hi = stride == size >> 1 ? (lo | (size - 1)) - (lo & (size - 1)) : lo + stride; // mirror, then half-cleaner
                if (hi < k && topk_before(items[hi], items[lo]))
                {
                    TopKItem t = items[lo];
                    items[lo] = items[hi];
                    items[hi] = t;
                }
            }
            __syncthreads();
        }
    }
}

// A block per row (grid-stride); scratch: k items per block, used only when k > TOPK_SHARED_ITEMS.
extern "C" __global__ void __launch_bounds__(1024) topk_rows(TOPK_PARAMS, TopKItem* scratch)
{
    const TopKArgs a = TOPK_ARGS;
    __shared__ TopKItem shared_items[TOPK_SHARED_ITEMS];
    __shared__ unsigned hist[256];
    __shared__ unsigned counts[2][32];
    __shared__ TopKCut shared_cut;
    if (a.k == 0) return; // the launcher skips k = 0; the select assumes a k-th element exists
    TopKItem* items = a.k <= TOPK_SHARED_ITEMS ? shared_items : scratch + (i64)blockIdx.x * a.k;
    for (i64 row = blockIdx.x; row < a.rows; row += gridDim.x)
    {
        i64 o[MAX_OPERANDS];
        offsets(rows_layout, row, 3, o);
        TopKCut cut = topk_select(a, o[2], hist, &shared_cut);
        topk_gather(a, o[2], cut, items, counts);
        topk_sort(items, a.k);
        for (int j = threadIdx.x; j < a.k; j += blockDim.x)
        {
            int i = items[j].idx;
            a.indices[o[1] + j * a.icol] = i;
            topk_store_value(a.values, o[0] + j * a.vcol, a.x, o[2] + i * a.xcol, a.dt);
        }
        __syncthreads(); // items, hist and the cut are reused by the next row
    }
}
