// The tensor-core decode attention (attention_decode_mma_d64/_d128 and _at_ of native/attention_decode_mma.cu) under
// the mma.sync / ldmatrix / cp.async emulation (emu_mma.h), against float64 and against the FMA decode kernel
// (attention_decode_forward_bf16 of attention_decode.cu) on the same operands: bf16, head dims 64 and 128, grouped-query
// ratios 1, 2, 7 and 8 (7 heads padded to a 16-row tile; 8 heads with T = 2 filling it; T 3 and 8 with 7 and 8 heads:
// 21 and 64 rows, several row tiles), key counts 1 to 3000 (inside one 64-key tile, across tiles, warps and ranges,
// not multiples of 16 or 64), causal at the last position, causal with T > 1 rows in the middle of the keys (rows see
// different counts), rows past the cache and rows before its first key (a negative offset: NaN, lse -inf), full
// (non-causal, also T 3 over ranges), batch 2, the log-sum-exp, strided operands (q and o as [B, T, H, D], K/V as a
// [B, S, Hkv, D + 8] cache), one range (the block writes o) and many (scratch and tickets; more ranges allowed than
// the keys give). Every case with ranges runs again with its blocks in reverse and shuffled order: the same bits,
// tickets back at 0. Operands are NaN outside the elements the kernel may read (a read past the keys shows).
// Then the device-position kernels (grid sized for the capacity, per-row positions incl. ones outside the cache: NaN,
// nothing read) against the host-position kernel on each row alone at the splits its eager launcher gives: same bits.
// Tolerance against float64: bf16 ulps of the reference (ulp(x) = 2^(floor(log2 |x|) - 7), |x| floored at 2^-6 so
// that outputs near zero are judged at an absolute 2^-13), the worst printed beside the FMA kernel's on the same rows.
// Usage: decode_mma_test [quick]
#include "emu_mma.h"
#include "attention_reference.h"
#include "prelude.cuh"
#include "rope.cuh"
namespace dm {
#include "attention_decode_mma.cu"
}
namespace dec {
#include "attention_decode.cu"
}
#include <algorithm>
#include <random>
#include <string>
int fails = 0, checks = 0;
#define CHECK(c, ...) do { checks++; if (!(c)) { if (fails++ < 20) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } } while (0)

// The launcher's rules (CudaBackend.DecodeMmaSplits and DecodeSplits): blocks per SM for one batch row's row groups,
// at least min_keys keys a range, at most the kernel's most ranges.
static int rule_splits(long groups, long keys, int sms, int min_keys, int per_sm, int most_splits)
{
    long want = (per_sm * (long)sms + groups - 1) / groups, most = keys / min_keys;
    return (int)std::clamp(std::min(want, most), 1L, (long)most_splits);
}
static int mma_splits(int Hkv, int GT, long keys, int sms, int min_keys) { return rule_splits((long)Hkv * ((GT + 15) / 16), keys, sms, min_keys, 2, DMMA_MAX_SPLITS); }

static std::vector<unsigned> g_tickets(4096, 0);
static bool tickets_zero() { return std::all_of(g_tickets.begin(), g_tickets.end(), [](unsigned t) { return t == 0; }); }
static std::vector<unsigned> block_order(unsigned grid, int how)
{
    std::vector<unsigned> o(grid);
    for (unsigned i = 0; i < grid; i++) o[i] = how == 1 ? grid - 1 - i : i;
    if (how == 2) { std::mt19937 r(grid * 7 + 1); std::shuffle(o.begin(), o.end(), r); }
    return o;
}

// A strided bf16 operand: values at offsets b·s0 + h·s1 + i·s2 + d·s3, NaN elsewhere.
struct Operand
{
    std::vector<u16> h; i64 s[4];
    void init(const i64 (&st)[4], const int (&n)[4])
    {
        for (int i = 0; i < 4; i++) s[i] = st[i];
        i64 last = 0; for (int i = 0; i < 4; i++) last += (i64)(n[i] - 1) * st[i];
        h.assign(last + 1, 0x7fc1);
    }
    i64 at(int b, int hh, int i, int d) const { return b * s[0] + hh * s[1] + i * s[2] + d * s[3]; }
    void set(i64 o, float x) { h[o] = f32_to_bf16(x); }
    double get(i64 o) const { return bf16_to_f32(h[o]); }
};

static double ulps(double got, double want)
{
    double a = std::max(fabs(want), 1.0 / 64);
    return fabs(got - want) / ldexp(1.0, ilogb(a) - 7);
}
static double worst_mma = 0, worst_fma = 0, worst_vs_fma = 0;
static const double tol_ulps = 1.0;

