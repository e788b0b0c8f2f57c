#include <initializer_list>
#include <vector>
#include <cstring>
#include "emu_serial.h"
#include "elementwise.cu"
#undef GRID_STRIDE_LOOP
#define GRID_STRIDE_LOOP(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)
namespace rope_ns {
#include "rope.cu"
}
namespace idx_ns {
#include "indexing.cu"
}
namespace adam_ns {
#include "adamw.cu"
}
int fails = 0, ropeCases = 0;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)
Layout make(int rank, const i64* size, int ops, const i64 strides[][8]) { Layout L{}; L.rank = rank; for (int d = 0; d < rank; d++) { L.size[d] = size[d]; for (int k = 0; k < ops; k++) L.stride[k][d] = strides[k][d]; } return L; }
int main()
{
    // bf16 rounding
    CHECK(f32_to_bf16(1.0f) == 0x3F80, "1.0");
    CHECK(f32_to_bf16(1.00390625f) == 0x3F80, "tie to even down %x", f32_to_bf16(1.00390625f));
    CHECK(f32_to_bf16(1.01171875f) == 0x3F82, "tie to even up %x", f32_to_bf16(1.01171875f));
    CHECK(f32_to_bf16(1.005f) == 0x3F81, "above tie");
    CHECK(f32_to_bf16(-2.0f) == 0xC000, "-2");
    CHECK(f32_to_bf16(INFINITY) == 0x7F80, "inf");
    CHECK(f32_to_bf16(3.4028235e38f) == 0x7F80, "max rounds to inf");
    CHECK((f32_to_bf16(NAN) & 0x7F80) == 0x7F80 && (f32_to_bf16(NAN) & 0x7F), "nan");
    CHECK(bf16_to_f32(0x3F82) == 1.015625f, "back");
    // binary add with a broadcast row b[4] over y[3,4], a transposed ([4,3] storage)
    float a[12], b[4], y[12];
    for (int i = 0; i < 12; i++) a[i] = i * 0.5f;
    for (int j = 0; j < 4; j++) b[j] = 100.0f * j;
    i64 size[2] = {3, 4}; i64 st[3][8] = {{4, 1}, {1, 3}, {0, 1}};
    Layout L = make(2, size, 3, st);
    launch(2, 4, [&] { binary(L, 12, B_ADD, y, DT_F32, a, b, DT_F32); });
    for (int i = 0; i < 3; i++) for (int j = 0; j < 4; j++) CHECK(y[i * 4 + j] == a[j * 3 + i] + b[j], "add %d %d", i, j);
    // comparisons to bool, max with NaN
    unsigned char yb[12];
    launch(1, 8, [&] { binary(L, 12, B_GT, yb, DT_BOOL, a, b, DT_F32); });
    for (int i = 0; i < 3; i++) for (int j = 0; j < 4; j++) CHECK(yb[i * 4 + j] == (a[j * 3 + i] > b[j]), "gt");
    // copy_cast f32 -> bf16 transposed, and bf16 -> f64
    u16 h[12]; double d[12];
    i64 st2[2][8] = {{4, 1}, {1, 3}};
    Layout L2 = make(2, size, 2, st2);
    launch(3, 2, [&] { copy_cast(L2, 12, h, DT_BF16, a, DT_F32); });
    for (int i = 0; i < 3; i++) for (int j = 0; j < 4; j++) CHECK(h[i * 4 + j] == f32_to_bf16(a[j * 3 + i]), "cast");
    i64 s1[1] = {12}; i64 st3[2][8] = {{1}, {1}};
    Layout L3 = make(1, s1, 2, st3);
    launch(1, 32, [&] { copy_cast(L3, 12, d, DT_F64, h, DT_BF16); });
    for (int i = 0; i < 12; i++) CHECK(d[i] == bf16_to_f32(h[i]), "bf16->f64");
    long long iv[12];
    launch(1, 32, [&] { copy_cast(L3, 12, iv, DT_I64, a, DT_F32); });
    for (int i = 0; i < 12; i++) CHECK(iv[i] == (long long)a[i], "f32->i64");
    // Out-of-range floats and NaN into integers as the CPU backend gives them (.NET's CreateTruncating: toward zero,
    // saturated, NaN 0; values printed by the CPU's Tensor.To), and int64 into uint8/int32 wrapping.
    { const int n = 7; i64 s7[1] = {n}; i64 st7[2][8] = {{1}, {1}}; Layout L7 = make(1, s7, 2, st7);
      float fx[n] = {300.f, -5.f, NAN, 1e10f, -1e10f, 254.7f, -0.7f};
      double dx[n] = {300, -5, NAN, 1e10, -1e10, 254.7, 1e20};
      const int u8f[n] = {255, 0, 0, 255, 0, 254, 0}, u8d[n] = {255, 0, 0, 255, 0, 254, 255};
      const long long i32f[n] = {300, -5, 0, 2147483647, -2147483648LL, 254, 0}, i32d[n] = {300, -5, 0, 2147483647, -2147483648LL, 254, 2147483647};
      const long long i64f[n] = {300, -5, 0, 10000000000LL, -10000000000LL, 254, 0}, i64d[n] = {300, -5, 0, 10000000000LL, -10000000000LL, 254, 9223372036854775807LL};
      unsigned char yu[n]; int yi[n]; long long yl[n];
      for (int src = 0; src < 2; src++)
      {
          const void* x = src == 0 ? (const void*)fx : (const void*)dx; int xdt = src == 0 ? DT_F32 : DT_F64;
          launch(1, 8, [&] { copy_cast(L7, n, yu, DT_U8, x, xdt); });
          launch(1, 8, [&] { copy_cast(L7, n, yi, DT_I32, x, xdt); });
          launch(1, 8, [&] { copy_cast(L7, n, yl, DT_I64, x, xdt); });
          for (int i = 0; i < n; i++)
          {
              CHECK(yu[i] == (src == 0 ? u8f : u8d)[i], "f%d -> u8 [%d]: %d", src == 0 ? 32 : 64, i, yu[i]);
              CHECK(yi[i] == (src == 0 ? i32f : i32d)[i], "f%d -> i32 [%d]: %d", src == 0 ? 32 : 64, i, yi[i]);
              CHECK(yl[i] == (src == 0 ? i64f : i64d)[i], "f%d -> i64 [%d]: %lld", src == 0 ? 32 : 64, i, yl[i]);
          }
      }
      long long lx[3] = {300, (1LL << 32) + 5, -1};
      launch(1, 8, [&] { copy_cast(L7, 3, yu, DT_U8, lx, DT_I64); });
      launch(1, 8, [&] { copy_cast(L7, 3, yi, DT_I32, lx, DT_I64); });
      CHECK(yu[0] == 44 && yu[1] == 5 && yu[2] == 255, "i64 -> u8 wraps: %d %d %d", yu[0], yu[1], yu[2]);
      CHECK(yi[0] == 300 && yi[1] == 5 && yi[2] == -1, "i64 -> i32 wraps: %d %d %d", yi[0], yi[1], yi[2]); }
    // fill ints and floats
    int fi[12];
    launch(1, 32, [&] { fill(L3, 12, fi, DT_I32, 7.0, 7); });
    CHECK(fi[11] == 7, "fill int");
    // unary silu, gelu on f32 and integer abs
    float u[12];
    launch(1, 32, [&] { unary(L3, 12, U_SILU, u, DT_F32, a, DT_F32); });
    for (int i = 0; i < 12; i++) CHECK(fabsf(u[i] - a[i] / (1 + expf(-a[i]))) < 1e-6f, "silu");
    long long ni[3] = {-3, 4, -5}, no[3]; i64 s3[1] = {3};
    Layout L4 = make(1, s3, 2, st3);
    launch(1, 32, [&] { unary(L4, 3, U_ABS, no, DT_I64, ni, DT_I64); });
    CHECK(no[0] == 3 && no[2] == 5, "abs int");
    // unary of integers into f32 (Tensor.Map's exp, log, sqrt, sin ... of an int tensor), as the CPU: the integer
    // converted to float (int64 rounded once, not through double), the op in float; into f64, in double; a
    // transposed x. Exact against the same float expression; within 2 ulp of float64 (libm) for the smooth ops.
    { const int R = 3, C = 5, N = R * C;
      int xi[N]; long long xl[N];
      for (int i = 0; i < N; i++) { xi[i] = (i * 7919) % 23 - 9; xl[i] = (long long)xi[i] * 1000003; }
      xl[4] = (1LL << 40) + 3; xl[5] = -(1LL << 40) - 3; // beyond float's 24 bits
      i64 sz[2] = {R, C}; i64 stT[2][8] = {{C, 1}, {1, R}};
      Layout LT = make(2, sz, 2, stT);
      int ops[] = {U_NEG, U_ABS, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_TANH, U_SIGMOID, U_SILU, U_GELU_ERF, U_GELU_TANH, U_QUICK_GELU, U_RELU, U_SIN, U_COS, U_SQUARE, U_RECIPROCAL, U_ERF};
      for (int op : ops)
      { float yf[N], yl[N]; double yd[N];
        launch(2, 8, [&] { unary(LT, N, op, yf, DT_F32, xi, DT_I32); });
        launch(2, 8, [&] { unary(LT, N, op, yl, DT_F32, xl, DT_I64); });
        launch(2, 8, [&] { unary(LT, N, op, yd, DT_F64, xi, DT_I32); });
        for (int r = 0; r < R; r++) for (int c = 0; c < C; c++)
        { int o = r * C + c, src = c * R + r;
          float fi = unary_f(op, (float)xi[src]), fl = unary_f(op, (float)xl[src]);
          double di = unary_d(op, (double)xi[src]);
          CHECK(memcmp(&yf[o], &fi, 4) == 0, "int32 -> f32 op %d at %d: %g vs %g", op, o, yf[o], fi);
          CHECK(memcmp(&yl[o], &fl, 4) == 0, "int64 -> f32 op %d at %d: %g vs %g", op, o, yl[o], fl);
          CHECK(memcmp(&yd[o], &di, 8) == 0, "int32 -> f64 op %d at %d: %g vs %g", op, o, yd[o], di);
          CHECK(yd[o] != yd[o] ? yf[o] != yf[o] : fabs(yf[o] - yd[o]) <= 2e-6 * fmax(1.0, fabs(yd[o])) || (op == U_RECIPROCAL && xi[src] == 0 && yf[o] == (float)yd[o]),
                "int32 -> f32 op %d at %d against double: %g vs %g", op, o, yf[o], yd[o]); } }
      // int64 into float rounds once, as cvt.rn.f32.s64: 2^53 + 2^29 + 1 is 2^53 + 2^30 (through double it would tie
      // to 2^53)
      { long long big[1] = {(1LL << 53) + (1LL << 29) + 1}; float yn[1]; i64 s1b[1] = {1}; i64 stb[2][8] = {{1}, {1}};
        Layout Lb = make(1, s1b, 2, stb);
        launch(1, 1, [&] { unary(Lb, 1, U_NEG, yn, DT_F32, big, DT_I64); });
        CHECK(yn[0] == -9007200328482816.0f, "neg int64 -> f32 rounds once: %.17g", (double)yn[0]); } }
    // where
    unsigned char cnd[12]; for (int i = 0; i < 12; i++) cnd[i] = i % 2;
    float wy[12]; i64 st4[4][8] = {{1}, {1}, {1}, {1}};
    Layout L5 = make(1, s1, 4, st4);
    launch(1, 32, [&] { where_select(L5, 12, wy, cnd, a, u, DT_F32); });
    for (int i = 0; i < 12; i++) CHECK(wy[i] == (i % 2 ? a[i] : u[i]), "where");
    // rope: x [2, 4] (two rows, D = 4), tables [2, 4]
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, c[8], s[8], ry[8];
    for (int i = 0; i < 8; i++) { c[i] = cosf(0.3f * i); s[i] = sinf(0.3f * i); }
    i64 rs[2] = {2, 2}; i64 rst[4][8] = {{4, 1}, {4, 1}, {4, 1}, {4, 1}};
    Layout LR = make(2, rs, 4, rst);
    launch(1, 32, [&] { rope_ns::rope(LR, 4, 2, ry, 1, x, 1, c, s, DT_F32, 1, 1, DT_F32); });
    for (int r = 0; r < 2; r++) for (int dd = 0; dd < 2; dd++)
    {
        int i = r * 4 + dd, j = i + 2;
        CHECK(ry[i] == x[i] * c[i] - x[j] * s[i], "rope lo %d", i);
        CHECK(ry[j] == x[j] * c[j] + x[i] * s[j], "rope hi %d", j);
    }
    // rope_kv_append = rope(q), rope(k) then a copy into the K cache slot, v copied into the V slot, bit for bit:
    // q, k, v transposed views of [B, T, heads, D] projections, GQA (4 query heads, 2 kv heads), T 1 and 5, slots
    // at position 2 of an 8-long cache, tables [T, D] or per row [B, 1, T, D], f32 and bf16 (tables f32 or the dtype);
    // grid smaller than the work (the grid-stride loop). The cache outside the slots must stay as it was.
    for (int dt : {DT_F32, DT_BF16}) for (int tdt : {DT_F32, dt}) for (int T : {1, 5}) for (int perRow : {0, 1})
    {
        if (tdt == dt && dt == DT_F32 && perRow) continue; // the same case as tdt F32 above
        const int B = 2, H = 4, Hk = 2, D = 8, h = D / 2, ML = 8, past = 2, es = dt == DT_BF16 ? 2 : 4, tes = tdt == DT_BF16 ? 2 : 4;
        unsigned seed = 11 + T * 7 + dt * 3 + perRow;
        auto rnd = [&] { seed = seed * 1103515245u + 12345u; return ((seed >> 8) % 2000) / 250.0f - 4.0f; };
        auto put = [&](std::vector<unsigned char>& buf, int d, int i, float v) { if (d == DT_BF16) ((u16*)buf.data())[i] = f32_to_bf16(v); else ((float*)buf.data())[i] = v; };
        int nqe = B * T * H * D, nke = B * T * Hk * D, nce = B * Hk * ML * D, nte = (perRow ? B : 1) * T * D;
        std::vector<unsigned char> Q(nqe * 4), K(nke * 4), V(nke * 4), C(nte * 4), S(nte * 4), Q1(nqe * 4), Q2(nqe * 4), KT(nke * 4),
            KC1(nce * 4), VC1(nce * 4), KC2(nce * 4), VC2(nce * 4);
        for (int i = 0; i < nqe; i++) put(Q, dt, i, rnd());
        for (int i = 0; i < nke; i++) { put(K, dt, i, rnd()); put(V, dt, i, rnd()); }
        for (int i = 0; i < nte; i++) { float a = 0.37f * (past + i / D % T) * (1 + i % h); put(C, tdt, i, cosf(a)); put(S, tdt, i, sinf(a)); }
        for (int i = 0; i < nce; i++) { put(KC1, dt, i, rnd()); put(VC1, dt, i, rnd()); }
        KC2 = KC1; VC2 = VC1; auto KC0 = KC1, VC0 = VC1;
        i64 tb = perRow ? (i64)T * D : 0; // the tables' batch stride (0: broadcast)
        i64 qst[4] = {(i64)T * H * D, D, (i64)H * D, 1}, kst[4] = {(i64)T * Hk * D, D, (i64)Hk * D, 1};
        i64 slot[4] = {(i64)Hk * ML * D, (i64)ML * D, D, 1}, tst[4] = {tb, 0, D, 1}, kct[4] = {(i64)Hk * T * D, (i64)T * D, D, 1};
        i64 sq[4] = {B, H, T, h}, sk[4] = {B, Hk, T, h}, skf[4] = {B, Hk, T, D};
        auto lay = [&](const i64* size, std::initializer_list<const i64*> ops) { i64 st[4][8] = {}; int k = 0; for (auto o : ops) { for (int d = 0; d < 4; d++) st[k][d] = o[d]; k++; } return make(4, size, k, st); };
        Layout LQ = lay(sq, {qst, qst, tst, tst}), LK = lay(sk, {slot, kst, tst, tst}), LV = lay(sk, {slot, kst});
        Layout LKT = lay(sk, {kct, kst, tst, tst}), LKC = lay(skf, {slot, kct}), LVC = lay(skf, {slot, kst});
        i64 so = (i64)past * D; // the slot's offset in the cache
        // Q1 and Q2 use q's transposed layout for the output too (an output with any strides)
        launch(2, 32, [&] { rope_ns::rope(LQ, B * H * T * h, h, Q1.data(), 1, Q.data(), 1, C.data(), S.data(), tdt, 1, 1, dt); });
        launch(2, 32, [&] { rope_ns::rope(LKT, B * Hk * T * h, h, KT.data(), 1, K.data(), 1, C.data(), S.data(), tdt, 1, 1, dt); });
        launch(2, 32, [&] { copy_cast(LKC, B * Hk * T * D, KC1.data() + so * es, dt, KT.data(), dt); });
        launch(2, 32, [&] { copy_cast(LVC, B * Hk * T * D, VC1.data() + so * es, dt, V.data(), dt); });
        i64 nq = B * H * T * h, nk = B * Hk * T * h;
        launch(3, 32, [&] { rope_ns::rope_kv_append(LQ, LK, LV, nq, nk, h, Q2.data(), 1, Q.data(), 1, KC2.data() + so * es, 1, K.data(), 1,
                                                    VC2.data() + so * es, 1, V.data(), 1, C.data(), S.data(), tdt, 1, 1, dt); });
        CHECK(memcmp(Q1.data(), Q2.data(), nqe * es) == 0, "rope_kv_append q, dt %d tdt %d T %d perRow %d", dt, tdt, T, perRow);
        CHECK(memcmp(KC1.data(), KC2.data(), nce * es) == 0, "rope_kv_append k cache, dt %d tdt %d T %d perRow %d", dt, tdt, T, perRow);
        CHECK(memcmp(VC1.data(), VC2.data(), nce * es) == 0, "rope_kv_append v cache, dt %d tdt %d T %d perRow %d", dt, tdt, T, perRow);
        // not vacuous: the slot was written (rope of k differs from the cache's random fill), q differs from its input
        CHECK(memcmp(KC1.data() + so * es, KC0.data() + so * es, D * es) != 0 && memcmp(VC1.data() + so * es, VC0.data() + so * es, D * es) != 0
              && memcmp(Q1.data(), Q.data(), D * es) != 0, "the reference moved data");
        ropeCases++;
    }
    // rope_kv_append_at (positions on the device, whole caches and tables) = rope_kv_append on each row alone at its
    // position (the tables narrowed to rows pos..pos+T-1, the slot at pos), bit for bit: B 2 at different positions,
    // int32 and int64 positions, T 1 and 3, f32/bf16 with f32 or dtype tables. A row past the capacity (position 7,
    // T 3: rows 8 and 9 of an 8-long cache) writes nothing there and gives q NaN; the rest of the cache is untouched.
    for (int dt : {DT_F32, DT_BF16}) for (int tdt : {DT_F32, dt}) for (int T : {1, 3}) for (int pdt : {DT_I32, DT_I64})
    {
        const int B = 2, H = 4, Hk = 2, D = 8, h = D / 2, ML = 8, TR = 12, es = dt == DT_BF16 ? 2 : 4, tes = tdt == DT_BF16 ? 2 : 4;
        const bool over = T == 3 && pdt == DT_I64; // row 1 at position 7: two of its rows fall outside the cache
        const int pos[2] = {T == 1 ? 6 : 1, over ? 7 : 4};
        unsigned seed = 91 + T * 5 + dt * 3 + pdt;
        auto rnd = [&] { seed = seed * 1103515245u + 12345u; return ((seed >> 8) % 2000) / 250.0f - 4.0f; };
        auto put = [&](std::vector<unsigned char>& buf, int d, int i, float v) { if (d == DT_BF16) ((u16*)buf.data())[i] = f32_to_bf16(v); else ((float*)buf.data())[i] = v; };
        int nqe = B * T * H * D, nke = B * T * Hk * D, nce = B * Hk * ML * D, nte = TR * D;
        std::vector<unsigned char> Q(nqe * 4), K(nke * 4), V(nke * 4), C(nte * 4), S(nte * 4), Q1(nqe * 4), Q2(nqe * 4), KC1(nce * 4), VC1(nce * 4), KC2(nce * 4), VC2(nce * 4);
        for (int i = 0; i < nqe; i++) put(Q, dt, i, rnd());
        for (int i = 0; i < nke; i++) { put(K, dt, i, rnd()); put(V, dt, i, rnd()); }
        for (int i = 0; i < nte; i++) { float a = 0.37f * (i / D) * (1 + i % h); put(C, tdt, i, cosf(a)); put(S, tdt, i, sinf(a)); }
        for (int i = 0; i < nce; i++) { put(KC1, dt, i, rnd()); put(VC1, dt, i, rnd()); }
        KC2 = KC1; VC2 = VC1; auto KC0 = KC1;
        i64 qst[4] = {(i64)T * H * D, D, (i64)H * D, 1}, kst[4] = {(i64)T * Hk * D, D, (i64)Hk * D, 1};
        i64 cache[4] = {(i64)Hk * ML * D, (i64)ML * D, D, 1}, tlast[4] = {0, 0, 0, 1}, trow[4] = {0, 0, D, 1};
        auto lay = [&](const i64* size, std::initializer_list<const i64*> ops) { i64 st[4][8] = {}; int k = 0; for (auto o : ops) { for (int d = 0; d < 4; d++) st[k][d] = o[d]; k++; } return make(4, size, k, st); };
        // the reference, row by row (B = 1), rows inside the cache only (a row past it is left out, as the kernel does)
        for (int b = 0; b < B; b++)
        {
            int Tb = std::min(T, ML - pos[b]);
            i64 sq[4] = {1, H, Tb, h}, sk[4] = {1, Hk, Tb, h};
            Layout LQ = lay(sq, {qst, qst, trow, trow}), LK = lay(sk, {cache, kst, trow, trow}), LV = lay(sk, {cache, kst});
            i64 nq = H * Tb * h, nk = Hk * Tb * h;
            i64 qo = (i64)b * T * H * D, ko = (i64)b * T * Hk * D, co = (i64)b * Hk * ML * D + (i64)pos[b] * D, to = (i64)pos[b] * D;
            launch(3, 32, [&] { rope_ns::rope_kv_append(LQ, LK, LV, nq, nk, h, Q1.data() + qo * es, 1, Q.data() + qo * es, 1, KC1.data() + co * es, 1, K.data() + ko * es, 1,
                                                        VC1.data() + co * es, 1, V.data() + ko * es, 1, C.data() + to * tes, S.data() + to * tes, tdt, 1, 1, dt); });
        }
        i64 sq[4] = {B, H, T, h}, sk[4] = {B, Hk, T, h};
        Layout LQ = lay(sq, {qst, qst, tlast, tlast}), LK = lay(sk, {cache, kst, tlast, tlast}), LV = lay(sk, {cache, kst});
        i64 nq = B * H * T * h, nk = B * Hk * T * h;
        int p32[2] = {pos[0], pos[1]}; long long p64[2] = {pos[0], pos[1]};
        const void* pp = pdt == DT_I32 ? (const void*)p32 : (const void*)p64;
        launch(3, 32, [&] { rope_ns::rope_kv_append_at(LQ, LK, LV, nq, nk, h, Q2.data(), 1, Q.data(), 1, KC2.data(), 1, K.data(), 1, VC2.data(), 1, V.data(), 1,
                                                       C.data(), S.data(), tdt, 1, 1, dt, pp, pdt, H, Hk, T, ML, D, D, D, D); });
        CHECK(memcmp(KC1.data(), KC2.data(), nce * es) == 0, "rope_kv_append_at k cache, dt %d tdt %d T %d pdt %d", dt, tdt, T, pdt);
        CHECK(memcmp(VC1.data(), VC2.data(), nce * es) == 0, "rope_kv_append_at v cache, dt %d tdt %d T %d pdt %d", dt, tdt, T, pdt);
        CHECK(memcmp(KC0.data(), KC2.data(), nce * es) != 0, "rope_kv_append_at wrote nothing");
        for (int b = 0; b < B; b++) for (int t = 0; t < T; t++) for (int hh = 0; hh < H; hh++)
        {
            i64 at = (((i64)b * T + t) * H + hh) * D;
            bool outside = pos[b] + t >= ML;
            if (outside)
                for (int d = 0; d < D; d++) { float x = dt == DT_BF16 ? bf16_to_f32(((u16*)Q2.data())[at + d]) : ((float*)Q2.data())[at + d]; CHECK(std::isnan(x), "q of a row past the cache must be NaN"); }
            else CHECK(memcmp(Q1.data() + at * es, Q2.data() + at * es, D * es) == 0, "rope_kv_append_at q b%d t%d h%d, dt %d tdt %d T %d pdt %d", b, t, hh, dt, tdt, T, pdt);
        }
        ropeCases++;
    }
    // index_select axis 1 of x [2, 4] with index [3] = {3, 0, 3}
    long long ix[3] = {3, 0, 3}; float sel[6];
    i64 ss[2] = {2, 3}; i64 sst[3][8] = {{3, 1}, {4, 0}, {0, 1}};
    Layout LS = make(2, ss, 3, sst);
    launch(1, 32, [&] { idx_ns::index_select(LS, 6, sel, x, 1, 4, ix, DT_I64, DT_F32); });
    for (int r = 0; r < 2; r++) for (int k = 0; k < 3; k++) CHECK(sel[r * 3 + k] == x[r * 4 + ix[k]], "index_select");
    // an index out of range reads nothing and gives 0; the deferred check finds its first position and value
    { long long bx[3] = {3, 4, -1}; float bsel[6];
      launch(1, 32, [&] { idx_ns::index_select(LS, 6, bsel, x, 1, 4, bx, DT_I64, DT_F32); });
      for (int r = 0; r < 2; r++) CHECK(bsel[r * 3] == x[r * 4 + 3] && bsel[r * 3 + 1] == 0 && bsel[r * 3 + 2] == 0, "index_select out of range");
      // index [2, 3] with strides {1, 2} (a transposed view of {5, 7, 1, 9, -100, 2}): C-order values 5, 1, -100, 7, 9, 2
      long long tv[6] = {5, 7, 1, 9, -100, 2}; i64 ts[2] = {2, 3}; i64 tst[1][8] = {{1, 2}};
      Layout LT = make(2, ts, 1, tst);
      unsigned long long slot[2] = {1ULL << 62, 0};
      launch(1, 32, [&] { idx_ns::index_check(LT, 6, tv, DT_I64, 6, 0, 0, slot); });
      launch(1, 1, [&] { idx_ns::index_check_value(LT, tv, DT_I64, slot); });
      CHECK(slot[0] == 2 && (long long)slot[1] == -100, "index_check first bad %llu value %lld", slot[0], (long long)slot[1]);
      unsigned long long ok[2] = {1ULL << 62, 0};
      launch(1, 32, [&] { idx_ns::index_check(LT, 6, tv, DT_I64, 6, 1, -100, ok); });
      launch(1, 1, [&] { idx_ns::index_check_value(LT, tv, DT_I64, ok); });
      CHECK(ok[0] == 3 && ok[1] == 7, "index_check with ignore: position %llu value %llu", ok[0], ok[1]);
      int iv[3] = {0, 2, 1}; i64 s3i[1] = {3}; i64 st3i[1][8] = {{1}}; unsigned long long none[2] = {1ULL << 62, 0};
      Layout L3I = make(1, s3i, 1, st3i);
      launch(1, 32, [&] { idx_ns::index_check(L3I, 3, iv, DT_I32, 3, 0, 0, none); });
      launch(1, 1, [&] { idx_ns::index_check_value(L3I, iv, DT_I32, none); });
      CHECK(none[0] == 1ULL << 62 && none[1] == 0, "index_check all in range"); }
    // scatter_add axis 0: dst [3] += src [5] at idx
    float dst[3] = {0, 0, 0}, src[5] = {1, 2, 3, 4, 5}; int sidx[5] = {2, 0, 2, 1, 2};
    i64 s5[1] = {5}; i64 sst5[3][8] = {{0}, {1}, {1}};
    Layout LSA = make(1, s5, 3, sst5);
    launch(1, 32, [&] { idx_ns::scatter_add(LSA, 5, dst, 1, 3, src, sidx, DT_I32, DT_F32); });
    CHECK(dst[0] == 2 && dst[1] == 4 && dst[2] == 9, "scatter_add %g %g %g", dst[0], dst[1], dst[2]);
    { float bdst[3] = {0, 0, 0}; int bidx[5] = {2, 3, -1, 1, 2};
      launch(1, 32, [&] { idx_ns::scatter_add(LSA, 5, bdst, 1, 3, src, bidx, DT_I32, DT_F32); });
      CHECK(bdst[0] == 0 && bdst[1] == 4 && bdst[2] == 6, "scatter_add skips indices out of range"); }
    // bf16 scatter-add through the CAS path
    u16 hd[4] = {f32_to_bf16(1), f32_to_bf16(2), f32_to_bf16(3), f32_to_bf16(4)}; u16 hs[2] = {f32_to_bf16(0.5f), f32_to_bf16(0.25f)}; long long hidx[2] = {1, 3};
    i64 s2b[1] = {2}; i64 st2b[3][8] = {{0}, {1}, {1}};
    Layout LHB = make(1, s2b, 3, st2b);
    launch(1, 32, [&] { idx_ns::scatter_add(LHB, 2, hd, 1, 4, hs, hidx, DT_I64, DT_BF16); });
    CHECK(bf16_to_f32(hd[0]) == 1 && bf16_to_f32(hd[1]) == 2.5f && bf16_to_f32(hd[2]) == 3 && bf16_to_f32(hd[3]) == 4.25f, "bf16 scatter");
    // adamw vs the formula (float32 master)
    float p[3] = {1, -2, 0.5f}, g[3] = {0.1f, -0.3f, 2}, m[3] = {0, 0, 0}, v[3] = {0, 0, 0}; u16 pb[3];
    double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    double bc1 = 1 - b1, bc2 = 1 - b2;
    launch(1, 32, [&] { adam_ns::adamw(3, p, g, DT_F32, m, v, DT_F32, 1 - lr * wd, b1, b2, eps, lr / bc1, sqrt(bc2), pb); });
    float p0[3] = {1, -2, 0.5f};
    for (int i = 0; i < 3; i++)
    {
        double w = p0[i] * (1 - lr * wd), mi = (1 - b1) * g[i], vi = (1 - b2) * g[i] * g[i];
        w -= lr / bc1 * mi / (sqrt(vi) / sqrt(bc2) + eps);
        CHECK(fabs(p[i] - w) < 1e-6, "adamw %d %g %g", i, p[i], w);
        CHECK(pb[i] == f32_to_bf16(p[i]), "adamw bf16 copy");
    }
    // gather axis 1: y[r, k] = x[r, gidx[r, k]]
    { long long gi[4] = {1, 3, 0, 0}; float gy[4]; i64 gs[2] = {2, 2}; i64 gst[3][8] = {{2, 1}, {4, 0}, {2, 1}};
      Layout LG = make(2, gs, 3, gst);
      launch(1, 32, [&] { idx_ns::gather(LG, 4, gy, x, 1, 4, gi, DT_I64, DT_F32); });
      for (int r = 0; r < 2; r++) for (int k = 0; k < 2; k++) CHECK(gy[r * 2 + k] == x[r * 4 + gi[r * 2 + k]], "gather"); }
    // swiglu forward and backward
    { float gg[3] = {-1, 0.5f, 2}, uu[3] = {3, -2, 0.25f}, dyv[3] = {1, -1, 0.5f}, yy[3], dg[3], du[3];
      launch(1, 32, [&] { swiglu_forward(3, yy, gg, uu, DT_F32); });
      launch(1, 32, [&] { swiglu_backward(3, dg, du, dyv, gg, uu, DT_F32); });
      for (int i = 0; i < 3; i++)
      { double sg = 1 / (1 + exp(-(double)gg[i]));
        CHECK(fabs(yy[i] - gg[i] * sg * uu[i]) < 1e-6, "swiglu");
        CHECK(fabs(du[i] - dyv[i] * gg[i] * sg) < 1e-6, "swiglu dup");
        // d/dg silu(g) = s + g s (1 - s)
        CHECK(fabs(dg[i] - dyv[i] * uu[i] * (sg + gg[i] * sg * (1 - sg))) < 1e-6, "swiglu dgate"); } }
    // bf16 swiglu: silu rounded to bf16 before the product, as PyTorch's eager act_fn(gate) * up
    { u16 gh[4], uh[4], yh[4]; float gv[4] = {-1.3f, 0.7f, 2.9f, 0.01f}, uv[4] = {3.1f, -2.2f, 0.37f, 5};
      for (int i = 0; i < 4; i++) { gh[i] = f32_to_bf16(gv[i]); uh[i] = f32_to_bf16(uv[i]); }
      launch(1, 32, [&] { swiglu_forward(4, yh, gh, uh, DT_BF16); });
      for (int i = 0; i < 4; i++)
      { float g = bf16_to_f32(gh[i]), silu = bf16_to_f32(f32_to_bf16(g / (1.0f + expf(-g))));
        CHECK(yh[i] == f32_to_bf16(silu * bf16_to_f32(uh[i])), "swiglu bf16 %d", i); } }
    // multi-tensor adamw: two tensors, the second with a bf16 gradient, equal to the single-tensor kernel
    { float p1[3] = {1, -2, 0.5f}, g1[3] = {0.1f, -0.3f, 2}, m1[3] = {}, v1[3] = {};
      float p2[2] = {3, 4}, m2[2] = {}, v2[2] = {}; u16 g2[2] = {f32_to_bf16(0.5f), f32_to_bf16(-1)};
      float q1[3] = {1, -2, 0.5f}, qm[3] = {}, qv[3] = {};
      adam_ns::AdamWTable tb{};
      tb.e[0] = {p1, g1, m1, v1, nullptr, 3, DT_F32, DT_F32};
      tb.e[1] = {p2, g2, m2, v2, nullptr, 2, DT_BF16, DT_F32};
      gridDim.y = 2;
      for (unsigned yb = 0; yb < 2; yb++) { blockIdx.y = yb; launch(1, 32, [&] { adam_ns::adamw_multi(tb, 2, 0.999, 0.9, 0.95, 1e-8, 0.1, sqrt(0.05)); }); }
      blockIdx.y = 0;
      launch(1, 32, [&] { adam_ns::adamw(3, q1, g1, DT_F32, qm, qv, DT_F32, 0.999, 0.9, 0.95, 1e-8, 0.1, sqrt(0.05), nullptr); });
      for (int i = 0; i < 3; i++) CHECK(p1[i] == q1[i], "multi == single");
      CHECK(p2[0] != 3 && p2[1] != 4 && v2[1] > 0, "second tensor updated"); }
    // packed kernels (16 bytes per load) give bit-identical results to the scalar ones, whole packs and the tail,
    // f32 and bf16: unary, binary (NaN and ±0 in max/min), SwiGLU forward and backward
    for (int dt : {DT_F32, DT_BF16})
    {
        const int n = 8 * 37 + 5, pk = n / (dt == DT_BF16 ? 8 : 4), es = dt == DT_BF16 ? 2 : 4;
        alignas(16) static unsigned char A[4 * 320], B[4 * 320], G[4 * 320], Y1[4 * 320], Y2[4 * 320], Z1[4 * 320], Z2[4 * 320];
        unsigned s = 7;
        auto rnd = [&] { s = s * 1103515245u + 12345u; return ((s >> 8) % 2000) / 250.0f - 4.0f; };
        auto put = [&](unsigned char* buf, int i, float v) { if (dt == DT_BF16) ((u16*)buf)[i] = f32_to_bf16(v); else ((float*)buf)[i] = v; };
        for (int i = 0; i < n; i++) { put(A, i, rnd()); put(B, i, rnd()); put(G, i, rnd()); }
        put(A, 3, NAN); put(B, 5, NAN); put(A, 9, 0.0f); put(B, 9, -0.0f);
        i64 s1n[1] = {n}; i64 st1[3][8] = {{1}, {1}, {1}};
        Layout Ln = make(1, s1n, 3, st1);
        for (int op : {U_EXP, U_SILU, U_GELU_TANH, U_RSQRT})
        { memset(Y1, 0, sizeof Y1); memset(Y2, 0, sizeof Y2);
          launch(3, 32, [&] { unary(Ln, n, op, Y1, dt, A, dt); });
          launch(2, 32, [&] { unary_packed(pk, n, op, Y2, A, dt); });
          CHECK(memcmp(Y1, Y2, n * es) == 0, "unary_packed op %d dt %d", op, dt); }
        for (int op : {B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAX, B_MIN})
        { memset(Y1, 0, sizeof Y1); memset(Y2, 0, sizeof Y2);
          launch(3, 32, [&] { binary(Ln, n, op, Y1, dt, A, B, dt); });
          launch(2, 32, [&] { binary_packed(pk, n, op, Y2, A, B, dt); });
          CHECK(memcmp(Y1, Y2, n * es) == 0, "binary_packed op %d dt %d", op, dt); }
        memset(Y1, 0, sizeof Y1); memset(Y2, 0, sizeof Y2);
        launch(3, 32, [&] { swiglu_forward(n, Y1, G, B, dt); });
        launch(2, 32, [&] { swiglu_forward_packed(pk, n, Y2, G, B, dt); });
        CHECK(memcmp(Y1, Y2, n * es) == 0, "swiglu_forward_packed dt %d", dt);
        memset(Y1, 0, sizeof Y1); memset(Y2, 0, sizeof Y2); memset(Z1, 0, sizeof Z1); memset(Z2, 0, sizeof Z2);
        launch(3, 32, [&] { swiglu_backward(n, Y1, Z1, A, G, B, dt); });
        launch(2, 32, [&] { swiglu_backward_packed(pk, n, Y2, Z2, A, G, B, dt); });
        CHECK(memcmp(Y1, Y2, n * es) == 0 && memcmp(Z1, Z2, n * es) == 0, "swiglu_backward_packed dt %d", dt);
        CHECK(dt != DT_BF16 || ((u16*)Y1)[n - 1] != 0, "the tail was written");
    }
    printf("%s (%d failures; %d rope_kv_append cases)\n", fails ? "FAILED" : "all passed", fails, ropeCases);
    return fails != 0;
}
