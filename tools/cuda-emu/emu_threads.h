// CPU emulation of the CUDA built-ins the block kernels use: block threads as OS threads, barriers, warp shuffles (see run.sh).
#include <cmath>
#include <cstring>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <barrier>
#include <vector>
#include <functional>
#include <mutex>
struct dim3_ { unsigned x = 0, y = 0, z = 0; };
static thread_local dim3_ threadIdx, blockIdx;
static dim3_ blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define asm(...) (void)0
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int u) { float f; memcpy(&f, &u, 4); return f; }
inline double __longlong_as_double(long long u) { double f; memcpy(&f, &u, 8); return f; }
static std::barrier<>* g_bar;
static unsigned long long g_slots[1024];
static int g_or;
inline void __syncthreads() { g_bar->arrive_and_wait(); }
inline int __syncthreads_or(int v) { g_bar->arrive_and_wait(); if (threadIdx.x == 0) g_or = 0; g_bar->arrive_and_wait(); if (v) __atomic_store_n(&g_or, 1, __ATOMIC_SEQ_CST); g_bar->arrive_and_wait(); int r = g_or; g_bar->arrive_and_wait(); return r; }
template <typename T> T shfl_from(T v, int src)
{
    unsigned long long bits = 0; memcpy(&bits, &v, sizeof(T));
    g_slots[threadIdx.x] = bits;
    g_bar->arrive_and_wait();
    unsigned long long o = g_slots[src]; T r; memcpy(&r, &o, sizeof(T));
    g_bar->arrive_and_wait();
    return r;
}
template <typename T> T __shfl_xor_sync(unsigned, T v, int o) { return shfl_from(v, (int)(threadIdx.x ^ o)); }
template <typename T> T __shfl_down_sync(unsigned, T v, int s) { int lane = threadIdx.x & 31; return shfl_from(v, lane + s < 32 ? (int)threadIdx.x + s : (int)threadIdx.x); }
template <typename T, typename U> T atomicAdd(T* p, U v) { static std::mutex mu; std::lock_guard<std::mutex> l(mu); T o = *p; *p = (T)(*p + v); return o; }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) { static std::mutex mu; std::lock_guard<std::mutex> l(mu); auto o = *p; if (v < o) *p = v; return o; }
inline unsigned atomicCAS(unsigned* p, unsigned c, unsigned v) { static std::mutex mu; std::lock_guard<std::mutex> l(mu); unsigned o = *p; if (o == c) *p = v; return o; }
using std::exp; using std::log; using std::sqrt; using std::pow; using std::fabs;
template <typename F> void launch(unsigned grid, unsigned block, F f)
{
    gridDim.x = grid; blockDim.x = block;
    for (unsigned b = 0; b < grid; b++)
    {
        std::barrier<> bar(block); g_bar = &bar;
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < block; t++) ts.emplace_back([&, t, b] { blockIdx.x = b; threadIdx.x = t; f(); });
        for (auto& th : ts) th.join();
    }
}
