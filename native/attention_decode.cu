// Attention forward for decoding: few query rows (T <= 8) per (batch, head) against a long key/value cache
// ("flash decoding"), in ONE launch. A block takes one kv head, up to DEC_ROWS query rows of its group (grouped-query
// heads share the K/V reads: rows are the group's (head, t) pairs) and one of `nsplit` ranges of the keys, so a
// single row spreads over many SMs; the last block of a row group to finish merges the ranges' partial softmax states.
//
// Inside a block each of the DEC_WARPS warps walks chunks of DEC_CHUNK keys of the block's range (chunk w, w + 8,
// ...). A lane owns DMAX / 32 consecutive head dims of q, k, v and of the output accumulator of every row. Per chunk:
//   scores   each lane's partial q·k for all rows, summed over the warp by a multi-row butterfly (after log2(R)
//            halving steps every lane holds one row's sum: R rows cost R - 1 + 5 - log2 R shuffles, not 5R);
//   softmax  the lanes of a row keep its running max m (log2 units: scale·log2e folded into q) and sum l, add the
//            mask and hide keys past the causal limit, and publish p and the rescale factor through shared memory;
//   o += p·v every lane for its dims, all rows.
// K and V of a chunk are loaded together, one chunk ahead. float32 throughout. At the end the warps' (m, l, acc)
// are merged in shared memory; with one range the block writes o (and the log-sum-exp) itself.
//
// Several ranges (why: a short cache gives 8 blocks for Qwen2-7B's 4 kv heads, each walking 20 keys a warp one
// chunk after another; cut into ranges of 32 keys every warp does one chunk): each block writes its unnormalised
// (m, l, acc) to float32 scratch, __threadfence, then one atomicInc on its row group's ticket. The block that draws
// the last ticket merges every range in range order (so the result does not depend on which block came last) and
// writes o and the log-sum-exp. atomicInc with limit nsplit - 1 wraps the ticket back to 0 at that last arrival, so
// the tickets (a persistent buffer the launcher zeroed once) are 0 between launches, as a CUDA graph replay needs.
//
// How many ranges: nsplit = clamp(kend / min_keys, 1, splits), computed here from the keys the rows see (kend), the
// launch's `splits` being the most the launcher allows (CudaBackend.DecodeSplits: two blocks per SM). The host-position
// kernels are launched with splits = that same rule for their keys, the device-position ones (attention_decode_at_*,
// sized for the cache's capacity) with at least as many: both arrive at the same nsplit for the same keys, ranges,
// order of sums, bits. Blocks past nsplit return at once.
//
// Contract: CudaBackend.Attention's (IBackend.Attention): f32 or bf16 q/k/v/o, any strides, H a multiple of Hkv,
// causal with a query offset (key j visible to query t when j <= query_offset + t), an additive mask of any dtype
// and strides, q/k and v head dims up to 128 (they may differ), the log-sum-exp (natural log, -inf for a row that
// sees no key; such a row's output is 0/0 = NaN, as the composite and the other kernels give).
// attention_decode_rope_* (at the end) also rotate q and the new key and append the new key/value row to the cache
// themselves (a decode step's rope_kv_append(_at) launch folded in; see decode_block and DecRope).
// tools/cuda-emu/decode_test.cpp runs the kernels on the CPU against float64 (blocks in shuffled orders too), the
// fused ones against the two launches they replace (bits).
#include "prelude.cuh"
#include "rope.cuh"

#define DEC_WARPS 8
#define DEC_THREADS (32 * DEC_WARPS)
#define DEC_ROWS 4  // query rows of one block (R; 8 needs ~170 registers, 4 fits 128: two blocks per SM)
#define DEC_CHUNK 4 // keys a warp takes per step
#define DEC_MAX_SPLITS 256 // the most key ranges of a row group (CudaBackend.DecodeMaxSplits)

