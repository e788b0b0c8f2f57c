// Random (IBackend.Random): counter-based sampling, element i's value a pure function of (seed, i). The formula is
// src/Parrot.Tensors/Cpu/Random.cs's, computed in the same 64-bit integer and double arithmetic and stored as
// RowIO.Store<double> stores, so a seed gives the CPU's tensor without a host round trip:
//   key = Mix(seed ^ 0x5DEECE66D), Hash(i) = Mix(key + (i + 1)·0x9E3779B97F4A7C15), Unit(h) = (h >> 11)·2⁻⁵³;
//   uniform: p0 + (p1 − p0)·Unit(Hash(i));
//   normal: Box–Muller on the pair (2k, 2k+1): u1 = 1 − Unit(Hash(2k)), u2 = Unit(Hash(2k+1)), r = sqrt(−2·log u1),
//   element 2k = p0 + p1·r·cos(2π·u2), element 2k+1 = p0 + p1·r·sin(2π·u2).
// Uniform is bit for bit the CPU's: integer hashing, an exact conversion and scaling, then one subtraction, one product
// and one sum, each rounded on its own (__dmul_rn/__dadd_rn: with --fmad=true the compiler would otherwise fuse the
// product and the sum into one rounding, which the CPU's .NET JIT never does). Normal calls CUDA's double log, sqrt and
// sincos where the CPU calls glibc's log, sqrt, cos and sin through Math: sqrt is correctly rounded on both, log and
// sin/cos differ by an ulp or two at most, so float64 results agree within a few ulp and narrower dtypes store the same
// bits unless the double lands within those ulp of a rounding boundary (tools/cuda-emu/random_test.cpp measures how
// often: never in millions of draws). The angle is the CPU's rounded double 2π·u2 given to sincos, not sincospi(2·u2),
// which would round a different (exact) angle.
// One thread per element for uniform, per pair for normal (one log and one sincos for two outputs); 64-bit indices
// throughout, no shared memory, no host synchronisation: a plain launch, capturable in a CUDA graph.
// random_*_at (IBackend.RandomAt) are the same draws with the seed base + counter[0] read from device memory, and
// random_counter_step advances that counter: what Dropout records in a graph to get a new mask on every replay.
#include "prelude.cuh"

typedef unsigned long long u64;

