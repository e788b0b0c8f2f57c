// The decode attention kernels (attention_decode_forward_* in native/attention_decode.cu: key ranges merged in the
// same launch by the block with the last ticket) against a float64 reference: T 1..8 query rows, key lengths 1 to 1000 (inside and across chunks, warps and splits),
// grouped-query ratios 1 and 7, head dims 64/80/128 (and v dims differing from q/k dims), causal with offsets, an
// additive mask (f32 or bf16, broadcast over heads or one per head) with -inf entries including a fully hidden row (output NaN,
// log-sum-exp -inf), strided operands (q and o as [B, T, H, D] memory, K/V as a [B, S, Hkv, D] cache, or K/V with a
// head-dim stride of 2, which takes the scalar loads), f32 and bf16, one range (the block writes o) and several
// (scratch and tickets; more ranges allowed than the keys give, blocks past them returning; the range count the
// kernel derives from the keys and min_keys). Every case with ranges runs again with its blocks in reverse and in a
// shuffled order (another block merges): the same bits, and the tickets back at 0. Operand buffers are NaN outside
// the elements the kernel may read, so a read at a wrong stride shows. Then attention_decode_at_* (positions read on
// the device, the grid sized for the cache's capacity) against the host-position kernels on each row alone, launched with the splits
// the eager launcher gives that row (CudaBackend.DecodeSplits of its own keys): the same bits.
#include "emu_threads.h"
#include "attention_reference.h"
#include "prelude.cuh"
#include "rope.cuh"
namespace dec {
#include "attention_decode.cu"
#include "rope.cu"
}
#include <algorithm>
#include <random>
#include <string>
int fails = 0, checks = 0;
#define CHECK(c, ...) do { checks++; if (!(c)) { if (fails++ < 20) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } } while (0)

struct Case { int dt, B, H, Hkv, T, S, D, Dv, causal, offset, masked, layout, splits; int mdt = DT_F32; int min_keys = 1; };

// The launcher's rule (CudaBackend.DecodeSplits): two blocks per SM for one batch row's row groups, at least min_keys
// keys a range, at most DEC_MAX_SPLITS.
static int rule_splits(int Hkv, int chunks, long keys, int sms, int min_keys)
{
    long groups = (long)Hkv * chunks, want = (2L * sms + groups - 1) / groups, most = keys / min_keys;
    return (int)std::clamp(std::min(want, most), 1L, (long)DEC_MAX_SPLITS);
}

// One zeroed ticket per row group, as CudaBackend keeps them; every launch must leave them zero.
static std::vector<unsigned> g_tickets(4096, 0);
static bool tickets_zero() { return std::all_of(g_tickets.begin(), g_tickets.end(), [](unsigned t) { return t == 0; }); }
static std::vector<unsigned> block_order(unsigned grid, int how)
{
    std::vector<unsigned> o(grid);
    for (unsigned i = 0; i < grid; i++) o[i] = how == 1 ? grid - 1 - i : i;
    if (how == 2) { std::mt19937 r(grid * 7 + 1); std::shuffle(o.begin(), o.end(), r); }
    return o;
}

// A strided operand: values (as the kernel sees them) at offsets b·s0 + h·s1 + i·s2 + d·s3, NaN elsewhere.
struct Operand
{
    std::vector<float> f; std::vector<u16> hbits; i64 s[4]; bool bf;
    const void* ptr() const { return bf ? (const void*)hbits.data() : (const void*)f.data(); }
    void* ptr() { return bf ? (void*)hbits.data() : (void*)f.data(); }
    void init(bool bf16, const i64 (&st)[4], const int (&n)[4])
    {
        bf = bf16; for (int i = 0; i < 4; i++) s[i] = st[i];
        i64 last = 0; for (int i = 0; i < 4; i++) last += (i64)(n[i] - 1) * st[i];
        f.assign(last + 1, NAN); hbits.assign(last + 1, 0x7fc1);
    }
    i64 at(int b, int h, int i, int d) const { return b * s[0] + h * s[1] + i * s[2] + d * s[3]; }
    void set(i64 o, float x) { if (bf) hbits[o] = f32_to_bf16(x); else f[o] = x; }
    double get(i64 o) const { return bf ? bf16_to_f32(hbits[o]) : f[o]; }
};

static double worst_f32 = 0, worst_bf16 = 0, worst_lse = 0;
static int nan_rows = 0;

template <typename MI>
static void check(const Case& c, const char* name, const Operand& q, const Operand& k, const Operand& v, const Operand& o,
                  const std::vector<float>& mask, MI mi, const std::vector<float>& lse, double scale, bool bf);