// A lane's E elements of one row as raw bits: bf16 two per 32-bit word (a vector load when the row allows it).
template <int N>
struct alignas(4 * N) DecWords
{
    unsigned w[N];
};

template <int DT, int E>
struct DecRaw
{
    static constexpr int N = DT == DT_BF16 ? E / 2 : E;
    DecWords<N> x;
    __device__ __forceinline__ float get(int c) const
    {
        if (DT == DT_BF16) return __uint_as_float(c & 1 ? x.w[c >> 1] & 0xffff0000u : x.w[c >> 1] << 16);
        return __uint_as_float(x.w[c]);
    }
};

// The lane's dims lane·E .. lane·E + E - 1 of a row; `at` points at the first of them (the row start plus
// lane·E·ds elements); zero past n dims or when !ok. VEC: the launcher checked unit dim stride, n a multiple of E and
// every row start aligned to E elements.
template <int DT, int E, bool VEC>
__device__ __forceinline__ DecRaw<DT, E> dec_load(const char* at, i64 ds, int n, int lane, bool ok)
{
    DecRaw<DT, E> r;
    const int d0 = lane * E;
#pragma unroll
    for (int i = 0; i < DecRaw<DT, E>::N; i++) r.x.w[i] = 0;
    if (VEC)
    {
        if (ok && d0 < n) r.x = *(const DecWords<DecRaw<DT, E>::N>*)at;
    }
    else
    {
#pragma unroll
        for (int c = 0; c < E; c++)
        {
            if (!ok || d0 + c >= n) continue;
            if (DT == DT_BF16) r.x.w[c >> 1] |= (unsigned)((const u16*)at)[c * ds] << (16 * (c & 1));
            else r.x.w[c] = ((const unsigned*)at)[c * ds];
        }
    }
    return r;
}

