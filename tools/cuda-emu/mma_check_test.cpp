// Self-check of the tensor-core emulation (emu_mma.h) against the PTX ISA's layout tables as printed, written
// here independently of the emulator's bit arithmetic, so a misreading of the ISA on either side shows:
//  * mma.m16n8k16 .bf16 (PTX ISA 9.7.14.5.8, "Matrix Fragments for mma.m16n8k16 with floating point type",
//    the row/col formulas under the figures for matrix A (.f16/.bf16), matrix B (.f16/.bf16) and the
//    accumulators C/D (.f32)): lanes load A, B and C by those formulas from plain matrices, run
//    mma_bf16_16816, scatter D by the C formulas, and D must equal C + A·B computed by a plain triple loop;
//  * ldmatrix .m8n8.x4 (PTX ISA 9.7.14.5.15, "ldmatrix": "Addresses addr0–addr7 correspond to the rows of the
//    first matrix, addresses addr8–addr15 ... the second matrix", "a group of four threads loads an entire row",
//    thread 0 the first fragment; ".trans indicates that the matrix is loaded in column-major format"):
//    the registers each lane gets are compared with the elements those sentences name.
//  * cvt.rn.bf16x2.f32: which input lands in which half, and the rounding.
// Two warps per block with different data, so a collective that mixes warps fails too.
#include "emu_mma.h"
#include <random>
#include <vector>
int fails = 0, checks = 0;
#define CHECK(c, ...) do { checks++; if (!(c)) { if (fails++ < 20) { printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } } while (0)

static unsigned short bf(float x) { unsigned u; memcpy(&u, &x, 4); return (unsigned short)(u >> 16); } // exact for the values used
static float fl(unsigned short h) { unsigned u = (unsigned)h << 16; float f; memcpy(&f, &u, 4); return f; }

// The ISA's formulas, verbatim (groupID = %laneid >> 2, threadID_in_group = %laneid % 4).
static int a_row(int lane, int i) { int groupID = lane >> 2; return (0 <= i && i < 2) || (4 <= i && i < 6) ? groupID : groupID + 8; }
static int a_col(int lane, int i) { int t = lane % 4; return i < 4 ? (t * 2) + (i & 0x1) : (t * 2) + (i & 0x1) + 8; }
static int b_row(int lane, int i) { int t = lane % 4; return i < 2 ? (t * 2) + (i & 0x1) : (t * 2) + (i & 0x1) + 8; }
static int b_col(int lane, int) { return lane >> 2; }
static int c_row(int lane, int i) { int groupID = lane >> 2; return i < 2 ? groupID : groupID + 8; }
static int c_col(int lane, int i) { int t = lane % 4; return (t * 2) + (i & 0x1); }

static void check_mma(std::mt19937& rng)
{
    const int warps = 2;
    std::uniform_int_distribution<int> small(-8, 8);
    std::normal_distribution<float> nd;
    // Small integers make every product and sum exact in float; a second round with bf16-rounded normals
    // checks the same layout with a tolerance.
    for (int round = 0; round < 2; round++)
    {
        std::vector<float> A(warps * 16 * 16), Bm(warps * 16 * 8), C(warps * 16 * 8), D(warps * 16 * 8, NAN);
        auto draw = [&] { return round == 0 ? (float)small(rng) : fl(bf(nd(rng))); };
        for (auto& x : A) x = draw();
        for (auto& x : Bm) x = draw();
        for (auto& x : C) x = round == 0 ? (float)small(rng) : nd(rng);
        launch(1, 32 * warps, [&] {
            int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
            const float* a = &A[w * 256]; const float* b = &Bm[w * 128];
            unsigned ar[4], br[2]; float d[4];
            for (int r = 0; r < 4; r++) ar[r] = (unsigned)bf(a[a_row(lane, 2 * r) * 16 + a_col(lane, 2 * r)]) | (unsigned)bf(a[a_row(lane, 2 * r + 1) * 16 + a_col(lane, 2 * r + 1)]) << 16;
            for (int r = 0; r < 2; r++) br[r] = (unsigned)bf(b[b_row(lane, 2 * r) * 8 + b_col(lane, 2 * r)]) | (unsigned)bf(b[b_row(lane, 2 * r + 1) * 8 + b_col(lane, 2 * r + 1)]) << 16;
            for (int i = 0; i < 4; i++) d[i] = C[w * 128 + c_row(lane, i) * 8 + c_col(lane, i)];
            mma_bf16_16816(d, ar, br);
            for (int i = 0; i < 4; i++) D[w * 128 + c_row(lane, i) * 8 + c_col(lane, i)] = d[i];
        });
        for (int w = 0; w < warps; w++)
            for (int r = 0; r < 16; r++)
                for (int c = 0; c < 8; c++)
                {
                    double want = C[w * 128 + r * 8 + c];
                    for (int k = 0; k < 16; k++) want += (double)A[w * 256 + r * 16 + k] * Bm[w * 128 + k * 8 + c];
                    double got = D[w * 128 + r * 8 + c];
                    CHECK(round == 0 ? got == want : fabs(got - want) < 1e-5 * (1 + fabs(want)), "mma round %d warp %d D[%d][%d]: %g vs %g", round, w, r, c, got, want);
                }
    }
}

