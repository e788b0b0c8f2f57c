// native/matmul_int.cu (integer matrix products) against a naive product that wraps as the CPU backend's SimpleGemm:
// int32 summed in 32-bit unsigned arithmetic, int64 in 64-bit (the kernel sums both in 64 bits and truncates int32).
// Values span each type's whole range, so nearly every sum wraps. Cases: edges of the 16×16 tiles (M, N, K not
// multiples of 16, K < 16, 1×1), transposed and padded operands, batches with a broadcast operand (stride 0) and
// batch dims that do not merge, a strided c whose gaps must stay untouched. Blocks run in the emulator's threads with
// real barriers (emu_threads.h).
#include <initializer_list>
#include <vector>
#include <random>
#include "emu_threads.h"
#include "matmul_int.cu"
int fails = 0, cases = 0;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

struct Operand
{
    std::vector<long long> storage; // int64 elements, or int32 pairs reinterpreted
    int dt;
    long long rs, cs;                // row and column strides of each matrix (elements)
    std::vector<long long> bstride;  // per batch dim
    long long get(long long off) const { return dt == DT_I32 ? (long long)((const int*)storage.data())[off] : storage[off]; }
};

// Storage for `elems` elements of dt filled with values over the type's whole range (and a few small ones).
static std::vector<long long> fill(std::mt19937_64& rng, int dt, long long elems, long long sentinel)
{
    std::vector<long long> s((size_t)(dt == DT_I32 ? (elems + 1) / 2 : elems) + 1, 0);
    for (long long i = 0; i < elems; i++)
    {
        unsigned long long v = rng();
        long long x = (v & 7) == 0 ? (long long)(v >> 60) - 8 : (long long)v; // 1 in 8 small, of either sign
        if (sentinel != 0) x = sentinel;
        if (dt == DT_I32) ((int*)s.data())[i] = (int)x;
        else s[i] = x;
    }
    return s;
}

// One case: batch dims `bshape` (c contiguous over them unless cgap), M×N×K.
static void run_case(const char* name, int dt, std::vector<long long> bshape, int M, int N, int K, bool aTransposed, bool bBroadcastDim0, int cgap, unsigned seed)
{
    cases++;
    std::mt19937_64 rng(seed);
    int rank = (int)bshape.size();
    long long batch = 1;
    for (auto s : bshape) batch *= s;
    // a: [batch..., M, K], rows padded by 3, optionally stored as [batch..., K, M] (read transposed).
    long long aMat = (long long)(aTransposed ? K : M) * ((aTransposed ? M : K) + 3);
    Operand A{fill(rng, dt, aMat * batch, 0), dt, aTransposed ? 1 : K + 3, aTransposed ? M + 3 : 1, {}};
    // b: [batch..., K, N]; broadcast along batch dim 0 when asked (stride 0 there).
    long long bMat = (long long)K * N;
    Operand B{fill(rng, dt, bMat * batch, 0), dt, N, 1, {}};
    // c: rows padded by cgap, sentinel everywhere so untouched gaps are visible.
    const long long sentinel = 0x5A5A5A5A;
    long long cMat = (long long)M * (N + cgap);
    Operand C{fill(rng, dt, cMat * batch, sentinel), dt, N + cgap, 1, {}};
    std::vector<long long> as(rank), bs(rank), cs(rank);
    long long sa = aMat, sb = bMat, sc = cMat;
    for (int d = rank - 1; d >= 0; d--)
    {
        as[d] = sa; bs[d] = sb; cs[d] = sc;
        sa *= bshape[d]; sb *= bshape[d]; sc *= bshape[d];
    }
    if (bBroadcastDim0 && rank > 0) bs[0] = 0;
    Layout L{};
    L.rank = rank;
    for (int d = 0; d < rank; d++) { L.size[d] = bshape[d]; L.stride[0][d] = cs[d]; L.stride[1][d] = as[d]; L.stride[2][d] = bs[d]; }
    long long tiles = (long long)((M + 15) / 16) * ((N + 15) / 16);
    launch((unsigned)(batch * tiles), MMI_TILE * MMI_TILE, [&] {
        matmul_int(L, M, N, K, C.storage.data(), C.rs, C.cs, A.storage.data(), A.rs, A.cs, B.storage.data(), B.rs, B.cs, dt);
    });
    int bad = 0;
    for (long long z = 0; z < batch; z++)
    {
        long long oa = 0, ob = 0, oc = 0, rest = z;
        for (int d = rank - 1; d >= 0; d--) { long long i = rest % bshape[d]; rest /= bshape[d]; oa += i * as[d]; ob += i * bs[d]; oc += i * cs[d]; }
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N + cgap; j++)
            {
                long long got = C.get(oc + i * C.rs + j);
                if (j >= N) { if (got != (dt == DT_I32 ? (long long)(int)sentinel : sentinel)) bad++; continue; }
                long long want;
                if (dt == DT_I32)
                {
                    uint32_t s = 0;
                    for (int k = 0; k < K; k++) s += (uint32_t)A.get(oa + i * A.rs + k * A.cs) * (uint32_t)B.get(ob + k * B.rs + j * B.cs);
                    want = (long long)(int)s;
                }
                else
                {
                    uint64_t s = 0;
                    for (int k = 0; k < K; k++) s += (uint64_t)A.get(oa + i * A.rs + k * A.cs) * (uint64_t)B.get(ob + k * B.rs + j * B.cs);
                    want = (long long)s;
                }
                if (got != want && bad++ < 3) printf("  %s: [%lld][%d][%d] %lld, want %lld\n", name, z, i, j, got, want);
            }
    }
    CHECK(bad == 0, "%s: %d wrong elements", name, bad);
}

