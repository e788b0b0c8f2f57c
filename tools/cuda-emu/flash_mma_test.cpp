// The tensor-core flash-attention forward (attention_mma_forward_d{64,80,128} in native/attention_mma.cu), run under the mma.sync /
// ldmatrix emulation (emu_mma.h), against a float64 reference: bf16 q/k/v/o, head dims 64, 80 and 128, causal with
// and without a query offset (prefill after a cache, one-token decode), grouped-query heads, an additive f32 mask
// broadcast over heads with padded keys, a row that sees no key at all (NaN output, -inf log-sum-exp), query and key
// lengths that are not multiples of the 64-row/64-key tiles, several key tiles (the online softmax's rescaling),
// an output laid out as [B, T, H, D] (Tensor.ScaledDotProductAttention's layout), and the log-sum-exp; then the
// tensor-core backward (attention_mma_backward_dq of attention_mma_backward.cu, then the dK/dV kernel of
// attention_mma_dkdv2.cu with 1, 3 and a split per query head) from the kernel's own o and lse. Also the 128-row forward
// kernels (_m128_d64/_d128, the default for those head dims), bit for bit the same as the per-head-dim ones.
#include "emu_mma.h"
#include "attention_reference.h"
#include "prelude.cuh"
namespace am {
#include "attention_mma.cu"
#include "attention_mma_backward.cu"
#include "attention_mma_dkdv2.cu"
}
#include <algorithm>
#include <random>
#include <vector>
int fails = 0, checks = 0;
#define CHECK(c, ...) do { checks++; if (!(c)) { if (fails++ < 20) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } } while (0)

struct Case { const char* name; int B, H, Hkv, T, S, D, causal, offset, masked, backward; };