static void check_ldmatrix(std::mt19937& rng, bool trans)
{
    const int warps = 2;
    // Per warp four 8×8 matrices, rows placed at scattered (16-byte aligned) places of a padded buffer, as the
    // instruction allows ("consecutive instances of row need not be stored contiguously").
    std::vector<unsigned short> mem(warps * 4 * 8 * 24);
    for (auto& x : mem) x = (unsigned short)(rng() & 0xffff);
    auto row_at = [&](int w, int m, int j) { return &mem[((w * 4 + (3 - m)) * 8 + (j * 5) % 8) * 24 + 8]; }; // matrix m's row j
    std::vector<unsigned> got(warps * 32 * 4);
    launch(1, 32 * warps, [&] {
        int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
        unsigned r[4];
        const unsigned short* p = row_at(w, lane / 8, lane % 8); // lanes 8m .. 8m + 7: rows of matrix m
        if (trans) ldmatrix_x4_trans(r, p); else ldmatrix_x4(r, p);
        for (int m = 0; m < 4; m++) got[(w * 32 + lane) * 4 + m] = r[m];
    });
    for (int w = 0; w < warps; w++)
        for (int lane = 0; lane < 32; lane++)
            for (int m = 0; m < 4; m++)
            {
                unsigned short lo, hi; // thread l: fragment l % 4 of row l / 4 (of column l / 4 when transposed)
                if (!trans) { lo = row_at(w, m, lane / 4)[2 * (lane % 4)]; hi = row_at(w, m, lane / 4)[2 * (lane % 4) + 1]; }
                else { lo = row_at(w, m, 2 * (lane % 4))[lane / 4]; hi = row_at(w, m, 2 * (lane % 4) + 1)[lane / 4]; }
                unsigned want = (unsigned)lo | (unsigned)hi << 16, g = got[(w * 32 + lane) * 4 + m];
                CHECK(g == want, "ldmatrix%s warp %d lane %d reg %d: %08x vs %08x", trans ? ".trans" : "", w, lane, m, g, want);
            }
}

// cvt.rn.bf16x2.f32 d, a, b (PTX ISA, cvt: "the value converted from input a is stored in the upper half of d and the
// value converted from input b is stored in the lower half"), rounding to nearest, ties to even.
static void check_cvt()
{
    CHECK(cvt_rn_bf16x2(1.0f, 2.0f) == (0x3f80u << 16 | 0x4000u), "cvt order: %08x", cvt_rn_bf16x2(1.0f, 2.0f));
    float tie_even = 1.0f + 1.0f / 256, tie_odd = 1.0f + 3.0f / 256, above = 1.0f + 1.0f / 256 + 1.0f / 65536;
    CHECK(cvt_rn_bf16x2(tie_even, tie_odd) == (0x3f80u << 16 | 0x3f82u), "cvt ties: %08x", cvt_rn_bf16x2(tie_even, tie_odd));
    CHECK((cvt_rn_bf16x2(above, -above) & 0xffffu) == 0xbf81u, "cvt above the tie: %08x", cvt_rn_bf16x2(above, -above));
}

int main()
{
    std::mt19937 rng(11);
    check_cvt();
    check_mma(rng);
    check_ldmatrix(rng, false);
    check_ldmatrix(rng, true);
    printf("%s (%d checks, %d failed)\n", fails ? "FAILED" : "ok", checks, fails);
    return fails ? 1 : 0;
}