struct Case { int B, H, Hkv, T, S, D, causal, offset, layout, splits, min_keys, with_lse; };

// The host-position MMA kernel on (q, k, v) with `splits`; o and lse written. how: block order.
static void run_mma(const Case& c, const Operand& q, const Operand& k, const Operand& v, Operand& o, std::vector<float>& lse, const AttnStrides& st, int how)
{
    const int GT = c.H / c.Hkv * c.T, chunks = (GT + DMMA_ROWS - 1) / DMMA_ROWS;
    const unsigned grid = (unsigned)(c.B * c.Hkv * chunks * c.splits);
    std::vector<float> part((size_t)c.B * c.Hkv * chunks * c.splits * DMMA_ROWS * (c.D + 2), NAN);
    auto order = block_order(grid, how);
    double scale = 1 / sqrt((double)c.D);
    launch(grid, MMA_THREADS, [&] {
        auto f = c.D == 64 ? dm::attention_decode_mma_d64 : dm::attention_decode_mma_d128;
        f(q.h.data(), k.h.data(), v.h.data(), o.h.data(), c.with_lse ? lse.data() : nullptr, DT_F32, st, c.H, c.Hkv, c.T, c.S, c.causal, c.offset, scale,
          c.splits, c.min_keys, part.data(), g_tickets.data());
    }, &order);
}

