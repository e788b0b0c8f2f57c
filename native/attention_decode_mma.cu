// Decode attention on tensor cores for long caches (CudaBackend.DecodeMma, off by default: PARROT_DECODE_MMA=1; an
// alternative to attention_decode.cu's FMA kernel for caches of at least CudaBackend.DecodeMmaMinKeys keys). Why: at
// S = 32768 (Qwen2-7B, batch 1) the FMA kernel took 72 µs against PyTorch SDPA's 49 on the H200, bound by its per-key
// warp reductions (a multi-row butterfly of shuffles for every key), not by the 67 MB of K and V it reads.
//
// A block of MMA_THREADS = 128 threads (4 warps) takes one kv head, 16 query rows of its group (the group's (head, t)
// pairs as in attention_decode.cu, rows past the group zero: an m16 tile, e.g. Qwen2's 7 heads padded to 16) and one of
// `nsplit` ranges of the keys. It stages tiles of DMMA_BN = 64 keys of K and V in shared memory by cp.async (three
// stages: tiles i + 1 and i + 2 land while tile i is used; rows past the range are zero-filled, never read), and each
// warp takes 16 keys of every tile, keeping its own float32 accumulator and softmax state:
//   S = Q·Kᵀ        mma.m16n8k16 (Q as A fragments in registers, loaded once; K with ldmatrix: a K row is a column
//                   of the col-major B), two n-tiles of 8 keys;
//   online softmax  on the C fragments in log2 units (scale·log2e applied to the fp32 scores, q stays exact bf16); a
//                   thread holds rows g and g + 8 and reduces a tile's maximum over its quad (2 shuffles a row: per
//                   16 keys, where the FMA kernel shuffles per key); the sum l stays per thread until the end;
//   O += P·V        the C fragments of P are the A fragment (as the flash forward's mma_acc_pb_tiles), split into
//                   two bf16 terms (hi + lo: fp32-like weights, dmma_acc_pv), V with ldmatrix.trans.
// Then the warps' (m, l, acc) merge through shared memory (reusing the stage buffers), and with one range the block
// writes o and the log-sum-exp; with several each block writes its (m, l, acc) to float32 scratch and the last block of
// the row group (atomicInc ticket, wrapped back to 0 by the last arrival, as attention_decode.cu) merges the ranges in
// range order, so the bits do not depend on which block came last.
//
// Range rule (the same as attention_decode.cu's, with this kernel's own allowed count and fewest keys a range, both from
// the launcher: CudaBackend.DecodeMmaSplits): nsplit = clamp(keys seen / min_keys, 1, splits), ranges cut in whole
// tiles (so the last ranges may be empty, e.g. 200 keys in 3 ranges of 128: such a block publishes m = -inf, l = 0 and
// weighs nothing in the merge). The device-position kernel (attention_decode_mma_at, grid sized for the capacity) therefore takes the same
// ranges as the host-position one over the keys a row sees: the same bits.
//
// Contract (a subset of CudaBackend.Attention's, checked by the launcher, CudaBackend.UsesDecodeMma): q, k, v, o bf16,
// q/k and v head dims equal, 64 or 128; K and V with unit dim stride, the other strides multiples of 8 elements and
// 16-byte aligned data (cp.async of 16-byte chunks); q and o any strides; H a multiple of Hkv, any T (rows chunked by
// 16); causal with a query offset or not; no mask; the log-sum-exp optional (natural log, -inf for a row that sees no
// key, whose output is 0/0 = NaN). Device positions: row b's queries sit at pos[b] .. pos[b] + T - 1 and see keys
// [0, pos[b] + T) causally; a position outside [0, S) sees no key and reads nothing (NaN), as attention_decode_at_*.
// tools/cuda-emu/decode_mma_test.cpp runs it against float64 and against the FMA kernel.
//
// attention_decode_mma_rope_* (at the end) also rotate q and the new key rows and append the new key/value rows to the
// caches themselves (a decode step's rope_kv_append(_at) launch folded in, as attention_decode.cu's attention_decode_rope_*;
// decode_mma_block's ROPE part); tools/cuda-emu/decode_mma_rope_test.cpp checks them against the two launches, bits.
#include "attention_mma.cuh"
#include "rope.cuh"

