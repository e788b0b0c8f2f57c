// index_select, gather, index_copy and scatter-add over strided tensors, the deferred index check, a counting sort by key (with a
// multi-block scan), the embedding backward and the deterministic scatter-add built on that sort.
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

// index_copy_: dst[p with coordinate axis replaced by index[p_axis]] = src[p] over src's shape; operands: dst (stride 0
// on axis), src, index (stride on axis only) — index_select's layout with the written side the one indexed. One launch,
// a thread per src element, element bits copied (every dtype; a 16-bit store touches only its own two bytes). The index
// values must be distinct (the caller's promise: the sampler's seen ids are distinct and checked on the host): a
// repeated one is written by several threads and any may land last; the CPU refuses it. An index outside [0, dsize) is
// skipped, as in scatter_add: nothing reads the index back before the launch (a host wait per op), and a skip keeps
// every store inside dst whatever the index holds.
extern "C" __global__ void index_copy(Layout L, i64 n, void* dst, i64 daxis, i64 dsize, const void* src, const void* index, int idt, int dt)
{
    int size = elem_size(dt);
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 3, o);
        i64 v = load_index(index, idt, o[2]);
        if (index_ok(v, dsize)) copy_bits(dst, o[0] + v * daxis, src, o[1], size);
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
// Contributions to one element arrive in no fixed order (atomics): float sums may differ in the last bits. Only under
// PARROT_DETERMINISTIC_SCATTER=0; the default is the deterministic scatter-add at the end of this file.
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