// SplitMix64's finaliser: a bijective 64-bit mix (Cpu/Random.cs Mix).
__device__ __forceinline__ u64 rng_mix(u64 z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

__device__ __forceinline__ u64 rng_key(u64 seed) { return rng_mix(seed ^ 0x5DEECE66DULL); }

__device__ __forceinline__ u64 rng_hash(u64 key, u64 i) { return rng_mix(key + (i + 1) * 0x9E3779B97F4A7C15ULL); }

// 53 random bits as a double in [0, 1): an exact conversion and an exact scaling by 2⁻⁵³.
__device__ __forceinline__ double rng_unit(u64 h) { return (double)(h >> 11) * (1.0 / 9007199254740992.0); }

// double → f16 with one rounding to nearest even, as .NET's (Half)double (RowIO stores f64 values that way; prelude's
// store goes through float, a second rounding). Integer arithmetic, so the emulator runs the same code as the GPU.
// Subnormal halves keep their precision, overflow gives ±∞, NaN stays NaN with the quiet bit and the top payload bits.
__device__ __forceinline__ u16 f64_to_f16(double d)
{
    u64 u = (u64)__double_as_longlong(d);
    u16 sign = (u16)((u >> 48) & 0x8000u);
    int e = (int)((u >> 52) & 0x7ff);
    u64 m = u & 0xFFFFFFFFFFFFFULL;
    if (e == 0x7ff) return (u16)(sign | 0x7c00u | (m != 0 ? 0x200u | (unsigned)(m >> 42) : 0u));
    if (e == 0) return sign; // double subnormals are far below half's smallest subnormal (2⁻²⁴)
    int he = e - 1023 + 15;  // the half's biased exponent
    if (he >= 31) return (u16)(sign | 0x7c00u);
    m |= 1ULL << 52; // 53 significant bits
    // Keep the top 11 bits for a normal half, fewer for a subnormal one (he ≤ 0); shift ≥ 55 leaves less than half an ulp.
    int shift = he >= 1 ? 42 : 42 + (1 - he);
    if (shift >= 55) return sign;
    u64 keep = m >> shift, rest = m & ((1ULL << shift) - 1), half = 1ULL << (shift - 1);
    if (rest > half || (rest == half && (keep & 1))) keep++;
    // Normal: exponent field (he − 1) plus the kept bits with their leading 1, so a carry out of the rounding moves
    // into the exponent (up to ∞); subnormal: the kept bits are the encoding (a carry makes the smallest normal).
    unsigned bits = he >= 1 ? ((unsigned)(he - 1) << 10) + (unsigned)keep : (unsigned)keep;
    return (u16)(sign | bits);
}

// Stores v as RowIO.Store<double> does: prelude's store (f32 rounded once, bf16 through float as
// BFloat16.FromFloat((float)v), integers saturated with NaN → 0 as .NET's CreateTruncating, Bool 1 for every nonzero
// value and NaN), except f16, rounded once from the double (prelude's store goes through float: a second rounding).
__device__ __forceinline__ void random_store(void* p, int dt, i64 i, double v)
{
    if (dt == DT_F16) ((u16*)p)[i] = f64_to_f16(v);
    else store<double>(p, dt, i, v);
}

// y[i] = low + (high − low)·Unit(Hash(i)), i < n; y contiguous of dtype dt. The body of random_uniform and
// random_uniform_at: one code for both, so a seed read on the device draws the host seed's bits.
__device__ __forceinline__ void random_uniform_body(i64 n, void* y, int dt, u64 seed, double low, double high)
{
    u64 key = rng_key(seed);
    double span = __dsub_rn(high, low);
    GRID_STRIDE_LOOP(i, n)
    {
        random_store(y, dt, i, __dadd_rn(low, __dmul_rn(span, rng_unit(rng_hash(key, (u64)i)))));
    }
}

// y[i] = mean + std·z(i), i < n; one thread per pair (2k, 2k+1), the second element left out where n is odd.
__device__ __forceinline__ void random_normal_body(i64 n, void* y, int dt, u64 seed, double mean, double std)
{
    u64 key = rng_key(seed);
    i64 pairs = (n + 1) >> 1;
    GRID_STRIDE_LOOP(k, pairs)
    {
        i64 i = 2 * k;
        double u1 = 1.0 - rng_unit(rng_hash(key, (u64)i)); // (0, 1], so the log is finite
        double u2 = rng_unit(rng_hash(key, (u64)i + 1));
        double r = sqrt(-2.0 * log(u1));
        double s, c;
        sincos(__dmul_rn(6.283185307179586, u2), &s, &c); // the CPU's 2 * Math.PI * u2, rounded the same
        random_store(y, dt, i, __dadd_rn(mean, __dmul_rn(std, __dmul_rn(r, c))));
        if (i + 1 < n) random_store(y, dt, i + 1, __dadd_rn(mean, __dmul_rn(std, __dmul_rn(r, s))));
    }
}

extern "C" __global__ void random_uniform(i64 n, void* y, int dt, u64 seed, double low, double high)
{
    random_uniform_body(n, y, dt, seed, low, high);
}

extern "C" __global__ void random_normal(i64 n, void* y, int dt, u64 seed, double mean, double std)
{
    random_normal_body(n, y, dt, seed, mean, std);
}

// IBackend.RandomAt: the seed is base + counter[0] (wrapping u64), read on the device, so the launch is the same every
// call and a CUDA graph replays a fresh draw each time. The counter is read here and advanced by random_counter_step,
// launched after this kernel on the same stream: a grid cannot know inside one launch when all its blocks have read the
// counter (blocks run in any order, and a late block would see the advanced seed), and a last-block ticket would need a
// zeroed ticket buffer and fences for what a one-thread launch does in stream order.
extern "C" __global__ void random_uniform_at(i64 n, void* y, int dt, u64 base, const i64* counter, double low, double high)
{
    random_uniform_body(n, y, dt, base + (u64)counter[0], low, high);
}

extern "C" __global__ void random_normal_at(i64 n, void* y, int dt, u64 base, const i64* counter, double mean, double std)
{
    random_normal_body(n, y, dt, base + (u64)counter[0], mean, std);
}

// counter[0] += 1 (wrapping): one thread, after the draw that read it (stream order).
extern "C" __global__ void random_counter_step(i64* counter)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) counter[0] = (i64)((u64)counter[0] + 1);
}
