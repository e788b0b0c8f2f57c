// native/gemv.cu under the emulation (block threads as OS threads, real barriers and shuffles) against a float64
// reference: M = 1..4 rows of x, N and K with ragged ends (K not a multiple of the 16-byte vector, K shorter than
// one warp step), row strides above K and N, x rows at odd offsets (element loads) and aligned (vector loads),
// bf16 and f32, f32 output of bf16 input, bias, GELU, every split of K over 1, 2 and 4 warps.
// Then the fused gate/up SwiGLU products (swiglu_gemv_*) against the unfused path they replace, bit for bit:
// gemv(gate), gemv(up), then elementwise.cu's swiglu_forward and swiglu_forward_packed.
// Every bf16 case also runs the lean kernels (gemv_lean_bf16_*, swiglu_gemv_lean_bf16_*: x loaded per step), which
// must give the plain kernels' bytes, row gaps included.
// Every gemv case, and every fused case with N ≤ 64, also runs with an L2 prefetch (pf 2 or past the slice's end):
// the same bytes, and every prefetched address (checked by gemv.cu's emulation hook) inside a row of a weight and
// before its last whole vector ends.
#define PARROT_CUDA_EMU 1 // gemv.cu's fused norm kernels: a static buffer for the dynamic shared memory
#include "emu_threads.h"
#include "prelude.cuh"
#include "swiglu.cuh" // at file scope, as prelude.cuh: one swiglu_value for both namespaces below
namespace gm {
#include "gemv.cu"
}
namespace ew {
#include "elementwise.cu"
}
#include <atomic>
#include <cstring>
#include <random>
#include <vector>
int fails = 0, cases = 0, lean_cases = 0, lean_fails = 0;
int prefetch_cases = 0, prefetch_fails = 0;
#define CHECK(c, ...) do { if (!(c)) { if (++fails <= 20) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } } while (0)

// The weights a launch may prefetch from (gemv.cu's emu_prefetch_hook): rows of K elements (es bytes) ldw apart.
struct PrefetchBounds
{
    const char* w[2];
    i64 N, K, ldw;
    int es;
} pfb;
std::atomic<long> prefetches{0}, bad_prefetches{0};
static void check_prefetch(const void* p)
{
    prefetches++;
    for (const char* w : pfb.w)
    {
        if (!w) continue;
        i64 off = (const char*)p - w;
        if (off < 0 || off >= pfb.N * pfb.ldw * pfb.es) continue;
        i64 col = off / pfb.es % pfb.ldw;
        if (off % 16 == 0 && col + 16 / pfb.es <= pfb.K) return; // a whole vector inside the row
    }
    bad_prefetches++;
}

// Starts counting a launch's prefetches of weights w0 (and w1).
static void expect_prefetch(const void* w0, const void* w1, i64 N, i64 K, i64 ldw, int es)
{
    pfb = {{(const char*)w0, (const char*)w1}, N, K, ldw, es};
    prefetches = 0;
    bad_prefetches = 0;
}

// A prefetch run's bytes (buffer poisoned as `want` was) must be `want`'s, its prefetches inside the weights, and at
// least one made where the slice is longer than the first step (so the hook is known to be reached).
static void check_prefetched(const char* what, const std::vector<double>& want, const std::vector<double>& got, int M, i64 N, i64 K, int kw, int pf, bool some)
{
    prefetch_cases++;
    bool same = std::memcmp(want.data(), got.data(), want.size() * sizeof(double)) == 0;
    if (!same || bad_prefetches > 0 || (some && prefetches == 0))
    {
        prefetch_fails++;
        CHECK(false, "%s prefetch %d M %d N %lld K %lld kw %d: %s, %ld of %ld prefetches outside the weight", what, pf, M, (long long)N, (long long)K, kw,
              same ? "same bytes" : "bytes differ", (long)bad_prefetches, (long)prefetches);
    }
}

// Whether a warp's slice of K (kw warps, 32 lanes × 16 bytes a step) has steps past the first loop step's U.
static bool slice_past_first_step(int M, int G, i64 K, int kw, int es)
{
    i64 step = 32 * (16 / es), U = (M == 1 ? 8 : 4) / G;
    return (K + kw * step - 1) / (kw * step) > U && K >= U * step + 16 / es; // the first warp's next step holds a whole vector
}
double worst_ratio[2] = {0, 0}, worst_err[2] = {0, 0}; // [bf16 output, f32 output]