// Sums v[r] (r < R) over the warp; returns row dec_lane_row<R>(lane)'s sum (v is clobbered).
template <int R>
__device__ __forceinline__ float dec_reduce_rows(float* v, int lane)
{
#pragma unroll
    for (int step = 0; (R >> step) > 1; step++)
    {
        const int half = (R >> step) / 2, o = 16 >> step;
        bool upper = (lane & o) != 0; // keeps the upper half of the rows, sends the lower
#pragma unroll
        for (int i = 0; i < half; i++)
        {
            float send = upper ? v[i] : v[i + half], keep = upper ? v[i + half] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
        }
    }
    float x = v[0];
#pragma unroll
    for (int o = 16 / R; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// The row whose sum dec_reduce_rows<R> leaves in `lane`: bit 4 - s of the lane picks the upper half at step s.
template <int R>
__device__ __forceinline__ int dec_lane_row(int lane)
{
    int r = 0;
#pragma unroll
    for (int step = 0; (R >> step) > 1; step++) r += ((lane >> (4 - step)) & 1) * (R >> (step + 1));
    return r;
}

// Block smem: per-warp p and rescale factors of a chunk, the warps' (m, l, acc) for the merge (acc sized for the
// largest head dim, so that one static buffer serves every instantiation), the ranges' weights of the final merge.
struct DecShared
{
    float p[DEC_WARPS][DEC_CHUNK][DEC_ROWS];
    float corr[DEC_WARPS][DEC_ROWS];
    float m[DEC_WARPS][DEC_ROWS], l[DEC_WARPS][DEC_ROWS], wt[DEC_WARPS][DEC_ROWS];
    float rowm[DEC_ROWS], rowl[DEC_ROWS];
    float acc[DEC_WARPS][DEC_ROWS][128];
    float swt[DEC_ROWS][DEC_MAX_SPLITS], sl[DEC_ROWS][DEC_MAX_SPLITS];
    int last;
};

// A range's (m, l) pair another block wrote in this launch (8-byte aligned: the scratch's slots are an even number of
// floats), from L2 as ld_cg (prelude.cuh).
struct DecPair
{
    float m, l;
};
__device__ __forceinline__ DecPair dec_ld_cg2(const float* p)
{
    DecPair x;
#ifdef __CUDA_ARCH__
    asm volatile("ld.global.cg.v2.f32 {%0, %1}, [%2];" : "=f"(x.m), "=f"(x.l) : "l"(p));
#else
    x.m = ((const volatile float*)p)[0];
    x.l = ((const volatile float*)p)[1];
#endif
    return x;
}

// The scratch of one (row group, range): R accumulators of Dv floats, then R (m, l) pairs.
__device__ __forceinline__ float* dec_slot(float* part, int grp, int splits, int split, int Dv)
{
    return part + ((i64)grp * splits + split) * (DEC_ROWS * (i64)(Dv + 2));
}

// DecRope and dec_rope_q (the decode step's rotary embedding done by the attention kernel itself): rope.cuh, shared
// with attention_decode_mma.cu's fused kernels.

// Row b's position on the device (pdt: DT_I32 or DT_I64).
__device__ __forceinline__ int query_offset_at(const void* pos, int pdt, int b)
{
    return pdt == DT_I32 ? ((const int*)pos)[b] : (int)((const i64*)pos)[b];
}

// Index math is 32-bit (block, row and key numbers; the launcher checks B·Hkv·chunks·splits and S fit), element
// offsets 64-bit.
template <int DT, int DMAX, bool VEC, bool ROPE>
__device__ void decode_block(const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt,
                             const AttnStrides& st, int H, int Hkv, int T, int S, int D, int Dv, int causal, int query_offset,
                             float scale, int splits, int min_keys, float* part, unsigned* tickets, const void* pos, int pdt, const DecRope& rp, DecShared& sh)
{
    constexpr int E = DMAX / 32, R = DEC_ROWS, CH = DEC_CHUNK;
    constexpr int ES = DT == DT_BF16 ? 2 : 4;
    const float ninf = -__int_as_float(0x7f800000);
    const float log2e = 1.4426950408889634f;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int G = H / Hkv, GT = G * T, chunks = (GT + R - 1) / R;
    const int bx = blockIdx.x, split = bx % splits, grp = bx / splits;
    const int rc = grp % chunks, hk = (grp / chunks) % Hkv, b = grp / chunks / Hkv;
    const int cap = S; // the cache's rows (ROPE: the new key's row must be one of them)
    if (pos)
    {
        // Positions on the device (attention_decode_at_*): row b's queries sit at pos[b] .. pos[b] + T - 1 of a cache
        // S rows long; it sees keys [0, pos[b] + T), causally. The grid and splits were sized for the whole cache.
        query_offset = query_offset_at(pos, pdt, b);
        causal = 1;
        // A row whose first position is outside the cache (an idle slot of serve's batch is parked at the capacity)
        // sees no key: its output is NaN (L = 0) and the cache is not read (clamped to the capacity, an idle slot read
        // every key of every layer each step).
        i64 seen = (i64)query_offset + T;
        S = query_offset < 0 || query_offset >= S ? 0 : seen < S ? (int)seen : S;
    }

    // This block's keys: range `split` of nsplit of the keys any row sees, in whole chunks.
    const int kend = (int)causal_key_end(causal, 0, T, T, S, query_offset);
    const int want = kend / min_keys, nsplit = want < 1 ? 1 : want < splits ? want : splits;
    if (split >= nsplit) return; // the whole block: no barrier is pending
    const int per = ((kend + nsplit - 1) / nsplit + CH - 1) / CH * CH;
    const int js = split * per, je = js + per < kend ? js + per : kend;
    // ROPE: whether the new key's row (p = query_offset, T = 1) is in the cache: a device position may not be (the
    // host checked its own), and then nothing is written and q is NaN, as rope_kv_append_at does.
    const bool inside = query_offset >= 0 && query_offset < cap;
    if (ROPE && inside && js <= query_offset && query_offset < je)
    {
        // The new key/value position p = query_offset (T = 1) is in this block's range: write rope(k) and v there
        // before any warp loads a key; __syncthreads makes a block's global writes visible to its own threads. The
        // blocks of the other ranges never read p. Several blocks may hold p's range: those of the other row groups of
        // this kv head (GQA heads past DEC_ROWS rows, e.g. 7 query heads a kv head: 2 row groups). Each of them
        // writes the same bits (the same rope_pair of the same inputs; v copied as bits) and then reads them, so a
        // read returns p's final value whichever block's write it sees; none reads p before its own write (the
        // barrier), so none can see the cache's previous contents there.
        const int p = query_offset, half = D / 2;
        const i64 kc = b * st.k[0] + hk * st.k[1] + (i64)p * st.k[2], vc = b * st.v[0] + hk * st.v[1] + (i64)p * st.v[2];
        const i64 kx = b * rp.ks[0] + hk * rp.ks[1], vx = b * rp.vs[0] + hk * rp.vs[1];
        for (int i = tid; i < half; i += DEC_THREADS)
        {
            const i64 off[4] = {kc + i * st.k[3], kx + i * rp.ks[3], p * rp.crow + i * rp.clast, p * rp.srow + i * rp.slast};
            rope_pair(off, half, (void*)k, st.k[3], rp.k, rp.ks[3], rp.cos, rp.sin, rp.tdt, rp.clast, rp.slast, DT);
        }
        for (int i = tid; i < D; i += DEC_THREADS) copy_bits((void*)v, vc + i * st.v[3], rp.v, vx + i * rp.vs[3], ES);
        __syncthreads();
    }

    // q rows (pre-scaled into log2 units), this lane's dims; rows past the group are zero.
    float qr[R][E];
#pragma unroll
    for (int r = 0; r < R; r++)
    {
        const int rr = rc * R + r, h = hk * G + rr / T, t = rr % T;
        const i64 qb = b * st.q[0] + h * st.q[1] + t * st.q[2];
#pragma unroll
        for (int c = 0; c < E; c++)
        {
            const int d = lane * E + c;
            if (!(rr < GT && d < D)) qr[r][c] = 0.0f;
            else if (ROPE) qr[r][c] = dec_rope_q<DT>(q, qb, st.q[3], d, D, query_offset, inside, rp) * scale * log2e; // every block rotates its own rows
            else qr[r][c] = load<float>(q, DT, qb + d * st.q[3]) * scale * log2e;
        }
    }
    // The row this lane keeps the softmax state of.
    const int rl = dec_lane_row<R>(lane);
    const bool writer = (lane & (32 / R - 1)) == 0;
    const int rrl = rc * R + rl, tl = rrl % T, hl = hk * G + rrl / T;
    const bool livel = rrl < GT;
    const int lastl = causal ? query_offset + tl : S - 1;
    const i64 mbl = b * st.m[0] + hl * st.m[1] + tl * st.m[2];

    float acc[R][E];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < E; c++) acc[r][c] = 0.0f;
    float m = ninf, l = 0.0f;

    // Byte pointers to this lane's dims of this warp's first chunk; a warp's chunks are DEC_WARPS·CH keys apart, its
    // keys kst / vst bytes. K and V of the next chunk are in flight while this one is used. Key bounds are 32-bit.
    const i64 kst = st.k[2] * ES, vst = st.v[2] * ES;
    constexpr int stride = DEC_WARPS * CH;
    const char* kp = (const char*)k + (b * st.k[0] + hk * st.k[1] + (i64)lane * E * st.k[3]) * ES + (js + warp * CH) * kst;
    const char* vp = (const char*)v + (b * st.v[0] + hk * st.v[1] + (i64)lane * E * st.v[3]) * ES + (js + warp * CH) * vst;
    DecRaw<DT, E> kr[CH], vr[CH];
    {
        const char *kq = kp, *vq = vp;
#pragma unroll
        for (int kk = 0; kk < CH; kk++, kq += kst, vq += vst)
        {
            const bool ok = js + warp * CH + kk < je;
            kr[kk] = dec_load<DT, E, VEC>(kq, st.k[3], D, lane, ok);
            vr[kk] = dec_load<DT, E, VEC>(vq, st.v[3], Dv, lane, ok);
        }
    }
    const i64 kstep = stride * kst, vstep = stride * vst;
    for (int c0 = js + warp * CH; c0 < je; c0 += stride)
    {
        kp += kstep;
        vp += vstep;
        DecRaw<DT, E> kn[CH], vn[CH];
        {
            const char *kq = kp, *vq = vp;
#pragma unroll
            for (int kk = 0; kk < CH; kk++, kq += kst, vq += vst)
            {
                const bool ok = c0 + stride + kk < je;
                kn[kk] = dec_load<DT, E, VEC>(kq, st.k[3], D, lane, ok);
                vn[kk] = dec_load<DT, E, VEC>(vq, st.v[3], Dv, lane, ok);
            }
        }
        float s[CH];
#pragma unroll
        for (int kk = 0; kk < CH; kk++)
        {
            float part_[R];
#pragma unroll
            for (int r = 0; r < R; r++)
            {
                float x = 0.0f;
#pragma unroll
                for (int c = 0; c < E; c++) x += qr[r][c] * kr[kk].get(c);
                part_[r] = x;
            }
            s[kk] = dec_reduce_rows<R>(part_, lane);
        }
        float mc = m;
#pragma unroll
        for (int kk = 0; kk < CH; kk++)
        {
            const int j = c0 + kk;
            const bool visible = livel && j < je && j <= lastl;
            float x = s[kk];
            if (visible && mask) x += load<float>(mask, mdt, mbl + j * st.m[3]) * log2e; // no read past the mask
            s[kk] = visible ? x : ninf;
            mc = fmaxf(mc, s[kk]);
        }
        // A row that has seen no key yet subtracts 0, so exp2(-inf - 0) = 0 instead of NaN.
        float mu = mc == ninf ? 0.0f : mc, corr = exp2f(m - mu);
        m = mc;
        l *= corr;
#pragma unroll
        for (int kk = 0; kk < CH; kk++)
        {
            s[kk] = exp2f(s[kk] - mu);
            l += s[kk];
        }
        __syncwarp(); // the previous chunk's p is read by every lane
        if (writer)
        {
#pragma unroll
            for (int kk = 0; kk < CH; kk++) sh.p[warp][kk][rl] = s[kk];
            sh.corr[warp][rl] = corr;
        }
        __syncwarp();
#pragma unroll
        for (int r = 0; r < R; r++)
        {
            float cr = sh.corr[warp][r];
#pragma unroll
            for (int c = 0; c < E; c++) acc[r][c] *= cr;
        }
#pragma unroll
        for (int kk = 0; kk < CH; kk++)
#pragma unroll
            for (int r = 0; r < R; r++)
            {
                float p = sh.p[warp][kk][r];
#pragma unroll
                for (int c = 0; c < E; c++) acc[r][c] += p * vr[kk].get(c);
            }
#pragma unroll
        for (int kk = 0; kk < CH; kk++)
        {
            kr[kk] = kn[kk];
            vr[kk] = vn[kk];
        }
    }

    // Merge the warps: weights 2^(m_w - M) per row (0 for a warp that saw nothing of the row).
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < E; c++) sh.acc[warp][r][lane * E + c] = acc[r][c];
    if (writer)
    {
        sh.m[warp][rl] = m;
        sh.l[warp][rl] = l;
    }
    __syncthreads();
    if (tid < R)
    {
        float M = ninf, L = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, sh.m[w][tid]);
        for (int w = 0; w < DEC_WARPS; w++)
        {
            float wt = sh.m[w][tid] == ninf ? 0.0f : exp2f(sh.m[w][tid] - M);
            sh.wt[w][tid] = wt;
            L += sh.l[w][tid] * wt;
        }
        sh.rowm[tid] = M;
        sh.rowl[tid] = L;
    }
    __syncthreads();
    float* slot = nsplit > 1 ? dec_slot(part, grp, splits, split, Dv) : nullptr;
    for (int idx = tid; idx < R * DMAX; idx += DEC_THREADS)
    {
        const int r = idx / DMAX, d = idx % DMAX, rr = rc * R + r;
        if (rr >= GT || d >= Dv) continue;
        float a = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++) a += sh.acc[w][r][d] * sh.wt[w][r];
        if (nsplit > 1)
        {
            slot[r * Dv + d] = a;
            continue;
        }
        const int h = hk * G + rr / T, t = rr % T;
        const float M = sh.rowm[r], L = sh.rowl[r];
        store<float>(o, DT, b * st.o[0] + h * st.o[1] + t * st.o[2] + d * st.o[3], a / L); // L = 0: NaN, as the composite
        if (lse && d == 0) store<float>(lse, ldt, b * st.l[0] + h * st.l[1] + t * st.l[2], L > 0.0f ? M * 0.6931471805599453f + logf(L) : ninf);
    }
    if (nsplit == 1) return;
    if (tid < R)
    {
        slot[R * Dv + 2 * tid] = sh.rowm[tid];
        slot[R * Dv + 2 * tid + 1] = sh.rowl[tid];
    }

    // Publish this range, then take a ticket; the block with the last one merges. One fence by one thread after the
    // barrier orders the whole block's writes before its ticket (as cooperative groups' grid sync does); the merging
    // block's fence after its ticket orders its reads after every other range's writes.
    __syncthreads();
    if (tid == 0)
    {
        sh.last = draw_last_ticket(&tickets[grp], (unsigned)nsplit);
    }
    __syncthreads();
    if (!sh.last) return;
    // Row r's weights 2^(m_p - M) over the ranges (warp r), in a fixed order of sums; each (m, l) pair read once.
    if (warp < R)
    {
        float M = ninf, L = 0.0f;
        for (int p = lane; p < nsplit; p += 32)
        {
            const DecPair ml = dec_ld_cg2(dec_slot(part, grp, splits, p, Dv) + R * Dv + 2 * warp);
            sh.swt[warp][p] = ml.m;
            sh.sl[warp][p] = ml.l;
            M = fmaxf(M, ml.m);
        }
        M = warp_reduce<MaxOp>(M);
        for (int p = lane; p < nsplit; p += 32)
        {
            const float mp = sh.swt[warp][p], wt = mp == ninf ? 0.0f : exp2f(mp - M);
            sh.swt[warp][p] = wt;
            L += sh.sl[warp][p] * wt; // an empty range: l = 0
        }
        L = warp_reduce<SumOp>(L);
        if (lane == 0)
        {
            sh.rowm[warp] = M;
            sh.rowl[warp] = L;
        }
    }
    __syncthreads();
    for (int idx = tid; idx < R * DMAX; idx += DEC_THREADS)
    {
        const int r = idx / DMAX, d = idx % DMAX, rr = rc * R + r;
        if (rr >= GT || d >= Dv) continue;
        float a = 0.0f;
        const float* ap = dec_slot(part, grp, splits, 0, Dv) + r * Dv + d;
        const i64 pstride = DEC_ROWS * (i64)(Dv + 2);
#pragma unroll 8
        for (int p = 0; p < nsplit; p++) a += ld_cg(ap + p * pstride) * sh.swt[r][p]; // an empty range: acc = 0
        const int h = hk * G + rr / T, t = rr % T;
        const float M = sh.rowm[r], L = sh.rowl[r];
        store<float>(o, DT, b * st.o[0] + h * st.o[1] + t * st.o[2] + d * st.o[3], a / L); // L = 0: NaN, as the composite
        if (lse && d == 0) store<float>(lse, ldt, b * st.l[0] + h * st.l[1] + t * st.l[2], L > 0.0f ? M * 0.6931471805599453f + logf(L) : ninf);
    }
}

