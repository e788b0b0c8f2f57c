// native/random.cu against a C++ port of the CPU's formula (src/Parrot.Tensors/Cpu/Random.cs) and of RowIO.Store's
// conversions: every dtype, both kinds, millions of indices, indices past 2^31, 2^32 and 2^35, the launcher's grid over a
// tensor of more than 2^32 elements. The port is tied to the C# code by golden bits that RandomGoldenTests (NUnit) checks
// against the CPU backend, and the conversions by what .NET 10 gives for a table of doubles.
// Here the kernel's log/sincos are glibc's, as the CPU's Math.Log/Cos/Sin, so normal must match bit for bit too; on a GPU
// they are CUDA's, and the last part measures how often an error of a few ulp in the double would change a stored value.
#include <sys/mman.h>
#include <vector>
#include <random>
#include "emu_serial.h"
#include "random.cu"

typedef unsigned long long u64;
enum { R_UNIFORM, R_NORMAL }; // RandomKind's order; the launcher picks random_uniform or random_normal by it
int fails = 0;
#define CHECK(c, ...) do { if (!(c)) { if (++fails <= 20) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } } while (0)

// ---- the CPU reference, ported line by line from Cpu/Random.cs and RowIO.Store ----
static u64 ref_mix(u64 z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double ref_unit(u64 h) { return (double)(h >> 11) * (1.0 / (double)(1ULL << 53)); }
static double ref_sample(u64 seed, int kind, double p0, double p1, u64 i)
{
    u64 key = ref_mix(seed ^ 0x5DEECE66DULL);
    auto hash = [&](u64 j) { return ref_mix(key + (j + 1) * 0x9E3779B97F4A7C15ULL); };
    if (kind == R_UNIFORM) return p0 + (p1 - p0) * ref_unit(hash(i));
    u64 k = i >> 1;
    double u1 = 1.0 - ref_unit(hash(2 * k));
    double u2 = ref_unit(hash(2 * k + 1));
    double r = std::sqrt(-2.0 * std::log(u1));
    double z = (i & 1) == 0 ? r * std::cos(2 * M_PI * u2) : r * std::sin(2 * M_PI * u2);
    return p0 + p1 * z;
}
static u16 ref_bf16(float f) // BFloat16.FromFloat
{
    unsigned u; memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (u16)((u >> 16) | 0x40u);
    return (u16)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
static u16 ref_f16(double v) { _Float16 h = (_Float16)v; u16 b; memcpy(&b, &h, 2); return b; } // one IEEE rounding, as (Half)double
static i64 ref_trunc(double v, double lo, double hi) // CreateTruncating: saturate, NaN → 0
{
    if (std::isnan(v)) return 0;
    double t = std::trunc(v);
    return t <= lo ? (i64)lo : t >= hi ? (hi >= 0x1p63 ? INT64_MAX : (i64)hi) : (i64)t;
}
// The stored element's bits, as RowIO.Store<double> writes them.
static u64 ref_bits(int dt, double v)
{
    switch (dt)
    {
        case DT_F32: { float f = (float)v; unsigned u; memcpy(&u, &f, 4); return u; }
        case DT_F64: { u64 u; memcpy(&u, &v, 8); return u; }
        case DT_BF16: return ref_bf16((float)v);
        case DT_F16: return ref_f16(v);
        case DT_I32: return (u64)(unsigned)(int)ref_trunc(v, -2147483648.0, 2147483647.0);
        case DT_I64: return (u64)ref_trunc(v, -0x1p63, 0x1p63);
        case DT_BOOL: return v != 0.0 ? 1 : 0;
        default: return (u64)ref_trunc(v, 0, 255);
    }
}
static int esize(int dt) { return dt == DT_F64 || dt == DT_I64 ? 8 : dt == DT_F32 || dt == DT_I32 ? 4 : dt == DT_BF16 || dt == DT_F16 ? 2 : 1; }
static u64 read_bits(const void* p, int dt, i64 i)
{
    switch (esize(dt))
    {
        case 8: return ((const u64*)p)[i];
        case 4: return ((const unsigned*)p)[i];
        case 2: return ((const u16*)p)[i];
        default: return ((const unsigned char*)p)[i];
    }
}
static const char* dtname[] = {"f32", "f64", "bf16", "f16", "i32", "i64", "u8", "bool"};
static void kernel(int kind, i64 n, void* y, int dt, u64 seed, double p0, double p1)
{
    if (kind == R_UNIFORM) random_uniform(n, y, dt, seed, p0, p1);
    else random_normal(n, y, dt, seed, p0, p1);
}
// Threads per launch unit: elements for uniform, pairs for normal.
static i64 units(int kind, i64 n) { return kind == R_UNIFORM ? n : (n + 1) / 2; }
// Parameters per kind: uniform on [-2, 3) and, for the integer dtypes to see their range, [-300, 300); normal(1.5, 2).
static void params(int kind, int dt, double& p0, double& p1)
{
    if (kind == R_NORMAL) { p0 = 1.5; p1 = dt >= DT_I32 ? 200 : 2; }
    else if (dt >= DT_I32) { p0 = -300; p1 = 300; }
    else { p0 = -2; p1 = 3; }
}

int main(int argc, char** argv)
{
    // 1. RowIO.Store's conversions, against what .NET 10 gives for these doubles (int/long/byte.CreateTruncating,
    //    (Half)double, (float)double; printed by a probe on this machine, 2026-11-27).
    struct { double v; int i32; i64 i64v; int u8; unsigned f16; unsigned f32; } net[] = {
        {-1.5, -1, -1, 0, 0xBE00, 0xBFC00000}, {-0.7, 0, 0, 0, 0xB99A, 0xBF333333}, {0.7, 0, 0, 0, 0x399A, 0x3F333333},
        {254.9, 254, 254, 254, 0x5BF7, 0x437EE666}, {255.5, 255, 255, 255, 0x5BFC, 0x437F8000}, {256.0, 256, 256, 255, 0x5C00, 0x43800000},
        {1e10, 2147483647, 10000000000LL, 255, 0x7C00, 0x501502F9}, {-1e10, -2147483647 - 1, -10000000000LL, 0, 0xFC00, 0xD01502F9},
        {3e9, 2147483647, 3000000000LL, 255, 0x7C00, 0x4F32D05E}, {-3e9, -2147483647 - 1, -3000000000LL, 0, 0xFC00, 0xCF32D05E},
        {1e19, 2147483647, INT64_MAX, 255, 0x7C00, 0x5F0AC723}, {-1e19, -2147483647 - 1, INT64_MIN, 0, 0xFC00, 0xDF0AC723},
        {INFINITY, 2147483647, INT64_MAX, 255, 0x7C00, 0x7F800000}, {-INFINITY, -2147483647 - 1, INT64_MIN, 0, 0xFC00, 0xFF800000},
        {2147483647.9, 2147483647, 2147483647, 255, 0x7C00, 0x4F000000}, {-2147483648.9, -2147483647 - 1, -2147483648LL, 0, 0xFC00, 0xCF000000},
        {__longlong_as_double((long long)0xFFF8000000000000ULL), 0, 0, 0, 0xFE00, 0}, // double.NaN (f32 NaN bits: see below)
        {__longlong_as_double(0x7FF4000000000001LL), 0, 0, 0, 0x7F00, 0},
    };
    for (auto& c : net)
    {
        int i32; i64 i64v; unsigned char u8; u16 f16; float f32;
        random_store(&i32, DT_I32, 0, c.v); random_store(&i64v, DT_I64, 0, c.v); random_store(&u8, DT_U8, 0, c.v);
        random_store(&f16, DT_F16, 0, c.v); random_store(&f32, DT_F32, 0, c.v);
        CHECK(i32 == c.i32 && i64v == c.i64v && u8 == c.u8 && f16 == c.f16, "store %.17g: i32 %d i64 %lld u8 %d f16 %04x", c.v, i32, i64v, u8, f16);
        if (c.f32) CHECK(__float_as_uint(f32) == c.f32, "store %.17g: f32 %08x", c.v, __float_as_uint(f32));
        else CHECK(f32 != f32, "NaN stays NaN in f32"); // payload bits: the GPU's conversion gives its canonical NaN
        unsigned char b; random_store(&b, DT_BOOL, 0, c.v);
        CHECK(b == 1, "bool of %.17g", c.v);
    }
    { unsigned char b; random_store(&b, DT_BOOL, 0, 0.0); CHECK(b == 0, "bool 0"); random_store(&b, DT_BOOL, 0, -0.0); CHECK(b == 0, "bool -0"); }

    // 2. f64 → f16 in one rounding against the compiler's _Float16 conversion: random doubles over the whole half range
    //    (subnormals included) and just past it, exact ties between halves, the overflow threshold 65520.
    {
        std::mt19937_64 g(5);
        long bad = 0, n = 0;
        for (int t = 0; t < 4000000; t++, n++)
        {
            double v = std::ldexp((double)(g() >> 11) / 9007199254740992.0 + 0.5, (int)(g() % 48) - 30) * ((g() & 1) ? -1 : 1);
            if (f64_to_f16(v) != ref_f16(v)) bad++;
        }
        for (unsigned h = 0; h < 0x7C00; h++) // the midpoint of every pair of neighbouring finite halves, and a hair either side
        {
            _Float16 a, b; u16 ha = (u16)h, hb = (u16)(h + 1); memcpy(&a, &ha, 2); memcpy(&b, &hb, 2);
            double mid = ((double)a + (double)b) / 2;
            for (double v : {mid, std::nextafter(mid, 0.0), std::nextafter(mid, 1e9), -mid}) { n++; if (f64_to_f16(v) != ref_f16(v)) bad++; }
        }
        for (double v : {65519.99999, 65520.0, 65504.0, 0x1p-25, 0x1p-25 * 1.0000001, 0x1p-26, 1e-300, 5e-324, -0.0})
        { n++; if (f64_to_f16(v) != ref_f16(v)) bad++; }
        CHECK(bad == 0, "f64_to_f16: %ld of %ld differ from _Float16", bad, n);
    }

    // 3. Golden bits (the same constants RandomGoldenTests checks against the CPU backend): float64, seed 42,
    //    uniform on [-2, 3) and normal(1.5, 2) at indices 0, 1, 2, 3, 999999; the port and the kernel.
    {
        const u64 idx[5] = {0, 1, 2, 3, 999999};
        const u64 golden[2][5] = {
            {0xBFFB05505776830EULL, 0x3FFB35B8443EF7D4ULL, 0x40020CEDAB9905A4ULL, 0x3FD2CC7B3E109BE8ULL, 0xBFE8FA015F6FC410ULL},
            {0x3FF749DC19D6C8D5ULL, 0x3FE9199CC062C7BFULL, 0xC002312649508986ULL, 0x4004018C8C124AC6ULL, 0x40119B536590A548ULL},
        };
        std::vector<double> y(1000000);
        for (int kind = 0; kind < 2; kind++)
        {
            double p0 = kind == R_UNIFORM ? -2 : 1.5, p1 = kind == R_UNIFORM ? 3 : 2;
            launch(64, 256, [&] { kernel(kind, (i64)y.size(), y.data(), DT_F64, 42, p0, p1); });
            for (int j = 0; j < 5; j++)
            {
                CHECK(ref_bits(DT_F64, ref_sample(42, kind, p0, p1, idx[j])) == golden[kind][j], "port: golden kind %d index %llu", kind, idx[j]);
                CHECK(read_bits(y.data(), DT_F64, (i64)idx[j]) == golden[kind][j], "kernel: golden kind %d index %llu", kind, idx[j]);
            }
        }
    }

    // 4. Every dtype and kind over 1,000,003 elements (odd: normal's last pair is half), the grid-stride loop going round
    //    (40 blocks of 256), three seeds.
    {
        const i64 n = 1000003;
        const u64 pattern = 0xABABABABABABABABULL;
        std::vector<u64> buf(n + 1);
        for (int kind = 0; kind < 2; kind++)
            for (int dt = 0; dt < 8; dt++)
                for (u64 seed : {0ULL, 42ULL, 0xFFFFFFFFFFFFFFFFULL})
                {
                    double p0, p1; params(kind, dt, p0, p1);
                    memset(buf.data(), 0xAB, (n + 1) * 8);
                    launch(40, 256, [&] { kernel(kind, n, buf.data(), dt, seed, p0, p1); });
                    long bad = 0;
                    for (i64 i = 0; i < n; i++)
                        if (read_bits(buf.data(), dt, i) != ref_bits(dt, ref_sample(seed, kind, p0, p1, (u64)i))) bad++;
                    CHECK(bad == 0, "%s %s seed %llu: %ld of %lld elements differ", kind ? "normal" : "uniform", dtname[dt], seed, bad, n);
                    CHECK(read_bits(buf.data(), dt, n) == read_bits(&pattern, dt, 0), "%s %s wrote past n", kind ? "normal" : "uniform", dtname[dt]);
                }
    }

    // 5. Indices past 2^31, 2^32 and 2^35: a window of 4096 elements ending the tensor (n = base + 4096) at each base, the
    //    grid wide enough for one pass (so only the window's blocks run), y pointed base elements before the window (one
    //    element of margin before it: normal's first pair may start at base − 1).
    {
        const i64 w = 4096;
        std::vector<u64> buf(w + 1);
        char* win = (char*)(buf.data() + 1);
        for (i64 base : {(1LL << 31) - 7, (1LL << 32) - 5, (1LL << 32) + 3, (1LL << 33) + 1, 3 * (1LL << 35) + 11})
            for (int kind = 0; kind < 2; kind++)
                for (int dt = 0; dt < 8; dt++)
                {
                    double p0, p1; params(kind, dt, p0, p1);
                    const i64 n = base + w;
                    char* y = win - base * esize(dt);
                    i64 first = kind == R_UNIFORM ? base : base / 2, last = units(kind, n); // launch units covering the window
                    gridDim.x = (unsigned)((last + 255) / 256); blockDim.x = 256;
                    for (i64 b = first / 256; b < (i64)gridDim.x; b++)
                        for (unsigned t = 0; t < 256; t++) { blockIdx.x = (unsigned)b; threadIdx.x = t; if (b * 256 + t >= first) kernel(kind, n, y, dt, 0x1234, p0, p1); }
                    long bad = 0;
                    for (i64 j = 0; j < w; j++)
                        if (read_bits(win, dt, j) != ref_bits(dt, ref_sample(0x1234, kind, p0, p1, (u64)(base + j)))) bad++;
                    CHECK(bad == 0, "%s %s at index %lld: %ld of %lld differ", kind ? "normal" : "uniform", dtname[dt], base, bad, w);
                }
    }

    // 6. The launcher's grid (CudaKernels.GridFor: 132 SMs × 32 blocks of 256) over a u8 and an f16 tensor of 2^32 + 1001
    //    elements, in a reserved (mostly untouched) mapping: a few threads run their whole grid-stride loop, thousands
    //    of passes crossing 2^32, the last element's thread among them; every element they write against the port.
    {
        const i64 n = (1LL << 32) + 1001;
        const unsigned grid = 132 * 32;
        for (int kind = 0; kind < 2; kind++)
            for (int dt : {DT_U8, DT_F16})
            {
                size_t bytes = (size_t)n * esize(dt);
                void* y = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
                if (y == MAP_FAILED) { CHECK(false, "mmap of %zu bytes", bytes); continue; }
                double p0, p1; params(kind, dt, p0, p1);
                i64 u = units(kind, n), stride = (i64)grid * 256;
                gridDim.x = grid; blockDim.x = 256;
                long bad = 0, written = 0;
                for (i64 thread : {(i64)0, (i64)255, (i64)77777, (u - 1) % stride})
                {
                    blockIdx.x = (unsigned)(thread / 256); threadIdx.x = (unsigned)(thread % 256);
                    kernel(kind, n, y, dt, 99, p0, p1);
                    for (i64 v = thread; v < u; v += stride)
                        for (i64 i = kind == R_UNIFORM ? v : 2 * v; i < (kind == R_UNIFORM ? v + 1 : std::min(2 * v + 2, n)); i++, written++)
                            if (read_bits(y, dt, i) != ref_bits(dt, ref_sample(99, kind, p0, p1, (u64)i))) bad++;
                }
                CHECK(bad == 0 && written >= 15000, "%s %s over 2^32 + 1001 elements: %ld of %ld differ", kind ? "normal" : "uniform", dtname[dt], bad, written);
                munmap(y, bytes);
            }
    }

    // 7. RandomAt's kernels (the seed base + counter[0] read from memory, wrapping in 64 bits): the host-seed kernel's
    //    bits for that seed, every dtype and both kinds over 100,003 elements (the grid-stride loop going round), for
    //    counters 0, 1, 2^32 + 5, −1 (read as 2^64 − 1) and a base that wraps; the counter left as it was by the draw.
    //    random_counter_step, launched as the launcher does (1 block of 32), adds exactly one, wrapping at 2^63 − 1 and −1.
    {
        const i64 n = 100003;
        std::vector<u64> at(n), want(n);
        const struct { u64 base; i64 counter; } seeds[] = {
            {42, 0}, {41, 1}, {9, (1LL << 32) + 5}, {3, -1}, {0xFFFFFFFFFFFFFFF0ULL, 0x20}, {0, INT64_MIN}};
        for (auto sd : seeds)
            for (int kind = 0; kind < 2; kind++)
                for (int dt = 0; dt < 8; dt++)
                {
                    double p0, p1; params(kind, dt, p0, p1);
                    i64 counter = sd.counter;
                    memset(at.data(), 0xAB, n * 8); memset(want.data(), 0xCD, n * 8);
                    launch(30, 256, [&] {
                        if (kind == R_UNIFORM) random_uniform_at(n, at.data(), dt, sd.base, &counter, p0, p1);
                        else random_normal_at(n, at.data(), dt, sd.base, &counter, p0, p1);
                    });
                    launch(30, 256, [&] { kernel(kind, n, want.data(), dt, sd.base + (u64)sd.counter, p0, p1); });
                    long bad = 0;
                    for (i64 i = 0; i < n; i++) if (read_bits(at.data(), dt, i) != read_bits(want.data(), dt, i)) bad++;
                    CHECK(bad == 0, "%s_at %s base %llu counter %lld: %ld of %lld differ from the host seed's draw", kind ? "normal" : "uniform", dtname[dt], sd.base, (long long)sd.counter, bad, n);
                    CHECK(counter == sd.counter, "the draw changed the counter");
                }
        for (i64 start : {(i64)0, (i64)41, (i64)-1, (i64)INT64_MAX, (i64)INT64_MIN})
        {
            i64 counter = start;
            for (int k = 0; k < 3; k++) launch(1, 32, [&] { random_counter_step(&counter); });
            CHECK(counter == (i64)((u64)start + 3), "counter from %lld after 3 steps: %lld", (long long)start, (long long)counter);
        }
    }

    // 8. How often a GPU's log/sin/cos, an ulp or two off glibc's, would change a stored 16- or 32-bit value: for 2^22
    //    normal(0, 1) draws, count those where moving the double by k ulp (either way) changes the stored bits.
    if (argc < 2 || strcmp(argv[1], "quick") != 0)
    {
        const int N = 1 << 22;
        long changed[3][4] = {};
        const int dts[3] = {DT_F32, DT_BF16, DT_F16};
        for (int i = 0; i < N; i++)
        {
            double v = ref_sample(7, R_NORMAL, 0, 1, (u64)i);
            for (int d = 0; d < 3; d++)
            {
                u64 want = ref_bits(dts[d], v);
                double up = v, down = v;
                for (int k = 0; k < 4; k++)
                {
                    up = std::nextafter(up, INFINITY); down = std::nextafter(down, -INFINITY);
                    if (ref_bits(dts[d], up) != want || ref_bits(dts[d], down) != want) changed[d][k]++;
                }
            }
        }
        printf("(normal draws whose stored value a 1/2/3/4-ulp error of the double would change, of %d: f32 %ld/%ld/%ld/%ld, bf16 %ld/%ld/%ld/%ld, f16 %ld/%ld/%ld/%ld) ",
               N, changed[0][0], changed[0][1], changed[0][2], changed[0][3], changed[1][0], changed[1][1], changed[1][2], changed[1][3],
               changed[2][0], changed[2][1], changed[2][2], changed[2][3]);
    }

    if (fails) { printf("%d FAILED\n", fails); return 1; }
    printf("ok\n");
    return 0;
}