static u16 to_bf16(float f) { return f32_to_bf16(f); }
static double gelu(double v) { return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); }

using Kernel = void (*)(const void*, i64, const void*, i64, int, void*, i64, int, const void*, int, i64, i64, int, int);
static Kernel lean_kernel(int M)
{
    Kernel b[] = {gm::gemv_lean_bf16_1, gm::gemv_lean_bf16_2, gm::gemv_lean_bf16_3, gm::gemv_lean_bf16_4};
    return b[M - 1];
}

// The lean kernel's output bytes (buffer poisoned as `want` was before its launch) must equal `want`'s.
static void check_lean(const char* what, const std::vector<double>& want, const std::vector<double>& got, int M, i64 N, i64 K, int kw)
{
    lean_cases++;
    if (std::memcmp(want.data(), got.data(), want.size() * sizeof(double)) != 0)
    {
        lean_fails++;
        CHECK(false, "%s lean M %d N %lld K %lld kw %d: bytes differ from the plain kernel's", what, M, (long long)N, (long long)K, kw);
    }
}

static Kernel kernel(bool bf16, int M)
{
    Kernel b[] = {gm::gemv_bf16_1, gm::gemv_bf16_2, gm::gemv_bf16_3, gm::gemv_bf16_4};
    Kernel f[] = {gm::gemv_f32_1, gm::gemv_f32_2, gm::gemv_f32_3, gm::gemv_f32_4};
    return bf16 ? b[M - 1] : f[M - 1];
}

