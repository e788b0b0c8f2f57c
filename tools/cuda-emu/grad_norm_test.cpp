// native/grad_norm.cu (multi-tensor gradient norm and clipping) against the path it replaces, emulated: per tensor
// `g * scale` (elementwise.cu's fill of the scalar, then its binary kernel), a float64 sum of squares stored in float32
// (float64 for f64 gradients: what GradClip.TotalNorm has the reduce kernel store), the stored sums added in tensor order, sqrt, the clip coefficient
// in double and `g * coef` again. The norm must equal that reference to a few float64 ulps (the sums' order), and
// the gradients must be the reference's bits when scaled by the kernels' coefficient, which must be the reference
// formula applied to the kernels' norm. The driver below mirrors CudaBackend.GradNormClip (tables of 64, partial
// slots per table, block counts from gn_blocks). f16 is not covered (its conversions are inline PTX, not emulated).
#include <initializer_list>
#include <vector>
#include <random>
#include <algorithm>
#include "emu_threads.h"
#include "prelude.cuh"
namespace ewns {
#include "elementwise.cu"
}
namespace gn {
#include "grad_norm.cu"
}
int fails = 0, cases = 0;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

struct Grad
{
    int dt;
    long long n;
    std::vector<unsigned char> bytes;
    void* data() { return bytes.data(); }
};

static Grad make(std::mt19937& rng, int dt, long long n, double magnitude)
{
    Grad g{dt, n, std::vector<unsigned char>((size_t)std::max(1LL, n) * elem_size(dt))};
    std::normal_distribution<double> d(0, magnitude);
    for (long long i = 0; i < n; i++) store<double>(g.data(), dt, i, d(rng));
    return g;
}

// The old path's `g.CopyFrom(g * s)`: the scalar filled into g's dtype, the binary kernel over g and the broadcast scalar.
static void old_scale(Grad& g, double s)
{
    if (g.n == 0) return;
    unsigned long long scalar = 0;
    store<double>(&scalar, g.dt, 0, s); // fill: store<double> for the float dtypes
    std::vector<unsigned char> y(g.bytes.size());
    Layout L{}; L.rank = 1; L.size[0] = g.n; L.stride[0][0] = 1; L.stride[1][0] = 1; L.stride[2][0] = 0;
    launch(2, 32, [&] { ewns::binary(L, g.n, B_MUL, y.data(), g.dt, g.data(), &scalar, g.dt); });
    g.bytes = y;
}

// The per-tensor path's norm (GradClip.TotalNorm): each tensor's sum of squares (here in long double, so that the
// reference's own rounding is well below the kernels'; the reduce kernel sums in float64) stored in float32 (float64
// for f64 tensors), added in tensor order in float64.
static double old_norm(std::vector<Grad>& gs)
{
    double sum = 0;
    for (auto& g : gs)
    {
        long double s = 0;
        for (long long i = 0; i < g.n; i++) { long double v = load<double>(g.data(), g.dt, i); s += v * v; }
        sum += g.dt == DT_F64 ? (double)s : (double)(float)s;
    }
    return sqrt(sum);
}

static bool clips(double norm, double max_norm, double& coef)
{
    coef = max_norm / (norm + 1e-6);
    return std::isfinite(norm) && std::isfinite(max_norm) && coef < 1;
}

