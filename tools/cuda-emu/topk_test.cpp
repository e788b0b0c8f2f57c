// native/topk.cu under the emulation (emu_threads.h) against a plain C++ reference of the contract (Cpu/TopK.cs):
// per row the k best, best first; larger first, NaN above every number, -0 = +0, equal values by lower index; values
// the elements as the CPU returns them (a 16-bit float NaN gets its quiet bit from the CPU's trip through float32),
// indices int64. Every dtype (f16 too: the kernel reads its bits, no PTX conversion), rows of 1 to a vocabulary (152,064),
// k from 0 to n (the shared-memory sort and, above TOPK_SHARED_ITEMS, the scratch sort), both kernels (topk_small is
// the launcher's choice up to TOPK_SMALL_N; topk_rows takes any row and is run on short rows too), strided x, values and
// indices, a two-dim row layout, grids smaller than the rows, blocks of 32 to 1024 threads. Indices and value bits must
// be equal. Usage: topk [quick] (quick: k above 1024 on medium rows only at k = n and f32's k = 3000, and of the vocabulary
// rows only the ties rows at k 1, 50, 1024; the whole run takes about 4 times as long)
#include "emu_threads.h"
#include "prelude.cuh"
#include "topk.cu"
#include <algorithm>
#include <random>
#include <vector>
#include <string>
#include <cstdlib>

static int fails = 0;
static long long checks = 0;
// Stops at the 20th failure (a planted bug fails fast).
#define CHECK(c, ...) do { checks++; if (!(c)) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); if (++fails == 20) { printf("%lld checks, stopped at 20 failures\n", checks); exit(1); } } } while (0)

static int esize(int dt) { return dt == DT_F64 || dt == DT_I64 ? 8 : dt == DT_F32 || dt == DT_I32 ? 4 : dt == DT_BF16 || dt == DT_F16 ? 2 : 1; }
static const char* dname(int dt) { const char* n[] = {"f32", "f64", "bf16", "f16", "i32", "i64", "u8"}; return n[dt]; }

// IEEE binary16 to double, by its bits (the reference's own decoding).
static double f16_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double s = (h & 0x8000) ? -1 : 1;
    if (e == 31) return m ? NAN : s * INFINITY;
    if (e == 0) return s * std::ldexp((double)m, -24);
    return s * std::ldexp(1024.0 + m, e - 25);
}

// An element as the CPU compares it: floats as double (every f32/bf16/f16 value exactly), integers as long long.
struct Elem { bool nan; double f; long long i; };
static Elem elem(const std::vector<unsigned char>& x, int dt, long long at)
{
    const unsigned char* p = x.data() + at * esize(dt);
    Elem e{false, 0, 0};
    switch (dt)
    {
        case DT_F32: { float v; memcpy(&v, p, 4); e.f = v; break; }
        case DT_F64: { double v; memcpy(&v, p, 8); e.f = v; break; }
        case DT_BF16: { uint16_t h; memcpy(&h, p, 2); unsigned u = (unsigned)h << 16; float v; memcpy(&v, &u, 4); e.f = v; break; }
        case DT_F16: { uint16_t h; memcpy(&h, p, 2); e.f = f16_value(h); break; }
        case DT_I32: { int v; memcpy(&v, p, 4); e.i = v; break; }
        case DT_I64: { long long v; memcpy(&v, p, 8); e.i = v; break; }
        default: e.i = *p; break;
    }
    e.nan = e.f != e.f;
    return e;
}

// The value bits the CPU returns for an element: the bits, a 16-bit NaN with its quiet bit set (bf16: BFloat16.FromFloat
// of the widened value; f16: .NET's Half -> float -> Half keeps the payload and sets the quiet bit).
static std::vector<unsigned char> cpu_value(const std::vector<unsigned char>& x, int dt, long long at)
{
    std::vector<unsigned char> v(x.begin() + at * esize(dt), x.begin() + (at + 1) * esize(dt));
    if (dt == DT_BF16) { uint16_t h; memcpy(&h, v.data(), 2); h = f32_to_bf16(bf16_to_f32(h)); memcpy(v.data(), &h, 2); }
    if (dt == DT_F16) { uint16_t h; memcpy(&h, v.data(), 2); if ((h & 0x7fff) > 0x7c00) h |= 0x200; memcpy(v.data(), &h, 2); }
    return v;
}