int main()
{
    for (int dt : {DT_I32, DT_I64})
    {
        const char* t = dt == DT_I32 ? "int32" : "int64";
        char n[128];
        snprintf(n, sizeof n, "%s 37x21x50 (tile edges)", t); run_case(n, dt, {}, 37, 21, 50, false, false, 0, 1 + dt);
        snprintf(n, sizeof n, "%s 1x1x1", t); run_case(n, dt, {}, 1, 1, 1, false, false, 0, 2 + dt);
        snprintf(n, sizeof n, "%s 17x33x3 (K < 16), a transposed", t); run_case(n, dt, {}, 17, 33, 3, true, false, 0, 3 + dt);
        snprintf(n, sizeof n, "%s 16x16x32 (whole tiles), c rows padded", t); run_case(n, dt, {}, 16, 16, 32, false, false, 5, 4 + dt);
        snprintf(n, sizeof n, "%s batch [3] 9x18x17, b broadcast", t); run_case(n, dt, {3}, 9, 18, 17, false, true, 0, 5 + dt);
        snprintf(n, sizeof n, "%s batch [2,3] 5x7x20, b broadcast on dim 0, a transposed, c padded", t); run_case(n, dt, {2, 3}, 5, 7, 20, true, true, 2, 6 + dt);
    }
    // The wrap itself, by hand: 2^31 - 1 squared twice into int32 wraps to 2 (2·(2^62 - 2^32 + 1) mod 2^32); int64
    // (2^62)·4 wraps to 0.
    { int a[2] = {0x7fffffff, 0x7fffffff}, b[2] = {0x7fffffff, 0x7fffffff}, c[1] = {7};
      Layout L{}; launch(1, 256, [&] { matmul_int(L, 1, 1, 2, c, 1, 1, a, 2, 1, b, 1, 1, DT_I32); });
      CHECK(c[0] == 2, "int32 wrap: %d", c[0]); cases++; }
    { long long a[1] = {1LL << 62}, b[1] = {4}, c[1] = {7};
      Layout L{}; launch(1, 256, [&] { matmul_int(L, 1, 1, 1, c, 1, 1, a, 1, 1, b, 1, 1, DT_I64); });
      CHECK(c[0] == 0, "int64 wrap: %lld", c[0]); cases++; }
    printf("%s (%d failures; %d cases)\n", fails ? "FAILED" : "all passed", fails, cases);
    return fails != 0;
}