// A counting sort of positions by key, shared by the embedding backward (key = id, one group of all tokens) and the
// deterministic scatter-add (key = g·D + p, a group of K positions per fiber group g): after it, `sorted` holds each
// key's positions in ascending order and starts[key], starts[key + 1] bound them. Keys outside [0, nkeys) are left out.
//   key_count:      counts[key + 1] += 1 (integer atomics: exact whatever the order)
//   key_scan_tiles, key_scan_sums, key_scan_add: inclusive scan of counts over many blocks (below), so counts[v] =
//                   the first slot of key v, counts[v + 1] its end; cursor receives a copy
//   key_place:      order[slot] = position, slots taken with atomics, so in no fixed order within a key
//   key_sort_rows:  each key's positions in ascending order, into `sorted`: a short row by each position's rank among
//                   the row's (all distinct; O(len²/threads)), a long one (len² > 32·group: a padding id, a very
//                   common token, a hot scatter index) by a stable compaction of its group's keys (O(group/threads)),
//                   where the rank method would take one block seconds
extern "C" __global__ void key_count(i64 n, i64 nkeys, const i64* keys, unsigned long long* counts)
{
    GRID_STRIDE_LOOP(t, n)
    {
        i64 v = keys[t];
        if (v >= 0 && v < nkeys) atomicAdd(counts + v + 1, 1ULL);
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

// The multi-block inclusive scan of a[0, n) (blockDim a power of two ≤ 1024, one tile = blockDim entries):
// key_scan_tiles scans each tile in place and writes its total to sums[tile]; key_scan_sums (one block) scans the
// totals, walking them a block-width at a time with a carry; key_scan_add adds the totals of the tiles before each
// entry's and copies the result into cursor. Integers: the same values whatever order the blocks run in.
extern "C" __global__ void key_scan_tiles(i64 n, i64* a, i64* sums)
{
    __shared__ i64 part[1024];
    i64 tiles = (n + blockDim.x - 1) / blockDim.x;
    for (i64 t = blockIdx.x; t < tiles; t += gridDim.x)
    {
        i64 i = t * blockDim.x + threadIdx.x;
        part[threadIdx.x] = i < n ? a[i] : 0;
        block_inclusive_scan(part);
        if (i < n) a[i] = part[threadIdx.x];
        if (threadIdx.x == 0) sums[t] = part[blockDim.x - 1];
        __syncthreads(); // part is rewritten by the next tile
    }
}

extern "C" __global__ void key_scan_sums(i64 tiles, i64* sums)
{
    __shared__ i64 part[1024];
    i64 carry = 0;
    for (i64 base = 0; base < tiles; base += blockDim.x)
    {
        i64 i = base + threadIdx.x;
        part[threadIdx.x] = i < tiles ? sums[i] : 0;
        block_inclusive_scan(part);
        if (i < tiles) sums[i] = part[threadIdx.x] + carry;
        carry += part[blockDim.x - 1];
        __syncthreads();
    }
}

extern "C" __global__ void key_scan_add(i64 n, i64 tile, i64* a, const i64* sums, i64* cursor)
{
    GRID_STRIDE_LOOP(i, n)
    {
        i64 t = i / tile, v = a[i] + (t > 0 ? sums[t - 1] : 0);
        a[i] = v;
        cursor[i] = v;
    }
}

extern "C" __global__ void key_place(i64 n, i64 nkeys, const i64* keys, unsigned long long* cursor, i64* order)
{
    GRID_STRIDE_LOOP(t, n)
    {
        i64 v = keys[t];
        if (v >= 0 && v < nkeys) order[atomicAdd(cursor + v, 1ULL)] = t;
    }
}

// One block per key (blockDim a power of two ≤ 1024); key v belongs to group v / per_group, whose positions are
// [g·group, (g + 1)·group). A short row: a position's rank among its row's positions is its place. A long row: the
// block walks its group's keys in order and writes the positions equal to its key as it meets them (a block-wide scan
// of the matches gives each its slot), so `order` is not read. The branch is the block's own.
extern "C" __global__ void key_sort_rows(i64 nkeys, i64 per_group, i64 group, const i64* starts, const i64* order, i64* sorted, const i64* keys)
{
    __shared__ i64 part[1024];
    for (i64 v = blockIdx.x; v < nkeys; v += gridDim.x)
    {
        i64 s = starts[v], e = starts[v + 1], len = e - s;
        if (len * len <= 32 * group)
        {
            for (i64 i = s + threadIdx.x; i < e; i += blockDim.x)
            {
                i64 t = order[i], rank = 0;
                for (i64 k = s; k < e; k++) rank += order[k] < t;
                sorted[s + rank] = t;
            }
            continue;
        }
        i64 at = s, first = v / per_group * group;
        for (i64 base = 0; base < group; base += blockDim.x)
        {
            i64 t = first + base + threadIdx.x;
            bool match = base + threadIdx.x < group && keys[t] == v;
            part[threadIdx.x] = match ? 1 : 0;
            block_inclusive_scan(part);
            if (match) sorted[at + part[threadIdx.x] - 1] = t;
            at += part[blockDim.x - 1];
            __syncthreads(); // part is rewritten by the next chunk
        }
    }
}

// Embedding backward, deterministic and without float atomics (the contract sums each row's tokens in ascending
// order): the counting sort above with the ids as keys (one group: every token), then one block per vocabulary row:
// dw[v, j] += Σ dy[t, j] over the row's positions in ascending order, summed in float32 (float64 for an F64 dw),
// rounded once when added.
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

// Deterministic scatter-add (the default; scatter_add above is the atomic one, PARROT_DETERMINISTIC_SCATTER=0): each
// destination element receives its contributions in ascending position j along the axis, each added in the dtype's
// own arithmetic and stored (bf16/f16: the float32 sum rounded to nearest even at every addition; integers wrap): the
// CPU's loop (Cpu/ScatterAdd.cs), so the bits are the CPU's. The index's dims other than the axis split into group
// dims (the index varies along them) and vector dims (index stride 0: every element along them takes the same p, as an
// expanded id column does). L lays out [group dims..., vector dims...] with operands dst, src, index (the axis left
// out), so fiber f = g·W + w has index offset o[2] for any w. K is the index's length on the axis, D = dsize the
// destination's; an index outside [0, D) adds nothing (the deferred index check reports it).
//   scatter_add_walk:   one thread per fiber walks j = 0 .. K-1 (a short axis)
//   scatter_keys:       key of position q = g·K + j is g·D + index value (-1 out of range); then the counting sort
//                       above (group = K, per_group = D) and
//   scatter_add_sorted: a thread per (key, w) adds the key's positions in ascending order, in a register, stored once.
struct AddF32 { typedef float T; static __device__ __forceinline__ T add(T a, T b) { return __fadd_rn(a, b); } };
struct AddF64 { typedef double T; static __device__ __forceinline__ T add(T a, T b) { return __dadd_rn(a, b); } };
struct AddBF16 { typedef u16 T; static __device__ __forceinline__ T add(T a, T b) { return f32_to_bf16(__fadd_rn(bf16_to_f32(a), bf16_to_f32(b))); } };
struct AddF16 { typedef u16 T; static __device__ __forceinline__ T add(T a, T b) { return f32_to_f16(__fadd_rn(f16_to_f32(a), f16_to_f32(b))); } };
struct AddI32 { typedef int T; static __device__ __forceinline__ T add(T a, T b) { return (int)((unsigned)a + (unsigned)b); } };
struct AddI64 { typedef i64 T; static __device__ __forceinline__ T add(T a, T b) { return (i64)((unsigned long long)a + (unsigned long long)b); } };
struct AddU8 { typedef unsigned char T; static __device__ __forceinline__ T add(T a, T b) { return (unsigned char)(a + b); } };

template <typename A>
__device__ void scatter_walk(const Layout& L, i64 fibers, i64 k, void* dstv, i64 daxis, i64 dsize, const void* srcv, i64 saxis,
                             const void* index, i64 iaxis, int idt)
{
    typedef typename A::T T;
    GRID_STRIDE_LOOP(f, fibers)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, f, 3, o);
        T* d = (T*)dstv + o[0];
        const T* s = (const T*)srcv + o[1];
        for (i64 j = 0; j < k; j++)
        {
            i64 p = load_index(index, idt, o[2] + j * iaxis);
            if (index_ok(p, dsize)) d[p * daxis] = A::add(d[p * daxis], s[j * saxis]);
        }
    }
}

