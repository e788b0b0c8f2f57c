// The tiled flash-attention forward (attention_flash_forward in native/attention.cu) against a float64 reference:
// causal with and without a query offset, grouped-query heads, an additive mask broadcast over heads, head dims
// 64, 80 and 128 (v dims differing from q/k dims), f32 and bf16, lengths that are not multiples of the tiles,
// an output laid out as [B, T, H, Dv] (the layout Tensor.ScaledDotProductAttention gives), and the log-sum-exp;
// then the backward kernels (dq with delta, dk/dv summed over the grouped heads) from the kernel's own o and lse.
#include "emu_threads.h"
#include "attention_reference.h"
#include "prelude.cuh"
namespace at {
#include "attention.cu"
}
#include <algorithm>
#include <random>
int fails = 0, checks = 0;
#define CHECK(c, ...) do { checks++; if (!(c)) { if (fails++ < 20) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } } while (0)

struct Case { const char* name; int dt, B, H, Hkv, T, S, D, Dv, causal, offset, masked, backward; };

static void run(const Case& c, std::mt19937& rng)
{
    std::normal_distribution<float> nd;
    const int B = c.B, H = c.H, Hkv = c.Hkv, T = c.T, S = c.S, D = c.D, Dv = c.Dv;
    const bool bf = c.dt == DT_BF16;
    // values as the kernel sees them (bf16-rounded when bf16), kept as float for the reference
    auto fill = [&](std::vector<float>& f, std::vector<u16>& h, size_t n) { f.resize(n); h.resize(n);
        for (size_t i = 0; i < n; i++) { float x = nd(rng); if (bf) { h[i] = f32_to_bf16(x); x = bf16_to_f32(h[i]); } f[i] = x; } };
    std::vector<float> q, k, v; std::vector<u16> qh, kh, vh;
    fill(q, qh, (size_t)B * H * T * D); fill(k, kh, (size_t)B * Hkv * S * D); fill(v, vh, (size_t)B * Hkv * S * Dv);
    // additive mask [B, 1, T, S] broadcast over heads: padding (-inf) on a few trailing keys of batch 1, random biases
    std::vector<float> mask((size_t)B * T * S);
    for (int b = 0; b < B; b++) for (int t = 0; t < T; t++) for (int j = 0; j < S; j++)
        mask[((size_t)b * T + t) * S + j] = b == 1 && j >= S - 9 ? -INFINITY : 0.5f * nd(rng);
    size_t on = (size_t)B * T * H * Dv;
    std::vector<float> o(on, 12345.0f), lse((size_t)B * H * T, 12345.0f); std::vector<u16> oh(on, 0x7fc1);
    AttnStrides st{};
    i64 qs[4] = {(i64)H * T * D, (i64)T * D, D, 1}, ks[4] = {(i64)Hkv * S * D, (i64)S * D, D, 1}, vs[4] = {(i64)Hkv * S * Dv, (i64)S * Dv, Dv, 1};
    i64 os[4] = {(i64)T * H * Dv, Dv, (i64)H * Dv, 1}, ms[4] = {(i64)T * S, 0, S, 1}, ls[3] = {(i64)H * T, T, 1};
    for (int i = 0; i < 4; i++) { st.q[i] = qs[i]; st.k[i] = ks[i]; st.v[i] = vs[i]; st.o[i] = os[i]; st.m[i] = c.masked ? ms[i] : 0; }
    for (int i = 0; i < 3; i++) st.l[i] = ls[i];
    const void* qp = bf ? (const void*)qh.data() : q.data(); const void* kp = bf ? (const void*)kh.data() : k.data();
    const void* vp = bf ? (const void*)vh.data() : v.data(); void* op = bf ? (void*)oh.data() : o.data();
    double scale = 1 / sqrt((double)D);
    unsigned grid = (unsigned)(B * H * ((T + FA_BM - 1) / FA_BM));
    launch(grid, FA_THREADS, [&] { at::attention_flash_forward(qp, kp, vp, op, c.dt, c.masked ? mask.data() : nullptr, DT_F32, lse.data(), DT_F32,
                                                               st, B, H, Hkv, T, S, D, Dv, c.causal, c.offset, scale); });
    double worst = 0;
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++)
    {
        int hk = h / (H / Hkv);
        std::vector<double> sc;
        double m = attention_row_scores(sc, S, c.causal, c.offset, t, scale,
            [&](int j) { double s = 0; for (int d = 0; d < D; d++) s += (double)q[(((size_t)b * H + h) * T + t) * D + d] * k[(((size_t)b * Hkv + hk) * S + j) * D + d]; return s; },
            [&](int j) { return c.masked ? (double)mask[((size_t)b * T + t) * S + j] : 0.0; });
        double z = 0; for (int j = 0; j < S; j++) if (sc[j] > -INFINITY) z += exp(sc[j] - m);
        double got_l = lse[((size_t)b * H + h) * T + t];
        CHECK(fabs(got_l - (m + log(z))) < 1e-4 * (1 + fabs(m)), "%s lse b%d h%d t%d: %g vs %g", c.name, b, h, t, got_l, m + log(z));
        for (int d = 0; d < Dv; d++)
        {
            double want = 0; for (int j = 0; j < S; j++) if (sc[j] > -INFINITY) want += exp(sc[j] - m) / z * v[(((size_t)b * Hkv + hk) * S + j) * Dv + d];
            size_t oi = (((size_t)b * T + t) * H + h) * Dv + d;
            double got = bf ? bf16_to_f32(oh[oi]) : o[oi];
            double tol = bf ? 4e-3 * (1 + fabs(want)) : 2e-5 * (1 + fabs(want)); // bf16: the output's rounding (2^-9 relative) and more
            worst = std::max(worst, fabs(got - want));
            CHECK(fabs(got - want) < tol, "%s o b%d h%d t%d d%d: %g vs %g", c.name, b, h, t, d, got, want);
        }
    }
    printf("  %-34s worst |o - ref| %.2e\n", c.name, worst);
    if (!c.backward) return;
    // backward from the kernel's own o and lse: dq, then dk and dv, against float64 formulas
    std::vector<float> dout(on), oref(on), delta((size_t)B * H * T, 12345.0f); std::vector<u16> douth(on);
    for (size_t i = 0; i < on; i++) { float x = nd(rng); if (bf) { douth[i] = f32_to_bf16(x); x = bf16_to_f32(douth[i]); } dout[i] = x; oref[i] = bf ? bf16_to_f32(oh[i]) : o[i]; }
    size_t qn = (size_t)B * H * T * D, kn = (size_t)B * Hkv * S * D, vn = (size_t)B * Hkv * S * Dv;
    std::vector<float> dq(qn, 12345.0f), dk(kn, 12345.0f), dv(vn, 12345.0f); std::vector<u16> dqh(qn, 0x7fc1), dkh(kn, 0x7fc1), dvh(vn, 0x7fc1);
    FaBwdStrides bs{}; bs.a = st;
    for (int i = 0; i < 4; i++) { bs.dout[i] = os[i]; bs.dq[i] = qs[i]; bs.dk[i] = ks[i]; bs.dv[i] = vs[i]; }
    const void* dop = bf ? (const void*)douth.data() : dout.data();
    void* dqp = bf ? (void*)dqh.data() : dq.data(); void* dkp = bf ? (void*)dkh.data() : dk.data(); void* dvp = bf ? (void*)dvh.data() : dv.data();
    launch(grid, FA_THREADS, [&] { at::attention_flash_backward_dq(qp, kp, vp, op, dop, dqp, c.dt, c.masked ? mask.data() : nullptr, DT_F32, lse.data(), delta.data(),
                                                                   bs, B, H, Hkv, T, S, D, Dv, c.causal, c.offset, scale); });
    unsigned grid2 = (unsigned)(B * Hkv * ((S + FA_BM - 1) / FA_BM));
    launch(grid2, FA_THREADS, [&] { at::attention_flash_backward_dkdv(qp, kp, vp, dop, dkp, dvp, c.dt, c.masked ? mask.data() : nullptr, DT_F32, lse.data(), delta.data(),
                                                                      bs, B, H, Hkv, T, S, D, Dv, c.causal, c.offset, scale); });
    std::vector<double> rdq(qn, 0), rdk(kn, 0), rdv(vn, 0);
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++)
    {
        int hk = h / (H / Hkv);
        const float* qrow = &q[(((size_t)b * H + h) * T + t) * D];
        const float* drow = &dout[(((size_t)b * T + t) * H + h) * Dv];
        std::vector<double> p(S, 0), dp(S, 0); double m = -INFINITY;
        for (int j = 0; j < S; j++)
        {
            if (c.causal && j > c.offset + t) { p[j] = -INFINITY; continue; }
            double s = 0; for (int d = 0; d < D; d++) s += (double)qrow[d] * k[(((size_t)b * Hkv + hk) * S + j) * D + d];
            p[j] = s * scale + (c.masked ? mask[((size_t)b * T + t) * S + j] : 0); m = std::max(m, p[j]);
        }
        double z = 0; for (int j = 0; j < S; j++) z += p[j] > -INFINITY ? exp(p[j] - m) : 0;
        double dl = 0;
        for (int j = 0; j < S; j++)
        {
            p[j] = p[j] > -INFINITY ? exp(p[j] - m) / z : 0;
            for (int d = 0; d < Dv; d++) dp[j] += (double)drow[d] * v[(((size_t)b * Hkv + hk) * S + j) * Dv + d];
            dl += p[j] * dp[j];
        }
        CHECK(fabs(delta[((size_t)b * H + h) * T + t] - dl) < (bf ? 2e-2 : 1e-4) * (1 + fabs(dl)), "%s delta b%d h%d t%d: %g vs %g", c.name, b, h, t, delta[((size_t)b * H + h) * T + t], dl);
        for (int j = 0; j < S; j++)
        {
            if (p[j] == 0) continue;
            double dsc = p[j] * (dp[j] - dl) * scale;
            for (int d = 0; d < D; d++) { rdq[(((size_t)b * H + h) * T + t) * D + d] += dsc * k[(((size_t)b * Hkv + hk) * S + j) * D + d]; rdk[(((size_t)b * Hkv + hk) * S + j) * D + d] += dsc * qrow[d]; }
            for (int d = 0; d < Dv; d++) rdv[(((size_t)b * Hkv + hk) * S + j) * Dv + d] += p[j] * drow[d];
        }
    }
    auto cmp = [&](const char* what, const std::vector<double>& want, const std::vector<float>& f, const std::vector<u16>& hh) {
        double w = 0, big = 0; for (double x : want) big = std::max(big, fabs(x));
        for (size_t i = 0; i < want.size(); i++) { double got = bf ? bf16_to_f32(hh[i]) : f[i]; w = std::max(w, fabs(got - want[i]));
            CHECK(fabs(got - want[i]) < (bf ? 2e-2 * (0.05 * big + fabs(want[i])) + 2e-3 : 1e-5 * (1 + big)), "%s %s[%zu]: %g vs %g", c.name, what, i, got, want[i]); }
        printf("  %-34s worst |%s - ref| %.2e (max |ref| %.2g)\n", c.name, what, w, big); };
    cmp("dq", rdq, dq, dqh); cmp("dk", rdk, dk, dkh); cmp("dv", rdv, dv, dvh);
}

int main()
{
    std::mt19937 rng(7);
    const Case cases[] = {
        {"f32 D64 causal GQA T70", DT_F32, 1, 4, 2, 70, 70, 64, 64, 1, 0, 0, 1},
        {"f32 D128 causal offset5 mask", DT_F32, 2, 2, 1, 67, 72, 128, 128, 1, 5, 1, 1},
        {"f32 D80/Dv64 full mask GQA", DT_F32, 2, 4, 2, 33, 45, 80, 64, 0, 0, 1, 1},
        {"f32 D128 decode T1 offset40", DT_F32, 1, 4, 1, 1, 41, 128, 128, 1, 40, 0, 0},
        {"bf16 D64 causal offset3 mask", DT_BF16, 2, 2, 2, 65, 68, 64, 64, 1, 3, 1, 1},
        {"bf16 D128 causal GQA T130", DT_BF16, 1, 4, 2, 130, 130, 128, 128, 1, 0, 0, 0},
    };
    for (const auto& c : cases) run(c, rng);
    printf("%s (%d checks, %d failed)\n", fails ? "FAILED" : "ok", checks, fails);
    return fails ? 1 : 0;
}