#define DMMA_WARPS 4         // MMA_THREADS / 32
#define DMMA_ROWS 16         // query rows of a block: one m16 tile
#define DMMA_BN 64           // keys a tile, 16 a warp
#define DMMA_MAX_SPLITS 256  // the most key ranges of a row group (CudaBackend.DecodeMmaMaxSplits)
#define DMMA_STAGES 3         // K/V tiles in shared memory: two in flight while one is used
// Dynamic shared memory: the stages of a K and a V tile (104448 bytes for head dim 128: the launcher raises the limit).
#define DMMA_SMEM(D) (DMMA_STAGES * 2 * DMMA_BN * ((D) + MMA_PAD) * 2)

// What the block's merges keep in the stage buffers once the key loop is done: the warps' accumulators and the ranges'
// weights of the final merge.
template <int D>
struct DmmaMerge
{
    float acc[DMMA_WARPS][DMMA_ROWS][D];
    float swt[DMMA_ROWS][DMMA_MAX_SPLITS];
};
static_assert(sizeof(DmmaMerge<64>) <= DMMA_SMEM(64) && sizeof(DmmaMerge<128>) <= DMMA_SMEM(128), "merge buffers overlay the stages");

struct DmmaShared
{
    float m[DMMA_WARPS][DMMA_ROWS], l[DMMA_WARPS][DMMA_ROWS], wt[DMMA_WARPS][DMMA_ROWS];
    float rowm[DMMA_ROWS], rowl[DMMA_ROWS];
    int last;
};

// The scratch of one (row group, range): 16 accumulators of D floats, then 16 (m, l) pairs (16-byte aligned slots).
__device__ __forceinline__ float* dmma_slot(float* part, int grp, int splits, int split, int D)
{
    return part + ((i64)grp * splits + split) * (DMMA_ROWS * (i64)(D + 2));
}

// Four floats another block wrote in this launch, from L2 (ld.global.cg; the emulation reads through volatile).
struct alignas(16) DmmaF4
{
    float x, y, z, w;
};
__device__ __forceinline__ DmmaF4 dmma_ld_cg4(const float* p)
{
    DmmaF4 x;
#ifdef __CUDA_ARCH__
    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(x.x), "=f"(x.y), "=f"(x.z), "=f"(x.w) : "l"(p));
#else
    const volatile float* v = p;
    x.x = v[0], x.y = v[1], x.z = v[2], x.w = v[3];
#endif
    return x;
}

// O += P·V for one k-step of 16 keys: P [16 rows × 16 keys] as the C fragments of two key n-tiles (p), V's 16 rows
// at `vl` (this lane's ldmatrix.trans row, as mma_acc_pb_tiles reads them: registers 0,1 the B fragment of dim n-tile
// 2dp, 2,3 that of 2dp + 1). P goes in as two bf16 terms, hi = bf16(p) and lo = bf16(p - hi), two mmas each: p to
// about 2^-16 relative instead of bf16's 2^-9. With P rounded once (the flash forward's way) the output was up to 9
// bf16 ulps off float64 at short caches (peaked weights, outputs that cancel: the rounding of the few large p shows);
// with the split it is the FMA kernel's ≤ 1 ulp (tools/cuda-emu/decode_mma_test.cpp). The second mma costs tensor-core
// time this memory-bound loop has to spare.
template <int DN, int LD>
__device__ __forceinline__ void dmma_acc_pv(float (*acc)[4], float (*p)[4], mma_sptr vl)
{
    unsigned hi[4], lo[4];
#pragma unroll
    for (int i = 0; i < 4; i++)
    {
        const float x = p[i >> 1][2 * (i & 1)], y = p[i >> 1][2 * (i & 1) + 1]; // a0a1, a2a3 of n-tile 0, then of n-tile 1
        hi[i] = mma_pack_bf16(x, y);
        lo[i] = mma_pack_bf16(x - __uint_as_float(hi[i] << 16), y - __uint_as_float(hi[i] & 0xffff0000u));
    }
#pragma unroll
    for (int dp = 0; dp < DN / 2; dp++)
    {
        unsigned b[4];
        ldmatrix_x4_trans_at(b, mma_sptr_add(vl, 16 * dp));
        mma_bf16_16816(acc[2 * dp], hi, b);
        mma_bf16_16816(acc[2 * dp], lo, b);
        mma_bf16_16816(acc[2 * dp + 1], hi, b + 2);
        mma_bf16_16816(acc[2 * dp + 1], lo, b + 2);
    }
}