// The contract as a stable sort: a beats b when a is NaN and b is not, or both are numbers and a > b.
static std::vector<long long> reference(const std::vector<unsigned char>& x, int dt, long long base, long long xcol, int n, int k)
{
    std::vector<Elem> e(n);
    for (int j = 0; j < n; j++) e[j] = elem(x, dt, base + j * xcol);
    bool integer = dt >= DT_I32;
    std::vector<long long> idx(n);
    for (int j = 0; j < n; j++) idx[j] = j;
    std::stable_sort(idx.begin(), idx.end(), [&](long long a, long long b)
    {
        const Elem &p = e[a], &q = e[b];
        if (integer) return p.i > q.i;
        if (p.nan || q.nan) return p.nan && !q.nan;
        return p.f > q.f;
    });
    idx.resize(k);
    return idx;
}

enum Fill { Ties, Wide, AllEqual, AllNaN, Zeros, Ascending, Descending, Bits };
static const char* fname(Fill f) { const char* n[] = {"ties", "wide", "all-equal", "all-NaN", "±0", "ascending", "descending", "random bits"}; return n[f]; }

// One element of a row of kind f at position j (raw bits written by store of the dtype, or bit patterns for NaN payloads).
static void put(std::vector<unsigned char>& x, int dt, long long at, Fill f, long long j, int n, std::mt19937& rng)
{
    bool isfloat = dt <= DT_F16;
    if (f == Bits)
    {
        // Any pattern: subnormals, NaN payloads of either sign, infinities, the integers' extremes.
        for (int b = 0; b < esize(dt); b++) x[at * esize(dt) + b] = (unsigned char)rng();
        return;
    }
    double v;
    switch (f)
    {
        case Ties:
        {
            const double set[] = {NAN, -INFINITY, INFINITY, -0.0, 0.0, 0.5, 1.0};
            v = isfloat && rng() % 40 == 0 ? set[rng() % 7] : (double)((int)(rng() % 16) - 8) / (isfloat ? 8 : 1);
            break;
        }
        case Wide: v = isfloat ? std::ldexp((double)(rng() % 2000001) - 1000000, -(int)(rng() % 40)) : (double)((long long)(rng() % 2000001) - 1000000); break;
        case AllEqual: v = 3; break;
        case AllNaN: v = NAN; break;
        case Zeros: v = j % 3 ? 0.0 : -0.0; break;
        case Ascending: v = (double)(j % 200); break;
        default: v = (double)((n - j) % 200); break;
    }
    if (dt == DT_U8) v = std::fmod(std::fabs(v), 256);
    if (dt == DT_F16)
    {
        // Without the PTX conversion: small integers, halves and eighths, ±inf, ±0 and NaN by their bits.
        uint16_t h;
        if (v != v) h = (uint16_t)(0x7c01 + rng() % 0x3fe) | (rng() % 2 ? 0x8000 : 0); // NaNs of either sign, quiet or not
        else if (std::isinf(v)) h = v > 0 ? 0x7c00 : 0xfc00;
        else if (v == 0) h = std::signbit(v) ? 0x8000 : 0;
        else
        {
            int e; double m = std::frexp(std::fabs(v), &e); // |v| = m·2^e, m in [0.5, 1)
            if (e < -13 || e > 15) { h = std::signbit(v) ? 0x8000 : 0; }
            else h = (uint16_t)((std::signbit(v) ? 0x8000 : 0) | ((e + 14) << 10) | ((int)std::ldexp(m, 11) & 1023));
        }
        memcpy(x.data() + at * 2, &h, 2);
        return;
    }
    if (dt == DT_BF16 && v != v)
    {
        uint16_t h = (uint16_t)(0x7f81 + rng() % 0x7e) | (rng() % 2 ? 0x8000 : 0); // signalling and quiet NaNs
        memcpy(x.data() + at * 2, &h, 2);
        return;
    }
    if (dt >= DT_I32 && (v != v || std::isinf(v))) v = dt == DT_I64 ? -9e18 : -2e9; // the integers' extremes instead
    if (dt == DT_I64 && f == Wide) { long long w = (long long)(rng() % 2000001) - 1000000; w *= (long long)(rng() % 9000000000LL); memcpy(x.data() + at * 8, &w, 8); return; }
    store<double>(x.data(), dt, at, v);
}