template <int DT, bool ROPE>
__device__ __forceinline__ void decode_entry(const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt,
                                             const AttnStrides& st, int H, int Hkv, int T, int S, int D, int Dv, int causal,
                                             int query_offset, double scale, int vec, int splits, int min_keys, float* part, unsigned* tickets,
                                             const void* pos, int pdt, const DecRope& rp)
{
    __shared__ DecShared sh;
    float sc = (float)scale;
    if (D <= 64 && Dv <= 64)
    {
        if (vec) decode_block<DT, 64, true, ROPE>(q, k, v, o, mask, mdt, lse, ldt, st, H, Hkv, T, S, D, Dv, causal, query_offset, sc, splits, min_keys, part, tickets, pos, pdt, rp, sh);
        else decode_block<DT, 64, false, ROPE>(q, k, v, o, mask, mdt, lse, ldt, st, H, Hkv, T, S, D, Dv, causal, query_offset, sc, splits, min_keys, part, tickets, pos, pdt, rp, sh);
    }
    else
    {
        if (vec) decode_block<DT, 128, true, ROPE>(q, k, v, o, mask, mdt, lse, ldt, st, H, Hkv, T, S, D, Dv, causal, query_offset, sc, splits, min_keys, part, tickets, pos, pdt, rp, sh);
        else decode_block<DT, 128, false, ROPE>(q, k, v, o, mask, mdt, lse, ldt, st, H, Hkv, T, S, D, Dv, causal, query_offset, sc, splits, min_keys, part, tickets, pos, pdt, rp, sh);
    }
}