static void run(const Case& c, std::mt19937& rng)
{
    std::normal_distribution<float> nd;
    const int B = c.B, H = c.H, Hkv = c.Hkv, T = c.T, S = c.S, D = c.D, G = H / Hkv;
    char name[200];
    snprintf(name, sizeof name, "B%d H%d/%d T%d S%d D%d %s%d L%d P%d K%d%s", B, H, Hkv, T, S, D, c.causal ? "causal+" : "full", c.offset, c.layout, c.splits,
             c.min_keys, c.with_lse ? " lse" : "");
    Operand q, k, v, o, of;
    if (c.layout == 0)
    {
        q.init({(i64)H * T * D, (i64)T * D, D, 1}, {B, H, T, D});
        k.init({(i64)Hkv * S * D, (i64)S * D, D, 1}, {B, Hkv, S, D});
        v.init({(i64)Hkv * S * D, (i64)S * D, D, 1}, {B, Hkv, S, D});
    }
    else
    {
        const int kr = D + 8;
        q.init({(i64)T * H * D, D, (i64)H * D, 1}, {B, H, T, D});
        k.init({(i64)S * Hkv * kr, kr, (i64)Hkv * kr, 1}, {B, Hkv, S, D});
        v.init({(i64)S * Hkv * kr, kr, (i64)Hkv * kr, 1}, {B, Hkv, S, D});
    }
    o.init({(i64)T * H * D, D, (i64)H * D, 1}, {B, H, T, D});
    of = o;
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++) for (int d = 0; d < D; d++) q.set(q.at(b, h, t, d), nd(rng));
    for (int b = 0; b < B; b++) for (int h = 0; h < Hkv; h++) for (int j = 0; j < S; j++)
        for (int d = 0; d < D; d++) { k.set(k.at(b, h, j, d), nd(rng)); v.set(v.at(b, h, j, d), nd(rng)); }
    AttnStrides st{};
    for (int i = 0; i < 4; i++) { st.q[i] = q.s[i]; st.k[i] = k.s[i]; st.v[i] = v.s[i]; st.o[i] = o.s[i]; }
    i64 ls[3] = {(i64)H * T, T, 1};
    for (int i = 0; i < 3; i++) st.l[i] = ls[i];
    std::vector<float> lse((size_t)B * H * T, 12345.0f), lf = lse;
    run_mma(c, q, k, v, o, lse, st, 0);
    CHECK(tickets_zero(), "%s: tickets left nonzero", name);
    if (c.splits > 1)
        for (int how = 1; how <= 2; how++)
        {
            Operand o2 = o; std::vector<float> l2(lse.size(), 12345.0f);
            std::fill(o2.h.begin(), o2.h.end(), 0x7fc1);
            run_mma(c, q, k, v, o2, l2, st, how);
            CHECK(o2.h == o.h && (!c.with_lse || memcmp(l2.data(), lse.data(), 4 * lse.size()) == 0), "%s: blocks in order %d give other bits", name, how);
            CHECK(tickets_zero(), "%s: tickets left nonzero (order %d)", name, how);
        }
    // The FMA kernel on the same operands, at its own launcher's splits.
    {
        const int chunks = (G * T + DEC_ROWS - 1) / DEC_ROWS;
        long keys = c.causal ? std::clamp((long)c.offset + T, 0L, (long)S) : S;
        const int sp = rule_splits((long)Hkv * chunks, keys, 132, 32, 2, DEC_MAX_SPLITS);
        std::vector<float> part((size_t)B * Hkv * chunks * sp * DEC_ROWS * (D + 2), NAN);
        launch((unsigned)(B * Hkv * chunks * sp), DEC_THREADS, [&] {
            dec::attention_decode_forward_bf16(q.h.data(), k.h.data(), v.h.data(), of.h.data(), nullptr, DT_F32, lf.data(), DT_F32, st, H, Hkv, T, S, D, D,
                                               c.causal, c.offset, 1 / sqrt((double)D), 1, sp, 32, part.data(), g_tickets.data());
        });
    }
    double w = 0, wf = 0, wv = 0;
    const double scale = 1 / sqrt((double)D);
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++)
    {
        const int hk = h / G;
        std::vector<double> sc;
        double m = attention_row_scores(sc, S, c.causal, c.offset, t, scale,
            [&](int j) { double s = 0; for (int d = 0; d < D; d++) s += q.get(q.at(b, h, t, d)) * k.get(k.at(b, hk, j, d)); return s; },
            [&](int) { return 0.0; });
        const double got_l = lse[((size_t)b * H + h) * T + t];
        if (m == -INFINITY)
        {
            for (int d = 0; d < D; d++) CHECK(std::isnan(o.get(o.at(b, h, t, d))), "%s o b%d h%d t%d d%d of a row with no key: not NaN", name, b, h, t, d);
            if (c.with_lse) CHECK(got_l == -INFINITY, "%s lse of a row with no key: %g", name, got_l);
            continue;
        }
        double z = 0; for (int j = 0; j < S; j++) if (sc[j] > -INFINITY) z += exp(sc[j] - m);
        if (c.with_lse) CHECK(fabs(got_l - (m + log(z))) < 2e-5 * (1 + fabs(m + log(z))), "%s lse b%d h%d t%d: %g vs %g", name, b, h, t, got_l, m + log(z));
        else CHECK(got_l == 12345.0f, "%s lse written without being asked", name);
        for (int d = 0; d < D; d++)
        {
            double want = 0; for (int j = 0; j < S; j++) if (sc[j] > -INFINITY) want += exp(sc[j] - m) / z * v.get(v.at(b, hk, j, d));
            const double got = o.get(o.at(b, h, t, d)), fma = of.get(of.at(b, h, t, d));
            const double e = ulps(got, want), ef = ulps(fma, want), ev = ulps(got, fma);
            w = std::isnan(e) ? INFINITY : std::max(w, e);
            wf = std::max(wf, ef);
            wv = std::isnan(ev) ? INFINITY : std::max(wv, ev);
            CHECK(e <= tol_ulps, "%s o b%d h%d t%d d%d: %g vs %g (%.2f ulps; the FMA kernel %g)", name, b, h, t, d, got, want, e, fma);
            CHECK(ev <= tol_ulps, "%s o b%d h%d t%d d%d: %g vs the FMA kernel's %g", name, b, h, t, d, got, fma);
        }
    }
    worst_mma = std::max(worst_mma, w); worst_fma = std::max(worst_fma, wf); worst_vs_fma = std::max(worst_vs_fma, wv);
    printf("  %-58s ulps vs f64: mma %.2f, FMA %.2f; mma vs FMA %.2f\n", name, w, wf, wv);
}