// The backward kernels (attention_mma_backward_dq, then dK/dV) from the forward kernel's own o and lse, against float64
// formulas: delta = rowsum(dO ⊙ o), dq, and dk, dv summed over the grouped query heads; rows with no visible key
// contribute nothing.
static void backward(const Case& c, std::mt19937& rng, const AttnStrides& st, const std::vector<float>& q, const std::vector<float>& k,
                     const std::vector<float>& v, const std::vector<u16>& qh, const std::vector<u16>& kh, const std::vector<u16>& vh,
                     const std::vector<u16>& oh, const std::vector<float>& lse, const std::vector<float>& mask, double scale)
{
    std::normal_distribution<float> nd;
    const int B = c.B, H = c.H, Hkv = c.Hkv, T = c.T, S = c.S, D = c.D;
    size_t on = oh.size(), qn = q.size(), kn = k.size();
    std::vector<float> dout(on), oref(on), delta((size_t)B * H * T, 12345.0f); std::vector<u16> douth(on);
    for (size_t i = 0; i < on; i++) { douth[i] = f32_to_bf16(nd(rng)); dout[i] = bf16_to_f32(douth[i]); oref[i] = bf16_to_f32(oh[i]); }
    std::vector<u16> dqh(qn, 0x7fc1);
    FaBwdStrides bs{}; bs.a = st;
    for (int i = 0; i < 4; i++) { bs.dout[i] = st.o[i]; bs.dq[i] = st.q[i]; bs.dk[i] = st.k[i]; bs.dv[i] = st.v[i]; }
    const float* mp = c.masked ? mask.data() : nullptr;
    unsigned grid = (unsigned)(B * H * ((T + MMA_BM - 1) / MMA_BM)), grid2 = (unsigned)(B * Hkv * ((S + MMA_BN - 1) / MMA_BN));
    launch(grid, MMA_THREADS, [&] { am::attention_mma_backward_dq(qh.data(), kh.data(), vh.data(), oh.data(), douth.data(), dqh.data(), DT_BF16, mp, DT_F32,
                                                                  lse.data(), delta.data(), bs, B, H, Hkv, T, S, D, D, c.causal, c.offset, scale); });
    std::vector<double> rdq(qn, 0), rdk(kn, 0), rdv(kn, 0);
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++)
    {
        int hk = h / (H / Hkv);
        const float* qrow = &q[(((size_t)b * H + h) * T + t) * D];
        const float* drow = &dout[(((size_t)b * T + t) * H + h) * D];
        const float* orow = &oref[(((size_t)b * T + t) * H + h) * D];
        std::vector<double> p(S, 0), dp(S, 0); double m = -INFINITY;
        for (int j = 0; j < S; j++)
        {
            if (c.causal && j > c.offset + t) { p[j] = -INFINITY; continue; }
            double sc = 0; for (int d = 0; d < D; d++) sc += (double)qrow[d] * k[(((size_t)b * Hkv + hk) * S + j) * D + d];
            p[j] = sc * scale + (c.masked ? mask[((size_t)b * T + t) * S + j] : 0); m = std::max(m, p[j]);
        }
        double dl = 0; // delta as the kernel defines it: dO·o with the stored (bf16) o
        for (int d = 0; d < D; d++) dl += (double)drow[d] * orow[d];
        if (m == -INFINITY) continue; // no visible key: no gradient (o is NaN; delta is not used)
        CHECK(fabs(delta[((size_t)b * H + h) * T + t] - dl) < 1e-4 * (1 + fabs(dl)), "%s delta b%d h%d t%d: %g vs %g", c.name, b, h, t, delta[((size_t)b * H + h) * T + t], dl);
        double z = 0; for (int j = 0; j < S; j++) z += p[j] > -INFINITY ? exp(p[j] - m) : 0;
        double pdp = 0;
        for (int j = 0; j < S; j++)
        {
            p[j] = p[j] > -INFINITY ? exp(p[j] - m) / z : 0;
            for (int d = 0; d < D; d++) dp[j] += (double)drow[d] * v[(((size_t)b * Hkv + hk) * S + j) * D + d];
            pdp += p[j] * dp[j];
        }
        for (int j = 0; j < S; j++)
        {
            if (p[j] == 0) continue;
            double dsc = p[j] * (dp[j] - dl) * scale;
            for (int d = 0; d < D; d++) { rdq[(((size_t)b * H + h) * T + t) * D + d] += dsc * k[(((size_t)b * Hkv + hk) * S + j) * D + d]; rdk[(((size_t)b * Hkv + hk) * S + j) * D + d] += dsc * qrow[d]; }
            for (int d = 0; d < D; d++) rdv[(((size_t)b * Hkv + hk) * S + j) * D + d] += p[j] * drow[d];
        }
    }
    auto cmp = [&](const char* name, const char* what, const std::vector<double>& want, const std::vector<u16>& hh) {
        double w = 0, big = 0; for (double x : want) big = std::max(big, fabs(x));
        for (size_t i = 0; i < want.size(); i++) { double got = bf16_to_f32(hh[i]); w = std::max(w, fabs(got - want[i]));
            CHECK(fabs(got - want[i]) < 2e-2 * (0.05 * big + fabs(want[i])) + 2e-3, "%s %s[%zu]: %g vs %g", name, what, i, got, want[i]); }
        printf("  %-34s worst |%s - ref| %.2e (max |ref| %.2g)\n", name, what, w, big); };
    cmp(c.name, "dq", rdq, dqh);
    // The dK/dV kernel (attention_mma_dkdv2.cu): one split (dk, dv written by the blocks), a split per query head (the
    // launcher's choice for grouped heads: float32 partials, then the reduce kernel), and 3 splits, whose shares of the
    // (query head, query tile) pairs start and end inside a head.
    std::vector<int> splitting = {1, 3};
    if (H / Hkv > 1) splitting.push_back(H / Hkv);
    for (int splits : splitting)
    {
        std::vector<u16> dk2(kn, 0x7fc1), dv2(kn, 0x7fc1);
        size_t plane = (size_t)B * Hkv * S * D;
        std::vector<float> part(splits > 1 ? 2 * splits * plane : 0, NAN); // NaN: a partial nobody wrote shows
        float* pp = splits > 1 ? part.data() : nullptr;
        auto kernel = D == 64 ? am::attention_mma_backward_dkdv2_d64 : D == 80 ? am::attention_mma_backward_dkdv2_d80 : am::attention_mma_backward_dkdv2_d128;
        launch(grid2 * splits, MMA_THREADS, [&] { kernel(qh.data(), kh.data(), vh.data(), douth.data(), dk2.data(), dv2.data(), pp, mp, DT_F32,
                                                         lse.data(), delta.data(), bs, B, H, Hkv, T, S, c.causal, c.offset, scale, splits); });
        if (splits > 1)
            launch(3, 64, [&] { am::attention_mma_backward_dkdv2_reduce(pp, dk2.data(), dv2.data(), bs, B, Hkv, S, D, splits, scale); });
        char name[64];
        snprintf(name, sizeof name, "%s split %d", c.name, splits);
        cmp(name, "dk", rdk, dk2); cmp(name, "dv", rdv, dv2);
    }
}