static unsigned g_seed = 1;

// rows [R0, R1] (R1 = 1: one row dim) of rows of n; x's last axis stride xcol, values'/indices' stride vcol/icol; a two-dim
// row layout when R1 > 1 (rows of x spaced by an extra gap, so the dims do not merge). kernel 0: topk_small, 1: topk_rows.
static void run_case(int dt, int R0, int R1, int n, int k, Fill fill, int kernel, int block, int grid, int xcol, int vcol, int icol)
{
    std::mt19937 rng(g_seed++);
    long long rows = (long long)R0 * R1;
    long long xrow = (long long)n * xcol + 3, xouter = xrow * R1 + 5; // gaps between rows: a layout that does not merge
    long long vrow = (long long)k * vcol + 1, vouter = vrow * R1 + 2;
    long long irow = (long long)k * icol + 2, iouter = irow * R1 + 1;
    std::vector<unsigned char> x((size_t)(xouter * R0 + 8) * esize(dt), 0xAB);
    std::vector<unsigned char> values((size_t)(vouter * R0 + 8) * esize(dt), 0xCD);
    std::vector<long long> indices(iouter * R0 + 8, -7);
    for (int a = 0; a < R0; a++)
        for (int b = 0; b < R1; b++)
        {
            long long r = (long long)a * R1 + b;
            Fill f = fill == Ties && r % 7 == 6 ? AllEqual : fill; // every seventh row of a ties case is one value
            for (int j = 0; j < n; j++) put(x, dt, a * xouter + b * xrow + (long long)j * xcol, f, j, n, rng);
        }
    Layout L{};
    if (R1 > 1)
    {
        L.rank = 2; L.size[0] = R0; L.size[1] = R1;
        L.stride[0][0] = vouter; L.stride[0][1] = vrow; L.stride[1][0] = iouter; L.stride[1][1] = irow; L.stride[2][0] = xouter; L.stride[2][1] = xrow;
    }
    else { L.rank = 1; L.size[0] = R0; L.stride[0][0] = vouter; L.stride[1][0] = iouter; L.stride[2][0] = xouter; }
    std::vector<TopKItem> scratch(k > TOPK_SHARED_ITEMS ? (size_t)grid * k : 0);
    if (kernel == 0)
        launch(grid, 32 * TOPK_WARP_ROWS, [&] { topk_small(L, rows, n, k, values.data(), vcol, indices.data(), icol, x.data(), xcol, dt); });
    else
        launch(grid, block, [&] { topk_rows(L, rows, n, k, values.data(), vcol, indices.data(), icol, x.data(), xcol, dt, scratch.data()); });
    int bad = 0;
    for (int a = 0; a < R0; a++)
        for (int b = 0; b < R1; b++)
        {
            long long xo = a * xouter + b * xrow, vo = a * vouter + b * vrow, io = a * iouter + b * irow;
            auto want = reference(x, dt, xo, xcol, n, k);
            for (int j = 0; j < k && bad < 3; j++)
            {
                long long got = indices[io + (long long)j * icol];
                auto wv = cpu_value(x, dt, xo + want[j] * xcol);
                bool same = got == want[j] && memcmp(values.data() + (vo + (long long)j * vcol) * esize(dt), wv.data(), esize(dt)) == 0;
                CHECK(same, "%s %s rows %dx%d n=%d k=%d kernel %s block %d grid %d: row (%d,%d) slot %d index %lld, want %lld (or value bits differ)",
                      dname(dt), fname(fill), R0, R1, n, k, kernel ? "rows" : "small", block, grid, a, b, j, got, want[j]);
                if (!same) bad++;
            }
        }
    for (long long i = 0; i < (long long)indices.size(); i++)
    {
        long long a = i / iouter, rem = i % iouter, b = rem / irow, c = rem % irow;
        bool slot = a < R0 && b < R1 && c < (long long)k * icol && c % icol == 0;
        if (!slot && indices[i] != -7) { CHECK(false, "%s n=%d k=%d: index written outside the output at %lld", dname(dt), n, k, i); break; }
    }
}