// One product; values stored in the input dtype, the reference from the stored values in float64.
static void run(std::mt19937& rng, bool bf16, bool yf32, int M, i64 N, i64 K, int kw, bool bias, bool gelu_on, bool xaligned)
{
    cases++;
    std::normal_distribution<float> nd;
    int vec = bf16 ? 8 : 4, es = bf16 ? 2 : 4;
    i64 ldw = (K + vec - 1) / vec * vec + vec;                  // a multiple of the vector, above K
    i64 ldx = xaligned ? ldw + vec : K + 3, xoff = xaligned ? 0 : 1; // odd stride and offset: element loads
    i64 ldy = N + 5;
    int ydt = bf16 && !yf32 ? DT_BF16 : DT_F32, ys = ydt == DT_BF16 ? 2 : 4;
    // Storage: 16-byte aligned (vector<double>), values written through the dtype.
    std::vector<double> wbuf((N * ldw * es + 15) / 8 + 2), xbuf(((M * ldx + xoff) * es + 15) / 8 + 2), ybuf((M * ldy * ys + 15) / 8 + 2),
        bbuf((N * ys + 15) / 8 + 2);
    std::vector<double> wv(N * K), xv(M * K), bv(N);
    auto put = [&](void* base, i64 i, int dt, float v) -> double {
        if (dt == DT_BF16) { u16 h = to_bf16(v); ((u16*)base)[i] = h; return bf16_to_f32(h); }
        ((float*)base)[i] = v; return v;
    };
    int idt = bf16 ? DT_BF16 : DT_F32;
    for (i64 n = 0; n < N; n++) for (i64 k = 0; k < K; k++) wv[n * K + k] = put(wbuf.data(), n * ldw + k, idt, nd(rng));
    char* xbase = (char*)xbuf.data() + xoff * es;
    for (int m = 0; m < M; m++) for (i64 k = 0; k < K; k++) xv[m * K + k] = put(xbase, m * ldx + k, idt, nd(rng));
    for (i64 n = 0; n < N; n++) bv[n] = put(bbuf.data(), n, ydt, nd(rng));
    // Poison y: NaN where outputs go, a sentinel in the row gaps (must stay).
    for (i64 i = 0; i < M * ldy; i++) put(ybuf.data(), i, ydt, (i % ldy) < N ? NAN : 1024.0f);
    int rows = GEMV_WARPS / kw;
    std::vector<double> lean = ybuf; // poisoned alike
    launch((unsigned)((N + rows - 1) / rows), GEMV_THREADS, [&] {
        kernel(bf16, M)(wbuf.data(), ldw, xbase, ldx, xaligned ? 1 : 0, ybuf.data(), ldy, ydt, bias ? bbuf.data() : nullptr, gelu_on ? 1 : 0, N, K, kw, 0);
    });
    if (bf16)
    {
        launch((unsigned)((N + rows - 1) / rows), GEMV_THREADS, [&] {
            lean_kernel(M)(wbuf.data(), ldw, xbase, ldx, xaligned ? 1 : 0, lean.data(), ldy, ydt, bias ? bbuf.data() : nullptr, gelu_on ? 1 : 0, N, K, kw, 0);
        });
        check_lean("gemv", ybuf, lean, M, N, K, kw);
    }
    {
        std::vector<double> pre(ybuf.size());
        for (i64 i = 0; i < M * ldy; i++) put(pre.data(), i, ydt, (i % ldy) < N ? NAN : 1024.0f);
        int pf = cases % 2 ? 2 : 1 << 20;
        expect_prefetch(wbuf.data(), nullptr, N, K, ldw, es);
        launch((unsigned)((N + rows - 1) / rows), GEMV_THREADS, [&] {
            kernel(bf16, M)(wbuf.data(), ldw, xbase, ldx, xaligned ? 1 : 0, pre.data(), ldy, ydt, bias ? bbuf.data() : nullptr, gelu_on ? 1 : 0, N, K, kw, pf);
        });
        check_prefetched("gemv", ybuf, pre, M, N, K, kw, pf, slice_past_first_step(M, 1, K, kw, es));
    }
    for (int m = 0; m < M; m++)
        for (i64 i = 0; i < ldy; i++)
        {
            double got = ydt == DT_BF16 ? bf16_to_f32(((u16*)ybuf.data())[m * ldy + i]) : ((float*)ybuf.data())[m * ldy + i];
            if (i >= N) { CHECK(got == 1024.0, "row gap written: m %d i %lld", m, (long long)i); continue; }
            double s = 0, mag = 0;
            for (i64 k = 0; k < K; k++) { s += xv[m * K + k] * wv[i * K + k]; mag += fabs(xv[m * K + k] * wv[i * K + k]); }
            if (bias) { s += bv[i]; mag += fabs(bv[i]); }
            // float32 accumulation of K products: at most ~K·2⁻²⁴ of Σ|x·w| (a bound; typical errors are far below);
            // GELU's slope is within [-0.13, 1.13]; bf16 output adds half an ulp of the result (2⁻⁸ relative).
            double want = gelu_on ? gelu(s) : s;
            double tol = 1.2 * (K + 2) * 0x1p-24 * mag + (ydt == DT_BF16 ? 0x1p-8 * fabs(want) : 0x1p-23 * fabs(want)) + 1e-30;
            double err = fabs(got - want);
            if (!(err <= tol))
                CHECK(false, "%s→%s M %d N %lld K %lld kw %d bias %d gelu %d xvec %d: y[%d, %lld] = %.9g, want %.9g (tol %.3g)", bf16 ? "bf16" : "f32",
                      ydt == DT_BF16 ? "bf16" : "f32", M, (long long)N, (long long)K, kw, bias, gelu_on, xaligned, m, (long long)i, got, want, tol);
            else if (err / tol > worst_ratio[ydt == DT_F32]) { worst_ratio[ydt == DT_F32] = err / tol; worst_err[ydt == DT_F32] = err; }
        }
}

using SwiGluKernel = void (*)(const void*, const void*, i64, const void*, i64, int, void*, i64, int, i64, i64, int, int);
static SwiGluKernel swiglu_kernel(bool bf16, int M)
{
    SwiGluKernel b[] = {gm::swiglu_gemv_bf16_1, gm::swiglu_gemv_bf16_2, gm::swiglu_gemv_bf16_3, gm::swiglu_gemv_bf16_4};
    SwiGluKernel f[] = {gm::swiglu_gemv_f32_1, gm::swiglu_gemv_f32_2, gm::swiglu_gemv_f32_3, gm::swiglu_gemv_f32_4};
    return bf16 ? b[M - 1] : f[M - 1];
}

int swiglu_cases = 0, swiglu_fails = 0;