static void run(const Case& c, std::mt19937& rng)
{
    std::normal_distribution<float> nd;
    const int B = c.B, H = c.H, Hkv = c.Hkv, T = c.T, S = c.S, D = c.D, Dv = c.Dv;
    const bool bf = c.dt == DT_BF16;
    char name[160];
    snprintf(name, sizeof name, "%s B%d H%d/%d T%d S%d D%d/%d %s%d %s L%d P%d K%d", bf ? "bf16" : "f32", B, H, Hkv, T, S, D, Dv,
             c.causal ? "causal+" : "full", c.offset, !c.masked ? "-" : c.masked == 2 ? (c.mdt == DT_BF16 ? "headmask(bf16)" : "headmask") : (c.mdt == DT_BF16 ? "mask(bf16)" : "mask"), c.layout, c.splits, c.min_keys);
    Operand q, k, v, o;
    // layout 0: contiguous [B, H, S, D]; 1: q, o as [B, T, H, D] and K/V as a [B, S, Hkv, D] cache with 8 spare dims a
    // row (vector loads); 2: as 1 with K/V head dims 2 elements apart (scalar loads).
    if (c.layout == 0)
    {
        q.init(bf, {(i64)H * T * D, (i64)T * D, D, 1}, {B, H, T, D});
        k.init(bf, {(i64)Hkv * S * D, (i64)S * D, D, 1}, {B, Hkv, S, D});
        v.init(bf, {(i64)Hkv * S * Dv, (i64)S * Dv, Dv, 1}, {B, Hkv, S, Dv});
    }
    else
    {
        int ds = c.layout == 2 ? 2 : 1, kr = ds * D + 8, vr = ds * Dv + 8;
        q.init(bf, {(i64)T * H * D, D, (i64)H * D, 1}, {B, H, T, D});
        k.init(bf, {(i64)S * Hkv * kr, kr, (i64)Hkv * kr, ds}, {B, Hkv, S, D});
        v.init(bf, {(i64)S * Hkv * vr, vr, (i64)Hkv * vr, ds}, {B, Hkv, S, Dv});
    }
    o.init(bf, {(i64)T * H * Dv, Dv, (i64)H * Dv, 1}, {B, H, T, Dv});
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++) for (int d = 0; d < D; d++) q.set(q.at(b, h, t, d), nd(rng));
    for (int b = 0; b < B; b++) for (int h = 0; h < Hkv; h++) for (int j = 0; j < S; j++)
    {
        for (int d = 0; d < D; d++) k.set(k.at(b, h, j, d), nd(rng));
        for (int d = 0; d < Dv; d++) v.set(v.at(b, h, j, d), nd(rng));
    }
    // mask [B, 1, T, S] broadcast over heads (masked 1) or [B, H, T, S] (masked 2): random biases, a few -inf keys,
    // and row (b 0, t 0) wholly hidden (of head 1 only, for a mask per head)
    const int MH = c.masked == 2 ? H : 1;
    auto mi = [&](int b, int h, int t, int j) { return (((size_t)b * MH + (MH > 1 ? h : 0)) * T + t) * S + j; };
    std::vector<float> mask((size_t)B * MH * T * S);
    std::vector<u16> maskh(mask.size());
    for (int b = 0; b < B; b++) for (int h = 0; h < MH; h++) for (int t = 0; t < T; t++) for (int j = 0; j < S; j++)
    {
        float x = (b == 0 && t == 0 && (MH == 1 || h == 1)) || j % 5 == 3 ? -INFINITY : 0.5f * nd(rng);
        if (c.mdt == DT_BF16) { maskh[mi(b, h, t, j)] = f32_to_bf16(x); x = bf16_to_f32(f32_to_bf16(x)); }
        mask[mi(b, h, t, j)] = x;
    }
    std::vector<float> lse((size_t)B * H * T, 12345.0f);
    AttnStrides st{};
    i64 ms[4] = {(i64)MH * T * S, MH > 1 ? (i64)T * S : 0, S, 1}, ls[3] = {(i64)H * T, T, 1};
    for (int i = 0; i < 4; i++) { st.q[i] = q.s[i]; st.k[i] = k.s[i]; st.v[i] = v.s[i]; st.o[i] = o.s[i]; st.m[i] = c.masked ? ms[i] : 0; }
    for (int i = 0; i < 3; i++) st.l[i] = ls[i];
    // the launcher's vector rule (CudaBackend.DecodeVectorLoads)
    int E = std::max(D, Dv) <= 64 ? 2 : 4, es = bf ? 2 : 4;
    bool vec = k.s[3] == 1 && v.s[3] == 1 && D % E == 0 && Dv % E == 0 && (uintptr_t)k.ptr() % (E * es) == 0 && (uintptr_t)v.ptr() % (E * es) == 0;
    for (int i = 0; i < 3; i++) vec = vec && k.s[i] % E == 0 && v.s[i] % E == 0;
    double scale = 1 / sqrt((double)D);
    const i64 G = H / Hkv, chunks = (G * T + DEC_ROWS - 1) / DEC_ROWS;
    const void* mp = !c.masked ? nullptr : c.mdt == DT_BF16 ? (const void*)maskh.data() : (const void*)mask.data();
    const unsigned grid = (unsigned)(B * Hkv * chunks * c.splits);
    auto fwd = [&](int how) {
        std::vector<float> part((size_t)B * Hkv * chunks * c.splits * DEC_ROWS * (Dv + 2), NAN);
        auto order = block_order(grid, how);
        launch(grid, DEC_THREADS, [&] {
            auto f = bf ? dec::attention_decode_forward_bf16 : dec::attention_decode_forward_f32;
            f(q.ptr(), k.ptr(), v.ptr(), o.ptr(), mp, c.mdt, lse.data(), DT_F32, st, H, Hkv, T, S, D, Dv, c.causal, c.offset, scale, vec,
              c.splits, c.min_keys, part.data(), g_tickets.data());
        }, &order);
        CHECK(tickets_zero(), "%s: tickets left nonzero (block order %d)", name, how);
    };
    fwd(0);
    if (c.splits > 1)
    {
        // Another block merges: the same bits.
        auto o0 = o.f; auto h0 = o.hbits; auto l0 = lse;
        for (int how = 1; how <= 2; how++)
        {
            std::fill(lse.begin(), lse.end(), 12345.0f);
            fwd(how);
            bool same = (bf ? o.hbits == h0 : memcmp(o.f.data(), o0.data(), o0.size() * 4) == 0) && memcmp(lse.data(), l0.data(), l0.size() * 4) == 0;
            CHECK(same, "%s: blocks in order %d give other bits than in launch order", name, how);
        }
    }
    check(c, name, q, k, v, o, mask, mi, lse, scale, bf);
}