// attention_decode_mma_at_* (positions on the device, whole caches [B, Hkv, C, D], the grid sized for the capacity)
// against the host-position kernel on each row alone, launched at the splits the eager launcher gives its keys: same
// bits. Caches hold NaN past each row's keys (a read beyond shows); a row outside [0, C) must give NaN without reading
// (its cache rows are NaN too, so a clamped read would give NaN only by luck: the test checks the row's keys stay
// unread by filling the whole cache of that row with finite values).
static void run_at(int B, int H, int Hkv, int T, int C, int D, std::vector<int> pos, int pdt, int sms, int min_keys, std::mt19937& rng)
{
    std::normal_distribution<float> nd;
    const int G = H / Hkv, GT = G * T, chunks = (GT + DMMA_ROWS - 1) / DMMA_ROWS;
    const int splits = mma_splits(Hkv, GT, C, sms, min_keys);
    char name[200];
    snprintf(name, sizeof name, "at B%d H%d/%d T%d C%d D%d pos %d%s %s P%d K%d", B, H, Hkv, T, C, D, pos[0], B > 1 ? ",…" : "", pdt == DT_I32 ? "i32" : "i64", splits, min_keys);
    Operand q, k, v, o;
    q.init({(i64)T * H * D, D, (i64)H * D, 1}, {B, H, T, D});
    k.init({(i64)Hkv * C * D, (i64)C * D, D, 1}, {B, Hkv, C, D});
    v.init({(i64)Hkv * C * D, (i64)C * D, D, 1}, {B, Hkv, C, D});
    o.init({(i64)T * H * D, D, (i64)H * D, 1}, {B, H, T, D});
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++) for (int d = 0; d < D; d++) q.set(q.at(b, h, t, d), nd(rng));
    for (int b = 0; b < B; b++)
    {
        const bool outside = pos[b] < 0 || pos[b] >= C;
        for (int h = 0; h < Hkv; h++) for (int j = 0; j < (outside ? C : std::min(C, pos[b] + T)); j++)
            for (int d = 0; d < D; d++) { k.set(k.at(b, h, j, d), nd(rng)); v.set(v.at(b, h, j, d), nd(rng)); }
    }
    std::vector<int> p32(pos.begin(), pos.end());
    std::vector<long long> p64(pos.begin(), pos.end());
    const void* pp = pdt == DT_I32 ? (const void*)p32.data() : (const void*)p64.data();
    AttnStrides st{};
    for (int i = 0; i < 4; i++) { st.q[i] = q.s[i]; st.k[i] = k.s[i]; st.v[i] = v.s[i]; st.o[i] = o.s[i]; }
    const double scale = 1 / sqrt((double)D);
    std::vector<float> part((size_t)B * Hkv * chunks * splits * DMMA_ROWS * (D + 2), NAN);
    const unsigned grid = (unsigned)(B * Hkv * chunks * splits);
    auto order = block_order(grid, 2);
    launch(grid, MMA_THREADS, [&] {
        auto f = D == 64 ? dm::attention_decode_mma_at_d64 : dm::attention_decode_mma_at_d128;
        f(q.h.data(), k.h.data(), v.h.data(), o.h.data(), st, H, Hkv, T, C, scale, splits, min_keys, part.data(), g_tickets.data(), pp, pdt);
    }, &order);
    CHECK(tickets_zero(), "%s: tickets left nonzero", name);
    for (int b = 0; b < B; b++)
    {
        if (pos[b] < 0 || pos[b] >= C)
        {
            bool nan = true;
            for (int h = 0; h < H; h++) for (int t = 0; t < T; t++) for (int d = 0; d < D; d++) nan = nan && std::isnan(o.get(o.at(b, h, t, d)));
            CHECK(nan, "%s row %d at %d (outside the cache): not NaN", name, b, pos[b]);
            continue;
        }
        // Row b alone, the caches' first pos + T rows (host position pos, causal), at the eager splits.
        const int S = std::min(C, pos[b] + T);
        Case c{1, H, Hkv, T, S, D, 1, pos[b], 0, mma_splits(Hkv, GT, S, sms, min_keys), min_keys, 0};
        Operand ob = o;
        AttnStrides sb = st;
        const u16* qp = q.h.data() + b * q.s[0];
        const u16* kp = k.h.data() + b * k.s[0];
        const u16* vp = v.h.data() + b * v.s[0];
        std::fill(ob.h.begin(), ob.h.end(), 0x7fc1);
        u16* op = ob.h.data() + b * o.s[0];
        std::vector<float> part1((size_t)Hkv * chunks * c.splits * DMMA_ROWS * (D + 2), NAN);
        launch((unsigned)(Hkv * chunks * c.splits), MMA_THREADS, [&] {
            auto f = D == 64 ? dm::attention_decode_mma_d64 : dm::attention_decode_mma_d128;
            f(qp, kp, vp, op, nullptr, DT_F32, sb, H, Hkv, T, S, 1, pos[b], scale, c.splits, min_keys, part1.data(), g_tickets.data());
        });
        bool same = true;
        for (int h = 0; h < H; h++) for (int t = 0; t < T; t++) for (int d = 0; d < D; d++)
            same = same && o.h[o.at(b, h, t, d)] == ob.h[o.at(b, h, t, d)];
        CHECK(same, "%s row %d at %d: other bits than the host-position kernel over its %d keys (%d ranges)", name, b, pos[b], S, c.splits);
    }
    printf("  %-58s = host-position kernel per row (bits)\n", name);
}