static void run(const Case& c, std::mt19937& rng)
{
    std::normal_distribution<float> nd;
    const int B = c.B, H = c.H, Hkv = c.Hkv, T = c.T, S = c.S, D = c.D;
    auto fill = [&](std::vector<float>& f, std::vector<u16>& h, size_t n) { f.resize(n); h.resize(n);
        for (size_t i = 0; i < n; i++) { h[i] = f32_to_bf16(nd(rng)); f[i] = bf16_to_f32(h[i]); } };
    std::vector<float> q, k, v; std::vector<u16> qh, kh, vh;
    fill(q, qh, (size_t)B * H * T * D); fill(k, kh, (size_t)B * Hkv * S * D); fill(v, vh, (size_t)B * Hkv * S * D);
    // additive mask [B, 1, T, S]: random biases, the last 9 keys of batch 1 padded (-inf), and in batch 1 query row 1
    // hidden from every key
    std::vector<float> mask((size_t)B * T * S);
    for (int b = 0; b < B; b++) for (int t = 0; t < T; t++) for (int j = 0; j < S; j++)
        mask[((size_t)b * T + t) * S + j] = b == 1 && (j >= S - 9 || t == 1) ? -INFINITY : 0.5f * nd(rng);
    size_t on = (size_t)B * T * H * D;
    std::vector<u16> oh(on, 0x7fc1); std::vector<float> lse((size_t)B * H * T, 12345.0f);
    AttnStrides st{};
    i64 qs[4] = {(i64)H * T * D, (i64)T * D, D, 1}, ks[4] = {(i64)Hkv * S * D, (i64)S * D, D, 1};
    i64 os[4] = {(i64)T * H * D, D, (i64)H * D, 1}, ms[4] = {(i64)T * S, 0, S, 1}, ls[3] = {(i64)H * T, T, 1};
    for (int i = 0; i < 4; i++) { st.q[i] = qs[i]; st.k[i] = ks[i]; st.v[i] = ks[i]; st.o[i] = os[i]; st.m[i] = c.masked ? ms[i] : 0; }
    for (int i = 0; i < 3; i++) st.l[i] = ls[i];
    double scale = 1 / sqrt((double)D);
    unsigned grid = (unsigned)(B * H * ((T + MMA_BM - 1) / MMA_BM));
    // The per-head-dim kernel (attention_mma_forward_d64/_d80/_d128), checked against float64 below.
    auto fwd = D == 64 ? am::attention_mma_forward_d64 : D == 80 ? am::attention_mma_forward_d80 : am::attention_mma_forward_d128;
    launch(grid, MMA_THREADS, [&] { fwd(qh.data(), kh.data(), vh.data(), oh.data(), DT_BF16, c.masked ? mask.data() : nullptr, DT_F32,
                                        lse.data(), DT_F32, st, B, H, Hkv, T, S, D, D, c.causal, c.offset, scale); });
    if (D != 80)
    {
        // attention_mma_forward_m128_d64/_d128: 128 query rows per block (two m16 tiles per warp, Q from shared memory);
        // each row's arithmetic is that of the 64-row kernels, so bit for bit the same output and log-sum-exp.
        std::vector<u16> oh3(on, 0x7fc1); std::vector<float> lse3((size_t)B * H * T, 12345.0f);
        auto fwd128 = D == 64 ? am::attention_mma_forward_m128_d64 : am::attention_mma_forward_m128_d128;
        unsigned grid128 = (unsigned)(B * H * ((T + 2 * MMA_BM - 1) / (2 * MMA_BM)));
        launch(grid128, MMA_THREADS, [&] { fwd128(qh.data(), kh.data(), vh.data(), oh3.data(), DT_BF16, c.masked ? mask.data() : nullptr, DT_F32,
                                               lse3.data(), DT_F32, st, B, H, Hkv, T, S, D, D, c.causal, c.offset, scale); });
        CHECK(memcmp(oh3.data(), oh.data(), on * 2) == 0, "%s: attention_mma_forward_m128_d%d's output differs from attention_mma_forward_d%d's", c.name, D, D);
        CHECK(memcmp(lse3.data(), lse.data(), lse.size() * 4) == 0, "%s: attention_mma_forward_m128_d%d's lse differs", c.name, D);
        // Q at an address that is not 16-byte aligned: the plain-load path for Q instead of cp.async, same results.
        std::vector<u16> qshift(qh.size() + 1); std::copy(qh.begin(), qh.end(), qshift.begin() + 1);
        std::fill(oh3.begin(), oh3.end(), 0x7fc1); std::fill(lse3.begin(), lse3.end(), 12345.0f);
        launch(grid128, MMA_THREADS, [&] { fwd128(qshift.data() + 1, kh.data(), vh.data(), oh3.data(), DT_BF16, c.masked ? mask.data() : nullptr, DT_F32,
                                               lse3.data(), DT_F32, st, B, H, Hkv, T, S, D, D, c.causal, c.offset, scale); });
        CHECK(memcmp(oh3.data(), oh.data(), on * 2) == 0, "%s: attention_mma_forward_m128_d%d's output differs for an unaligned q", c.name, D);
        CHECK(memcmp(lse3.data(), lse.data(), lse.size() * 4) == 0, "%s: attention_mma_forward_m128_d%d's lse differs for an unaligned q", c.name, D);
    }
    double worst = 0;
    int empty = 0;
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++)
    {
        int hk = h / (H / Hkv);
        std::vector<double> sc;
        double m = attention_row_scores(sc, S, c.causal, c.offset, t, scale,
            [&](int j) { double s = 0; for (int d = 0; d < D; d++) s += (double)q[(((size_t)b * H + h) * T + t) * D + d] * k[(((size_t)b * Hkv + hk) * S + j) * D + d]; return s; },
            [&](int j) { return c.masked ? (double)mask[((size_t)b * T + t) * S + j] : 0.0; });
        double got_l = lse[((size_t)b * H + h) * T + t];
        if (m == -INFINITY) // no visible key: -inf log-sum-exp and NaN outputs, as the composite
        {
            empty++;
            CHECK(got_l == -INFINITY, "%s lse of an empty row b%d h%d t%d: %g", c.name, b, h, t, got_l);
            for (int d = 0; d < D; d++) CHECK(std::isnan(bf16_to_f32(oh[(((size_t)b * T + t) * H + h) * D + d])), "%s o of an empty row b%d h%d t%d d%d not NaN", c.name, b, h, t, d);
            continue;
        }
        double z = 0; for (int j = 0; j < S; j++) if (sc[j] > -INFINITY) z += exp(sc[j] - m);
        CHECK(fabs(got_l - (m + log(z))) < 1e-4 * (1 + fabs(m)), "%s lse b%d h%d t%d: %g vs %g", c.name, b, h, t, got_l, m + log(z));
        for (int d = 0; d < D; d++)
        {
            double want = 0; for (int j = 0; j < S; j++) if (sc[j] > -INFINITY) want += exp(sc[j] - m) / z * v[(((size_t)b * Hkv + hk) * S + j) * D + d];
            double got = bf16_to_f32(oh[(((size_t)b * T + t) * H + h) * D + d]);
            worst = std::max(worst, fabs(got - want));
            // the output's bf16 rounding (2^-9 relative) plus P rounded to bf16 for the second product
            CHECK(fabs(got - want) < 4e-3 * (1 + fabs(want)), "%s o b%d h%d t%d d%d: %g vs %g", c.name, b, h, t, d, got, want);
        }
    }
    printf("  %-34s worst |o - ref| %.2e%s\n", c.name, worst, empty ? " (+ rows with no visible key)" : "");
    if (c.backward) backward(c, rng, st, q, k, v, qh, kh, vh, oh, lse, mask, scale);
}

