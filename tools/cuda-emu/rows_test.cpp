#include <initializer_list>
#include "emu_threads.h"
#include "prelude.cuh"
namespace red { 
#define reduce reduce_k
#include "reduce.cu"
#undef reduce
}
namespace sm {
#include "softmax.cu"
}
namespace nm {
#include "norms.cu"
}
namespace ce {
#include "cross_entropy.cu"
}
namespace at {
#include "attention.cu"
}
namespace ix {
#include "indexing.cu"
}
namespace ewns {
#include "elementwise.cu"
}
#define ew_binary ewns::binary
#include <algorithm>
#include <random>
int fails = 0;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)
static Layout L1(i64 n, int ops, i64 s0, i64 s1 = 0) { Layout L{}; L.rank = 1; L.size[0] = n; L.stride[0][0] = s0; if (ops > 1) L.stride[1][0] = s1; return L; }
// The rule of each arg op over one row, as plain loops: ties give the lowest index, -0 = +0; A_MAX/A_MIN let the first
// NaN win, A_MAX_NAN_LOWEST puts NaN below every number (-inf included; NaN only gives 0); A_MAX_NUMBER is
// A_MAX_NAN_LOWEST's index where its value is a number above -inf, else -1 (a row of NaN and -inf only).
static long long arg_ref(int op, const double* row, long long n)
{
    if (op == A_MAX_NUMBER)
    {
        long long b = arg_ref(A_MAX_NAN_LOWEST, row, n);
        return row[b] > -INFINITY ? b : -1;
    }
    long long b = 0;
    for (long long j = 1; j < n; j++)
    {
        double v = row[j], w = row[b];
        bool vn = v != v, wn = w != w;
        if (op == A_MAX_NAN_LOWEST) { if (v > w || (wn && !vn)) b = j; continue; }
        if (wn) break;
        if (vn || (op == A_MAX ? v > w : v < w)) b = j;
    }
    return b;
}

// ArgMax, ArgMin, ArgMaxNaNLowest and ArgMaxNumber in f32, bf16 and f64 over rows of 1 to a vocabulary (152,064), values from a small
// set (ties within and across chunks) with NaN, ±inf and ±0 sprinkled in, and rows of NaN only, of NaN and -inf, of ±0
// only, of -inf only, of NaN then -inf and of -inf then NaN (halves), of NaN and -inf whose only number is the last
// element (in the last chunk): arg_reduce (a block per row, a grid smaller than the rows) and the split path (arg_reduce_split, its chunks in
// launch order, and for f32 reversed and shuffled too: another block merges each time) against the loops, the split equal to the one
// block, and every ticket back at 0 after each launch (so the next launch, or graph replay, merges at its last chunk).
static void arg_cases()
{
    std::mt19937 rng(7);
    const double nan = NAN, inf = INFINITY;
    const double set[] = {nan, -inf, inf, -0.0, 0.0, 0.5, 0.5, 1.0};
    // Not f16: its conversions are PTX (cvt) that the emulator does not run.
    for (int dt : {DT_F32, DT_BF16, DT_F64})
        for (long long n : {1LL, 2LL, 300LL, 4099LL, 152064LL})
        {
            const int R = 9;
            std::vector<double> v(R * n);
            for (auto& e : v) e = rng() % 50 == 0 ? set[rng() % 8] : (double)(rng() % 16) / 8 - 1;
            for (long long j = 0; j < n; j++)
            {
                v[j] = nan;                                  // row 0: NaN only
                v[n + j] = j % 3 == 1 ? -inf : nan;          // row 1: NaN and -inf (n = 1: NaN only)
                v[2 * n + j] = j % 2 ? 0.0 : -0.0;           // row 2: ±0 only
                v[5 * n + j] = -inf;                         // row 5: -inf only
                // Rows whose halves hold no number of different kinds, so that whole chunks of the split path give a NaN
                // winner and others a -inf one (the merge must rank the NaN partials below the -inf ones and still say -1):
                v[6 * n + j] = j < n / 2 ? nan : -inf;       // row 6: NaN, then -inf
                v[7 * n + j] = j < n / 2 ? -inf : nan;       // row 7: -inf, then NaN
                v[8 * n + j] = j % 2 ? nan : -inf;           // row 8: NaN and -inf, and (below) one number in the last chunk
            }
            v[8 * n + n - 1] = -3.0;                         // row 8: its only number the last element (n = 1: the row)
            if (n > 1) v[4 * n + n - 1] = inf;               // row 4: its max the last element (and maybe an earlier inf)
            std::vector<unsigned char> x(R * n * elem_size(dt));
            for (long long i = 0; i < R * n; i++) store<double>(x.data(), dt, i, v[i]);
            for (long long i = 0; i < R * n; i++) v[i] = load<double>(x.data(), dt, i); // what the kernels see
            Layout L = L1(R, 2, 1, n);
            for (int op : {A_MAX, A_MIN, A_MAX_NAN_LOWEST, A_MAX_NUMBER})
            {
                std::vector<long long> y1(R, -7);
                launch(2, 64, [&] { red::arg_reduce(L, R, n, 1, op, y1.data(), x.data(), dt); });
                for (long long chunks : {2LL, 3LL, 37LL})
                    for (int how = 0; how < (dt == DT_F32 ? 3 : 1); how++) // block orders: launch, reversed, shuffled
                    {
                        if (chunks > n) continue;
                        const long long len = (n + chunks - 1) / chunks;
                        std::vector<double> pv(R * chunks); std::vector<long long> pi(R * chunks, -9), y(R, -7);
                        std::vector<unsigned> tickets(R, 0);
                        // The emulator runs one row's chunks per launch (blockIdx.y set by hand), in the given order.
                        std::vector<unsigned> order(chunks);
                        for (unsigned c = 0; c < chunks; c++) order[c] = how == 1 ? (unsigned)(chunks - 1 - c) : c;
                        for (int r = 0; r < R; r++)
                        {
                            if (how == 2) std::shuffle(order.begin(), order.end(), rng);
                            launch((unsigned)chunks, 64, [&] { blockIdx.y = r; gridDim.y = R; red::arg_reduce_split(L, n, 1, op, len, pv.data(), pi.data(), tickets.data(), y.data(), x.data(), dt); }, &order);
                        }
                        for (int r = 0; r < R; r++)
                        {
                            CHECK(y[r] == y1[r], "arg op %d dt %d n %lld row %d: %lld chunks (order %d) give %lld, one block %lld", op, dt, n, r, chunks, how, y[r], y1[r]);
                            CHECK(tickets[r] == 0, "arg op %d n %lld row %d: ticket %u left after the launch", op, n, r, tickets[r]);
                        }
                    }
                for (int r = 0; r < R; r++)
                {
                    long long want = arg_ref(op, v.data() + r * n, n);
                    CHECK(y1[r] == want, "arg op %d dt %d n %lld row %d: %lld, want %lld", op, dt, n, r, y1[r], want);
                }
                if (op == A_MAX_NAN_LOWEST && n > 2) // the rows built to test the rule give what they were built for
                    CHECK(y1[0] == 0 && y1[1] == 1 && y1[2] == 0 && y1[5] == 0, "arg NaN-lowest dt %d n %lld: rows 0-2, 5 give %lld %lld %lld %lld", dt, n, y1[0], y1[1], y1[2], y1[5]);
                if (op == A_MAX_NUMBER) // no number: -1 (rows 0, 1, 5, 6, 7), in both paths (checked equal above); ±0 is a number
                {
                    CHECK(y1[0] == -1 && y1[1] == -1 && y1[2] == 0 && y1[5] == -1, "arg number dt %d n %lld: rows 0-2, 5 give %lld %lld %lld %lld", dt, n, y1[0], y1[1], y1[2], y1[5]);
                    CHECK(y1[6] == -1 && y1[7] == -1 && y1[8] == n - 1, "arg number dt %d n %lld: rows 6-8 give %lld %lld %lld", dt, n, y1[6], y1[7], y1[8]);
                }
            }
        }
}