int main(int argc, char** argv)
{
    const bool quick = argc > 1 && std::string(argv[1]) == "quick";
    // "early" (second argument): every cp.async done when issued (emu_mma.h), the earliest a GPU could land it: a stage
    // refilled while a warp still reads it, or read before its copy, then shows as wrong bits.
    g_cp_async_early = argc > 2 && std::string(argv[2]) == "early";
    std::mt19937 rng(20261127);
    const int sms = 132;
    // {B, H, Hkv, T, S, D, causal, offset, layout, splits, min_keys, lse}; splits from the launcher's rule unless fixed.
    std::vector<Case> cases;
    auto add = [&](int B, int H, int Hkv, int T, int S, int D, int causal, int offset, int layout, int splits, int min_keys, int lse) {
        if (splits == 0) splits = mma_splits(Hkv, H / Hkv * T, causal ? std::clamp(offset + T, 0, S) : S, sms, min_keys);
        cases.push_back({B, H, Hkv, T, S, D, causal, offset, layout, splits, min_keys, lse});
    };
    // Qwen2-7B's group (7 heads a kv head), one query at the last position: 1 key, inside a tile, across tiles, ranges.
    for (int S : {1, 17, 64, 65, 200, 1000})
        add(1, 28, 4, 1, S, 128, 1, S - 1, 0, 0, 64, S % 2);
    if (!quick) add(1, 28, 4, 1, 3000, 128, 1, 2999, 0, 0, 64, 1);
    add(1, 14, 2, 1, 777, 128, 1, 776, 0, 1, 64, 1);    // one range: the block writes o itself
    add(1, 14, 2, 1, 777, 128, 1, 776, 0, 200, 1, 0);   // many short ranges (min keys 1: 200 ranges of 64 keys, the last ones empty)
    add(1, 14, 2, 1, 130, 128, 1, 129, 0, 64, 64, 0);   // more ranges allowed than the keys give (2)
    // group sizes 1, 2, 8 and several row tiles
    add(2, 4, 4, 1, 300, 128, 1, 299, 1, 0, 64, 1);     // G1, batch 2, strided q/o/K/V
    add(1, 8, 4, 1, 500, 64, 1, 499, 0, 0, 64, 1);      // G2, D64
    add(1, 16, 2, 2, 333, 128, 1, 331, 0, 0, 32, 1);    // G8 T2: 16 rows, a full tile
    add(1, 28, 4, 3, 400, 64, 1, 200, 1, 0, 64, 1);     // G7 T3: 21 rows (2 tiles), rows in the middle of the keys
    add(1, 16, 2, 8, 260, 128, 1, 100, 0, 5, 16, 1);    // G8 T8: 64 rows (4 tiles)
    add(2, 8, 2, 1, 190, 64, 0, 0, 0, 0, 32, 1);        // full attention (no causal limit)
    add(1, 28, 4, 1, 129, 64, 1, 128, 1, 0, 16, 0);     // D64, strided
    // Edges: rows past the cache (T4 at 298 of 300 keys), rows before any key (a negative offset: NaN, lse -inf),
    // non-causal T3 over ranges.
    add(1, 16, 2, 4, 300, 128, 1, 298, 0, 0, 64, 1);
    add(1, 8, 2, 3, 100, 64, 1, -2, 0, 0, 64, 1);
    add(1, 14, 2, 3, 1000, 128, 0, 0, 1, 0, 64, 1);
    for (const Case& c : cases) run(c, rng);
    // Device positions: rows at different lengths (different range counts), int32/int64, rows outside the cache.
    run_at(2, 28, 4, 1, 1100, 128, {1099, 150}, DT_I64, sms, 64, rng);
    run_at(3, 14, 2, 1, 700, 64, {-1, 300, 700}, DT_I32, sms, 64, rng);
    run_at(2, 16, 2, 2, 400, 128, {398, 5}, DT_I64, sms, 32, rng);
    run_at(2, 16, 2, 2, 400, 128, {399, 0}, DT_I32, sms, 64, rng); // row 0's second query past the capacity (keys clamped)
    run_at(2, 8, 4, 1, 256, 128, {255, 1000}, DT_I32, 8, 16, rng);
    printf("decode mma: %d checks, %d failures; worst bf16 ulps vs float64: mma %.2f (tolerance %.0f), FMA kernel %.2f; mma vs FMA %.2f\n", checks, fails,
           worst_mma, tol_ulps, worst_fma, worst_vs_fma);
    return fails ? 1 : 0;
}