// o and the log-sum-exp against float64.
template <typename MI>
static void check(const Case& c, const char* name, const Operand& q, const Operand& k, const Operand& v, const Operand& o,
                  const std::vector<float>& mask, MI mi, const std::vector<float>& lse, double scale, bool bf)
{
    const int B = c.B, H = c.H, Hkv = c.Hkv, T = c.T, S = c.S, D = c.D, Dv = c.Dv;
    double worst = 0;
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++)
    {
        int hk = h / (H / Hkv);
        std::vector<double> sc;
        double m = attention_row_scores(sc, S, c.causal, c.offset, t, scale,
            [&](int j) { double s = 0; for (int d = 0; d < D; d++) s += q.get(q.at(b, h, t, d)) * k.get(k.at(b, hk, j, d)); return s; },
            [&](int j) { return c.masked ? (double)mask[mi(b, h, t, j)] : 0.0; });
        double got_l = lse[((size_t)b * H + h) * T + t];
        if (m == -INFINITY)
        {
            nan_rows++;
            CHECK(got_l == -INFINITY, "%s lse b%d h%d t%d of a row with no key: %g, not -inf", name, b, h, t, got_l);
            for (int d = 0; d < Dv; d++) CHECK(std::isnan(o.get(o.at(b, h, t, d))), "%s o b%d h%d t%d d%d of a row with no key: %g, not NaN", name, b, h, t, d, o.get(o.at(b, h, t, d)));
            continue;
        }
        double z = 0; for (int j = 0; j < S; j++) if (sc[j] > -INFINITY) z += exp(sc[j] - m);
        double want_l = m + log(z);
        worst_lse = std::max(worst_lse, fabs(got_l - want_l));
        CHECK(fabs(got_l - want_l) < 2e-5 * (1 + fabs(want_l)), "%s lse b%d h%d t%d: %g vs %g", name, b, h, t, got_l, want_l);
        for (int d = 0; d < Dv; d++)
        {
            double want = 0; for (int j = 0; j < S; j++) if (sc[j] > -INFINITY) want += exp(sc[j] - m) / z * v.get(v.at(b, hk, j, d));
            double got = o.get(o.at(b, h, t, d));
            double tol = bf ? 4e-3 * (1 + fabs(want)) : 2e-5 * (1 + fabs(want)); // bf16: the output's rounding (2^-9 relative)
            double err = fabs(got - want);
            if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : err;
            CHECK(err < tol, "%s o b%d h%d t%d d%d: %g vs %g", name, b, h, t, d, got, want);
        }
    }
    (bf ? worst_bf16 : worst_f32) = std::max(bf ? worst_bf16 : worst_f32, worst);
    printf("  %-66s worst |o - ref| %.2e\n", name, worst);
}