// CudaBackend.GradNormClip: per table of up to 64 gradients, grad_sumsq_multi (grid: the table's most blocks × its
// tensors) then grad_norm_finish; after the last table's finish, grad_scale_multi per table. Blocks run in reverse
// order when `reversed` (the result must not depend on it). Leaves [norm, coef, sum of squares] in out.
static void fused(std::vector<Grad>& gs, double scale, double max_norm, double out[3], bool reversed, unsigned threads = 256)
{
    int tables = ((int)gs.size() + GN_TABLE - 1) / GN_TABLE;
    std::vector<gn::GradNormTable> tb(tables);
    std::vector<int> counts(tables);
    for (int k = 0; k < tables; k++)
    {
        int count = std::min<int>(GN_TABLE, (int)gs.size() - k * GN_TABLE), most = 0;
        long long first = 0;
        for (int i = 0; i < count; i++)
        {
            Grad& g = gs[k * GN_TABLE + i];
            int blocks = gn::gn_blocks(g.n);
            tb[k].e[i] = {g.data(), g.n, first, blocks, g.dt};
            first += blocks; most = std::max(most, blocks);
        }
        counts[k] = count;
        std::vector<double> partials((size_t)first, NAN);
        // Each tensor's row of the grid, cut after one block past its own (they leave at once: the emulator's threads
        // are costly, and one such block exercises the early return as well as a hundred).
        for (int y = 0; y < count; y++)
        {
            unsigned grid = (unsigned)std::min(most, tb[k].e[y].blocks + 1);
            std::vector<unsigned> order(grid);
            for (unsigned b = 0; b < grid; b++) order[b] = reversed ? grid - 1 - b : b;
            launch(grid, threads, [&] { blockIdx.y = y; gn::grad_sumsq_multi(tb[k], count, partials.data(), scale); }, &order);
        }
        launch(1, 64, [&] { blockIdx.y = 0; gn::grad_norm_finish(tb[k], count, partials.data(), k == 0, k == tables - 1, max_norm, out); });
    }
    for (int k = 0; k < tables; k++)
        for (int y = 0; y < counts[k]; y++)
            launch(2, 32, [&] { blockIdx.y = y; gn::grad_scale_multi(tb[k], counts[k], out); });
}

static bool ulps_close(double a, double b, double ulps)
{
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    if (std::isinf(a) || std::isinf(b)) return a == b;
    return fabs(a - b) <= ulps * 2.220446049250313e-16 * std::max(fabs(a), fabs(b));
}

// One case: the kernels against the emulated old path on copies of the same gradients.
static void check(const char* name, std::vector<Grad> gs, double scale, double max_norm, bool expect_clip, bool exact_norm)
{
    cases++;
    auto ref = gs, again = gs;
    if (scale != 1) for (auto& g : ref) old_scale(g, scale);
    double norm_ref = old_norm(ref), coef_ref;
    bool clip_ref = clips(norm_ref, max_norm, coef_ref);
    double out[3] = {NAN, NAN, NAN}, out2[3] = {NAN, NAN, NAN};
    fused(gs, scale, max_norm, out, false);
    fused(again, scale, max_norm, out2, true, 64);
    CHECK(exact_norm ? (out[0] == norm_ref || (std::isnan(out[0]) && std::isnan(norm_ref))) : ulps_close(out[0], norm_ref, 8),
          "%s: norm %.17g, reference %.17g", name, out[0], norm_ref);
    // The sum itself (ZeRO-2's share): the norm is exactly its square root.
    CHECK(sqrt(out[2]) == out[0] || (std::isnan(out[0]) && std::isnan(out[2])), "%s: sum of squares %.17g, norm %.17g", name, out[2], out[0]);
    CHECK(memcmp(out, out2, sizeof out) == 0, "%s: [norm, coef, sum] depends on the blocks' order or size: %.17g %.17g %.17g vs %.17g %.17g %.17g", name, out[0], out[1], out[2], out2[0], out2[1], out2[2]);
    double coef;
    bool clip = clips(out[0], max_norm, coef);
    CHECK(clip == expect_clip && clip_ref == expect_clip, "%s: clipping %d, reference %d, expected %d", name, clip, clip_ref, expect_clip);
    CHECK(clip ? out[1] == coef : out[1] == 1.0, "%s: coef %.17g, expected %.17g", name, out[1], clip ? coef : 1.0);
    if (clip) for (auto& g : ref) old_scale(g, out[1]); // the old path's rounding with the kernels' coefficient
    for (size_t t = 0; t < gs.size(); t++)
    {
        size_t bytes = (size_t)gs[t].n * elem_size(gs[t].dt);
        CHECK(memcmp(gs[t].data(), ref[t].data(), bytes) == 0, "%s: tensor %zu (dt %d, n %lld) differs from the old path's bits", name, t, gs[t].dt, gs[t].n);
        CHECK(memcmp(again[t].data(), ref[t].data(), bytes) == 0, "%s: tensor %zu differs with 64 threads, blocks reversed", name, t);
    }
}

