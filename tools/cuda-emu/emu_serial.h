// CPU emulation of the CUDA built-ins the sync-free kernels use (see run.sh). Not a CUDA implementation.
#include "emu_common.h"
static dim3_ threadIdx, blockIdx, blockDim, gridDim;
template <typename T> T __shfl_xor_sync(unsigned, T v, int) { return v; }
template <typename T> T __shfl_down_sync(unsigned, T v, int) { return v; }
inline void __syncthreads() {}
inline int __syncthreads_or(int v) { return v; }
template <typename T, typename U> T atomicAdd(T* p, U v) { T o = *p; *p = (T)(*p + v); return o; }
inline unsigned atomicCAS(unsigned* p, unsigned c, unsigned v) { unsigned o = *p; if (o == c) *p = v; return o; }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) { auto o = *p; if (v < o) *p = v; return o; }
inline unsigned atomicInc(unsigned* p, unsigned limit) { unsigned o = *p; *p = o >= limit ? 0 : o + 1; return o; }
inline void __threadfence() {}
using std::tanh; using std::erf; using std::sin; using std::cos;
template <typename F> void launch(unsigned grid, unsigned block, F f)
{
    gridDim.x = grid; blockDim.x = block;
    for (unsigned b = 0; b < grid; b++) for (unsigned t = 0; t < block; t++) { blockIdx.x = b; threadIdx.x = t; f(); }
}