// attention_decode_at_* (positions on the device, whole caches, grid sized for the capacity: rule_splits of C) against
// the host-position kernels on each row alone (S = pos + T, query_offset = pos, launched as the eager launcher would:
// rule_splits of S): the outputs must be the same bits. The caches hold NaN past each row's pos + T keys (a read
// beyond the length shows), rows of one batch at different positions (so different range counts), int32 or int64
// positions; the static launch's blocks past a row's ranges return. The static grid runs in a shuffled block order.
// A row whose position is at or past the capacity (an idle slot of serve's batch) sees no key: NaN and -inf, with the
// cache full of finite keys (a clamp to the capacity would attend over all of them and give finite values).
static int at_cases = 0;
static void run_at(int dt, int B, int H, int Hkv, int T, int C, int D, std::vector<int> pos, int pdt, int sms, int min_keys, std::mt19937& rng)
{
    std::normal_distribution<float> nd;
    const bool bf = dt == DT_BF16;
    const int G = H / Hkv, chunks = (G * T + DEC_ROWS - 1) / DEC_ROWS;
    const int splits = rule_splits(Hkv, chunks, C, sms, min_keys);
    char name[200];
    snprintf(name, sizeof name, "at %s B%d H%d/%d T%d C%d D%d pos %d%s %s P%d K%d", bf ? "bf16" : "f32", B, H, Hkv, T, C, D, pos[0], B > 1 ? ",…" : "",
             pdt == DT_I32 ? "i32" : "i64", splits, min_keys);
    Operand q, k, v, o, r;
    // q, o as [B, T, H, D] memory; K/V as a [B, Hkv, C, D] cache (the static cache's layout)
    q.init(bf, {(i64)T * H * D, D, (i64)H * D, 1}, {B, H, T, D});
    k.init(bf, {(i64)Hkv * C * D, (i64)C * D, D, 1}, {B, Hkv, C, D});
    v.init(bf, {(i64)Hkv * C * D, (i64)C * D, D, 1}, {B, Hkv, C, D});
    o.init(bf, {(i64)T * H * D, D, (i64)H * D, 1}, {B, H, T, D});
    r.init(bf, {(i64)T * H * D, D, (i64)H * D, 1}, {B, H, T, D});
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++) for (int d = 0; d < D; d++) q.set(q.at(b, h, t, d), nd(rng));
    for (int b = 0; b < B; b++) for (int h = 0; h < Hkv; h++) for (int j = 0; j < std::min(C, pos[b] + T); j++)
        for (int d = 0; d < D; d++) { k.set(k.at(b, h, j, d), nd(rng)); v.set(v.at(b, h, j, d), nd(rng)); }
    std::vector<int> p32(pos.begin(), pos.end());
    std::vector<long long> p64(pos.begin(), pos.end());
    const void* pp = pdt == DT_I32 ? (const void*)p32.data() : (const void*)p64.data();
    AttnStrides st{};
    for (int i = 0; i < 4; i++) { st.q[i] = q.s[i]; st.k[i] = k.s[i]; st.v[i] = v.s[i]; st.o[i] = o.s[i]; }
    i64 ls[3] = {(i64)H * T, T, 1};
    for (int i = 0; i < 3; i++) st.l[i] = ls[i];
    int E = D <= 64 ? 2 : 4;
    bool vec = D % E == 0;
    double scale = 1 / sqrt((double)D);
    std::vector<float> lse((size_t)B * H * T, 12345.0f), lref((size_t)B * H * T, 12345.0f);
    std::vector<float> part((size_t)B * Hkv * chunks * splits * DEC_ROWS * (D + 2), NAN);
    const unsigned grid = (unsigned)(B * Hkv * chunks * splits);
    auto order = block_order(grid, 2);
    launch(grid, DEC_THREADS, [&] {
        auto f = bf ? dec::attention_decode_at_bf16 : dec::attention_decode_at_f32;
        f(q.ptr(), k.ptr(), v.ptr(), o.ptr(), lse.data(), DT_F32, st, H, Hkv, T, C, D, D, scale, vec, splits, min_keys, part.data(), g_tickets.data(), pp, pdt);
    }, &order);
    CHECK(tickets_zero(), "%s: tickets left nonzero", name);
    // the reference: each row alone through the host-position kernels (B = 1, operands offset to row b)
    int es = bf ? 2 : 4;
    std::string row_splits;
    // idle rows (pos >= C): their caches were filled whole above (min(C, pos + T) keys), finite
    int idle = 0;
    for (int b = 0; b < B; b++)
    {
        if (pos[b] < C) continue;
        idle++;
        for (int h = 0; h < H; h++) for (int t = 0; t < T; t++)
        {
            CHECK(lse[((size_t)b * H + h) * T + t] == -INFINITY, "%s: idle row %d (position %d) lse %g, not -inf", name, b, pos[b], lse[((size_t)b * H + h) * T + t]);
            for (int d = 0; d < D; d++) CHECK(std::isnan(o.get(o.at(b, h, t, d))), "%s: idle row %d (position %d) o h%d t%d d%d %g, not NaN", name, b, pos[b], h, t, d, o.get(o.at(b, h, t, d)));
            for (int d = 0; d < D; d++) { i64 at = o.at(b, h, t, d); if (bf) r.hbits[at] = o.hbits[at]; else r.f[at] = o.f[at]; }
            lref[((size_t)b * H + h) * T + t] = -INFINITY;
        }
    }
    for (int b = 0; b < B; b++)
    {
        if (pos[b] >= C) continue;
        int S = std::min(C, pos[b] + T), rs = rule_splits(Hkv, chunks, S, sms, min_keys);
        row_splits += (b ? "," : "") + std::to_string(rs);
        std::vector<float> pr((size_t)Hkv * chunks * rs * DEC_ROWS * (D + 2), NAN);
        auto off = [&](Operand& x, int bb) { return (char*)x.ptr() + (size_t)x.s[0] * bb * es; };
        float* lr = lref.data() + (size_t)b * H * T;
        launch((unsigned)(Hkv * chunks * rs), DEC_THREADS, [&] {
            auto f = bf ? dec::attention_decode_forward_bf16 : dec::attention_decode_forward_f32;
            f(off(q, b), off(k, b), off(v, b), off(r, b), nullptr, DT_F32, lr, DT_F32, st, H, Hkv, T, S, D, D, 1, pos[b], scale, vec, rs, min_keys, pr.data(), g_tickets.data());
        });
        CHECK(tickets_zero(), "%s: tickets left nonzero (row %d)", name, b);
    }
    bool same = bf ? memcmp(o.hbits.data(), r.hbits.data(), o.hbits.size() * 2) == 0 : memcmp(o.f.data(), r.f.data(), o.f.size() * 4) == 0;
    CHECK(same, "%s: the output differs from the host-position kernels'", name);
    CHECK(memcmp(lse.data(), lref.data(), lse.size() * 4) == 0, "%s: the log-sum-exp differs", name);
    int finite = 0;
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++) finite += std::isfinite(o.get(o.at(b, h, t, 0)));
    CHECK(finite == (B - idle) * H * T, "%s: %d of %d rows finite (a read past the length, or no key seen)", name, finite, (B - idle) * H * T);
    at_cases++;
    printf("  %-66s eager splits %s: %s\n", name, row_splits.c_str(), same ? "bits equal" : "DIFFER");
}