int main()
{
    std::mt19937 rng(11);
    // gn_blocks: a function of the size only, 1 to GN_MAX_BLOCKS
    CHECK(gn::gn_blocks(0) == 1 && gn::gn_blocks(1) == 1 && gn::gn_blocks(GN_BLOCK_ELEMENTS) == 1 && gn::gn_blocks(GN_BLOCK_ELEMENTS + 1) == 2, "gn_blocks small");
    CHECK(gn::gn_blocks(100003) == 13 && gn::gn_blocks(1LL << 40) == GN_MAX_BLOCKS, "gn_blocks large");
    // mixed sizes and dtypes (f32, bf16, f64), the 100003-element ones over 13 blocks
    auto mixed = [&](double m) {
        std::vector<Grad> gs;
        for (long long n : {1LL, 7LL, 1000LL, 100003LL})
            for (int dt : {DT_F32, DT_BF16, DT_F64}) gs.push_back(make(rng, dt, n, m));
        return gs;
    };
    auto narrow = [&](double m) { // no f64: every tensor's sum is rounded to f32, so the norm is exact
        std::vector<Grad> gs;
        for (long long n : {100003LL, 1LL, 1000LL, 7LL}) for (int dt : {DT_BF16, DT_F32}) gs.push_back(make(rng, dt, n, m));
        return gs;
    };
    check("mixed, clip", mixed(1), 1, 1.0, true, false);
    check("mixed, no clip", mixed(1), 1, 1e9, false, false);
    check("mixed, no limit", mixed(1), 1, INFINITY, false, false);
    check("mixed, scale 1/3 then clip", mixed(3), 1.0 / 3, 2.5, true, false);
    check("mixed, scale 0.1, no clip", mixed(0.01), 0.1, 1e9, false, false);
    check("f32 + bf16, clip", narrow(1), 1, 1.0, true, true);
    check("f32 + bf16, scale 1/7 then clip", narrow(1), 1.0 / 7, 0.3, true, true);
    check("f32 + bf16, max_norm 0 (zeros)", narrow(1), 1, 0.0, true, true);
    // non-finite gradients: the norm is ∞ or NaN and nothing is clipped (the prescale still happens, as before)
    { auto gs = mixed(1); store<double>(gs[10].data(), gs[10].dt, 0, INFINITY); check("an inf, max_norm 1", gs, 1, 1.0, false, true); }
    { auto gs = narrow(1); store<double>(gs[0].data(), gs[0].dt, 500, NAN); check("a NaN, scale 1/3, max_norm 1", gs, 1.0 / 3, 1.0, false, true); }
    { auto gs = narrow(1); store<double>(gs[3].data(), gs[3].dt, 0, 3e38); check("f32 squares overflow", gs, 1, 1.0, false, true); }
    // > 64 tensors: three tables (the running total carried across finish launches), sizes 0 to 9000 (two blocks)
    {
        std::vector<Grad> gs;
        for (int i = 0; i < 150; i++)
            gs.push_back(make(rng, i % 3 == 0 ? DT_BF16 : i % 3 == 1 ? DT_F32 : DT_F64, i == 5 ? 0 : i == 70 ? 9000 : 1 + (i * 37) % 300, 0.5));
        check("150 tensors, clip", gs, 1, 1.0, true, false);
        check("150 tensors, scale 1/3, no clip", gs, 1.0 / 3, 1e9, false, false);
        std::vector<Grad> narrow150;
        for (int i = 0; i < 130; i++) narrow150.push_back(make(rng, i % 2 ? DT_BF16 : DT_F32, 1 + (i * 53) % 500, 0.5));
        check("130 f32/bf16 tensors, clip", narrow150, 1, 1.0, true, true);
    }
    // a single empty tensor: norm 0, coef maxNorm / 1e-6 ≥ 1, nothing to scale
    { std::vector<Grad> gs; gs.push_back(make(rng, DT_F32, 0, 1)); check("one empty tensor", gs, 1, 1.0, false, true); }
    printf("%s (%d failures; %d cases)\n", fails ? "FAILED" : "all passed", fails, cases);
    return fails != 0;
}
