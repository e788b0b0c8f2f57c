// index_select, gather and scatter-add over strided tensors, the deferred index check, and the embedding backward.
// `L` lays out the iterated shape with operands 0..2; the caller gives the data operand stride 0 on `axis`
// and passes that axis' real stride and size separately, so an index value selects along it. Indices are I32 or I64.
// The indices are not validated on the host first (that would be a host wait per op): index_check records bad ones
// for the host to report at its next read, and the other kernels stay in bounds whatever an index holds.
#include "prelude.cuh"

__device__ __forceinline__ i64 load_index(const void* p, int idt, i64 i)
{
    return idt == DT_I32 ? (i64)((const int*)p)[i] : ((const i64*)p)[i];
}

__device__ __forceinline__ bool index_ok(i64 v, i64 size) { return (unsigned long long)v < (unsigned long long)size; }

// The deferred check: slot[0] = min(slot[0], C-order position of each element outside [0, size) that is not the
// ignore value); operand 0 of L is the index. slot[0] starts at 2^62 ("none"), so the smallest bad position wins.
extern "C" __global__ void index_check(Layout L, i64 n, const void* index, int idt, i64 size, int has_ignore, i64 ignore,
                                       unsigned long long* slot)
{
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 1, o);
        i64 v = load_index(index, idt, o[0]);
        if (!index_ok(v, size) && !(has_ignore && v == ignore)) atomicMin(slot, (unsigned long long)i);
    }
}

// Queued after index_check: slot[1] = the value at the first bad position, so the error can name it.
extern "C" __global__ void index_check_value(Layout L, const void* index, int idt, unsigned long long* slot)
{
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    unsigned long long p = slot[0];
    if (p >= (1ULL << 62)) return;
    i64 o[MAX_OPERANDS];
    offsets(L, (i64)p, 1, o);
    slot[1] = (unsigned long long)load_index(index, idt, o[0]);
}

// y[p] = x[p with coordinate axis replaced by index[p_axis]]; operands: y, x (stride 0 on axis), index (stride on axis only).
// An index outside [0, xsize) gives 0.
extern "C" __global__ void index_select(Layout L, i64 n, void* y, const void* x, i64 xaxis, i64 xsize, const void* index, int idt, int dt)
{
    int size = elem_size(dt);
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 3, o);
        i64 v = load_index(index, idt, o[2]);
        if (index_ok(v, xsize)) copy_bits(y, o[0], x, o[1] + v * xaxis, size);
        else store<float>(y, dt, o[0], 0.0f);
    }
}

// y[p] = x[p with coordinate axis replaced by index[p]]; operands: y, x (stride 0 on axis), index.
// An index outside [0, xsize) gives 0.
extern "C" __global__ void gather(Layout L, i64 n, void* y, const void* x, i64 xaxis, i64 xsize, const void* index, int idt, int dt)
{
    int size = elem_size(dt);
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 3, o);
        i64 v = load_index(index, idt, o[2]);
        if (index_ok(v, xsize)) copy_bits(y, o[0], x, o[1] + v * xaxis, size);
        else store<float>(y, dt, o[0], 0.0f);
    }
}

// 16-bit float add on a 32-bit compare-and-swap loop (bf16 or f16, rounded to nearest even per addition).
__device__ void atomic_add_half(u16* p, float v, int dt)
{
    unsigned* word = (unsigned*)((size_t)p & ~(size_t)3);
    unsigned shift = ((size_t)p & 2) ? 16 : 0;
    unsigned old = *word, assumed;
    do
    {
        assumed = old;
        u16 h = (u16)((assumed >> shift) & 0xffffu);
        float f = (dt == DT_BF16 ? bf16_to_f32(h) : f16_to_f32(h)) + v;
        u16 r = dt == DT_BF16 ? f32_to_bf16(f) : f32_to_f16(f);
        unsigned next = (assumed & ~(0xffffu << shift)) | ((unsigned)r << shift);
        old = atomicCAS(word, assumed, next);
    } while (old != assumed);
}

__device__ void atomic_add_u8(unsigned char* p, unsigned v)
{
    unsigned* word = (unsigned*)((size_t)p & ~(size_t)3);
    unsigned shift = ((unsigned)((size_t)p & 3)) * 8;
    unsigned old = *word, assumed;
    do
    {
        assumed = old;
        unsigned b = ((assumed >> shift) + v) & 0xffu;
        old = atomicCAS(word, assumed, (assumed & ~(0xffu << shift)) | (b << shift));
    } while (old != assumed);
}

__device__ __forceinline__ void atomic_add_any(void* dst, i64 i, const void* src, i64 j, int dt)
{
    switch (dt)
    {
        case DT_F32: atomicAdd((float*)dst + i, ((const float*)src)[j]); break;
        case DT_F64: atomicAdd((double*)dst + i, ((const double*)src)[j]); break;
        case DT_BF16: case DT_F16: atomic_add_half((u16*)dst + i, load<float>(src, dt, j), dt); break;
        case DT_I32: atomicAdd((int*)dst + i, ((const int*)src)[j]); break;
        case DT_I64: atomicAdd((unsigned long long*)dst + i, (unsigned long long)((const i64*)src)[j]); break;
        default: atomic_add_u8((unsigned char*)dst + i, ((const unsigned char*)src)[j]); break;
    }
}

// dst[p with coordinate axis replaced by index[p]] += src[p]; operands: dst (stride 0 on axis), src, index.
// Contributions to one element arrive in no fixed order (atomics): float sums may differ in the last bits.
// An index outside [0, dsize) adds nothing.
extern "C" __global__ void scatter_add(Layout L, i64 n, void* dst, i64 daxis, i64 dsize, const void* src, const void* index, int idt, int dt)
{
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 3, o);
        i64 v = load_index(index, idt, o[2]);
        if (index_ok(v, dsize)) atomic_add_any(dst, o[0] + v * daxis, src, o[1], dt);
    }
}