// attention_decode_rope_* (q and the new k rotated, k and v appended at the new position, all inside the attention
// launch) against the two launches it stands for, bit for bit: eager (host position p, the caches' first p + 1 rows,
// the tables' row p passed as a pointer) = rope_kv_append into the slot at p + attention_decode_forward over p + 1
// keys; device positions (whole caches and tables) = rope_kv_append_at + attention_decode_at. q, k and v are column
// views of one packed [B, 1, (H + 2·Hkv)·D] projection (as the decode step's gemv writes them). The caches hold random
// values everywhere, the new row included (a read of the new row before its write shows), and must end equal to the
// reference's in every row: the new row written the same, every other row untouched. The fused grid runs in launch,
// reversed and shuffled block orders (another row group's block writes the new row first, another block merges).
static int rope_cases = 0;
static Layout dec_layout(const i64 (&size)[4], std::initializer_list<const i64*> ops)
{
    Layout L{}; L.rank = 4; int k = 0;
    for (int d = 0; d < 4; d++) L.size[d] = size[d];
    for (auto o : ops) { for (int d = 0; d < 4; d++) L.stride[k][d] = o[d]; k++; }
    return L;
}
static void run_rope(bool at, int dt, int tdt, int B, int H, int Hkv, int D, int C, std::vector<int> pos, int pdt, int sms, int min_keys, std::mt19937& rng)
{
    std::normal_distribution<float> nd;
    const bool bf = dt == DT_BF16;
    const int G = H / Hkv, chunks = (G + DEC_ROWS - 1) / DEC_ROWS, half = D / 2, es = bf ? 2 : 4, tes = tdt == DT_BF16 ? 2 : 4;
    const int TR = C + 5, W = (H + 2 * Hkv) * D; // table rows; the packed projection's row width
    char name[200];
    snprintf(name, sizeof name, "rope %s %s/%s B%d H%d/%d D%d C%d pos %d%s K%d", at ? "at" : "eager", bf ? "bf16" : "f32", tdt == DT_BF16 ? "bf16" : "f32",
             B, H, Hkv, D, C, pos[0], B > 1 ? ",…" : "", min_keys);
    auto put = [](std::vector<unsigned char>& buf, int d, i64 i, float x) { if (d == DT_BF16) ((u16*)buf.data())[i] = f32_to_bf16(x); else ((float*)buf.data())[i] = x; };
    std::vector<unsigned char> P((size_t)B * W * 4), cs((size_t)TR * D * 4), sn((size_t)TR * D * 4), kc0((size_t)B * Hkv * C * D * 4), vc0(kc0.size());
    for (i64 i = 0; i < (i64)B * W; i++) put(P, dt, i, nd(rng));
    for (int r = 0; r < TR; r++) for (int d = 0; d < D; d++)
    {
        double a = r * pow(10000.0, -(double)(d % half) / half);
        put(cs, tdt, (i64)r * D + d, (float)cos(a)); put(sn, tdt, (i64)r * D + d, (float)sin(a));
    }
    for (i64 i = 0; i < (i64)B * Hkv * C * D; i++) { put(kc0, dt, i, nd(rng)); put(vc0, dt, i, nd(rng)); }
    const i64 qs[4] = {W, D, W, 1}, cst[4] = {(i64)Hkv * C * D, (i64)C * D, D, 1}, tl[4] = {0, 0, 0, 1};
    const unsigned char *qp = P.data(), *kp = P.data() + (size_t)H * D * es, *vp = P.data() + (size_t)(H + Hkv) * D * es;
    AttnStrides st{};
    const i64 os[4] = {(i64)H * D, D, (i64)H * D, 1}; // o [B, H, 1, D] as [B, 1, H, D] memory
    for (int i = 0; i < 4; i++) { st.k[i] = st.v[i] = cst[i]; st.o[i] = os[i]; }
    const double scale = 1 / sqrt((double)D);
    const int vec = 1; // contiguous caches, D a multiple of 4 (the launcher's DecodeVectorLoads)
    std::vector<int> p32(pos.begin(), pos.end());
    std::vector<long long> p64(pos.begin(), pos.end());
    const void* pp = pdt == DT_I32 ? (const void*)p32.data() : (const void*)p64.data();
    // eager: every row at pos[0] (one cache length); keys seen p + 1; splits from them. Static: splits from C.
    const int p0 = pos[0], S = at ? C : p0 + 1, splits = rule_splits(Hkv, chunks, S, sms, min_keys);
    const unsigned grid = (unsigned)(B * Hkv * chunks * splits);
    // The reference: the two launches.
    auto kc1 = kc0, vc1 = vc0;
    std::vector<unsigned char> qrot((size_t)B * H * D * 4), o1((size_t)B * H * D * 4, 0xcd);
    {
        const i64 qr[4] = {(i64)H * D, D, D, 1}, sq[4] = {B, H, 1, half}, sk[4] = {B, Hkv, 1, half};
        const i64 nq = (i64)B * H * half, nk = (i64)B * Hkv * half;
        Layout LQ = dec_layout(sq, {qr, qs, tl, tl}), LK = dec_layout(sk, {cst, qs, tl, tl}), LV = dec_layout(sk, {cst, qs});
        if (at)
            launch(4, 64, [&] { dec::rope_kv_append_at(LQ, LK, LV, nq, nk, half, qrot.data(), 1, qp, 1, kc1.data(), 1, kp, 1, vc1.data(), 1, vp, 1,
                                                       cs.data(), sn.data(), tdt, 1, 1, dt, pp, pdt, H, Hkv, 1, C, D, D, D, D); });
        else
        {
            const size_t so = (size_t)p0 * D * es, to = (size_t)p0 * D * tes;
            launch(4, 64, [&] { dec::rope_kv_append(LQ, LK, LV, nq, nk, half, qrot.data(), 1, qp, 1, kc1.data() + so, 1, kp, 1, vc1.data() + so, 1, vp, 1,
                                                    cs.data() + to, sn.data() + to, tdt, 1, 1, dt); });
        }
        AttnStrides sr = st;
        for (int i = 0; i < 4; i++) sr.q[i] = qr[i];
        std::vector<float> part((size_t)grid * DEC_ROWS * (D + 2), NAN);
        launch(grid, DEC_THREADS, [&] {
            if (at) (bf ? dec::attention_decode_at_bf16 : dec::attention_decode_at_f32)(qrot.data(), kc1.data(), vc1.data(), o1.data(), nullptr, DT_F32, sr,
                                                                                   H, Hkv, 1, C, D, D, scale, vec, splits, min_keys, part.data(), g_tickets.data(), pp, pdt);
            else (bf ? dec::attention_decode_forward_bf16 : dec::attention_decode_forward_f32)(qrot.data(), kc1.data(), vc1.data(), o1.data(), nullptr, DT_F32,
                nullptr, DT_F32, sr, H, Hkv, 1, S, D, D, 1, p0, scale, vec, splits, min_keys, part.data(), g_tickets.data());
        });
    }
    // The fused launch, in three block orders, each from the caches as they were.
    bool all_same = true;
    for (int how = 0; how <= 2; how++)
    {
        auto kc2 = kc0, vc2 = vc0;
        std::vector<unsigned char> o2((size_t)B * H * D * 4, 0xab);
        std::vector<float> part((size_t)grid * DEC_ROWS * (D + 2), NAN);
        AttnStrides sf = st;
        for (int i = 0; i < 4; i++) sf.q[i] = qs[i];
        DecRope rp{kp, vp, cs.data(), sn.data(), {qs[0], qs[1], qs[2], qs[3]}, {qs[0], qs[1], qs[2], qs[3]}, 1, 1, at ? D : 0, at ? D : 0, tdt};
        if (!at) { rp.cos = cs.data() + (size_t)p0 * D * tes; rp.sin = sn.data() + (size_t)p0 * D * tes; }
        auto order = block_order(grid, how);
        launch(grid, DEC_THREADS, [&] {
            (bf ? dec::attention_decode_rope_bf16 : dec::attention_decode_rope_f32)(qp, kc2.data(), vc2.data(), o2.data(), sf, H, Hkv, S, D, at ? 0 : p0, scale, vec,
                                                                                 splits, min_keys, part.data(), g_tickets.data(), at ? pp : nullptr, pdt, rp);
        }, &order);
        CHECK(tickets_zero(), "%s: tickets left nonzero (order %d)", name, how);
        const size_t ob = (size_t)B * H * D * es, cb = (size_t)B * Hkv * C * D * es;
        bool so = memcmp(o1.data(), o2.data(), ob) == 0, sk = memcmp(kc1.data(), kc2.data(), cb) == 0, sv = memcmp(vc1.data(), vc2.data(), cb) == 0;
        CHECK(so, "%s: the output differs from the two launches' (block order %d)", name, how);
        CHECK(sk && sv, "%s: the caches differ from the two launches' (k %d, v %d; block order %d)", name, sk, sv, how);
        all_same = all_same && so && sk && sv;
        // Not vacuous: rows inside the cache were written (differ from before) and only they; o is finite there.
        for (int b = 0; b < B; b++)
        {
            const int p = at ? pos[b] : p0;
            for (int h = 0; h < Hkv; h++) for (int j = 0; j < C; j++)
            {
                const size_t r = (((size_t)b * Hkv + h) * C + j) * D * es;
                const bool changed = memcmp(kc2.data() + r, kc0.data() + r, D * es) != 0 || memcmp(vc2.data() + r, vc0.data() + r, D * es) != 0;
                CHECK(changed == (j == p), "%s: cache row b%d h%d j%d %s", name, b, h, j, j == p ? "not written" : "written");
            }
            for (int h = 0; h < H; h++)
            {
                const size_t at0 = ((size_t)b * H + h) * D;
                const double x = bf ? bf16_to_f32(((u16*)o2.data())[at0]) : ((float*)o2.data())[at0];
                CHECK(std::isfinite(x) == (p >= 0 && p < C), "%s: o b%d h%d is %g", name, b, h, x);
            }
        }
    }
    rope_cases++;
    printf("  %-66s P%d: %s\n", name, splits, all_same ? "bits equal (o, caches; 3 block orders)" : "DIFFER");
}

