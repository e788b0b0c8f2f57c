// CPU emulation of the CUDA built-ins the block kernels use: block threads as OS threads, block barriers, warp
// shuffles through shared slots with a barrier per warp (see run.sh; emu_mma.h adds mma.sync and ldmatrix).
#include "emu_common.h"
#include <thread>
#include <barrier>
#include <vector>
#include <functional>
#include <mutex>
#include <memory>
#include <algorithm>
#include <atomic>
static thread_local dim3_ threadIdx, blockIdx;
static dim3_ blockDim, gridDim;
static std::barrier<>* g_bar;
static std::barrier<>* g_warp_bar[32]; // warp collectives (shuffles, mma, ldmatrix) wait only for their own warp
static unsigned long long g_slots[1024];
inline void warp_sync() { g_warp_bar[threadIdx.x >> 5]->arrive_and_wait(); }
inline void __syncwarp() { warp_sync(); }
static int g_or;
inline void __syncthreads() { g_bar->arrive_and_wait(); }
inline int __syncthreads_or(int v) { g_bar->arrive_and_wait(); if (threadIdx.x == 0) g_or = 0; g_bar->arrive_and_wait(); if (v) __atomic_store_n(&g_or, 1, __ATOMIC_SEQ_CST); g_bar->arrive_and_wait(); int r = g_or; g_bar->arrive_and_wait(); return r; }
template <typename T> T shfl_from(T v, int src)
{
    unsigned long long bits = 0; memcpy(&bits, &v, sizeof(T));
    g_slots[threadIdx.x] = bits;
    warp_sync();
    unsigned long long o = g_slots[src]; T r; memcpy(&r, &o, sizeof(T));
    warp_sync();
    return r;
}
template <typename T> T __shfl_xor_sync(unsigned, T v, int o) { return shfl_from(v, (int)(threadIdx.x ^ o)); }
template <typename T> T __shfl_down_sync(unsigned, T v, int s) { int lane = threadIdx.x & 31; return shfl_from(v, lane + s < 32 ? (int)threadIdx.x + s : (int)threadIdx.x); }
template <typename T> T __shfl_up_sync(unsigned, T v, int s) { int lane = threadIdx.x & 31; return shfl_from(v, lane >= s ? (int)threadIdx.x - s : (int)threadIdx.x); }
// Every lane of the warp (full warps only) votes through the slots: bit l of the result is lane l's predicate.
inline unsigned __ballot_sync(unsigned, int pred)
{
    g_slots[threadIdx.x] = pred != 0;
    warp_sync();
    unsigned r = 0, first = threadIdx.x & ~31u;
    for (unsigned l = 0; l < 32; l++) r |= (g_slots[first + l] ? 1u : 0u) << l;
    warp_sync();
    return r;
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
template <typename T, typename U> T atomicAdd(T* p, U v) { static std::mutex mu; std::lock_guard<std::mutex> l(mu); T o = *p; *p = (T)(*p + v); return o; }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) { static std::mutex mu; std::lock_guard<std::mutex> l(mu); auto o = *p; if (v < o) *p = v; return o; }
inline unsigned atomicCAS(unsigned* p, unsigned c, unsigned v) { static std::mutex mu; std::lock_guard<std::mutex> l(mu); unsigned o = *p; if (o == c) *p = v; return o; }
inline unsigned atomicInc(unsigned* p, unsigned limit) { static std::mutex mu; std::lock_guard<std::mutex> l(mu); unsigned o = *p; *p = o >= limit ? 0 : o + 1; return o; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
// Runs the grid's blocks one after another, in `order` when given (a permutation of 0 .. grid - 1): kernels whose
// blocks meet through global memory (a ticket, the last block merging) must not depend on which block runs last.
template <typename F> void launch(unsigned grid, unsigned block, F f, const std::vector<unsigned>* order = nullptr)
{
    gridDim.x = grid; blockDim.x = block;
    for (unsigned i = 0; i < grid; i++)
    {
        unsigned b = order ? (*order)[i] : i;
        std::barrier<> bar(block); g_bar = &bar;
        std::vector<std::unique_ptr<std::barrier<>>> wb;
        for (unsigned w = 0; w * 32 < block; w++) { wb.emplace_back(new std::barrier<>(std::min(32u, block - 32 * w))); g_warp_bar[w] = wb.back().get(); }
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < block; t++) ts.emplace_back([&, t, b] { blockIdx.x = b; threadIdx.x = t; f(); });
        for (auto& th : ts) th.join();
    }
}
