// The decode step's RoPE + KV-cache append + attention in one launch on tensor cores (attention_decode_mma_rope_d64 /
// _d128 of native/attention_decode_mma.cu) against the two launches it replaces (rope.cu's rope_kv_append /
// rope_kv_append_at, then attention_decode_mma_d{D} / attention_decode_mma_at_d{D} on the rotated q), bit for bit: the
// output and both whole caches, with the fused launch's blocks in launch, reversed and shuffled order (each from the
// caches as they were) and once with every cp.async done when issued (emu_mma.h's g_cp_async_early), tickets back at 0.
// Shapes: head dims 64 and 128, grouped-query ratios 7 and 8 (7 heads × T 3: 21 rows, two row groups that both hold the
// new rows' range), T 1, 2 and 3, key counts at tile and range edges (one key; 64, 65; the new key first in a range; T
// 2 with the two new keys in two ranges), many ranges, batch 2, q/k/v as views of a packed projection, caches
// contiguous or [B, S, Hkv, D + 8], f32 and bf16 tables, the host form (causal and not) and device positions
// (int32/int64; rows inside, a second query past the capacity: q NaN there; a first position before the cache whose
// second row is inside: written, nothing read; past the cache: nothing written, NaN). The caches' new rows hold stale
// finite values before the step and rows past the keys NaN: a block that reads a new row before it is written, or a row
// past its keys, shows. Then the fused output against float64 attention of the two launches' rotated q over the written
// caches, in bf16 ulps (as decode_mma_test: ulp of the reference, |x| floored at 2^-6), and the rows that must be NaN.
#include "emu_mma.h"
#include "attention_reference.h"
#include "prelude.cuh"
#include "rope.cuh"
namespace dm {
#include "attention_decode_mma.cu"
#include "rope.cu"
}
#include <algorithm>
#include <random>
#include <string>
int fails = 0, checks = 0;
#define CHECK(c, ...) do { checks++; if (!(c)) { if (fails++ < 20) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } } while (0)

// CudaBackend.DecodeMmaSplits: two blocks per SM over one batch row's row groups, at least 64 keys a range.
static int mma_splits(int Hkv, int GT, long keys, int sms)
{
    long groups = (long)Hkv * ((GT + 15) / 16), want = (2L * sms + groups - 1) / groups, most = keys / 64;
    return (int)std::clamp(std::min(want, most), 1L, (long)DMMA_MAX_SPLITS);
}
static std::vector<unsigned> g_tickets(4096, 0);
static bool tickets_zero() { return std::all_of(g_tickets.begin(), g_tickets.end(), [](unsigned t) { return t == 0; }); }
static std::vector<unsigned> block_order(unsigned grid, int how)
{
    std::vector<unsigned> o(grid);
    for (unsigned i = 0; i < grid; i++) o[i] = how == 1 ? grid - 1 - i : i;
    if (how == 2) { std::mt19937 r(grid * 7 + 1); std::shuffle(o.begin(), o.end(), r); }
    return o;
}
static Layout layout4(const i64 (&size)[4], std::initializer_list<const i64*> ops)
{
    Layout L{}; L.rank = 4; int k = 0;
    for (int d = 0; d < 4; d++) L.size[d] = size[d];
    for (auto o : ops) { for (int d = 0; d < 4; d++) L.stride[k][d] = o[d]; k++; }
    return L;
}
static double ulps(double got, double want)
{
    double a = std::max(fabs(want), 1.0 / 64);
    return fabs(got - want) / ldexp(1.0, ilogb(a) - 7);
}
static double worst = 0;
static int cases_run = 0;

// at: device positions (C the capacity, pos per batch row); otherwise the host form (every row at pos[0], the caches'
// first pos[0] + T rows). layout 1: caches [B, C, Hkv, D + 8]. splits 0: the launcher's rule; min_keys the kernel's.
struct Case { bool at; int B, H, Hkv, T, D, C; std::vector<int> pos; int pdt, tdt, layout, causal, splits, min_keys; };