// y = swiglu_gemv(x, Wg, Wu) against g = gemv(x, Wg), u = gemv(x, Wu), y' = swiglu_forward(g, u) (and the packed
// form), compared as bits at every output, and against float64 within a bound; the row gaps of y must keep their sentinel.
static void run_swiglu(std::mt19937& rng, bool bf16, int M, i64 N, i64 K, int kw, bool xaligned)
{
    swiglu_cases++;
    std::normal_distribution<float> nd;
    int vec = bf16 ? 8 : 4, es = bf16 ? 2 : 4, dt = bf16 ? DT_BF16 : DT_F32;
    i64 ldw = (K + vec - 1) / vec * vec + vec;
    i64 ldx = xaligned ? ldw + vec : K + 3, xoff = xaligned ? 0 : 1;
    i64 ldy = (N + vec - 1) / vec * vec; // rows whole packs apart, so the packed SwiGLU covers every row
    if (ldy == N) ldy += vec;
    auto buf = [](i64 bytes) { return std::vector<double>((bytes + 15) / 8 + 2, 0.0); };
    std::vector<double> wg = buf(N * ldw * es), wu = buf(N * ldw * es), xb = buf((M * ldx + xoff) * es);
    std::vector<double> wg64(N * K), wu64(N * K), xv64(M * K); // the stored values, for the float64 reference
    auto put = [&](void* base, i64 i, float v) -> double {
        if (bf16) { u16 h = to_bf16(v); ((u16*)base)[i] = h; return bf16_to_f32(h); }
        ((float*)base)[i] = v; return v;
    };
    // Gate values spread over [-12, 12] after the product (silu's both tails), up values plain normals.
    float gscale = 3.0f / std::sqrt((float)K);
    for (i64 n = 0; n < N; n++)
        for (i64 k = 0; k < K; k++) { wg64[n * K + k] = put(wg.data(), n * ldw + k, nd(rng) * gscale); wu64[n * K + k] = put(wu.data(), n * ldw + k, nd(rng)); }
    char* xbase = (char*)xb.data() + xoff * es;
    for (int m = 0; m < M; m++) for (i64 k = 0; k < K; k++) xv64[m * K + k] = put(xbase, m * ldx + k, nd(rng));
    i64 ybytes = M * ldy * es;
    std::vector<double> g = buf(ybytes), u = buf(ybytes), ref = buf(ybytes), refp = buf(ybytes), y = buf(ybytes);
    for (i64 i = 0; i < M * ldy; i++) { put(g.data(), i, 0.5f); put(u.data(), i, 0.5f); put(y.data(), i, (i % ldy) < N ? NAN : 1024.0f); }
    int rows = GEMV_WARPS / kw;
    unsigned grid = (unsigned)((N + rows - 1) / rows);
    launch(grid, GEMV_THREADS, [&] { kernel(bf16, M)(wg.data(), ldw, xbase, ldx, xaligned, g.data(), ldy, dt, nullptr, 0, N, K, kw, 0); });
    launch(grid, GEMV_THREADS, [&] { kernel(bf16, M)(wu.data(), ldw, xbase, ldx, xaligned, u.data(), ldy, dt, nullptr, 0, N, K, kw, 0); });
    i64 n = M * ldy, packs = n / vec;
    launch(2, 32, [&] { ew::swiglu_forward(n, ref.data(), g.data(), u.data(), dt); });
    launch(2, 32, [&] { ew::swiglu_forward_packed(packs, n, refp.data(), g.data(), u.data(), dt); });
    std::vector<double> lean = y; // poisoned alike
    launch(grid, GEMV_THREADS, [&] { swiglu_kernel(bf16, M)(wg.data(), wu.data(), ldw, xbase, ldx, xaligned, y.data(), ldy, dt, N, K, kw, 0); });
    if (bf16)
    {
        SwiGluKernel l[] = {gm::swiglu_gemv_lean_bf16_1, gm::swiglu_gemv_lean_bf16_2, gm::swiglu_gemv_lean_bf16_3, gm::swiglu_gemv_lean_bf16_4};
        launch(grid, GEMV_THREADS, [&] { l[M - 1](wg.data(), wu.data(), ldw, xbase, ldx, xaligned, lean.data(), ldy, dt, N, K, kw, 0); });
        check_lean("swiglu", y, lean, M, N, K, kw);
    }
    if (N <= 64)
    {
        std::vector<double> pre = buf(ybytes);
        for (i64 i = 0; i < M * ldy; i++) put(pre.data(), i, (i % ldy) < N ? NAN : 1024.0f);
        int pf = swiglu_cases % 2 ? 1 : 1 << 20;
        expect_prefetch(wg.data(), wu.data(), N, K, ldw, es);
        launch(grid, GEMV_THREADS, [&] { swiglu_kernel(bf16, M)(wg.data(), wu.data(), ldw, xbase, ldx, xaligned, pre.data(), ldy, dt, N, K, kw, pf); });
        check_prefetched("swiglu", y, pre, M, N, K, kw, pf, slice_past_first_step(M, 2, K, kw, es));
    }
    int bad = 0;
    for (int m = 0; m < M; m++)
        for (i64 i = 0; i < ldy; i++)
        {
            i64 o = m * ldy + i;
            if (i >= N)
            {
                bool kept = bf16 ? ((u16*)y.data())[o] == to_bf16(1024.0f) : ((float*)y.data())[o] == 1024.0f;
                if (!kept && bad++ < 3) CHECK(false, "swiglu %s M %d N %lld K %lld kw %d: row gap y[%d, %lld] written", bf16 ? "bf16" : "f32", M, (long long)N, (long long)K, kw, m, (long long)i);
                continue;
            }
            // Also near float64 (a bug shared by gemv and the fused kernel would pass the bit comparison): y moves
            // by |silu'(g)|·|u| ≤ 1.1|u| per error in g, by |silu(g)| per error in u; g and u carry the float32
            // accumulation bound and their rounding to the dtype, then silu and y are rounded (eps each).
            {
                double sg = 0, su = 0, mg = 0, mu = 0;
                for (i64 k = 0; k < K; k++)
                {
                    double xk = xv64[m * K + k];
                    sg += xk * wg64[i * K + k]; mg += fabs(xk * wg64[i * K + k]);
                    su += xk * wu64[i * K + k]; mu += fabs(xk * wu64[i * K + k]);
                }
                double eps = bf16 ? 0x1p-8 : 0x1p-23, silu = sg / (1 + std::exp(-sg)), want = silu * su;
                double dg = 1.2 * (K + 2) * 0x1p-24 * mg + eps * fabs(sg), du = 1.2 * (K + 2) * 0x1p-24 * mu + eps * fabs(su);
                double tol = 1.5 * (1.1 * fabs(su) * dg + fabs(silu) * du + eps * fabs(silu * su) + eps * fabs(want)) + 1e-30;
                double got = bf16 ? (double)bf16_to_f32(((u16*)y.data())[o]) : (double)((float*)y.data())[o];
                if (!(fabs(got - want) <= tol) && bad++ < 3)
                    CHECK(false, "swiglu %s M %d N %lld K %lld kw %d: y[%d, %lld] = %.9g, float64 %.9g (tol %.3g)", bf16 ? "bf16" : "f32", M, (long long)N,
                          (long long)K, kw, m, (long long)i, got, want, tol);
            }
            unsigned a = 0, b = 0, c = 0;
            std::memcpy(&a, (char*)y.data() + o * es, es);
            std::memcpy(&b, (char*)ref.data() + o * es, es);
            std::memcpy(&c, (char*)refp.data() + o * es, es);
            if ((a != b || b != c) && bad++ < 3)
            {
                auto f = [&](unsigned bits) { return bf16 ? (double)bf16_to_f32((u16)bits) : (double)std::bit_cast<float>(bits); };
                CHECK(false, "swiglu %s M %d N %lld K %lld kw %d xvec %d: y[%d, %lld] fused %.9g (0x%x), unfused %.9g (0x%x), packed %.9g (0x%x)",
                      bf16 ? "bf16" : "f32", M, (long long)N, (long long)K, kw, xaligned, m, (long long)i, f(a), a, f(b), b, f(c), c);
            }
        }
    if (bad) swiglu_fails++;
}