int main(int argc, char** argv)
{
    // "early": every cp.async done when issued (emu_mma.h), the earliest a GPU could land it (a stage refilled while a
    // warp still reads it, or read before its copy, then shows as wrong bits).
    g_cp_async_early = argc > 1 && std::string(argv[1]) == "early";
    std::mt19937 rng(7);
    const Case cases[] = {
        {"D64 causal GQA T70", 1, 4, 2, 70, 70, 64, 1, 0, 0, 1},
        {"D128 causal offset5 mask", 2, 2, 1, 67, 72, 128, 1, 5, 1, 1},
        {"D80 full mask GQA S45", 2, 4, 2, 33, 45, 80, 0, 0, 1, 1},
        {"D128 decode T1 offset40", 1, 4, 1, 1, 41, 128, 1, 40, 0, 0},
        {"D64 causal offset3 mask", 2, 2, 2, 65, 68, 64, 1, 3, 1, 1},
        {"D128 causal GQA T130", 1, 4, 2, 130, 130, 128, 1, 0, 0, 1},
        {"D64 full T20 S150 mask", 2, 2, 1, 20, 150, 64, 0, 0, 1, 1},
        {"D128 full T70 S188 no mask", 1, 2, 1, 70, 188, 128, 0, 0, 0, 0},
        {"D64 causal offset62 T70 S132", 1, 2, 1, 70, 132, 64, 1, 62, 0, 1},
        {"D128 full T70 S130 no mask", 1, 2, 2, 70, 130, 128, 0, 0, 0, 1},
        {"D64 causal GQA7 T40", 1, 7, 1, 40, 40, 64, 1, 0, 0, 1},
        {"D128 causal GQA mask offset30 T200", 2, 2, 1, 200, 230, 128, 1, 30, 1, 0}, // two 128-row blocks, the second ragged
    };
    for (const auto& c : cases) run(c, rng);
    printf("%s (%d checks, %d failed)\n", fails ? "FAILED" : "ok", checks, fails);
    return fails ? 1 : 0;
}