static void run(const Case& c, std::mt19937& rng)
{
    std::normal_distribution<float> nd;
    const int B = c.B, H = c.H, Hkv = c.Hkv, T = c.T, D = c.D, C = c.C, G = H / Hkv, GT = G * T, half = D / 2;
    const int chunks = (GT + DMMA_ROWS - 1) / DMMA_ROWS, p0 = c.pos[0];
    const int S = c.at ? C : p0 + T; // the kernels' key count: the capacity, or the caches' first past + T rows
    const int splits = c.splits ? c.splits : mma_splits(Hkv, GT, S, 132);
    const unsigned grid = (unsigned)(B * Hkv * chunks * splits);
    const int TR = C + 8, W = (H + 2 * Hkv) * D, tes = c.tdt == DT_BF16 ? 2 : 4; // table rows; the packed row width
    char name[200];
    snprintf(name, sizeof name, "%s B%d H%d/%d T%d D%d %s%d pos %d%s L%d %s P%d K%d", c.at ? "at" : "eager", B, H, Hkv, T, D, c.at ? "C" : "S",
             S, p0, B > 1 ? ",…" : "", c.layout, c.tdt == DT_BF16 ? "bf16 tables" : "f32 tables", splits, c.min_keys);
    if (!c.causal) strcat(name, " full");
    // The packed projection [B, T, (H + 2 Hkv) D]: q, k and v are views of it.
    std::vector<u16> P((size_t)B * T * W);
    for (auto& x : P) x = f32_to_bf16(nd(rng));
    const i64 ps[4] = {(i64)T * W, D, W, 1};
    const u16 *qp = P.data(), *kp = P.data() + (size_t)H * D, *vp = P.data() + (size_t)(H + Hkv) * D;
    std::vector<unsigned char> cs((size_t)TR * D * 4), sn(cs.size());
    auto put = [&](std::vector<unsigned char>& t, i64 i, float x) { if (c.tdt == DT_BF16) ((u16*)t.data())[i] = f32_to_bf16(x); else ((float*)t.data())[i] = x; };
    for (int r = 0; r < TR; r++) for (int d = 0; d < D; d++)
    {
        double a = r * pow(10000.0, -(double)(d % half) / half);
        put(cs, (i64)r * D + d, (float)cos(a)); put(sn, (i64)r * D + d, (float)sin(a));
    }
    // The caches: whole [B, Hkv, C, D] (or [B, C, Hkv, D + 8]) buffers; finite values where a row holds a key (and, as
    // stale contents, at the new rows), NaN past a row's keys and in the padding. A row outside the cache: all finite
    // (its output must be NaN without reading them).
    i64 cst[4];
    if (c.layout == 0) { i64 s[4] = {(i64)Hkv * C * D, (i64)C * D, D, 1}; std::copy(s, s + 4, cst); }
    else { i64 s[4] = {(i64)C * Hkv * (D + 8), D + 8, (i64)Hkv * (D + 8), 1}; std::copy(s, s + 4, cst); }
    const size_t cn = (size_t)B * cst[0];
    std::vector<u16> kc0(cn, 0x7fc1), vc0(cn, 0x7fc1);
    for (int b = 0; b < B; b++)
    {
        const int p = c.at ? c.pos[b] : p0, rows = p < 0 || p >= C ? C : std::min(C, p + T);
        for (int h = 0; h < Hkv; h++) for (int j = 0; j < rows; j++) for (int d = 0; d < D; d++)
        {
            const i64 o = b * cst[0] + h * cst[1] + j * cst[2] + d;
            kc0[o] = f32_to_bf16(nd(rng)); vc0[o] = f32_to_bf16(nd(rng));
        }
    }
    std::vector<int> p32(c.pos.begin(), c.pos.end());
    std::vector<long long> p64(c.pos.begin(), c.pos.end());
    const void* pp = c.pdt == DT_I32 ? (const void*)p32.data() : (const void*)p64.data();
    // Host form: the tables of the new rows (row t at t·D from the pointer; one row: stride 0), caches from row 0.
    const size_t to = c.at ? 0 : (size_t)p0 * D * tes;
    const i64 crow = c.at || T > 1 ? D : 0;
    const double scale = 1 / sqrt((double)D);
    const i64 os[4] = {(i64)T * H * D, D, (i64)H * D, 1}; // o [B, H, T, D] as [B, T, H, D] memory
    const size_t on = (size_t)B * T * H * D;

    // The two launches.
    auto kc1 = kc0, vc1 = vc0;
    std::vector<u16> qrot((size_t)B * H * T * D, 0x7fc1), o1(on, 0x7fc1);
    {
        const i64 qr[4] = {(i64)H * T * D, (i64)T * D, D, 1}, tl[4] = {0, 0, c.at ? 0 : crow, 1};
        const i64 sq[4] = {B, H, T, half}, sk[4] = {B, Hkv, T, half};
        const i64 nq = (i64)B * H * T * half, nk = (i64)B * Hkv * T * half;
        Layout LQ = layout4(sq, {qr, ps, tl, tl}), LK = layout4(sk, {cst, ps, tl, tl}), LV = layout4(sk, {cst, ps});
        if (c.at)
            launch(4, 64, [&] { dm::rope_kv_append_at(LQ, LK, LV, nq, nk, half, qrot.data(), 1, qp, 1, kc1.data(), 1, kp, 1, vc1.data(), 1, vp, 1,
                                                      cs.data(), sn.data(), c.tdt, 1, 1, DT_BF16, pp, c.pdt, H, Hkv, T, C, D, D, cst[2], cst[2]); });
        else
        {
            const size_t so = (size_t)p0 * cst[2];
            launch(4, 64, [&] { dm::rope_kv_append(LQ, LK, LV, nq, nk, half, qrot.data(), 1, qp, 1, kc1.data() + so, 1, kp, 1, vc1.data() + so, 1, vp, 1,
                                                   cs.data() + to, sn.data() + to, c.tdt, 1, 1, DT_BF16); });
        }
        AttnStrides sr{};
        for (int i = 0; i < 4; i++) { sr.q[i] = qr[i]; sr.k[i] = sr.v[i] = cst[i]; sr.o[i] = os[i]; }
        std::vector<float> part((size_t)grid * DMMA_ROWS * (D + 2), NAN);
        launch(grid, MMA_THREADS, [&] {
            if (c.at) (D == 64 ? dm::attention_decode_mma_at_d64 : dm::attention_decode_mma_at_d128)(qrot.data(), kc1.data(), vc1.data(), o1.data(), sr,
                H, Hkv, T, C, scale, splits, c.min_keys, part.data(), g_tickets.data(), pp, c.pdt);
            else (D == 64 ? dm::attention_decode_mma_d64 : dm::attention_decode_mma_d128)(qrot.data(), kc1.data(), vc1.data(), o1.data(), nullptr, DT_F32, sr,
                H, Hkv, T, S, c.causal, p0, scale, splits, c.min_keys, part.data(), g_tickets.data());
        });
        CHECK(tickets_zero(), "%s: tickets left nonzero (two launches)", name);
    }

    // The fused launch, in three block orders, each from the caches as they were; then in launch order with every
    // cp.async done when issued (g_cp_async_early: a tile staged before the block's new rows are written, or stage 2's
    // K buffer refilled while a warp still loads its q rows from it, reads or clobbers; the queued default cannot show
    // either).
    bool all_same = true;
    std::vector<u16> o2;
    for (int how = 0; how <= 3; how++)
    {
        auto kc2 = kc0, vc2 = vc0;
        o2.assign(on, 0x7fc1);
        std::vector<float> part((size_t)grid * DMMA_ROWS * (D + 2), NAN);
        AttnStrides sf{};
        for (int i = 0; i < 4; i++) { sf.q[i] = ps[i]; sf.k[i] = sf.v[i] = cst[i]; sf.o[i] = os[i]; }
        DecRope rp{kp, vp, cs.data() + to, sn.data() + to, {ps[0], ps[1], ps[2], ps[3]}, {ps[0], ps[1], ps[2], ps[3]}, 1, 1, crow, crow, c.tdt};
        auto order = block_order(grid, how == 3 ? 0 : how);
        g_cp_async_early = how == 3;
        launch(grid, MMA_THREADS, [&] {
            (D == 64 ? dm::attention_decode_mma_rope_d64 : dm::attention_decode_mma_rope_d128)(qp, kc2.data(), vc2.data(), o2.data(), sf, H, Hkv, T, S,
                c.at ? 1 : c.causal, c.at ? 0 : p0, scale, splits, c.min_keys, part.data(), g_tickets.data(), c.at ? pp : nullptr, c.pdt, rp);
        }, &order);
        g_cp_async_early = false;
        CHECK(tickets_zero(), "%s: tickets left nonzero (run %d: block orders 0–2, 3 early copies)", name, how);
        const bool so = o1 == o2, sk = kc1 == kc2, sv = vc1 == vc2;
        CHECK(so, "%s: the output differs from the two launches' (run %d: block orders 0–2, 3 early copies)", name, how);
        CHECK(sk && sv, "%s: the caches differ from the two launches' (k %d, v %d; block order %d)", name, sk, sv, how);
        all_same = all_same && so && sk && sv;
        // Not vacuous: exactly the new rows inside the cache were written.
        for (int b = 0; b < B; b++)
        {
            const int p = c.at ? c.pos[b] : p0;
            for (int h = 0; h < Hkv; h++) for (int j = 0; j < C; j++)
            {
                const i64 r = b * cst[0] + h * cst[1] + j * cst[2];
                const bool changed = memcmp(&kc2[r], &kc0[r], 2 * D) != 0 || memcmp(&vc2[r], &vc0[r], 2 * D) != 0;
                const bool is_new = j >= p && j < p + T;
                CHECK(changed == is_new, "%s: cache row b%d h%d j%d %s", name, b, h, j, is_new ? "not written" : "written");
            }
        }
    }

    // The fused output against float64 attention of the rotated q over the written caches.
    double w = 0;
    for (int b = 0; b < B; b++)
    {
        const int p = c.at ? c.pos[b] : p0;
        for (int h = 0; h < H; h++) for (int t = 0; t < T; t++)
        {
            const int hk = h / G;
            auto ov = [&](int d) { return (double)bf16_to_f32(o2[b * os[0] + h * os[1] + t * os[2] + d]); };
            // A row whose first position is outside the cache sees nothing; a query past the capacity has a NaN q.
            if (p < 0 || p >= C || p + t >= C)
            {
                bool nan = true;
                for (int d = 0; d < D; d++) nan = nan && std::isnan(ov(d));
                CHECK(nan, "%s o b%d h%d t%d (position %d outside the cache): not NaN", name, b, h, t, p + t);
                continue;
            }
            const int keys = c.at ? std::min(C, p + T) : S;
            auto qv = [&](int d) { return (double)bf16_to_f32(qrot[((size_t)(b * H + h) * T + t) * D + d]); };
            auto kv = [&](const std::vector<u16>& x, int j, int d) { return (double)bf16_to_f32(x[b * cst[0] + hk * cst[1] + j * cst[2] + d]); };
            std::vector<double> sc;
            double m = attention_row_scores(sc, keys, c.at || c.causal, p, t, scale,
                [&](int j) { double s = 0; for (int d = 0; d < D; d++) s += qv(d) * kv(kc1, j, d); return s; }, [](int) { return 0.0; });
            double z = 0;
            for (int j = 0; j < keys; j++) if (sc[j] > -INFINITY) z += exp(sc[j] - m);
            for (int d = 0; d < D; d++)
            {
                double want = 0;
                for (int j = 0; j < keys; j++) if (sc[j] > -INFINITY) want += exp(sc[j] - m) / z * kv(vc1, j, d);
                const double e = ulps(ov(d), want);
                w = std::isnan(e) ? INFINITY : std::max(w, e);
                CHECK(e <= 1.0, "%s o b%d h%d t%d d%d: %g vs %g (%.2f ulps)", name, b, h, t, d, ov(d), want, e);
            }
        }
    }
    worst = std::max(worst, w);
    cases_run++;
    printf("  %-84s %s; %.2f ulps vs f64\n", name, all_same ? "bits = two launches (o, caches; 3 block orders, early copies)" : "DIFFER", w);
}