// Grid: B·Hkv·ceil((H / Hkv)·T / DEC_ROWS)·splits blocks of DEC_THREADS threads (range fastest; blocks of one row
// group are `grp` = blockIdx.x / splits); one kernel per dtype (_bf16, _f32: q, k, v, o of that dtype), so that the
// f32 code's registers do not cap the bf16 kernel's occupancy. max(D, Dv) <= 128; vec: K and V rows may be read as
// vectors (unit dim stride, D, Dv and every row start a multiple of E = max(D, Dv) <= 64 ? 2 : 4 elements, data
// aligned to E elements). splits <= DEC_MAX_SPLITS: the most ranges (nsplit, above, may be fewer); min_keys >= 1.
// With splits > 1: part is float32 scratch of (row groups)·splits·DEC_ROWS·(Dv + 2) elements, tickets one zeroed
// unsigned per row group (left zeroed).
extern "C" __global__ void __launch_bounds__(DEC_THREADS, 2) attention_decode_forward_bf16(
    const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt, AttnStrides st,
    int H, int Hkv, int T, int S, int D, int Dv, int causal, int query_offset, double scale, int vec, int splits, int min_keys,
    float* part, unsigned* tickets)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels: nothing is read or written before the wait
    decode_entry<DT_BF16, false>(q, k, v, o, mask, mdt, lse, ldt, st, H, Hkv, T, S, D, Dv, causal, query_offset, scale, vec, splits, min_keys, part, tickets, nullptr, 0, DecRope{});
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS, 1) attention_decode_forward_f32(
    const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt, AttnStrides st,
    int H, int Hkv, int T, int S, int D, int Dv, int causal, int query_offset, double scale, int vec, int splits, int min_keys,
    float* part, unsigned* tickets)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels: nothing is read or written before the wait
    decode_entry<DT_F32, false>(q, k, v, o, mask, mdt, lse, ldt, st, H, Hkv, T, S, D, Dv, causal, query_offset, scale, vec, splits, min_keys, part, tickets, nullptr, 0, DecRope{});
}

