// The deterministic scatter-add of native/indexing.cu (scatter_add_walk; scatter_keys + the counting sort key_* +
// scatter_add_sorted) against a C++ port of the CPU's loop (src/Parrot.Tensors/Cpu/ScatterAdd.cs: fibers in row-major
// order, each walking j = 0 .. K-1, every addition in the dtype's arithmetic and stored), bit for bit, in every dtype
// (f32, f64, bf16, f16, i32, i64, u8) with int32 and int64 indices; and the multi-block scan alone. Each launch runs its
// blocks in launch, reversed and shuffled orders, and each key's placement order (integer atomics, no fixed order on a
// GPU) is shuffled before the per-key sort: every run must give the same bits. The host's sequence (CudaBackend.Scatter.cs:
// the plan's group/vector split, the walk or the sort) is ported here. f16 goes through _Float16 (g++'s correctly rounded
// conversions) in place of prelude's cvt PTX, which the emulator cannot run. Also index_copy (CudaBackend.IndexCopy's
// launch) against the CPU's IndexCopy loop, bit for bit, in the same dtypes and bool: narrowed rows, padded and
// transposed dst views, transposed src, strided indices, one id (the axis dropped from the layout), out-of-range
// indices skipped (guard elements around dst catch a stray store) and 150,000 ids into a 151,936-long row. Build and run: see run.sh.
#include "emu_threads.h"
#define f16_to_f32 ptx_f16_to_f32
#define f32_to_f16 ptx_f32_to_f16
#include "prelude.cuh"
#undef f16_to_f32
#undef f32_to_f16
inline float f16_to_f32(u16 h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
inline u16 f32_to_f16(float f) { _Float16 x = (_Float16)f; u16 h; memcpy(&h, &x, 2); return h; }
namespace ix {
#include "indexing.cu"
}
#include <algorithm>
#include <random>
#include <string>
#include <vector>
int fails = 0;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL %s:%d ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)
static std::mt19937_64 rng(20261127);