int main(int argc, char** argv)
{
    std::mt19937 rng(11);
    std::vector<Case> cases = {
        // dt, B, H, Hkv, T, S, D, Dv, causal, offset, masked, layout, splits
        {DT_BF16, 1, 7, 1, 1, 160, 128, 128, 1, 159, 0, 1, 1},   // the Qwen2 decode step: one row, GQA 7, KV cache layout
        {DT_BF16, 1, 7, 1, 1, 1000, 128, 128, 1, 999, 0, 1, 5},  // a long cache in splits
        {DT_F32, 1, 7, 1, 1, 160, 128, 128, 1, 159, 0, 0, 3},
        {DT_F32, 2, 2, 2, 3, 65, 64, 64, 1, 62, 1, 1, 1},        // mask with a hidden row, MHA
        {DT_BF16, 2, 2, 2, 3, 65, 64, 64, 1, 62, 1, 2, 2, DT_BF16}, // bf16 mask, scalar loads, splits
        {DT_F32, 1, 7, 1, 8, 64, 80, 80, 1, 56, 0, 1, 1},        // T 8: rows of several row chunks; D 80
        {DT_BF16, 1, 7, 1, 8, 63, 80, 80, 0, 0, 1, 0, 2},
        {DT_F32, 1, 2, 1, 5, 2, 128, 64, 0, 0, 0, 2, 3},          // Dv != D, splits past the keys
        {DT_BF16, 1, 2, 1, 1, 1, 64, 64, 1, 0, 0, 0, 1},          // one key
        {DT_F32, 1, 1, 1, 2, 1, 64, 64, 1, 0, 1, 1, 2},           // one key, the second row masked only by the mask
        {DT_BF16, 1, 7, 1, 4, 1000, 64, 64, 1, 3, 0, 1, 4},       // causal from 0 with few keys visible, long S
        {DT_F32, 1, 3, 3, 6, 160, 128, 128, 1, 154, 1, 2, 1},
        {DT_BF16, 1, 14, 2, 2, 64, 128, 128, 1, 62, 1, 1, 3},
        {DT_F32, 1, 7, 1, 7, 65, 64, 80, 1, 40, 0, 1, 1},         // Dv != D (80 > 64: the 128-dim instantiation)
        {DT_BF16, 2, 7, 1, 2, 100, 128, 128, 1, 98, 2, 1, 2},     // a mask per head (GQA rows of several heads a block)
        {DT_F32, 1, 4, 2, 3, 70, 64, 64, 0, 0, 2, 0, 1, DT_BF16},
    };
    // The launcher's choices for the Qwen2 step (CudaBackend.DecodeSplits, 132 SMs): 160 keys at 32 keys a range (5),
    // at 16 (10); 1000 keys with 33 ranges allowed (31 taken: the kernel's own rule from the keys and min_keys).
    Case qw{DT_BF16, 1, 7, 1, 1, 160, 128, 128, 1, 159, 0, 1, 5}; qw.min_keys = 32; cases.push_back(qw);
    qw.splits = 10; qw.min_keys = 16; cases.push_back(qw);
    qw.S = 1000; qw.offset = 999; qw.splits = 33; qw.min_keys = 32; cases.push_back(qw);
    qw.dt = DT_F32; qw.S = 161; qw.offset = 160; qw.splits = 132; qw.min_keys = 32; cases.push_back(qw); // 161 keys: ranges of 36, 36, 36, 36, 17
    // A seeded sweep over the rest of the grid: T 1..8, S, GQA, D, dtypes, offsets, masks, layouts, splits.
    const int Ts[] = {1, 2, 3, 4, 5, 6, 7, 8}, Ss[] = {1, 2, 63, 64, 65, 160, 1000}, Ds[] = {64, 80, 128};
    int sweep = argc > 1 ? atoi(argv[1]) : 24;
    std::mt19937 pick(5);
    for (int i = 0; i < sweep; i++)
    {
        Case c{};
        c.dt = i % 2 ? DT_BF16 : DT_F32;
        c.T = Ts[i % 8]; c.S = Ss[pick() % 7]; c.D = c.Dv = Ds[pick() % 3];
        bool gqa = pick() % 2; c.Hkv = gqa ? 1 : 2; c.H = gqa ? 7 : 2; c.B = c.S >= 1000 ? 1 : 1 + pick() % 2;
        c.causal = pick() % 3 != 0; c.offset = c.causal ? (int)(pick() % (c.S + 1)) : 0;
        c.masked = pick() % 3; c.mdt = pick() % 3 == 0 ? DT_BF16 : DT_F32;
        c.layout = pick() % 3; c.splits = 1 + pick() % 4;
        const int mks[] = {1, 8, 32}; c.min_keys = mks[pick() % 3];
        cases.push_back(c);
    }
    // "decode_test N rope": the fused rope cases only (run.sh runs everything)
    const bool rope_only = argc > 2 && std::string(argv[2]).rfind("rope", 0) == 0, quick = argc > 2 && std::string(argv[2]) == "rope-quick"; // quick: no 4097-key cases
    if (!rope_only) for (const auto& c : cases) run(c, rng);
    // dt, B, H, Hkv, T, capacity, D, positions, position dtype, SMs, min keys (static splits from the capacity, the
    // eager reference's from each row's keys)
    if (!rope_only)
    {
        run_at(DT_BF16, 1, 7, 1, 1, 256, 128, {159}, DT_I64, 132, 32, rng);      // the Qwen2 step: 8 ranges allowed, 5 taken
        run_at(DT_BF16, 1, 7, 1, 1, 1024, 128, {159}, DT_I32, 132, 16, rng);     // 64 allowed, 10 taken
        run_at(DT_F32, 2, 7, 1, 1, 300, 128, {5, 250}, DT_I64, 4, 8, rng);       // rows at different positions: 1 and 4 ranges
        run_at(DT_BF16, 2, 4, 2, 3, 100, 64, {0, 60}, DT_I32, 8, 4, rng);        // T 3 from position 0 (causal inside the step)
        run_at(DT_F32, 2, 2, 2, 8, 64, 80, {56, 10}, DT_I64, 6, 8, rng);         // T 8, D 80, one row filling the cache
        run_at(DT_BF16, 1, 14, 2, 2, 2000, 128, {1500}, DT_I64, 132, 32, rng);   // long: 33 ranges
        run_at(DT_BF16, 1, 7, 1, 1, 256, 128, {159}, DT_I64, 132, 128, rng);     // min keys 128: one range (the block writes o)
        run_at(DT_BF16, 3, 7, 1, 1, 256, 128, {256, 40, 265}, DT_I64, 132, 32, rng); // idle slots: at the capacity and 9 steps past it
        run_at(DT_F32, 2, 4, 2, 1, 64, 64, {64, 63}, DT_I32, 8, 1, rng);        // an idle row beside one at the last cache row
    }
    // attention_decode_rope_*: eager (host position, every row at it) and device positions; the 7B shape (28/4
    // heads, D 128) and 14/2 heads at D 64 (1.5B), bf16 and f32, f32 or dtype tables; keys seen 1, 31, 32, 33, 160
    // and 4097 (one range, ranges of 32 keys, 33 ranges: the rule with 132 SMs); positions at the last cache row and
    // one past the capacity (nothing written, NaN, as rope_kv_append_at); min keys 1 with 64 SMs cuts 10 keys into
    // 10 ranges of which 3 hold keys: the new key (9) in the third, empty ranges after it.
    for (int L : {1, 31, 32, 33, 160, 4097}) if (L < 4097 || !quick) run_rope(false, DT_BF16, DT_F32, 1, 28, 4, 128, L + 3, {L - 1}, DT_I64, 132, 32, rng);
    for (int L : {1, 33, 160}) run_rope(false, DT_F32, DT_F32, 2, 14, 2, 64, L, {L - 1}, DT_I64, 132, 32, rng);
    run_rope(false, DT_BF16, DT_BF16, 2, 14, 2, 64, 40, {32}, DT_I64, 132, 32, rng);
    run_rope(false, DT_F32, DT_F32, 1, 28, 4, 128, 40, {9}, DT_I64, 64, 1, rng);
    if (!quick) run_rope(true, DT_BF16, DT_F32, 1, 28, 4, 128, 4097, {4096}, DT_I64, 132, 32, rng);
    run_rope(true, DT_BF16, DT_F32, 2, 28, 4, 128, 300, {159, 299}, DT_I64, 132, 32, rng);
    run_rope(true, DT_F32, DT_F32, 3, 14, 2, 64, 33, {0, 31, 32}, DT_I32, 132, 32, rng);
    run_rope(true, DT_BF16, DT_BF16, 2, 14, 2, 64, 64, {30, 63}, DT_I32, 132, 32, rng);
    run_rope(true, DT_BF16, DT_F32, 2, 28, 4, 128, 160, {160, 31}, DT_I64, 132, 32, rng);
    run_rope(true, DT_F32, DT_F32, 1, 28, 4, 128, 40, {9}, DT_I64, 64, 1, rng);
    printf("%zu cases; worst |o - ref| f32 %.2e, bf16 %.2e; worst |lse - ref| %.2e; %d rows with no key (NaN, -inf)\n",
           cases.size(), worst_f32, worst_bf16, worst_lse, nan_rows);
    printf("%d device-position cases (bits equal to the host-position kernels)\n", at_cases);
    printf("%d fused rope + append + attention cases (bits equal to the two launches)\n", rope_cases);
    printf("%s (%d checks, %d failed)\n", fails ? "FAILED" : "ok", checks, fails);
    return fails ? 1 : 0;
}