// The decode kernels with the positions on the device, so that a decode step's launch is the same every token (a CUDA
// graph replays it): k and v are whole caches [B, Hkv, S = capacity, D]; row b's T queries sit at positions
// pos[b] .. pos[b] + T - 1 (pdt: DT_I32 or DT_I64) and see keys [0, pos[b] + T) causally (query t: keys up to
// pos[b] + t). splits is sized by the launcher for the whole cache; each row group takes nsplit ranges of its own
// keys by the rule above, so with S = pos + T and query_offset = pos the bits are the host-position kernels'. No mask
// (a padded batch does not decode this way).
extern "C" __global__ void __launch_bounds__(DEC_THREADS, 2) attention_decode_at_bf16(
    const void* q, const void* k, const void* v, void* o, void* lse, int ldt, AttnStrides st,
    int H, int Hkv, int T, int S, int D, int Dv, double scale, int vec, int splits, int min_keys, float* part, unsigned* tickets,
    const void* pos, int pdt)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels: nothing is read or written before the wait
    decode_entry<DT_BF16, false>(q, k, v, o, nullptr, DT_F32, lse, ldt, st, H, Hkv, T, S, D, Dv, 1, 0, scale, vec, splits, min_keys, part, tickets, pos, pdt, DecRope{});
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS, 1) attention_decode_at_f32(
    const void* q, const void* k, const void* v, void* o, void* lse, int ldt, AttnStrides st,
    int H, int Hkv, int T, int S, int D, int Dv, double scale, int vec, int splits, int min_keys, float* part, unsigned* tickets,
    const void* pos, int pdt)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels: nothing is read or written before the wait
    decode_entry<DT_F32, false>(q, k, v, o, nullptr, DT_F32, lse, ldt, st, H, Hkv, T, S, D, Dv, 1, 0, scale, vec, splits, min_keys, part, tickets, pos, pdt, DecRope{});
}