// ROPE (attention_decode_mma_rope_*): q and the new key/value rows are the unrotated projections (rp); the block rotates
// its q rows and, where its key range holds new rows, writes rope(k) and v there before it stages a tile.
template <int D, bool ROPE>
__device__ void decode_mma_block(const u16* q, const u16* k, const u16* v, void* o, void* lse, int ldt, const AttnStrides& st,
                                 int H, int Hkv, int T, int S, int causal, int query_offset, float scale, int splits, int min_keys,
                                 float* part, unsigned* tickets, const void* pos, int pdt, const DecRope& rp, u16* smem, DmmaShared& sh)
{
    constexpr int LD = D + MMA_PAD, KS = D / 16, DN = D / 8, R = DMMA_ROWS, W = DMMA_WARPS;
    const float ninf = -__int_as_float(0x7f800000);
    const float log2e = 1.4426950408889634f, sl2 = scale * log2e;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    const int G = H / Hkv, GT = G * T, chunks = (GT + R - 1) / R;
    const int bx = blockIdx.x, split = bx % splits, grp = bx / splits;
    const int rc = grp % chunks, hk = (grp / chunks) % Hkv, b = grp / chunks / Hkv;
    const int cap = S; // the cache's rows (ROPE: where the new rows may go)
    if (pos)
    {
        // Device positions (attention_decode_mma_at): as attention_decode_at_*, a first position outside the cache sees
        // no key (NaN) and reads nothing; the grid and splits were sized for the whole cache.
        query_offset = pdt == DT_I32 ? ((const int*)pos)[b] : (int)((const i64*)pos)[b];
        causal = 1;
        i64 seen = (i64)query_offset + T;
        S = query_offset < 0 || query_offset >= S ? 0 : seen < S ? (int)seen : S;
    }
    // This block's keys: range `split` of nsplit, in whole tiles.
    const int kend = (int)causal_key_end(causal, 0, T, T, S, query_offset);
    const int want = kend / min_keys, nsplit = want < 1 ? 1 : want < splits ? want : splits;
    if (split >= nsplit) return; // the whole block: no barrier is pending
    const int per = ((kend + nsplit - 1) / nsplit + DMMA_BN - 1) / DMMA_BN * DMMA_BN;
    const int js = split * per < kend ? split * per : kend, je = js + per < kend ? js + per : kend;

    // This thread's rows g and g + 8 of the tile: (head, t) pairs of the group; dead past the group.
    const int rr0 = rc * R + g, rr1 = rr0 + 8;
    const bool live0 = rr0 < GT, live1 = rr1 < GT;
    const int h0 = hk * G + rr0 / T, t0 = rr0 % T, h1 = hk * G + rr1 / T, t1 = rr1 % T;
    // Keys row r sees end at lim (exclusive): its causal limit, S, and the range's end; none for a dead row.
    auto lim = [&](bool live, int t) {
        int c = live ? (causal ? query_offset + t + 1 : S) : 0;
        c = c < S ? c : S;
        return c < je ? c : je;
    };
    const int lim0 = lim(live0, t0), lim1 = lim(live1, t1);

    if (ROPE)
    {
        // The new rows p + t (t < T, p = query_offset) that are inside the cache, rotated by table row tb + t (the host
        // form's tables are the new rows': tb = 0; device positions: whole tables, tb = p), as rope_kv_append(_at).
        // Row r is written by the block(s) whose range holds it, before any of their tiles is staged (the fence
        // and barrier below; cp.async.cg reads L2, where the fence has put the block's stores); no other block reads r. Several blocks may hold
        // r's range: the other row groups of this kv head (GQA rows past 16, e.g. 7 heads × T 3). They write the same
        // bits (the same rope_pair of the same inputs, v copied as bits) and each reads r only after its own write, so
        // none can see the cache's previous row. A row no range reads (a device position before the cache: kend = 0)
        // is written by range 0, as rope_kv_append_at writes every row inside the cache.
        const int p = query_offset, tb = pos ? p : 0, half = D / 2;
        const i64 kc = b * st.k[0] + hk * st.k[1], vc = b * st.v[0] + hk * st.v[1];
        const i64 kx = b * rp.ks[0] + hk * rp.ks[1], vx = b * rp.vs[0] + hk * rp.vs[1];
        for (int t = 0; t < T; t++)
        {
            const int r = p + t;
            if (r < 0 || r >= cap || !((js <= r && r < je) || (r >= kend && split == 0))) continue;
            const i64 kr = kc + (i64)r * st.k[2], vr = vc + (i64)r * st.v[2], kt0 = kx + t * rp.ks[2], vt0 = vx + t * rp.vs[2];
            const i64 cr = (i64)(tb + t) * rp.crow, sr = (i64)(tb + t) * rp.srow;
            for (int i = tid; i < half; i += MMA_THREADS)
            {
                const i64 off[4] = {kr + i * st.k[3], kt0 + i * rp.ks[3], cr + i * rp.clast, sr + i * rp.slast};
                rope_pair(off, half, (void*)k, st.k[3], rp.k, rp.ks[3], rp.cos, rp.sin, rp.tdt, rp.clast, rp.slast, DT_BF16);
            }
            for (int i = tid; i < D; i += MMA_THREADS) copy_bits((void*)v, vr + i * st.v[3], rp.v, vt0 + i * rp.vs[3], 2);
        }
        // This block's 16 q rows rotated and rounded to bf16 (dec_rope_q: the bits rope_kv_append(_at) stores into qRot;
        // NaN for a position outside the cache, as rope_kv_append_at), into stage 2's K buffer: the fragments are loaded
        // from it below, and it is first refilled after the loop's first barrier.
        u16* qs = smem + 2 * 2 * DMMA_BN * LD;
        for (int idx = tid; idx < R * D; idx += MMA_THREADS)
        {
            const int r = idx / D, d = idx % D, rr = rc * R + r, t = rr % T;
            u16 y = 0;
            if (rr < GT)
            {
                const i64 qb = b * st.q[0] + (i64)(hk * G + rr / T) * st.q[1] + t * st.q[2];
                const bool ok = !pos || (p + t >= 0 && p + t < cap);
                y = f32_to_bf16(dec_rope_q<DT_BF16>(q, qb, st.q[3], d, D, tb + t, ok, rp));
            }
            qs[r * LD + d] = y;
        }
        // The new rows' stores performed at L2 before the barrier: the tiles' cp.async.cg reads L2, and the barrier's
        // CTA-scope ordering alone would be an argument about the memory model's weak reads; one fence a block.
        __threadfence();
        __syncthreads();
    }

    // Q as A fragments (exact bf16; the scale goes on the scores): rows g, g + 8, dims 16kk + 8half + 2tq (+1).
    unsigned qa[KS][4];
    if (ROPE)
    {
        const u16* qs = smem + 2 * 2 * DMMA_BN * LD;
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int half = 0; half < 2; half++)
            {
                const int d = 16 * kk + 8 * half + 2 * tq;
                qa[kk][2 * half] = mma_pair(true, qs, g * LD + d, 1);
                qa[kk][2 * half + 1] = mma_pair(true, qs, (g + 8) * LD + d, 1);
            }
    }
    else
    {
        const i64 qb0 = b * st.q[0] + h0 * st.q[1] + t0 * st.q[2], qb1 = b * st.q[0] + h1 * st.q[1] + t1 * st.q[2];
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int half = 0; half < 2; half++)
            {
                const i64 d = 16 * kk + 8 * half + 2 * tq;
                qa[kk][2 * half] = mma_pair(live0, q, qb0 + d * st.q[3], st.q[3]);
                qa[kk][2 * half + 1] = mma_pair(live1, q, qb1 + d * st.q[3], st.q[3]);
            }
    }
    float acc[DN][4];