// Argument "swiglu": the fused cases only; "swiglu-small": those with N ≤ 64 (a quick run, e.g. to see a planted bug fail);
// "prefetch": the plain gemv's prefetch cases only (N 1 and 7, K ragged and past several steps, every kw; ~15 s), the
// quick check of the plain kernels' prefetch addresses that the swiglu runs leave out.
int main(int argc, char** argv)
{
    std::mt19937 rng(7);
    gm::emu_prefetch_hook = check_prefetch;
    const int kws[] = {1, 2, 4};
    if (argc > 1 && std::strcmp(argv[1], "prefetch") == 0)
    {
        int pc = 0;
        for (int bf = 1; bf >= 0; bf--)
            for (int M : {1, 2, 4})
                for (i64 N : {1, 7})
                    for (i64 K : {8, 13, 513, 1000, 1003, 1025, 2056, 3584})
                        for (int kw : kws)
                        {
                            pc++;
                            run(rng, bf, bf && pc % 2 == 0, M, N, K, kw, pc % 3 == 0, pc % 5 == 0, pc % 4 != 1);
                        }
        printf("%d gemv cases with an L2 prefetch, same bytes, addresses inside the weight: %s\n", prefetch_cases, prefetch_fails || fails ? "FAILED" : "ok");
        return fails ? 1 : 0;
    }
    bool swiglu_only = argc > 1 && std::strncmp(argv[1], "swiglu", 6) == 0, small = argc > 1 && std::strcmp(argv[1], "swiglu-small") == 0;
    int c = 0;
    if (!swiglu_only)
    for (int bf = 1; bf >= 0; bf--)
        for (int M = 1; M <= 4; M++)
            for (i64 N : {1, 7, 64})
                for (i64 K : {8, 64, 1000, 1008})
                {
                    c++;
                    run(rng, bf, bf && (c / 3) % 2 == 0, M, N, K, kws[c % 3], c % 2 == 0, c % 5 == 0, c % 4 != 1);
                }
    // Larger shapes: N not a multiple of the rows per block, K over several unrolled steps and warps.
    if (!swiglu_only)
    {
    run(rng, true, false, 1, 513, 3584, 4, true, false, true);
    run(rng, true, true, 4, 513, 1000, 2, false, false, true);
    run(rng, false, false, 2, 513, 1008, 1, true, true, false);
    run(rng, true, false, 3, 130, 4100, 4, false, false, false);
    // kw = 4 slices that start past K (a dot product x[K]·w[K] has N = 1 and a padded ldw): the empty last slices
    // must not add the row's ragged tail again (f32 K = 513: slices from 0, 256, 512, 768; bf16 K = 1025 likewise).
    run(rng, false, false, 1, 1, 513, 4, false, false, true);
    run(rng, false, false, 2, 7, 515, 4, true, false, false);
    run(rng, true, true, 1, 1, 1025, 4, false, false, true);
    run(rng, true, false, 4, 3, 1031, 4, false, true, true);
    }
    // Fused SwiGLU: m 1..4, N {1, 7, 64, 513}, K {8, 1000, 1008} and the ragged 13 and 1003, bf16 and f32, each
    // split of K (kw 1, 2, 4).
    int sc = 0;
    for (int bf = 1; bf >= 0; bf--)
        for (int M = 1; M <= 4; M++)
            for (i64 N : {1, 7, 64, 513})
                for (i64 K : {8, 13, 1000, 1003, 1008})
                    for (int kw : kws)
                    {
                        sc++;
                        // N = 513 is the slow one under the emulation: kw 1 and 4 only, M 1 and 4 at the largest K; the
                        // ragged K (13, 1003: the one-by-one tail after the last whole vector) at N ≤ 64.
                        if (N == 513 && (small || kw == 2 || (K == 1008 && M != 1 && M != 4) || K % 8 != 0)) continue;
                        run_swiglu(rng, bf, M, N, K, kw, sc % 3 != 0);
                    }
    printf("%d swiglu cases, bit-identical to gemv, gemv, swiglu_forward: %s; ", swiglu_cases, swiglu_fails ? "FAILED" : "ok");
    printf("%d bf16 cases of the lean kernels, bytes = the plain kernels': %s; ", lean_cases, lean_fails ? "FAILED" : "ok");
    printf("%d cases with an L2 prefetch, same bytes, addresses inside the weights: %s; ", prefetch_cases, prefetch_fails ? "FAILED" : "ok");
    fails += swiglu_fails;
    printf("%d cases; worst error, f32 output %.3g (%.3f of its tolerance), bf16 output %.3g (%.3f)%s\n", cases, worst_err[1], worst_ratio[1],
           worst_err[0], worst_ratio[0], fails ? "" : ": ok");
    if (fails) printf("%d FAILED\n", fails);
    return fails ? 1 : 0;
}