// reduce_split: R = 3 outputs of n elements (a row stride past the row, so outputs do not touch) in f32, bf16, f64 and
// int64, every op, chunks as the launcher picks them (n 70,000: 3) and 7 chunks, blocks in launch, reversed and shuffled
// orders: the same bits each time, every ticket back at 0, the one-block `reduce`'s result exactly for Max/Min and the
// integer ops, within 1e-12 of it otherwise (float64 partials in another order), and a float64 loop's values.
static void split_cases()
{
    std::mt19937 rng(11);
    for (int dt : {DT_F32, DT_BF16, DT_F64, DT_I64})
        for (long long n : {70000LL, 200003LL})
        {
            const int R = 3; const long long row = n + 5;
            std::vector<unsigned char> x(R * row * elem_size(dt));
            std::vector<double> v(R * row);
            for (long long i = 0; i < R * row; i++)
            {
                double e = dt == DT_I64 ? (double)((long long)(rng() % 7) - 3) : (double)(rng() % 2001) / 1000 - 1;
                if (dt != DT_I64 && i == row + 777) e = NAN;             // row 1 holds a NaN: Max/Min/Sum give NaN
                store<double>(x.data(), dt, i, e);
                v[i] = load<double>(x.data(), dt, i);
            }
            Layout outer = L1(R, 2, 1, row), inner = L1(n, 1, 1);
            for (int op : {0, 1, 2, 3, 4, 5})
            {
                bool integer = dt == DT_I64;
                int ydt = integer ? DT_I64 : DT_F64;
                std::vector<double> y1(R); std::vector<long long> y1i(R);
                launch(R, 64, [&] { red::reduce_k(outer, R, inner, n, op, integer ? (void*)y1i.data() : (void*)y1.data(), ydt, x.data(), dt); });
                for (long long chunks : {(n + 32767) / 32768, 7LL})
                {
                    long long len = (n + chunks - 1) / chunks; chunks = (n + len - 1) / len;
                    std::vector<double> pd(R * chunks); std::vector<long long> pi(R * chunks);
                    std::vector<unsigned> tickets(R, 0);
                    std::vector<double> first(R); std::vector<long long> firsti(R);
                    std::vector<unsigned> order(chunks); for (unsigned c = 0; c < chunks; c++) order[c] = c;
                    for (int how = 0; how < 3; how++)
                    {
                        if (how == 1) std::reverse(order.begin(), order.end());
                        std::vector<double> y(R, -7); std::vector<long long> yi(R, -7);
                        for (int r = 0; r < R; r++)
                        {
                            if (how == 2) std::shuffle(order.begin(), order.end(), rng);
                            launch((unsigned)chunks, 64, [&] { blockIdx.y = r; gridDim.y = R; red::reduce_split(outer, inner, n, op, len, pd.data(), pi.data(), tickets.data(), integer ? (void*)yi.data() : (void*)y.data(), ydt, x.data(), dt); }, &order);
                        }
                        for (int r = 0; r < R; r++)
                        {
                            CHECK(tickets[r] == 0, "reduce_split op %d n %lld row %d: ticket %u left", op, n, r, tickets[r]);
                            if (how == 0) { first[r] = y[r]; firsti[r] = yi[r]; continue; }
                            CHECK(integer ? yi[r] == firsti[r] : memcmp(&y[r], &first[r], 8) == 0, "reduce_split op %d dt %d n %lld row %d: order %d changed the bits", op, dt, n, r, how);
                        }
                        if (how > 0) continue;
                        for (int r = 0; r < R; r++)
                        {
                            if (integer) { CHECK(yi[r] == y1i[r], "reduce_split op %d i64 n %lld row %d: %lld, one block %lld", op, n, r, yi[r], y1i[r]); continue; }
                            double s = 0, sq = 0, p = 1, mx = -INFINITY, mn = INFINITY; bool nan = false;
                            for (long long j = 0; j < n; j++) { double e = v[r * row + j]; nan |= e != e; s += e; sq += e * e; p *= 1 + e / 1e5; mx = std::max(mx, e); mn = std::min(mn, e); }
                            double want = op == 0 ? s : op == 1 ? s / n : op == 2 ? mx : op == 3 ? mn : op == 5 ? sq : 0;
                            if (op == 4) continue; // Prod of these values under/overflows; its exactness is the integer rows'
                            if (nan) { CHECK(y[r] != y[r] && y1[r] != y1[r], "reduce_split op %d dt %d row %d: NaN lost (%g, one block %g)", op, dt, r, y[r], y1[r]); continue; }
                            if (op == 2 || op == 3) CHECK(y[r] == y1[r] && y[r] == want, "reduce_split max/min op %d dt %d row %d: %g, one block %g, want %g", op, dt, r, y[r], y1[r], want);
                            else CHECK(fabs(y[r] - y1[r]) <= 1e-12 * (1 + fabs(want)) && fabs(y[r] - want) <= 1e-9 * (1 + fabs(want)), "reduce_split op %d dt %d n %lld row %d: %.17g, one block %.17g, want %.17g", op, dt, n, r, y[r], y1[r], want);
                        }
                    }
                }
            }
        }
}