// Embedding backward, deterministic and without float atomics (the contract sums each row's tokens in ascending
// order): a counting sort of the token positions by id, then one block per vocabulary row.
//   embedding_count:      counts[id + 1] += 1 (integer atomics: exact whatever the order)
//   embedding_row_starts: inclusive scan in one block; counts[v] = first slot of row v, counts[v + 1] = its end
//   embedding_place:      order[slot] = t, slots taken with atomics, so in no fixed order within a row
//   embedding_sort_rows:  each row's positions in ascending order, into `sorted`: a short row by each position's
//                         rank among the row's (all distinct; O(len²/threads)), a long one (len² > 32·tokens: a
//                         padding id or a very common token in a big batch) by a stable compaction of the ids
//                         (O(tokens/threads)), where the rank method would take one block seconds
//   embedding_backward:   dw[v, j] += Σ dy[t, j] over the row's positions in ascending order, summed in float32
//                         (float64 for an F64 dw), rounded once when added.
extern "C" __global__ void embedding_count(i64 tokens, i64 vocab, const i64* ids, unsigned long long* counts)
{
    GRID_STRIDE_LOOP(t, tokens)
    {
        i64 v = ids[t];
        if (v >= 0 && v < vocab) atomicAdd(counts + v + 1, 1ULL);
    }
}

// Inclusive Hillis–Steele scan of part[0, blockDim) in shared memory, in place; every thread of the block calls it,
// after writing its own entry (it synchronises before and after).
__device__ void block_inclusive_scan(i64* part)
{
    __syncthreads();
    for (unsigned off = 1; off < blockDim.x; off <<= 1)
    {
        i64 add = threadIdx.x >= off ? part[threadIdx.x - off] : 0;
        __syncthreads();
        part[threadIdx.x] += add;
        __syncthreads();
    }
}

// One block (blockDim a power of two ≤ 1024); counts has vocab + 1 entries, cursor receives a copy of the starts.
extern "C" __global__ void embedding_row_starts(i64 vocab, i64* counts, i64* cursor)
{
    __shared__ i64 part[1024];
    i64 carry = 0;
    for (i64 base = 0; base <= vocab; base += blockDim.x)
    {
        i64 i = base + threadIdx.x;
        part[threadIdx.x] = i <= vocab ? counts[i] : 0;
        block_inclusive_scan(part);
        if (i <= vocab) { i64 v = part[threadIdx.x] + carry; counts[i] = v; cursor[i] = v; }
        carry += part[blockDim.x - 1];
        __syncthreads();
    }
}

extern "C" __global__ void embedding_place(i64 tokens, i64 vocab, const i64* ids, unsigned long long* cursor, i64* order)
{
    GRID_STRIDE_LOOP(t, tokens)
    {
        i64 v = ids[t];
        if (v >= 0 && v < vocab) order[atomicAdd(cursor + v, 1ULL)] = t;
    }
}

// One block per row (blockDim a power of two ≤ 1024). A short row: a position's rank among its row's positions is
// its place. A long row: the block walks all ids in order and writes the positions equal to its row as it meets them
// (a block-wide scan of the matches gives each its slot), so `order` is not read. The branch is the block's own.
extern "C" __global__ void embedding_sort_rows(i64 vocab, const i64* starts, const i64* order, i64* sorted, i64 tokens, const i64* ids)
{
    __shared__ i64 part[1024];
    for (i64 v = blockIdx.x; v < vocab; v += gridDim.x)
    {
        i64 s = starts[v], e = starts[v + 1], len = e - s;
        if (len * len <= 32 * tokens)
        {
            for (i64 i = s + threadIdx.x; i < e; i += blockDim.x)
            {
                i64 t = order[i], rank = 0;
                for (i64 k = s; k < e; k++) rank += order[k] < t;
                sorted[s + rank] = t;
            }
            continue;
        }
        i64 at = s;
        for (i64 base = 0; base < tokens; base += blockDim.x)
        {
            i64 t = base + threadIdx.x;
            bool match = t < tokens && ids[t] == v;
            part[threadIdx.x] = match ? 1 : 0;
            block_inclusive_scan(part);
            if (match) sorted[at + part[threadIdx.x] - 1] = t;
            at += part[blockDim.x - 1];
            __syncthreads(); // part is rewritten by the next chunk
        }
    }
}

extern "C" __global__ void embedding_backward(i64 vocab, i64 dim, void* dw, int wdt, const i64* starts, const i64* sorted,
                                              const void* dy, int dt, i64 dyrow, i64 dycol)
{
    for (i64 v = blockIdx.x; v < vocab; v += gridDim.x)
    {
        i64 s = starts[v], e = starts[v + 1];
        if (s == e) continue;
        for (i64 j = threadIdx.x; j < dim; j += blockDim.x)
        {
            if (wdt == DT_F64)
            {
                double acc = 0;
                for (i64 k = s; k < e; k++) acc += load<double>(dy, dt, sorted[k] * dyrow + j * dycol);
                store<double>(dw, wdt, v * dim + j, load<double>(dw, wdt, v * dim + j) + acc);
            }
            else
            {
                float acc = 0;
                for (i64 k = s; k < e; k++) acc += load<float>(dy, dt, sorted[k] * dyrow + j * dycol);
                store<float>(dw, wdt, v * dim + j, load<float>(dw, wdt, v * dim + j) + acc);
            }
        }
    }
}