// fn<A>(args...) with the adder A of the storage dtype dt (anything else: u8), for the deterministic scatter kernels.
#define SCATTER_BY_DTYPE(dt, fn, ...) \
    switch (dt) \
    { \
        case DT_F32: fn<AddF32>(__VA_ARGS__); break; \
        case DT_F64: fn<AddF64>(__VA_ARGS__); break; \
        case DT_BF16: fn<AddBF16>(__VA_ARGS__); break; \
        case DT_F16: fn<AddF16>(__VA_ARGS__); break; \
        case DT_I32: fn<AddI32>(__VA_ARGS__); break; \
        case DT_I64: fn<AddI64>(__VA_ARGS__); break; \
        default: fn<AddU8>(__VA_ARGS__); break; \
    }

extern "C" __global__ void scatter_add_walk(Layout L, i64 fibers, i64 k, void* dst, i64 daxis, i64 dsize, const void* src, i64 saxis,
                                            const void* index, i64 iaxis, int idt, int dt)
{
    SCATTER_BY_DTYPE(dt, scatter_walk, L, fibers, k, dst, daxis, dsize, src, saxis, index, iaxis, idt);
}

// n = G·K positions; w = W (the vector width): fiber g·W has group g's index offset.
extern "C" __global__ void scatter_keys(Layout L, i64 n, i64 k, i64 w, const void* index, i64 iaxis, int idt, i64 dsize, i64* keys)
{
    GRID_STRIDE_LOOP(q, n)
    {
        i64 g = q / k, j = q - g * k, o[MAX_OPERANDS];
        offsets(L, g * w, 3, o);
        i64 p = load_index(index, idt, o[2] + j * iaxis);
        keys[q] = index_ok(p, dsize) ? g * dsize + p : -1;
    }
}

template <typename A>
__device__ void scatter_sorted(const Layout& L, i64 nkeys, i64 w, i64 k, i64 dsize, void* dstv, i64 daxis, const void* srcv, i64 saxis,
                               const i64* starts, const i64* sorted)
{
    typedef typename A::T T;
    GRID_STRIDE_LOOP(i, nkeys * w)
    {
        i64 key = i / w, s = starts[key], e = starts[key + 1];
        if (s == e) continue;
        i64 g = key / dsize, p = key - g * dsize, first = g * k, o[MAX_OPERANDS];
        offsets(L, g * w + (i - key * w), 2, o);
        T* d = (T*)dstv + o[0] + p * daxis;
        const T* sp = (const T*)srcv + o[1];
        T acc = *d;
        for (i64 q = s; q < e; q++) acc = A::add(acc, sp[(sorted[q] - first) * saxis]);
        *d = acc;
    }
}

extern "C" __global__ void scatter_add_sorted(Layout L, i64 nkeys, i64 w, i64 k, i64 dsize, void* dst, i64 daxis, const void* src, i64 saxis,
                                              const i64* starts, const i64* sorted, int dt)
{
    SCATTER_BY_DTYPE(dt, scatter_sorted, L, nkeys, w, k, dsize, dst, daxis, src, saxis, starts, sorted);
}