int main(int argc, char** argv)
{
    bool quick = argc > 1 && std::string(argv[1]) == "quick";
    const int dts[] = {DT_F32, DT_BF16, DT_F16, DT_F64, DT_I32, DT_I64, DT_U8};
    // Short rows on both kernels, every dtype, every kind of row, k from 0 to n.
    for (int dt : dts)
        for (int n : {1, 2, 33, 64, 256})
            for (int k : {0, 1, 5, 8, 50, n})
            {
                if (k > n) continue;
                for (Fill f : {Ties, Wide, AllEqual, AllNaN, Zeros, Ascending, Bits})
                {
                    if ((f == AllNaN || f == Zeros) && dt >= DT_I32) continue;
                    run_case(dt, 11, 1, n, k, f, 0, 256, 1, 1, 1, 1);            // a warp per row, 8 rows a block, grid < rows
                    run_case(dt, 3, 1, n, k, f, 1, n < 40 ? 32 : 64, 2, 1, 1, 1); // the block kernel on short rows too
                }
            }
    // The router's shape: many rows of 64 experts, top 1, 2, 8; strided x and outputs, a two-dim row layout.
    for (int dt : {DT_F32, DT_BF16})
        for (int k : {1, 2, 8})
        {
            run_case(dt, 300, 1, 64, k, Ties, 0, 256, 16, 1, 1, 1);
            run_case(dt, 6, 5, 64, k, Wide, 0, 256, 3, 2, 3, 2);
            run_case(dt, 4, 3, 33, k, Ties, 1, 64, 5, 3, 1, 2);
        }
    // Medium rows: the radix select over every digit, ties at the cut, k across the shared-memory limit (2048) into the scratch sort.
    for (int dt : dts)
        for (int n : {257, 1000, 5000})
            for (int k : {0, 1, 5, 50, 1024, 2048, 2049, 3000, n})
            {
                if (k > n || (quick && k > 1024 && k != n && !(k == 3000 && dt == DT_F32))) continue; // quick: one scratch select
                for (Fill f : {Ties, Wide, Descending, Bits})
                    run_case(dt, 3, 1, n, k, f, 1, 256, 2, 1, 1, 1);
                if (dt <= DT_F16) run_case(dt, 2, 1, n, k, AllNaN, 1, 128, 2, 1, 1, 1);
                if (dt <= DT_F16) run_case(dt, 2, 1, n, k, Zeros, 1, 96, 1, 1, 1, 1);
            }
    run_case(DT_F32, 2, 3, 1000, 50, Ties, 1, 256, 4, 2, 2, 3);   // strided everything, two-dim rows
    run_case(DT_BF16, 2, 3, 1000, 1000, Wide, 1, 1024, 4, 3, 1, 1); // k = n: no select pass
    // Vocabulary rows (the decode sampler's shape): 152,064 in f32 and bf16, k 1 to 1024, all-equal and ±0 rows, and k = n
    // (scratch) once per dtype.
    for (int dt : {DT_F32, DT_BF16})
    {
        for (int k : {1, 50, 1024})
        {
            run_case(dt, 2, 1, 152064, k, Ties, 1, 1024, 2, 1, 1, 1);
            if (!quick) run_case(dt, 1, 1, 152064, k, Wide, 1, 256, 1, 1, 1, 1);
            if (!quick) run_case(dt, 1, 1, 152064, k, Bits, 1, 512, 1, 1, 1, 1);
        }
        if (!quick)
        {
            run_case(dt, 1, 1, 152064, 1024, AllEqual, 1, 1024, 1, 1, 1, 1);
            run_case(dt, 1, 1, 152064, 5, Zeros, 1, 1024, 1, 1, 1, 1);
            run_case(dt, 1, 1, 152064, 152064, Ties, 1, 1024, 1, 1, 1, 1);
        }
    }
    printf("%lld checks, %d failures\n", checks, fails);
    return fails ? 1 : 0;
}