#include <sys/mman.h>
#include <signal.h>
#include <unistd.h>
// A bf16 row of n elements at a 4 GiB + 64 MiB inaccessible guard on either side, its pages all one 64 MiB memfd mapped
// over and over (so 4 GiB of row cost 64 MiB of memory; the values are whatever the threads last wrote, which the
// case below does not check): an index that wraps below 0 or runs past n faults in a guard.
static const size_t WIDE_CHUNK = 64ull << 20, WIDE_GUARD = (4ull << 30) + WIDE_CHUNK;
static u16* wide_row(int fd, long long n)
{
    size_t bytes = ((size_t)n * 2 + WIDE_CHUNK - 1) / WIDE_CHUNK * WIDE_CHUNK;
    char* base = (char*)mmap(nullptr, bytes + 2 * WIDE_GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) return nullptr;
    for (size_t o = 0; o < bytes; o += WIDE_CHUNK)
        if (mmap(base + WIDE_GUARD + o, WIDE_CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) return nullptr;
    return (u16*)(base + WIDE_GUARD);
}
static void wide_fault(int) { static const char m[] = "FAIL add_rms_norm at n = INT_MAX indexed outside its row (a column index wrapped past INT_MAX)\n"; (void)!write(1, m, sizeof m - 1); _exit(1); }
// add_rms_norm over one bf16 row of INT_MAX elements with 1024 threads (RowBlock's block for a wide row): every thread's
// tail loop ends within the row. An int column index stepped by 1024 from its last element past INT_MAX - 1024 wraps
// negative, stays below n and indexes 4 GiB before the row (on a GPU: memory of whatever lies there).
static void add_norm_int_max()
{
    int fd = memfd_create("wide_row", 0);
    if (fd < 0 || ftruncate(fd, WIDE_CHUNK) != 0) { printf("(add_rms_norm at INT_MAX skipped: no memfd) "); return; }
    const long long n = 2147483647LL;
    u16 *x = wide_row(fd, n), *res = wide_row(fd, n), *w = wide_row(fd, n), *sum = wide_row(fd, n), *y = wide_row(fd, n);
    if (!x || !res || !w || !sum || !y) { printf("(add_rms_norm at INT_MAX skipped: no address space) "); return; }
    struct sigaction sa {}; sa.sa_handler = wide_fault; sigaction(SIGSEGV, &sa, nullptr); sigaction(SIGBUS, &sa, nullptr);
    launch(1, 1024, [&] { nm::add_rms_norm(1, n, sum, y, x, res, w, DT_BF16, 1e-6f); });
    sa.sa_handler = SIG_DFL; sigaction(SIGSEGV, &sa, nullptr); sigaction(SIGBUS, &sa, nullptr);
}

int main()
{
    std::mt19937 rng(1); std::normal_distribution<float> nd;
    const int R = 5, N = 300;
    std::vector<float> x(R * N); for (auto& v : x) v = nd(rng);
    // reduce sum / max / mean over the last axis, one output per row
    for (int op : {0, 1, 2, 3, 5})
    {
        std::vector<float> y(R, -1);
        Layout outer = L1(R, 2, 1, N), inner = L1(N, 1, 1);
        launch(R, 64, [&] { red::reduce_k(outer, R, inner, N, op, y.data(), DT_F32, x.data(), DT_F32); });
        for (int r = 0; r < R; r++)
        {
            double s = 0, mx = -1e30, mn = 1e30; for (int j = 0; j < N; j++) { double v = x[r * N + j]; s += op == 5 ? v * v : v; mx = std::max(mx, v); mn = std::min(mn, v); }
            double want = op == 0 || op == 5 ? s : op == 1 ? s / N : op == 2 ? mx : mn;
            CHECK(fabs(y[r] - want) < 1e-4 * (1 + fabs(want)), "reduce op %d row %d: %g vs %g", op, r, y[r], want);
        }
    }
    // argmax
    { std::vector<long long> y(R); Layout L = L1(R, 2, 1, N);
      launch(R, 64, [&] { red::arg_reduce(L, R, N, 1, A_MAX, y.data(), x.data(), DT_F32); });
      for (int r = 0; r < R; r++) { int b = 0; for (int j = 1; j < N; j++) if (x[r * N + j] > x[r * N + b]) b = j; CHECK(y[r] == b, "argmax row %d: %lld vs %d", r, y[r], b); } }
    // reduce_columns: over the leading axis of a [C, M] view (outputs along M, stride 1), rows not a multiple of 32,
    // C not a multiple of the 8 groups, and a grid smaller than the rows (its stride loop)
    for (int op : {0, 1, 2, 3, 5})
    {
        const int C = 9, M = 150; // 1350 of x's 1500 values
        std::vector<float> y(M, -1);
        Layout outer = L1(M, 2, 1, 1), inner = L1(C, 1, M);
        launch(3, 256, [&] { red::reduce_columns(outer, M, inner, C, op, y.data(), DT_F32, x.data(), DT_F32); });
        for (int m = 0; m < M; m++)
        {
            double s = 0, mx = -1e30, mn = 1e30; for (int c = 0; c < C; c++) { double v = x[c * M + m]; s += op == 5 ? v * v : v; mx = std::max(mx, v); mn = std::min(mn, v); }
            double want = op == 0 || op == 5 ? s : op == 1 ? s / C : op == 2 ? mx : mn;
            CHECK(fabs(y[m] - want) < 1e-5 * (1 + fabs(want)), "reduce_columns op %d output %d: %g vs %g", op, m, y[m], want);
        }
    }
    arg_cases();
    split_cases();
    // add_rms_norm = the add, then rms_norm, bit for bit (f32 and bf16; a block smaller than the row, several rows)
    for (int dt : {DT_F32, DT_BF16})
    {
        const int rows = 3, n = 300, es = dt == DT_BF16 ? 2 : 4;
        std::vector<unsigned char> X(rows * n * 4), Rs(rows * n * 4), W(n * 4), S1(rows * n * 4), S2(rows * n * 4), Y1(rows * n * 4), Y2(rows * n * 4);
        auto put = [&](std::vector<unsigned char>& b, int i, float v) { if (dt == DT_BF16) ((u16*)b.data())[i] = f32_to_bf16(v); else ((float*)b.data())[i] = v; };
        for (int i = 0; i < rows * n; i++) { put(X, i, nd(rng)); put(Rs, i, nd(rng)); }
        for (int j = 0; j < n; j++) put(W, j, 1 + 0.1f * nd(rng));
        Layout L = L1(rows * n, 3, 1, 1); L.stride[2][0] = 1;
        launch(4, 64, [&] { ew_binary(L, rows * n, 0, S1.data(), dt, X.data(), Rs.data(), dt); });
        Layout LR = L1(rows, 2, n, n);
        launch(rows, 64, [&] { nm::rms_norm(LR, rows, n, Y1.data(), dt, 1, S1.data(), dt, 1, W.data(), dt, 1, 1e-6f, nullptr); });
        launch(2, 64, [&] { nm::add_rms_norm(rows, n, S2.data(), Y2.data(), X.data(), Rs.data(), W.data(), dt, 1e-6f); });
        CHECK(memcmp(S1.data(), S2.data(), rows * n * es) == 0, "add_rms_norm sum, dt %d", dt);
        CHECK(memcmp(Y1.data(), Y2.data(), rows * n * es) == 0, "add_rms_norm y, dt %d", dt);
    }
    // The decode shapes as CudaBackend launches them (one row; RowBlock: 1024 threads for 3584, 256 for 896, both
    // kernels alike), with the add as decode ran it before the fusion (binary_packed): the residual step the next layer's
    // input norm now makes (x' = h + down, then rms_norm(x')) gives the same bits through add_rms_norm.
    for (int dt : {DT_F32, DT_BF16})
        for (int shape = 0; shape < 2; shape++)
        {
            const int n = shape == 0 ? 3584 : 896, block = shape == 0 ? 1024 : 256, es = dt == DT_BF16 ? 2 : 4;
            std::vector<unsigned char> X(n * 4), Rs(n * 4), W(n * 4), S1(n * 4), S2(n * 4), Y1(n * 4), Y2(n * 4);
            auto put = [&](std::vector<unsigned char>& b, int i, float v) { if (dt == DT_BF16) ((u16*)b.data())[i] = f32_to_bf16(v); else ((float*)b.data())[i] = v; };
            for (int i = 0; i < n; i++) { put(X, i, 3 * nd(rng)); put(Rs, i, nd(rng)); put(W, i, 1 + 0.1f * nd(rng)); }
            i64 packs = n / (16 / es);
            launch(2, 256, [&] { ewns::binary_packed(packs, n, 0, S1.data(), X.data(), Rs.data(), dt); });
            Layout LR = L1(1, 2, n, n);
            launch(1, block, [&] { nm::rms_norm(LR, 1, n, Y1.data(), dt, 1, S1.data(), dt, 1, W.data(), dt, 1, 1e-6f, nullptr); });
            launch(1, block, [&] { nm::add_rms_norm(1, n, S2.data(), Y2.data(), X.data(), Rs.data(), W.data(), dt, 1e-6f); });
            CHECK(memcmp(S1.data(), S2.data(), n * es) == 0, "add_rms_norm sum = binary_packed add, n %d dt %d", n, dt);
            CHECK(memcmp(Y1.data(), Y2.data(), n * es) == 0, "add_rms_norm y = rms_norm of the add, n %d dt %d", n, dt);
        }
    // add_rms_norm's kept-in-registers prefix and its tail loop at other widths: rows shorter than the block, a tail past
    // 4 elements a thread, rows > grid; also in place (sum written over x, y over res: each thread reads its elements
    // before it writes them), against the add then rms_norm.
    for (int dt : {DT_F32, DT_BF16})
        for (int n : {5, 63, 257, 1025, 4097})
            for (int block : {64, 256, 1024})
            {
                const int rows = 3, es = dt == DT_BF16 ? 2 : 4;
                std::vector<unsigned char> X(rows * n * 4), Rs(rows * n * 4), W(n * 4), S1(rows * n * 4), S2(rows * n * 4), Y1(rows * n * 4), Y2(rows * n * 4);
                auto put = [&](std::vector<unsigned char>& b, int i, float v) { if (dt == DT_BF16) ((u16*)b.data())[i] = f32_to_bf16(v); else ((float*)b.data())[i] = v; };
                for (int i = 0; i < rows * n; i++) { put(X, i, 3 * nd(rng)); put(Rs, i, nd(rng)); }
                for (int j = 0; j < n; j++) put(W, j, 1 + 0.1f * nd(rng));
                Layout L = L1(rows * n, 3, 1, 1); L.stride[2][0] = 1;
                launch(4, 64, [&] { ew_binary(L, rows * n, 0, S1.data(), dt, X.data(), Rs.data(), dt); });
                Layout LR = L1(rows, 2, n, n);
                launch(rows, block, [&] { nm::rms_norm(LR, rows, n, Y1.data(), dt, 1, S1.data(), dt, 1, W.data(), dt, 1, 1e-6f, nullptr); });
                launch(2, block, [&] { nm::add_rms_norm(rows, n, S2.data(), Y2.data(), X.data(), Rs.data(), W.data(), dt, 1e-6f); });
                CHECK(memcmp(S1.data(), S2.data(), rows * n * es) == 0 && memcmp(Y1.data(), Y2.data(), rows * n * es) == 0, "add_rms_norm n %d block %d dt %d", n, block, dt);
                std::vector<unsigned char> X3 = X, R3 = Rs;
                launch(2, block, [&] { nm::add_rms_norm(rows, n, X3.data(), R3.data(), X3.data(), R3.data(), W.data(), dt, 1e-6f); });
                CHECK(memcmp(S1.data(), X3.data(), rows * n * es) == 0 && memcmp(Y1.data(), R3.data(), rows * n * es) == 0, "add_rms_norm in place, n %d block %d dt %d", n, block, dt);
            }
    add_norm_int_max();
    // softmax and log-softmax
    for (int lg : {0, 1})
    { std::vector<float> y(R * N); Layout L = L1(R, 2, N, N);
      launch(R, 64, [&] { sm::softmax(L, R, N, y.data(), 1, x.data(), 1, DT_F32, lg); });
      for (int r = 0; r < R; r++) { double m = -1e30, s = 0; for (int j = 0; j < N; j++) m = std::max(m, (double)x[r * N + j]); for (int j = 0; j < N; j++) s += exp(x[r * N + j] - m);
        for (int j = 0; j < N; j++) { double p = exp(x[r * N + j] - m) / s; double want = lg ? log(p) : p; CHECK(fabs(y[r * N + j] - want) < 1e-5 * (1 + fabs(want)), "softmax %d", lg); } } }
    // rms norm + backward, layer norm
    { std::vector<float> w(N), y(R * N), rstd(R), dx(R * N), dy(R * N), dw(N, 0); for (auto& v : w) v = 1 + 0.1f * nd(rng); for (auto& v : dy) v = nd(rng);
      Layout L = L1(R, 2, N, N);
      launch(R, 64, [&] { nm::rms_norm(L, R, N, y.data(), DT_F32, 1, x.data(), DT_F32, 1, w.data(), DT_F32, 1, 1e-6f, rstd.data()); });
      for (int r = 0; r < R; r++) { double s = 0; for (int j = 0; j < N; j++) s += x[r * N + j] * x[r * N + j]; double rr = 1 / sqrt(s / N + 1e-6);
        CHECK(fabs(rstd[r] - rr) < 1e-5 * rr, "rstd"); for (int j = 0; j < N; j++) CHECK(fabs(y[r * N + j] - w[j] * x[r * N + j] * rr) < 1e-5, "rms y"); }
      launch(R, 64, [&] { nm::rms_norm_backward(R, N, dx.data(), dy.data(), x.data(), DT_F32, w.data(), DT_F32, rstd.data(), 0, 0.0f); });
      // the weight gradient: chunks of rows summed in order, then the chunks in order (no atomics)
      auto weight_grad = [&](const float* mu, const float* rs_, float* dw_, float* db_)
      { const i64 C = 3; std::vector<float> pw(C * N), pb(C * N);
        for (unsigned yb = 0; yb < C; yb++)
          launch((N + 63) / 64, 64, [&] { blockIdx.y = yb; nm::norm_weight_grad_partial(R, N, C, dy.data(), x.data(), DT_F32, mu, rs_, dw_ ? pw.data() : nullptr, db_ ? pb.data() : nullptr); });
        launch(2, 64, [&] { nm::norm_weight_grad_reduce(N, C, dw_ ? pw.data() : nullptr, dw_, db_ ? pb.data() : nullptr, db_); }); };
      weight_grad(nullptr, rstd.data(), dw.data(), nullptr);
      for (int r = 0; r < R; r++) { double rr = rstd[r], dot = 0; for (int j = 0; j < N; j++) dot += w[j] * dy[r * N + j] * x[r * N + j];
        for (int j = 0; j < N; j++) { double want = rr * w[j] * dy[r * N + j] - x[r * N + j] * rr * rr * rr * dot / N; CHECK(fabs(dx[r * N + j] - want) < 1e-4, "rms dx"); } }
      for (int j = 0; j < N; j++) { double want = 0; for (int r = 0; r < R; r++) want += dy[r * N + j] * x[r * N + j] * (double)rstd[r]; CHECK(fabs(dw[j] - want) < 1e-5 * (1 + fabs(want)), "rms dw %d: %g vs %g", j, dw[j], want); }
      // recomputed statistics (stored into a scratch vector): the same dx, rstd and dw
      { std::vector<float> dx2(R * N), dw2(N, 0), rstd2(R);
        launch(R, 64, [&] { nm::rms_norm_backward(R, N, dx2.data(), dy.data(), x.data(), DT_F32, w.data(), DT_F32, rstd2.data(), 1, 1e-6f); });
        weight_grad(nullptr, rstd2.data(), dw2.data(), nullptr);
        for (int r = 0; r < R; r++) CHECK(fabs(rstd2[r] - rstd[r]) < 1e-6 * rstd[r], "rstd recomputed");
        for (int i = 0; i < R * N; i++) CHECK(fabs(dx2[i] - dx[i]) < 1e-6 * (1 + fabs(dx[i])), "rms dx recomputed %d: %g vs %g", i, dx2[i], dx[i]);
        for (int j = 0; j < N; j++) CHECK(fabs(dw2[j] - dw[j]) < 1e-5 * (1 + fabs(dw[j])), "rms dw recomputed %d", j); }
      std::vector<float> mean(R), rs(R);
      launch(R, 64, [&] { nm::layer_norm(L, R, N, y.data(), 1, x.data(), 1, DT_F32, w.data(), nullptr, DT_F32, 1, 0, 1e-5, mean.data(), rs.data()); });
      for (int r = 0; r < R; r++) { double mu = 0; for (int j = 0; j < N; j++) mu += x[r * N + j]; mu /= N; double var = 0; for (int j = 0; j < N; j++) var += (x[r * N + j] - mu) * (x[r * N + j] - mu); var /= N;
        for (int j = 0; j < N; j++) CHECK(fabs(y[r * N + j] - (x[r * N + j] - mu) / sqrt(var + 1e-5) * w[j]) < 1e-4, "layer norm"); } }
    // cross-entropy with an ignored row
    { long long t[R] = {3, -100, 299, 0, 17}; std::vector<float> loss(R), lse(R);
      // bad targets (checked by the deferred index check): NaN loss for their rows, no out-of-bounds read
      { long long tb[R] = {3, -100, 300, 0, -5}; std::vector<float> lb(R);
        launch(R, 64, [&] { ce::cross_entropy_forward(R, N, x.data(), DT_F32, N, 1, tb, 1, -100, lb.data(), DT_F32, 1, nullptr); });
        CHECK(lb[1] == 0 && std::isnan(lb[2]) && std::isnan(lb[4]) && !std::isnan(lb[0]) && !std::isnan(lb[3]), "ce bad targets give NaN rows"); }
      launch(R, 64, [&] { ce::cross_entropy_forward(R, N, x.data(), DT_F32, N, 1, t, 1, -100, loss.data(), DT_F32, 1, lse.data()); });
      for (int r = 0; r < R; r++) { double m = -1e30, s = 0; for (int j = 0; j < N; j++) m = std::max(m, (double)x[r * N + j]); for (int j = 0; j < N; j++) s += exp(x[r * N + j] - m);
        double l = m + log(s); CHECK(fabs(lse[r] - l) < 1e-5 * fabs(l), "lse"); double want = t[r] == -100 ? 0 : l - x[r * N + t[r]]; CHECK(fabs(loss[r] - want) < 1e-5, "loss row %d %g %g", r, loss[r], want); }
      std::vector<float> dl(R * N), dloss(R, 0.25f);
      launch(R, 64, [&] { ce::cross_entropy_backward(R, N, dl.data(), x.data(), DT_F32, t, -100, lse.data(), dloss.data()); });
      for (int r = 0; r < R; r++) for (int j = 0; j < N; j++) { double want = t[r] == -100 ? 0 : (exp(x[r * N + j] - lse[r]) - (j == t[r])) * 0.25; CHECK(fabs(dl[r * N + j] - want) < 1e-6, "ce bwd"); } }
    // layer norm backward and softmax backward against their formulas
    { std::vector<float> w(N), y(R * N), dy(R * N), dx(R * N), mean(R), rs(R), dw(N, 0), db(N, 0);
      for (auto& a : w) a = 1 + 0.1f * nd(rng); for (auto& a : dy) a = nd(rng);
      Layout L = L1(R, 2, N, N);
      launch(R, 64, [&] { nm::layer_norm(L, R, N, y.data(), 1, x.data(), 1, DT_F32, w.data(), nullptr, DT_F32, 1, 0, 1e-5, mean.data(), rs.data()); });
      launch(R, 64, [&] { nm::layer_norm_backward(R, N, dx.data(), dy.data(), x.data(), DT_F32, w.data(), DT_F32, mean.data(), rs.data(), 0, 0.0); });
      { const i64 C = 2; std::vector<float> pw(C * N), pb(C * N);
        for (unsigned yb = 0; yb < C; yb++)
          launch((N + 63) / 64, 64, [&] { blockIdx.y = yb; nm::norm_weight_grad_partial(R, N, C, dy.data(), x.data(), DT_F32, mean.data(), rs.data(), pw.data(), pb.data()); });
        launch(1, 64, [&] { nm::norm_weight_grad_reduce(N, C, pw.data(), dw.data(), pb.data(), db.data()); }); }
      { std::vector<float> dx2(R * N), mean2(R), rs2(R);
        launch(R, 64, [&] { nm::layer_norm_backward(R, N, dx2.data(), dy.data(), x.data(), DT_F32, w.data(), DT_F32, mean2.data(), rs2.data(), 1, 1e-5); });
        for (int r = 0; r < R; r++) CHECK(fabs(mean2[r] - mean[r]) < 1e-6 && fabs(rs2[r] - rs[r]) < 1e-6 * rs[r], "ln stats recomputed");
        for (int i = 0; i < R * N; i++) CHECK(fabs(dx2[i] - dx[i]) < 1e-6 * (1 + fabs(dx[i])), "ln dx recomputed %d: %g vs %g", i, dx2[i], dx[i]); }
      std::vector<double> dbw(N, 0);
      for (int r = 0; r < R; r++)
      { double mu = mean[r], rr = rs[r], sg = 0, sgx = 0;
        for (int j = 0; j < N; j++) { double xh = (x[r * N + j] - mu) * rr, g = dy[r * N + j] * w[j]; sg += g; sgx += g * xh; dbw[j] += dy[r * N + j]; }
        sg /= N; sgx /= N;
        for (int j = 0; j < N; j++) { double xh = (x[r * N + j] - mu) * rr, g = dy[r * N + j] * w[j]; CHECK(fabs(dx[r * N + j] - rr * (g - sg - xh * sgx)) < 1e-4, "ln dx"); } }
      for (int j = 0; j < N; j++) CHECK(fabs(db[j] - dbw[j]) < 1e-4, "ln db");
      for (int j = 0; j < N; j++) { double want = 0; for (int r = 0; r < R; r++) want += dy[r * N + j] * (x[r * N + j] - mean[r]) * (double)rs[r]; CHECK(fabs(dw[j] - want) < 1e-4 * (1 + fabs(want)), "ln dw %d", j); }
      std::vector<float> p(R * N), dxs(R * N);
      launch(R, 64, [&] { sm::softmax(L, R, N, p.data(), 1, x.data(), 1, DT_F32, 0); });
      launch(R, 64, [&] { sm::softmax_backward(R, N, dxs.data(), dy.data(), p.data(), DT_F32, 0); });
      for (int r = 0; r < R; r++) { double dot = 0; for (int j = 0; j < N; j++) dot += dy[r * N + j] * p[r * N + j];
        for (int j = 0; j < N; j++) CHECK(fabs(dxs[r * N + j] - p[r * N + j] * (dy[r * N + j] - dot)) < 1e-6, "softmax bwd"); } }
    // attention: B1 H2 Hkv1 T5 S7 D40, causal with query offset 2, one warp per block
    { const int H = 2, T = 5, S = 7, D = 40; std::vector<float> q(H * T * D), k(S * D), v(S * D), o(H * T * D), lse(H * T);
      for (auto& a : q) a = nd(rng); for (auto& a : k) a = nd(rng); for (auto& a : v) a = nd(rng);
      AttnStrides st{}; i64 qs[4] = {H * T * D, T * D, D, 1}, ks[4] = {S * D, S * D, D, 1}, ls[3] = {H * T, T, 1};
      for (int i = 0; i < 4; i++) { st.q[i] = qs[i]; st.o[i] = qs[i]; st.k[i] = ks[i]; st.v[i] = ks[i]; } for (int i = 0; i < 3; i++) st.l[i] = ls[i];
      launch(3, 32, [&] { at::attention_forward(q.data(), k.data(), v.data(), o.data(), DT_F32, nullptr, DT_F32, lse.data(), DT_F32, st, 1, H, 1, T, S, D, D, 1, 2, 1 / sqrt((double)D)); });
      for (int h = 0; h < H; h++) for (int t = 0; t < T; t++)
      { int last = std::min(2 + t, S - 1); std::vector<double> sc(last + 1); double m = -1e30;
        for (int j = 0; j <= last; j++) { double s = 0; for (int d = 0; d < D; d++) s += q[(h * T + t) * D + d] * k[j * D + d]; sc[j] = s / sqrt((double)D); m = std::max(m, sc[j]); }
        double z = 0; for (int j = 0; j <= last; j++) z += exp(sc[j] - m);
        CHECK(fabs(lse[h * T + t] - (m + log(z))) < 1e-4, "att lse");
        for (int d = 0; d < D; d++) { double want = 0; for (int j = 0; j <= last; j++) want += exp(sc[j] - m) / z * v[j * D + d]; CHECK(fabs(o[(h * T + t) * D + d] - want) < 1e-5, "att o h%d t%d d%d %g %g", h, t, d, o[(h * T + t) * D + d], want); } } }
    // embedding backward: counting sort (key_count, the multi-block scan, key_place, key_sort_rows with one group of all
    // tokens; scatter_test covers them for scatter-add's groups), then one block per row; the sums
    // must equal, bit for bit, a float sum over each row's tokens in ascending order (float32 and bf16 dy,
    // float32, float64 and bf16 dw), whatever order the placement's atomics took.
    // Two sizes: T 300 (row 5 a third of the tokens: len² > 32·T, sorted by the stable compaction of the ids; the others
    // by rank) and T 6000 with 70 % one id and 10 % another (rows of 4200 and 600: both compacted) next to short rows. The placement's order within a row is
    // then reversed, so the sort cannot lean on the emulator's sequential atomics.
    for (int size = 0; size < 2; size++)
    { const int T = size == 0 ? 300 : 6000, V = 37, D = size == 0 ? 70 : 9; std::vector<long long> ids(T);
      std::uniform_int_distribution<int> pick(0, V - 1);
      for (int t = 0; t < T; t++)
        ids[t] = size == 0 ? (t % 3 == 0 ? 5 : (t % 7 == 0 ? V - 1 : pick(rng))) // one heavy row, the last row, the rest spread
                           : (t % 10 < 7 ? 11 : t % 10 == 7 ? 3 : (t % 13 == 0 ? V - 1 : pick(rng)));
      std::vector<float> dy(T * D); for (auto& a : dy) a = nd(rng);
      std::vector<u16> dyh(T * D); for (int i = 0; i < T * D; i++) dyh[i] = f32_to_bf16(dy[i]);
      std::vector<long long> counts(V + 1, 0), cursor(V + 1), order(T), sorted(T), sums(3);
      launch(4, 32, [&] { ix::key_count(T, V, ids.data(), (unsigned long long*)counts.data()); });
      // the multi-block scan (CudaBackend.InclusiveScan) with 16-entry tiles: 3 tiles over V + 1 = 38 counts
      launch(2, 16, [&] { ix::key_scan_tiles(V + 1, counts.data(), sums.data()); });
      launch(1, 32, [&] { ix::key_scan_sums(3, sums.data()); });
      launch(2, 32, [&] { ix::key_scan_add(V + 1, 16, counts.data(), sums.data(), cursor.data()); });
      { long long c = 0; for (int v = 0; v < V; v++) { CHECK(counts[v] == c, "row start %d: %lld vs %lld", v, counts[v], c); c += std::count(ids.begin(), ids.end(), v); } CHECK(counts[V] == T, "end"); }
      launch(4, 32, [&] { ix::key_place(T, V, ids.data(), (unsigned long long*)cursor.data(), order.data()); });
      for (int v = 0; v < V; v++) std::reverse(order.begin() + counts[v], order.begin() + counts[v + 1]);
      int longRows = 0;
      for (int v = 0; v < V; v++) { long long len = counts[v + 1] - counts[v]; longRows += len * len > 32LL * T; }
      CHECK(longRows == (size == 0 ? 1 : 2), "long rows in case %d: %d", size, longRows);
      std::fill(sorted.begin(), sorted.end(), -1);
      launch(8, 16, [&] { ix::key_sort_rows(V, V, T, counts.data(), order.data(), sorted.data(), ids.data()); });
      for (int v = 0; v < V; v++) for (long long k = counts[v]; k < counts[v + 1]; k++)
      { CHECK(sorted[k] >= 0 && ids[sorted[k]] == v, "sorted row %d slot %lld", v, k); if (k > counts[v]) CHECK(sorted[k] > sorted[k - 1], "ascending row %d slot %lld", v, k); }
      for (int variant = 0; variant < 4; variant++) // 0: f32 dy, f32 dw; 1: bf16 dy, f32 dw; 2: f32 dy, f64 dw; 3: f32 dy, bf16 dw
      { std::vector<float> w32(V * D); std::vector<double> w64(V * D); std::vector<u16> w16(V * D);
        for (int i = 0; i < V * D; i++) { w32[i] = 0.25f * (i % 5); w64[i] = w32[i]; w16[i] = f32_to_bf16(w32[i]); }
        void* dw = variant == 2 ? (void*)w64.data() : variant == 3 ? (void*)w16.data() : (void*)w32.data();
        int wdt = variant == 2 ? DT_F64 : variant == 3 ? DT_BF16 : DT_F32;
        const void* dyp = variant == 1 ? (const void*)dyh.data() : (const void*)dy.data();
        launch(8, 32, [&] { ix::embedding_backward(V, D, dw, wdt, counts.data(), sorted.data(), dyp, variant == 1 ? DT_BF16 : DT_F32, D, 1); });
        for (int v = 0; v < V; v++) for (int j = 0; j < D; j++)
        { float a = 0; double ad = 0;
          for (int t = 0; t < T; t++) if (ids[t] == v) { float g = variant == 1 ? bf16_to_f32(dyh[t * D + j]) : dy[t * D + j]; a += g; ad += g; }
          float base = 0.25f * ((v * D + j) % 5);
          bool ok = variant == 2 ? w64[v * D + j] == (double)base + ad
                  : variant == 3 ? w16[v * D + j] == f32_to_bf16(bf16_to_f32(f32_to_bf16(base)) + a)
                  : w32[v * D + j] == base + a;
          CHECK(ok, "embedding backward variant %d row %d col %d", variant, v, j); } } }
    printf("%s (%d failures)\n", fails ? "FAILED" : "all passed", fails);
    return fails != 0;
}