#pragma unroll
    for (int n = 0; n < DN; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float m0 = ninf, m1 = ninf, l0 = 0.0f, l1 = 0.0f; // running max (log2 units), this thread's partial sums

    const u16* kb = k + (i64)b * st.k[0] + (i64)hk * st.k[1];
    const u16* vb = v + (i64)b * st.v[0] + (i64)hk * st.v[1];
    auto kt = [&](int s) { return smem + s * 2 * DMMA_BN * LD; };
    auto vt = [&](int s) { return smem + s * 2 * DMMA_BN * LD + DMMA_BN * LD; };
    auto stage = [&](int s, int j0) {
        mma_stage_rows_async<D, LD, DMMA_BN>(kt(s), kb, st.k[2], j0, je); // rows at or past je: zeros, not read
        mma_stage_rows_async<D, LD, DMMA_BN>(vt(s), vb, st.v[2], j0, je); // (a zero V row keeps 0·garbage out)
        cp_async_commit();
    };
    const int tiles = (je - js + DMMA_BN - 1) / DMMA_BN;
    // Tiles 0 and 1 in flight before the loop; tile it + 2 is staged once every warp is done with tile it - 1.
    if (tiles > 0) stage(0, js);
    if (tiles > 1) stage(1, js + DMMA_BN);
    // ldmatrix rows: lane l gives row l % 8 of matrix l / 8; this warp's 16 keys start at row 16·warp of a tile.
    const int mi = lane >> 3, mr = lane & 7;
    const int koff = (16 * warp + 8 * (mi >> 1) + mr) * LD + 8 * (mi & 1);
    const int voff = (16 * warp + 8 * (mi & 1) + mr) * LD + 8 * (mi >> 1); // ldmatrix.trans rows of V (mma_acc_pb_tiles')
    for (int it = 0; it < tiles; it++)
    {
        const int s = it % DMMA_STAGES, j0 = js + it * DMMA_BN;
        // This thread's part of tile it has landed (tile it + 1's group may still be in flight).
        if (it + 1 < tiles) cp_async_wait<1>();
        else cp_async_wait<0>();
        __syncthreads(); // everyone's; and every warp is done with tile it - 1, whose stage tile it + 2 refills
        if (it + 2 < tiles) stage((it + 2) % DMMA_STAGES, j0 + 2 * DMMA_BN);

        // S = Q·Kᵀ over this warp's keys: matrices of one ldmatrix.x4 are keys 8(mi/2) + 0..7, dims 16kk + 8(mi%2)
        // + 0..7, so registers 0,1 are the B fragment of key n-tile 0 and 2,3 that of n-tile 1.
        float sc[2][4];
#pragma unroll
        for (int n = 0; n < 2; n++) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
        const mma_sptr kl = mma_sptr_of(kt(s) + koff);
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
        {
            unsigned kf[4];
            ldmatrix_x4_at(kf, mma_sptr_add(kl, 16 * kk));
            mma_bf16_16816(sc[0], qa[kk], kf);
            mma_bf16_16816(sc[1], qa[kk], kf + 2);
        }

        // Scores in log2 units; keys a row does not see at -inf (key jw + 8n + 2tq + e).
        const int jw = j0 + 16 * warp, c0 = lim0 - jw, c1 = lim1 - jw;
        float mx0 = ninf, mx1 = ninf;
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
            for (int e = 0; e < 4; e++)
            {
                const int jl = 8 * n + 2 * tq + (e & 1);
                const float x = jl < (e < 2 ? c0 : c1) ? sc[n][e] * sl2 : ninf;
                sc[n][e] = x;
                if (e < 2) mx0 = fmaxf(mx0, x);
                else mx1 = fmaxf(mx1, x);
            }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        // A row that has seen no key yet subtracts 0, so exp2(-inf - 0) = 0 instead of NaN.
        const float mu0 = mn0 == ninf ? 0.0f : mn0, mu1 = mn1 == ninf ? 0.0f : mn1;
        const float cr0 = exp2f(m0 - mu0), cr1 = exp2f(m1 - mu1);
        m0 = mn0;
        m1 = mn1;
        l0 *= cr0;
        l1 *= cr1;
#pragma unroll
        for (int n = 0; n < DN; n++)
        {
            acc[n][0] *= cr0; acc[n][1] *= cr0;
            acc[n][2] *= cr1; acc[n][3] *= cr1;
        }
#pragma unroll
        for (int n = 0; n < 2; n++)
        {
            sc[n][0] = exp2f(sc[n][0] - mu0); sc[n][1] = exp2f(sc[n][1] - mu0);
            sc[n][2] = exp2f(sc[n][2] - mu1); sc[n][3] = exp2f(sc[n][3] - mu1);
            l0 += sc[n][0] + sc[n][1];
            l1 += sc[n][2] + sc[n][3];
        }
        // O += P·V: one k-step of this warp's 16 keys (V rows 16·warp ..), every n-tile of the output dims.
        dmma_acc_pv<DN, LD>(acc, sc, mma_sptr_of(vt(s) + voff));
    }

    // Merge the warps: weights 2^(m_w - M) per row (0 for a warp that saw nothing of the row). The stage buffers are
    // free once every warp is past its last tile (the barrier; no copy is in flight after the last wait).
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    __syncthreads();
    DmmaMerge<D>& mg = *(DmmaMerge<D>*)smem;
#pragma unroll
    for (int n = 0; n < DN; n++)
#pragma unroll
        for (int e = 0; e < 2; e++)
        {
            mg.acc[warp][g][8 * n + 2 * tq + e] = acc[n][e];
            mg.acc[warp][g + 8][8 * n + 2 * tq + e] = acc[n][2 + e];
        }
    if (tq == 0)
    {
        sh.m[warp][g] = m0;
        sh.l[warp][g] = l0;
        sh.m[warp][g + 8] = m1;
        sh.l[warp][g + 8] = l1;
    }
    __syncthreads();
    if (tid < R)
    {
        float M = ninf, L = 0.0f;
        for (int w = 0; w < W; w++) M = fmaxf(M, sh.m[w][tid]);
        for (int w = 0; w < W; w++)
        {
            const float wt = sh.m[w][tid] == ninf ? 0.0f : exp2f(sh.m[w][tid] - M);
            sh.wt[w][tid] = wt;
            L += sh.l[w][tid] * wt;
        }
        sh.rowm[tid] = M;
        sh.rowl[tid] = L;
    }
    __syncthreads();
    const int rows = GT - rc * R < R ? GT - rc * R : R; // live rows of this block
    const float ln2 = 0.6931471805599453f;
    auto out = [&](int r, int d, float a, float M, float L) {
        const int rr = rc * R + r, h = hk * G + rr / T, t = rr % T;
        store<float>(o, DT_BF16, b * st.o[0] + h * st.o[1] + t * st.o[2] + d * st.o[3], a / L); // L = 0: NaN, as the composite
        if (lse && d == 0) store<float>(lse, ldt, b * st.l[0] + h * st.l[1] + t * st.l[2], L > 0.0f ? M * ln2 + logf(L) : ninf);
    };
    float* slot = nsplit > 1 ? dmma_slot(part, grp, splits, split, D) : nullptr;
    for (int idx = tid; idx < rows * D; idx += MMA_THREADS)
    {
        const int r = idx / D, d = idx % D;
        float a = 0.0f;
        for (int w = 0; w < W; w++) a += mg.acc[w][r][d] * sh.wt[w][r];
        if (nsplit > 1) slot[r * D + d] = a;
        else out(r, d, a, sh.rowm[r], sh.rowl[r]);
    }
    if (nsplit == 1) return;
    if (tid < R)
    {
        slot[R * D + 2 * tid] = sh.rowm[tid];
        slot[R * D + 2 * tid + 1] = sh.rowl[tid];
    }

    // Publish this range, then take a ticket; the block with the last one merges (attention_decode.cu's protocol: one
    // fence by one thread after the barrier orders the block's writes before its ticket; the merging block's fence
    // after its ticket orders its reads after every other range's writes).
    __syncthreads();
    if (tid == 0)
    {
        sh.last = draw_last_ticket(&tickets[grp], (unsigned)nsplit);
    }
    __syncthreads();
    if (!sh.last) return;
    // Row r's weights 2^(m_p - M) over the ranges (warp r % 4 takes rows r, r + 4, ...), in a fixed order of sums.
    for (int r = warp; r < rows; r += W)
    {
        float M = ninf, L = 0.0f;
        for (int p = lane; p < nsplit; p += 32) M = fmaxf(M, ld_cg(dmma_slot(part, grp, splits, p, D) + R * D + 2 * r));
        M = warp_reduce<MaxOp>(M);
        for (int p = lane; p < nsplit; p += 32)
        {
            const float* ml = dmma_slot(part, grp, splits, p, D) + R * D + 2 * r;
            const float mp = ld_cg(ml), wt = mp == ninf ? 0.0f : exp2f(mp - M);
            mg.swt[r][p] = wt;
            L += ld_cg(ml + 1) * wt; // an empty range: l = 0
        }
        L = warp_reduce<SumOp>(L);
        if (lane == 0)
        {
            sh.rowm[r] = M;
            sh.rowl[r] = L;
        }
    }
    __syncthreads();
    // Four dims a thread (16-byte reads of the slots), the ranges in order.
    const i64 pstride = DMMA_ROWS * (i64)(D + 2);
    for (int idx = tid; idx < rows * (D / 4); idx += MMA_THREADS)
    {
        const int r = idx / (D / 4), d = 4 * (idx % (D / 4));
        DmmaF4 a = {0.0f, 0.0f, 0.0f, 0.0f};
        const float* ap = dmma_slot(part, grp, splits, 0, D) + r * D + d;
#pragma unroll 8
        for (int p = 0; p < nsplit; p++)
        {
            const DmmaF4 x = dmma_ld_cg4(ap + p * pstride);
            const float wt = mg.swt[r][p]; // an empty range: acc = 0
            a.x += x.x * wt, a.y += x.y * wt, a.z += x.z * wt, a.w += x.w * wt;
        }
        const float M = sh.rowm[r], L = sh.rowl[r];
        out(r, d, a.x, M, L);
        out(r, d + 1, a.y, M, L);
        out(r, d + 2, a.z, M, L);
        out(r, d + 3, a.w, M, L);
    }
}