// The decode step with its rotary embedding and KV-cache append in the same launch (what rope_kv_append(_at) then
// attention_decode_forward / attention_decode_at do in two; CudaBackend.RopeAppendAttend): one new token a row
// (T = 1), GQA, head dim D <= 128 for q, k and v alike, no mask, no log-sum-exp. q is the unrotated projection
// (st.q its strides), rope its k, v and tables; k and v are the caches (writable), st.k / st.v their strides. Each
// block rotates its own q rows; the blocks whose key range holds the new position write rope(k) and v there first
// (decode_block). pos null: host position query_offset, k and v the caches' first query_offset + 1 rows (S); pos
// set: device positions, S the capacity, the grid and splits sized for it (as attention_decode_at_*), a position
// outside [0, S) writes nothing and gives NaN (as rope_kv_append_at then attention_decode_at). The bits of the two
// launches, for every row of o and of the caches.
extern "C" __global__ void __launch_bounds__(DEC_THREADS, 2) attention_decode_rope_bf16(
    const void* q, void* k, void* v, void* o, AttnStrides st, int H, int Hkv, int S, int D, int query_offset, double scale,
    int vec, int splits, int min_keys, float* part, unsigned* tickets, const void* pos, int pdt, DecRope rope)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels: nothing is read or written before the wait
    decode_entry<DT_BF16, true>(q, k, v, o, nullptr, DT_F32, nullptr, DT_F32, st, H, Hkv, 1, S, D, D, 1, query_offset, scale, vec, splits, min_keys, part, tickets, pos, pdt, rope);
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS, 1) attention_decode_rope_f32(
    const void* q, void* k, void* v, void* o, AttnStrides st, int H, int Hkv, int S, int D, int query_offset, double scale,
    int vec, int splits, int min_keys, float* part, unsigned* tickets, const void* pos, int pdt, DecRope rope)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels: nothing is read or written before the wait
    decode_entry<DT_F32, true>(q, k, v, o, nullptr, DT_F32, nullptr, DT_F32, st, H, Hkv, 1, S, D, D, 1, query_offset, scale, vec, splits, min_keys, part, tickets, pos, pdt, rope);
}