// ---------------- the CPU's arithmetic, ported (independent of the kernels' Add structs) ----------------
static u16 bf16_round(float f) // BFloat16.FromFloat
{
    unsigned u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
    return (u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float bf16_float(u16 h) { unsigned u = (unsigned)h << 16; float f; memcpy(&f, &u, 4); return f; }
static float half_float(u16 h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static u16 half_round(float f) { _Float16 x = (_Float16)f; u16 h; memcpy(&h, &x, 2); return h; }
static int esize(int dt) { return dt == DT_F64 || dt == DT_I64 ? 8 : dt == DT_U8 || dt == DT_BOOL ? 1 : dt == DT_BF16 || dt == DT_F16 ? 2 : 4; }

// *d = Add(*d, *s) as the CPU's IAccumulate structs do it.
static void cpu_add(int dt, unsigned char* d, const unsigned char* s)
{
    switch (dt)
    {
        case DT_F32: { float a, b; memcpy(&a, d, 4); memcpy(&b, s, 4); a = a + b; memcpy(d, &a, 4); break; }
        case DT_F64: { double a, b; memcpy(&a, d, 8); memcpy(&b, s, 8); a = a + b; memcpy(d, &a, 8); break; }
        case DT_BF16: { u16 a, b; memcpy(&a, d, 2); memcpy(&b, s, 2); a = bf16_round(bf16_float(a) + bf16_float(b)); memcpy(d, &a, 2); break; }
        case DT_F16: { u16 a, b; memcpy(&a, d, 2); memcpy(&b, s, 2); a = half_round(half_float(a) + half_float(b)); memcpy(d, &a, 2); break; }
        case DT_I32: { unsigned a, b; memcpy(&a, d, 4); memcpy(&b, s, 4); a += b; memcpy(d, &a, 4); break; }
        case DT_I64: { unsigned long long a, b; memcpy(&a, d, 8); memcpy(&b, s, 8); a += b; memcpy(d, &a, 8); break; }
        default: *d = (unsigned char)(*d + *s); break;
    }
}

// A strided view into a byte buffer: element offsets, in elements.
struct View { std::vector<int> shape; std::vector<i64> strides; i64 offset = 0; };
static i64 idx_at(const std::vector<unsigned char>& buf, int idt, i64 i)
{
    if (idt == DT_I32) { int v; memcpy(&v, buf.data() + 4 * i, 4); return v; }
    i64 v; memcpy(&v, buf.data() + 8 * i, 8); return v;
}

// The CPU's ScatterPlan loop: fibers (the index's coordinates but the axis) in row-major order, j ascending; an index
// out of range (the CPU throws before any write; the GPU skips it, and the deferred check reports it) adds nothing.
static void cpu_scatter(int dt, int idt, std::vector<unsigned char>& dst, const View& dv, int axis, const std::vector<unsigned char>& index,
                        const View& iv, const std::vector<unsigned char>& src, const View& sv)
{
    int r = (int)iv.shape.size(), es = esize(dt);
    std::vector<int> c(r, 0);
    i64 fibers = 1; for (int d = 0; d < r; d++) if (d != axis) fibers *= iv.shape[d];
    for (i64 f = 0; f < fibers; f++)
    {
        i64 rest = f; // row-major over the other dims
        for (int d = r - 1; d >= 0; d--) if (d != axis) { c[d] = (int)(rest % iv.shape[d]); rest /= iv.shape[d]; }
        i64 oi = iv.offset, os = sv.offset, od = dv.offset;
        for (int d = 0; d < r; d++) if (d != axis) { oi += c[d] * iv.strides[d]; os += c[d] * sv.strides[d]; od += c[d] * dv.strides[d]; }
        for (int j = 0; j < iv.shape[axis]; j++)
        {
            i64 p = idx_at(index, idt, oi + j * iv.strides[axis]);
            if (p < 0 || p >= dv.shape[axis]) continue;
            cpu_add(dt, dst.data() + (od + p * dv.strides[axis]) * es, src.data() + (os + j * sv.strides[axis]) * es);
        }
    }
}

// ---------------- the host's sequence (CudaBackend.Scatter.cs, KernelLayout.cs), ported ----------------
static Layout layout_of(const std::vector<int>& shape, const std::vector<std::vector<i64>>& strides) // KernelLayout.Create
{
    std::vector<std::pair<i64, std::vector<i64>>> dims;
    for (size_t d = 0; d < shape.size(); d++)
    {
        if (shape[d] == 1) continue;
        std::vector<i64> s; for (auto& op : strides) s.push_back(op[d]);
        if (!dims.empty())
        {
            bool merge = true;
            for (size_t k = 0; k < s.size(); k++) merge &= dims.back().second[k] == s[k] * shape[d];
            if (merge) { dims.back().first *= shape[d]; dims.back().second = s; continue; }
        }
        dims.push_back({shape[d], s});
    }
    Layout L{}; L.rank = (i64)dims.size();
    for (size_t d = 0; d < dims.size(); d++) { L.size[d] = dims[d].first; for (size_t k = 0; k < strides.size(); k++) L.stride[k][d] = dims[d].second[k]; }
    return L;
}

// Block orders per launch: 0 launch order, 1 reversed, 2 shuffled.
static int g_order = 0;
template <typename F> void run(unsigned grid, unsigned block, F f)
{
    std::vector<unsigned> o(grid);
    for (unsigned i = 0; i < grid; i++) o[i] = i;
    if (g_order == 1) std::reverse(o.begin(), o.end());
    if (g_order == 2) std::shuffle(o.begin(), o.end(), rng);
    launch(grid, block, f, &o);
}

// The multi-block inclusive scan (key_scan_tiles, key_scan_sums, key_scan_add) with tiles of `tile` entries; grid
// caps the tile blocks (they loop).
static void scan(std::vector<i64>& a, std::vector<i64>& cursor, unsigned tile, unsigned grid)
{
    i64 n = (i64)a.size(), tiles = (n + tile - 1) / tile;
    std::vector<i64> sums(tiles);
    run(std::min<i64>(tiles, grid), tile, [&] { ix::key_scan_tiles(n, a.data(), sums.data()); });
    run(1, 64, [&] { ix::key_scan_sums(tiles, sums.data()); });
    run(5, 32, [&] { ix::key_scan_add(n, tile, a.data(), sums.data(), cursor.data()); });
}

// The counting sort (CudaBackend.SortByKey), each key's placement shuffled before key_sort_rows. Returns (starts, sorted).
static long long g_long_rows;
static std::pair<std::vector<i64>, std::vector<i64>> sort_by_key(const std::vector<i64>& keys, i64 nkeys, i64 per_group, i64 group)
{
    i64 n = (i64)keys.size();
    std::vector<i64> counts(nkeys + 1, 0), cursor(nkeys + 1), order(n, -1), sorted(n, -1);
    run(4, 32, [&] { ix::key_count(n, nkeys, keys.data(), (unsigned long long*)counts.data()); });
    scan(counts, cursor, 64, 3);
    run(4, 32, [&] { ix::key_place(n, nkeys, keys.data(), (unsigned long long*)cursor.data(), order.data()); });
    for (i64 v = 0; v < nkeys; v++)
    {
        std::shuffle(order.begin() + counts[v], order.begin() + counts[v + 1], rng);
        i64 len = counts[v + 1] - counts[v];
        g_long_rows += len * len > 32 * group;
    }
    run(6, 16, [&] { ix::key_sort_rows(nkeys, per_group, group, counts.data(), order.data(), sorted.data(), keys.data()); });
    return {counts, sorted};
}

static bool g_sorted_path;
static void gpu_scatter(int dt, int idt, std::vector<unsigned char>& dst, const View& dv, int axis, const std::vector<unsigned char>& index,
                        const View& iv, const std::vector<unsigned char>& src, const View& sv)
{
    // PlanScatterAdd: group dims (index stride ≠ 0), then vector dims (index stride 0).
    std::vector<int> order;
    int r = (int)iv.shape.size();
    for (int d = 0; d < r; d++) if (d != axis && iv.strides[d] != 0) order.push_back(d);
    size_t groupDims = order.size();
    for (int d = 0; d < r; d++) if (d != axis && iv.strides[d] == 0) order.push_back(d);
    i64 groups = 1, width = 1;
    std::vector<int> shape; std::vector<std::vector<i64>> st(3);
    for (size_t i = 0; i < order.size(); i++)
    {
        int d = order[i];
        (i < groupDims ? groups : width) *= iv.shape[d];
        shape.push_back(iv.shape[d]); st[0].push_back(dv.strides[d]); st[1].push_back(sv.strides[d]); st[2].push_back(iv.strides[d]);
    }
    Layout L = layout_of(shape, st);
    i64 k = iv.shape[axis], dsize = dv.shape[axis], nkeys = groups * dsize;
    g_sorted_path = k > 32;
    unsigned char* dp = dst.data() + dv.offset * esize(dt);
    const unsigned char* sp = src.data() + sv.offset * esize(dt);
    const unsigned char* ip = index.data() + iv.offset * (idt == DT_I32 ? 4 : 8);
    if (!g_sorted_path)
    {
        run(3, 32, [&] { ix::scatter_add_walk(L, groups * width, k, dp, dv.strides[axis], dsize, sp, sv.strides[axis], ip, iv.strides[axis], idt, dt); });
        return;
    }
    i64 positions = groups * k;
    std::vector<i64> keys(positions);
    run(5, 32, [&] { ix::scatter_keys(L, positions, k, width, ip, iv.strides[axis], idt, dsize, keys.data()); });
    auto [starts, sorted] = sort_by_key(keys, nkeys, dsize, k);
    for (i64 v = 0; v < nkeys; v++) for (i64 q = starts[v]; q < starts[v + 1]; q++)
    {
        bool ok = sorted[q] >= 0 && sorted[q] < positions && keys[sorted[q]] == v && (q == starts[v] || sorted[q] > sorted[q - 1]);
        if (!ok) { CHECK(false, "key %lld slot %lld: position %lld not its own or not ascending", v, q, sorted[q]); return; }
    }
    run(7, 32, [&] { ix::scatter_add_sorted(L, nkeys, width, k, dsize, dp, dv.strides[axis], sp, sv.strides[axis], starts.data(), sorted.data(), dt); });
}

// ---------------- cases ----------------
static std::vector<i64> contiguous(const std::vector<int>& shape)
{
    std::vector<i64> s(shape.size()); i64 m = 1;
    for (int d = (int)shape.size() - 1; d >= 0; d--) { s[d] = m; m *= shape[d]; }
    return s;
}
static i64 span_of(const View& v) { i64 e = v.offset; for (size_t d = 0; d < v.shape.size(); d++) e += (v.shape[d] - 1) * std::max<i64>(v.strides[d], 0); return e + 1; }

// Element bits for dtype dt: floats normal (16-bit ones rounded), i32 near the wrap point, i64 wide, u8 over its range.
static void fill(std::vector<unsigned char>& b, int dt, i64 count)
{
    std::normal_distribution<double> nd(0, 1);
    int es = esize(dt); b.assign(count * es, 0);
    for (i64 i = 0; i < count; i++)
    {
        unsigned char* p = b.data() + i * es;
        double x = nd(rng);
        switch (dt)
        {
            case DT_F32: { float f = (float)x; memcpy(p, &f, 4); break; }
            case DT_F64: memcpy(p, &x, 8); break;
            case DT_BF16: { u16 h = bf16_round((float)x * 8); memcpy(p, &h, 2); break; }
            case DT_F16: { u16 h = half_round((float)x * 8); memcpy(p, &h, 2); break; }
            case DT_I32: { int v = (int)(rng() % 2000000000u) - 1000000000; memcpy(p, &v, 4); break; }
            case DT_I64: { i64 v = (i64)rng(); memcpy(p, &v, 8); break; }
            case DT_BOOL: *p = (unsigned char)(rng() & 1); break;
            default: *p = (unsigned char)rng(); break;
        }
    }
}

struct Case { std::string name; int axis; std::vector<int> ishape, sshape, dshape; int expandDim = -1; bool transposeSrc = false, viewDst = false; double hot = 0; int bad = 0; };

static void run_case(const Case& c, int dt, int idt)
{
    int r = (int)c.ishape.size(), D = c.dshape[c.axis];
    // index: contiguous of ishape, or (expandDim) a column expanded along that dim (stride 0)
    View iv{c.ishape, contiguous(c.ishape), 0};
    std::vector<int> stored = c.ishape;
    if (c.expandDim >= 0) { stored[c.expandDim] = 1; iv.strides = contiguous(stored); iv.strides[c.expandDim] = 0; }
    i64 icount = 1; for (int s : stored) icount *= s;
    std::vector<unsigned char> index(icount * (idt == DT_I32 ? 4 : 8));
    std::uniform_int_distribution<int> pick(0, D - 1);
    for (i64 i = 0; i < icount; i++)
    {
        i64 v = c.hot > 0 && (double)(rng() % 1000) < c.hot * 1000 ? D / 3 : pick(rng);
        if (c.bad && i % 17 == 5) v = i % 2 ? -1 - (i64)(rng() % 3) : D + (i64)(rng() % 3);
        if (idt == DT_I32) { int w = (int)v; memcpy(index.data() + 4 * i, &w, 4); } else memcpy(index.data() + 8 * i, &v, 8);
    }
    // src: contiguous, or the last two dims stored transposed
    View sv{c.sshape, contiguous(c.sshape), 0};
    if (c.transposeSrc)
    {
        std::vector<int> t = c.sshape; std::swap(t[r - 1], t[r - 2]);
        auto ts = contiguous(t); sv.strides = ts; std::swap(sv.strides[r - 1], sv.strides[r - 2]);
    }
    // dst: contiguous, or a view at offset 3 into rows padded by 2 elements along the last dim
    View dv{c.dshape, contiguous(c.dshape), 0};
    if (c.viewDst)
    {
        std::vector<int> padded = c.dshape; padded[r - 1] += 2;
        dv.strides = contiguous(padded); dv.offset = 3;
    }
    std::vector<unsigned char> src, dst0;
    fill(src, dt, span_of(sv)); fill(dst0, dt, span_of(dv));
    std::vector<unsigned char> want = dst0;
    cpu_scatter(dt, idt, want, dv, c.axis, index, iv, src, sv);
    std::vector<unsigned char> first;
    for (int o = 0; o < 3; o++)
    {
        g_order = o;
        std::vector<unsigned char> got = dst0;
        gpu_scatter(dt, idt, got, dv, c.axis, index, iv, src, sv);
        i64 bad = 0, at = -1;
        for (size_t i = 0; i < got.size(); i++) if (got[i] != want[i]) { bad++; if (at < 0) at = (i64)i; }
        CHECK(bad == 0, "%s dtype %d index %s, block order %d: %lld bytes differ from the CPU's loop (first at byte %lld)",
              c.name.c_str(), dt, idt == DT_I32 ? "i32" : "i64", o, bad, at);
        if (o == 0) first = got; else CHECK(got == first, "%s dtype %d: block order %d changed the bits", c.name.c_str(), dt, o);
    }
}

static void scan_cases()
{
    // Sizes around the tile (64 here; 1024 on the GPU) and the sums' own block-width walk (64 totals a pass), grids
    // smaller than the tiles (blocks loop), and the host's tile of 1024 once.
    for (i64 n : {1LL, 63LL, 64LL, 65LL, 1000LL, 4097LL, 9000LL})
        for (int o = 0; o < 3; o++)
        {
            g_order = o;
            std::vector<i64> a(n), cursor(n, -7);
            for (auto& v : a) v = (i64)(rng() % 5) * (rng() % 3 == 0 ? 1000 : 1);
            std::vector<i64> want(n); i64 s = 0;
            for (i64 i = 0; i < n; i++) { s += a[i]; want[i] = s; }
            scan(a, cursor, 64, o == 2 ? 2 : 40);
            CHECK(a == want && cursor == want, "scan n %lld block order %d", n, o);
        }
    g_order = 2;
    std::vector<i64> a(5000, 3), cursor(5000);
    scan(a, cursor, 1024, 2);
    CHECK(a[0] == 3 && a[1023] == 3072 && a[1024] == 3075 && a[4999] == 15000 && cursor[4999] == 15000, "scan with 1024-entry tiles");
}

// ---------------- index_copy ----------------
// The CPU's IndexCopy (Cpu/IndexCopy.cs) as a loop over src's coordinates: dst[.. index[j] ..] = src[.. j ..], element
// bits. An index out of range: the CPU throws before writing, the kernel skips it (nothing reads the index back before
// the launch), so here it writes nothing. The index values are distinct (the op's contract; the CPU refuses repeats,
// and on the GPU any of them may win, so no case repeats one).
static void cpu_index_copy(int dt, int idt, std::vector<unsigned char>& dst, const View& dv, int axis, const std::vector<unsigned char>& index,
                           i64 istride, const std::vector<unsigned char>& src, const View& sv)
{
    int r = (int)sv.shape.size(), es = esize(dt);
    i64 n = 1; for (int d : sv.shape) n *= d;
    for (i64 i = 0; i < n; i++)
    {
        i64 rest = i, os = sv.offset, od = dv.offset, j = 0;
        for (int d = r - 1; d >= 0; d--)
        {
            i64 c = rest % sv.shape[d]; rest /= sv.shape[d];
            os += c * sv.strides[d];
            if (d == axis) j = c; else od += c * dv.strides[d];
        }
        i64 p = idx_at(index, idt, j * istride);
        if (p < 0 || p >= dv.shape[axis]) continue;
        memcpy(dst.data() + (od + p * dv.strides[axis]) * es, src.data() + os * es, es);
    }
}

// CudaBackend.IndexCopy: src's shape, dst with stride 0 on the axis, the index with its stride on the axis only.
static void gpu_index_copy(int dt, int idt, std::vector<unsigned char>& dst, const View& dv, int axis, const std::vector<unsigned char>& index,
                           i64 istride, const std::vector<unsigned char>& src, const View& sv, unsigned grid)
{
    int r = (int)sv.shape.size();
    std::vector<i64> ds = dv.strides, is(r, 0);
    ds[axis] = 0; is[axis] = istride;
    Layout L = layout_of(sv.shape, {ds, sv.strides, is});
    i64 n = 1; for (int d : sv.shape) n *= d;
    unsigned char* dp = dst.data() + dv.offset * esize(dt);
    const unsigned char* sp = src.data() + sv.offset * esize(dt);
    run(grid, 32, [&] { ix::index_copy(L, n, dp, dv.strides[axis], dv.shape[axis], sp, index.data(), idt, dt); });
}

struct CopyCase { std::string name; int axis; std::vector<int> dshape; int k; int rows = 0; int row = 0; bool padDst = false, transposeSrc = false;
                  int istride = 1; int bad = 0; unsigned grid = 5; bool transposeDst = false; };

static int g_copy_runs;
static void run_copy_case(const CopyCase& c, int dt, int idt)
{
    g_copy_runs++;
    int r = (int)c.dshape.size(), D = c.dshape[c.axis];
    // dst: contiguous; or row `row` of [rows, ...] (a narrowed row: an offset); or rows padded by 2 along the last dim.
    View dv{c.dshape, contiguous(c.dshape), 0};
    if (c.rows) dv.offset = (i64)c.row * dv.strides[0] * c.dshape[0];
    if (c.padDst) { std::vector<int> padded = c.dshape; padded[r - 1] += 2; dv.strides = contiguous(padded); dv.offset = 3; }
    // Or its last two dims stored transposed (a Transpose view: the axis' stride and the others' not C order).
    if (c.transposeDst)
    {
        std::vector<int> t = c.dshape; std::swap(t[r - 1], t[r - 2]);
        dv.strides = contiguous(t); std::swap(dv.strides[r - 1], dv.strides[r - 2]);
    }
    // 512 elements before dst and 1024 after, compared like the rest: a store outside dst (an out-of-range index not
    // skipped) changes them.
    dv.offset += 512;
    i64 dspan = (c.rows ? 512 + (i64)c.rows * dv.strides[0] * c.dshape[0] : span_of(dv)) + 1024;
    // src: dst's shape with k on the axis, contiguous or its last two dims stored transposed.
    std::vector<int> sshape = c.dshape; sshape[c.axis] = c.k;
    View sv{sshape, contiguous(sshape), 0};
    if (c.transposeSrc)
    {
        std::vector<int> t = sshape; std::swap(t[r - 1], t[r - 2]);
        sv.strides = contiguous(t); std::swap(sv.strides[r - 1], sv.strides[r - 2]);
    }
    // index: k distinct values of [0, D) at a stride; `bad` of them (every 7th) replaced by -1, D, D + 5, ...
    std::vector<i64> all(D);
    for (int i = 0; i < D; i++) all[i] = i;
    std::shuffle(all.begin(), all.end(), rng);
    std::vector<unsigned char> index((i64)c.k * c.istride * (idt == DT_I32 ? 4 : 8), 0xAB);
    int placed = 0;
    for (int j = 0; j < c.k; j++)
    {
        i64 v = all[j];
        if (placed < c.bad && j % 7 == 3) { v = placed % 3 == 0 ? -1 : placed % 3 == 1 ? D : D + 5 + placed; placed++; }
        i64 at = (i64)j * c.istride;
        if (idt == DT_I32) { int w = (int)v; memcpy(index.data() + 4 * at, &w, 4); } else memcpy(index.data() + 8 * at, &v, 8);
    }
    CHECK(placed == c.bad, "%s: placed %d of %d bad indices", c.name.c_str(), placed, c.bad);
    std::vector<unsigned char> src, dst0;
    fill(src, dt, span_of(sv)); fill(dst0, dt, dspan);
    std::vector<unsigned char> want = dst0;
    cpu_index_copy(dt, idt, want, dv, c.axis, index, c.istride, src, sv);
    CHECK(want != dst0, "%s: the reference wrote nothing", c.name.c_str());
    for (int o = 0; o < 3; o++)
    {
        g_order = o;
        std::vector<unsigned char> got = dst0;
        gpu_index_copy(dt, idt, got, dv, c.axis, index, c.istride, src, sv, c.grid);
        i64 bad = 0, at = -1;
        for (size_t i = 0; i < got.size(); i++) if (got[i] != want[i]) { bad++; if (at < 0) at = (i64)i; }
        CHECK(bad == 0, "index copy %s dtype %d index %s, block order %d: %lld bytes differ from the CPU's loop (first at byte %lld)",
              c.name.c_str(), dt, idt == DT_I32 ? "i32" : "i64", o, bad, at);
    }
}

static void index_copy_cases()
{
    std::vector<CopyCase> cases = {
        // The sampler's use: seen ids into row 2 of [4, 3001] rows (an offset view of one row), 300 of them.
        {"300 ids into row 2 of [4, 3001]", 1, {1, 3001}, 300, 4, 2},
        {"axis 0 of [50, 33], 20 rows, src transposed", 0, {50, 33}, 20, 0, 0, false, true},
        {"axis 1 of [3, 40, 5], dst a padded view, index stride 2", 1, {3, 40, 5}, 25, 0, 0, true, false, 2},
        {"last axis of [3, 4, 9], all of it (a permutation), src transposed", 2, {3, 4, 9}, 9, 0, 0, false, true},
        {"out-of-range ids skipped (-1, D, D + 5 ...), row 1 of [3, 500]", 1, {1, 500}, 120, 3, 1, false, false, 1, 12},
        {"out-of-range ids skipped, axis 0 of [30, 6], dst padded", 0, {30, 6}, 20, 0, 0, true, false, 3, 2},
        // dst a transposed view along either axis (its non-axis stride is not 1), and a 4-D padded dst (a rank-3 layout).
        {"axis 0 of [40, 7], dst transposed, src transposed", 0, {40, 7}, 15, 0, 0, false, true, 1, 0, 5, true},
        {"axis 1 of [6, 40], dst transposed, index stride 3", 1, {6, 40}, 30, 0, 0, false, false, 3, 0, 5, true},
        {"axis 2 of [2, 3, 11, 4], dst padded, src transposed", 2, {2, 3, 11, 4}, 6, 0, 0, true, true, 2, 0, 3},
        // One id (k = 1): the axis is dropped from the layout, every thread reads index[0].
        {"one id, axis 0 of [9, 13]", 0, {9, 13}, 1},
        {"one id, axis 0 of [6, 700], dst padded", 0, {6, 700}, 1, 0, 0, true},
    };
    for (auto& c : cases)
        for (int dt : {DT_F32, DT_F64, DT_BF16, DT_F16, DT_I32, DT_I64, DT_U8, DT_BOOL})
            for (int idt : {DT_I64, DT_I32})
                run_copy_case(c, dt, idt);
    // Large: 150,000 distinct ids into a 151,936-long row, 40 blocks of 32 threads (each thread loops ~117 times).
    CopyCase large{"150000 ids into [1, 151936]", 1, {1, 151936}, 150000};
    large.grid = 40;
    for (int dt : {DT_F64, DT_F32, DT_BF16})
        for (int idt : {DT_I64, DT_I32})
            run_copy_case(large, dt, idt);
}

int main()
{
    setvbuf(stdout, nullptr, _IOLBF, 0); // FAIL lines survive a crash that a planted bug may cause later
    scan_cases();
    std::vector<Case> cases = {
        {"axis 1 of 3, K 40 (sorted), inner 5", 1, {4, 40, 5}, {4, 40, 5}, {4, 9, 5}},
        {"axis 1 of 3, K 7 (walk), inner 5", 1, {4, 7, 5}, {4, 7, 5}, {4, 9, 5}},
        {"axis 0, hot 70%, K 300", 0, {300, 6}, {300, 6}, {11, 6}, -1, false, false, 0.7},
        {"axis 0, expanded ids (vector width 9), hot 70%, K 3000", 0, {3000, 9}, {3000, 9}, {37, 9}, 1, false, false, 0.7},
        {"last axis, K 33, index smaller than src and dst, src transposed", 2, {3, 4, 33}, {3, 5, 40}, {3, 6, 8}, -1, true},
        {"last axis, K 5 (walk), dst a padded view, src transposed", 2, {3, 4, 5}, {3, 4, 6}, {3, 4, 7}, -1, true, true},
        {"axis 1, dst a padded view, out-of-range indices, K 50", 1, {5, 50, 3}, {5, 50, 3}, {5, 13, 4}, -1, false, true, 0, 1},
        {"axis 1, out-of-range indices, K 6 (walk)", 1, {5, 6, 3}, {5, 6, 3}, {5, 4, 3}, -1, false, false, 0, 1},
        {"1-D, K 5000, hot 70%", 0, {5000}, {5000}, {64}, -1, false, false, 0.7},
        {"axis 1 of 4, expanded along dim 3, K 64", 1, {2, 64, 3, 4}, {2, 64, 3, 4}, {2, 10, 3, 4}, 3},
    };
    for (auto& c : cases)
        for (int dt : {DT_F32, DT_F64, DT_BF16, DT_F16, DT_I32, DT_I64, DT_U8})
            for (int idt : {DT_I64, DT_I32})
                run_case(c, dt, idt);
    CHECK(g_long_rows > 0, "no key took the stable compaction (len² > 32·K)");
    index_copy_cases();
    printf("%s (%d failures; %lld long-row sorts; %d index-copy cases)\n", fails ? "FAILED" : "all passed", fails, g_long_rows, g_copy_runs);
    return fails != 0;
}