template <int D, bool ROPE = false>
__device__ __forceinline__ void decode_mma_entry(const void* q, const void* k, const void* v, void* o, void* lse, int ldt, const AttnStrides& st,
                                                 int H, int Hkv, int T, int S, int causal, int query_offset, double scale, int splits,
                                                 int min_keys, float* part, unsigned* tickets, const void* pos, int pdt, const DecRope& rp = DecRope{})
{
#ifdef PARROT_CUDA_EMU
    __shared__ MmaChunk smem[DMMA_SMEM(D) / 16]; // the emulation has no dynamic shared memory
#else
    extern __shared__ MmaChunk smem[];
#endif
    __shared__ DmmaShared sh;
    decode_mma_block<D, ROPE>((const u16*)q, (const u16*)k, (const u16*)v, o, lse, ldt, st, H, Hkv, T, S, causal, query_offset, (float)scale,
                              splits, min_keys, part, tickets, pos, pdt, rp, (u16*)smem, sh);
}

// Host positions (CudaBackend.Attention's decode path): grid B·Hkv·ceil(H/Hkv·T / 16)·splits blocks of MMA_THREADS
// (range fastest), DMMA_SMEM(D) bytes of dynamic shared memory; splits <= DMMA_MAX_SPLITS, min_keys >= 1. With
// splits > 1: part is float32 scratch of (row groups)·splits·16·(D + 2) elements (16-byte aligned), tickets one zeroed
// unsigned per row group (left zeroed). One kernel per head dim (its own registers).
#define DMMA_PARAMS const void* q, const void* k, const void* v, void* o, void* lse, int ldt, AttnStrides st, int H, int Hkv, int T, \
    int S, int causal, int query_offset, double scale, int splits, int min_keys, float* part, unsigned* tickets