int main(int argc, char** argv)
{
    const bool quick = argc > 1 && std::string(argv[1]) == "quick";
    std::mt19937 rng(20261127);
    // {at, B, H, Hkv, T, D, C, pos, pdt, tdt, layout, causal, splits, min_keys}; the host form's C is its buffer's rows.
    std::vector<Case> cases = {
        // Host form, Qwen2-7B's group (7 heads a kv head), one new key: one key; 64 and 65 keys; the new key first in
        // range 1 (129 keys: ranges [0, 128) and [128, 129)); first in range 15 of 40 (961 keys, min keys 16: 64-key ranges).
        {false, 1, 7, 1, 1, 128, 8, {0}, DT_I64, DT_F32, 0, 1, 0, 64},
        {false, 1, 7, 1, 1, 128, 70, {63}, DT_I64, DT_F32, 0, 1, 0, 64},
        {false, 1, 7, 1, 1, 128, 70, {64}, DT_I64, DT_BF16, 1, 1, 0, 64},
        {false, 1, 14, 2, 1, 128, 140, {128}, DT_I64, DT_F32, 0, 1, 0, 64},
        {false, 1, 7, 1, 1, 64, 970, {960}, DT_I64, DT_F32, 0, 1, 40, 16},
        // GQA 8, T 2: a full 16-row tile; the two new keys in two ranges (127 | 128); D 64 and 128; batch 2, strided caches.
        {false, 1, 16, 2, 2, 64, 10, {0}, DT_I64, DT_F32, 0, 1, 0, 64},
        {false, 1, 16, 2, 2, 64, 140, {127}, DT_I64, DT_F32, 0, 1, 0, 64},
        {false, 2, 8, 1, 2, 128, 310, {298}, DT_I64, DT_BF16, 1, 1, 0, 64},
        {false, 1, 16, 2, 2, 128, 140, {127}, DT_I64, DT_F32, 1, 0, 0, 64}, // not causal: query 0 sees the second new key
        // GQA 7, T 3: 21 rows, two row groups writing the same new rows; T 2 with GQA 7 (14 rows).
        {false, 1, 14, 2, 3, 128, 200, {190}, DT_I64, DT_F32, 0, 1, 0, 64},
        {false, 1, 7, 1, 3, 64, 200, {126}, DT_I64, DT_F32, 1, 1, 5, 16},
        {false, 1, 28, 4, 2, 64, 300, {255}, DT_I64, DT_BF16, 0, 1, 0, 64},
        // Device positions: rows at different lengths; a second query past the capacity; a first position before the
        // cache with its second row inside (written by range 0, nothing read); past the cache (nothing written, NaN).
        {true, 2, 28, 4, 1, 128, 1100, {1099, 150}, DT_I64, DT_F32, 0, 1, 0, 64},
        {true, 2, 16, 2, 2, 64, 400, {399, 127}, DT_I32, DT_F32, 0, 1, 0, 64},
        {true, 2, 16, 2, 2, 128, 300, {-1, 300}, DT_I32, DT_BF16, 1, 1, 0, 64},
        {true, 3, 7, 1, 1, 64, 256, {255, 1000, 64}, DT_I32, DT_F32, 1, 1, 0, 64},
        {true, 2, 14, 2, 3, 128, 500, {64, 300}, DT_I64, DT_F32, 0, 1, 0, 64},
        {true, 1, 8, 1, 2, 64, 700, {383}, DT_I32, DT_BF16, 0, 1, 12, 32},
    };
    if (!quick)
    {
        cases.push_back({false, 1, 28, 4, 1, 128, 3000, {2999}, DT_I64, DT_F32, 0, 1, 0, 64});
        cases.push_back({true, 1, 16, 2, 2, 128, 2100, {1663}, DT_I64, DT_BF16, 1, 1, 0, 64});
    }
    for (const Case& c : cases) run(c, rng);
    printf("decode mma rope: %d cases, %d checks, %d failures; fused = two launches bit for bit, worst %.2f bf16 ulps vs float64 (tolerance 1)\n",
           cases_run, checks, fails, worst);
    return fails ? 1 : 0;
}
