// What emu_serial.h and emu_threads.h share: the CUDA keywords as plain C++ and the bit casts (see run.sh).
#pragma once
#include <cmath>
#include <cstring>
#include <cstdint>
#include <cstdio>
struct dim3_ { unsigned x = 0, y = 0, z = 0; };
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define asm(...) (void)0
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int u) { float f; memcpy(&f, &u, 4); return f; }
inline double __longlong_as_double(long long u) { double f; memcpy(&f, &u, 8); return f; }
inline long long __double_as_longlong(double f) { long long u; memcpy(&u, &f, 8); return u; }
// Rounded arithmetic without contraction (g++ emits no fused multiply-add without -mfma).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
using std::exp; using std::log; using std::sqrt; using std::pow; using std::fabs;