#define DMMA_ARGS q, k, v, o, lse, ldt, st, H, Hkv, T, S, causal, query_offset, scale, splits, min_keys, part, tickets

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_decode_mma_d64(DMMA_PARAMS)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels: nothing is read or written before the wait
    decode_mma_entry<64>(DMMA_ARGS, nullptr, 0);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_decode_mma_d128(DMMA_PARAMS)
{
    PDL_ENTRY();
    decode_mma_entry<128>(DMMA_ARGS, nullptr, 0);
}

// Device positions (CudaBackend.AttentionAt, the static decode step): k and v are whole caches [B, Hkv, S = capacity,
// D], pos (pdt DT_I32 or DT_I64) row b's first query position; the grid and splits sized for the capacity, so the
// launch is the same every token (a CUDA graph replays it). No mask, no log-sum-exp.
#define DMMA_AT_PARAMS const void* q, const void* k, const void* v, void* o, AttnStrides st, int H, int Hkv, int T, int S, double scale, \
    int splits, int min_keys, float* part, unsigned* tickets, const void* pos, int pdt
#define DMMA_AT_ARGS q, k, v, o, nullptr, DT_F32, st, H, Hkv, T, S, 1, 0, scale, splits, min_keys, part, tickets, pos, pdt

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_decode_mma_at_d64(DMMA_AT_PARAMS)
{
    PDL_ENTRY();
    decode_mma_entry<64>(DMMA_AT_ARGS);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_decode_mma_at_d128(DMMA_AT_PARAMS)
{
    PDL_ENTRY();
    decode_mma_entry<128>(DMMA_AT_ARGS);
}

// The decode step with its rotary embedding and KV-cache append in the same launch (CudaBackend.RopeAppendAttend: what
// rope_kv_append(_at) then attention_decode_mma(_at)_d{D} do in two). q is the unrotated projection [B, H, T, D] (st.q
// its strides), rope the new key/value rows [B, Hkv, T, D] and the tables; k and v are the caches (writable; st.k /
// st.v, the mma kernel's K/V contract). pos null: host position query_offset (= S - T), k and v the caches' first S
// rows, the new rows last, causal as given, the tables the new rows' (row t at t·crow); pos set: device positions, S
// the capacity, the grid and splits sized for it, causal, whole tables (row pos[b] + t); a row outside [0, S) writes
// nothing and its q is NaN (rope_kv_append_at). No log-sum-exp. The bits of the two launches for o and the caches.
#define DMMA_ROPE_PARAMS const void* q, void* k, void* v, void* o, AttnStrides st, int H, int Hkv, int T, int S, int causal, \
    int query_offset, double scale, int splits, int min_keys, float* part, unsigned* tickets, const void* pos, int pdt, DecRope rope
#define DMMA_ROPE_ARGS q, k, v, o, nullptr, DT_F32, st, H, Hkv, T, S, causal, query_offset, scale, splits, min_keys, part, tickets, pos, pdt, rope

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_decode_mma_rope_d64(DMMA_ROPE_PARAMS)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels
    decode_mma_entry<64, true>(DMMA_ROPE_ARGS);
}

extern "C" __global__ void __launch_bounds__(MMA_THREADS, 3) attention_decode_mma_rope_d128(DMMA_ROPE_PARAMS)
{
    PDL_ENTRY();
    decode_mma_entry<128, true>(DMMA_ROPE_ARGS);
}
