// The decode attention kernels as they were before native/attention_decode.cu merged the key ranges in the same
// launch (a second launch, attention_decode_v1_combine, merged them; at least 128 keys a range), kept under _v1 names
// for side-by-side timings: CudaBackend.DecodeAttentionV1 (PARROT_DECODE_ATTENTION=v1) and the "attention decode v1"
// bench rows. Not bit-identical to the current kernels; tools/cuda-emu/decode_test.cpp checks both against float64.
// Attention forward for decoding: few query rows (T <= 8) per (batch, head) against a long key/value cache
// ("flash decoding"). The tiled kernels give a (batch, head) one block of 64 query rows; with T = 1 that is 63 idle
// rows and, for a long cache, one SM walking every key. Here a block takes one kv head and up to DEC_ROWS query
// rows of its group (grouped-query heads share the K/V reads: rows are the group's (head, t) pairs), and the keys
// are cut into `splits` ranges, one block each, so a single row still spreads over many SMs.
//
// Inside a block each of the DEC_WARPS warps walks chunks of DEC_CHUNK keys of the block's range (chunk w, w + 8,
// ...). A lane owns DMAX / 32 consecutive head dims of q, k, v and of the output accumulator of every row. Per chunk:
//   scores   each lane's partial q·k for all rows, summed over the warp by a multi-row butterfly (after log2(R)
//            halving steps every lane holds one row's sum: R rows cost R - 1 + 5 - log2 R shuffles, not 5R);
//   softmax  the lanes of a row keep its running max m (log2 units: scale·log2e folded into q) and sum l, add the
//            mask and hide keys past the causal limit, and publish p and the rescale factor through shared memory;
//   o += p·v every lane for its dims, all rows.
// K and V of a chunk are loaded together, one chunk ahead (the next chunk's loads are in flight while this one is
// used: for short caches that hides all but the first load's latency). float32 throughout.
// At the end the warps' (m, l, acc) are merged in shared memory; with one split the block writes o (and the
// log-sum-exp), otherwise its unnormalised (m, l, acc) go to a float32 scratch that attention_decode_v1_combine merges.
//
// Contract: CudaBackend.Attention's (IBackend.Attention): f32 or bf16 q/k/v/o, any strides, H a multiple of Hkv,
// causal with a query offset (key j visible to query t when j <= query_offset + t), an additive mask of any dtype
// and strides, q/k and v head dims up to 128 (they may differ), the log-sum-exp (natural log, -inf for a row that
// sees no key; such a row's output is 0/0 = NaN, as the composite and the other kernels give).
#include "prelude.cuh"

#define DEC_WARPS 8
#define DEC_THREADS (32 * DEC_WARPS)
#define DEC_ROWS 4  // query rows of one block (R; 8 needs ~170 registers, 4 fits 128: two blocks per SM)
#ifndef DEC_CHUNK
#define DEC_CHUNK 4 // keys a warp takes per step (overridable for timing variants built with nvcc -D)
#endif

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

// Dims lane·E .. lane·E + E - 1 of the row at element `base` (dim stride ds, n dims); zero past n or when !ok.
// VEC: the launcher checked unit dim stride, n a multiple of E and every row start aligned to E elements.
template <int DT, int E, bool VEC>
__device__ __forceinline__ DecRaw<DT, E> dec_load(const void* p, i64 base, i64 ds, i64 n, int lane, bool ok)
{
    DecRaw<DT, E> r;
    const int esize = DT == DT_BF16 ? 2 : 4;
    i64 d0 = (i64)lane * E;
#pragma unroll
    for (int i = 0; i < DecRaw<DT, E>::N; i++) r.x.w[i] = 0;
    if (VEC)
    {
        if (ok && d0 < n) r.x = *(const DecWords<DecRaw<DT, E>::N>*)((const char*)p + (base + d0) * esize);
    }
    else
    {
#pragma unroll
        for (int c = 0; c < E; c++)
        {
            i64 d = d0 + c;
            if (!ok || d >= n) continue;
            if (DT == DT_BF16) r.x.w[c >> 1] |= (unsigned)((const u16*)p)[base + d * ds] << (16 * (c & 1));
            else r.x.w[c] = ((const unsigned*)p)[base + d * ds];
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

// Block smem: per-warp p and rescale factors of a chunk, then the warps' (m, l, acc) for the merge (acc sized for
// the largest head dim, so that one static buffer serves every instantiation).
struct DecShared
{
    float p[DEC_WARPS][DEC_CHUNK][DEC_ROWS];
    float corr[DEC_WARPS][DEC_ROWS];
    float m[DEC_WARPS][DEC_ROWS], l[DEC_WARPS][DEC_ROWS], wt[DEC_WARPS][DEC_ROWS];
    float rowm[DEC_ROWS], rowl[DEC_ROWS];
    float acc[DEC_WARPS][DEC_ROWS][128];
};

template <int DT, int DMAX, bool VEC>
__device__ void decode_block(const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt,
                             const AttnStrides& st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal, i64 query_offset,
                             float scale, i64 splits, float* part, const void* pos, int pdt, DecShared& sh)
{
    constexpr int E = DMAX / 32, R = DEC_ROWS, CH = DEC_CHUNK;
    const float ninf = -__int_as_float(0x7f800000);
    const float log2e = 1.4426950408889634f;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const i64 G = H / Hkv, GT = G * T, chunks = (GT + R - 1) / R;
    i64 bx = blockIdx.x;
    const i64 split = bx % splits;
    bx /= splits;
    const i64 rc = bx % chunks;
    bx /= chunks;
    const i64 hk = bx % Hkv, b = bx / Hkv;
    if (pos)
    {
        // Positions on the device (attention_decode_v1_at_*): row b's queries sit at pos[b] .. pos[b] + T - 1 of a cache
        // S rows long; it sees keys [0, pos[b] + T), causally. The grid and splits were sized for the whole cache.
        query_offset = pdt == DT_I32 ? (i64)((const int*)pos)[b] : ((const i64*)pos)[b];
        causal = 1;
        i64 seen = query_offset + T;
        S = seen < 0 ? 0 : seen < S ? seen : S;
    }

    // This block's keys: split `split` of the keys any row sees, in whole chunks.
    const i64 kend = causal_key_end(causal, 0, T, T, S, query_offset);
    const i64 per = ((kend + splits - 1) / splits + CH - 1) / CH * CH;
    const i64 js = split * per, je = js + per < kend ? js + per : kend;

    // q rows (pre-scaled into log2 units), this lane's dims; rows past the group are zero.
    float qr[R][E];
#pragma unroll
    for (int r = 0; r < R; r++)
    {
        i64 rr = rc * R + r, h = hk * G + rr / T, t = rr % T;
#pragma unroll
        for (int c = 0; c < E; c++)
        {
            i64 d = (i64)lane * E + c;
            qr[r][c] = rr < GT && d < D ? load<float>(q, DT, b * st.q[0] + h * st.q[1] + t * st.q[2] + d * st.q[3]) * scale * log2e : 0.0f;
        }
    }
    // The row this lane keeps the softmax state of.
    const int rl = dec_lane_row<R>(lane);
    const bool writer = (lane & (32 / R - 1)) == 0;
    const i64 rrl = rc * R + rl, tl = rrl % T, hl = hk * G + rrl / T;
    const bool livel = rrl < GT;
    const i64 lastl = causal ? query_offset + tl : S - 1;
    const i64 mbl = b * st.m[0] + hl * st.m[1] + tl * st.m[2];
    const i64 kbase = b * st.k[0] + hk * st.k[1], vbase = b * st.v[0] + hk * st.v[1];

    float acc[R][E];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < E; c++) acc[r][c] = 0.0f;
    float m = ninf, l = 0.0f;

    // K and V of the next chunk are in flight while this one is used (a warp's chunks are DEC_WARPS·CH keys apart).
    DecRaw<DT, E> kr[CH], vr[CH];
    const i64 stride = (i64)DEC_WARPS * CH;
#pragma unroll
    for (int kk = 0; kk < CH; kk++)
    {
        i64 j = js + (i64)warp * CH + kk;
        kr[kk] = dec_load<DT, E, VEC>(k, kbase + j * st.k[2], st.k[3], D, lane, j < je);
        vr[kk] = dec_load<DT, E, VEC>(v, vbase + j * st.v[2], st.v[3], Dv, lane, j < je);
    }
    for (i64 c0 = js + (i64)warp * CH; c0 < je; c0 += stride)
    {
        DecRaw<DT, E> kn[CH], vn[CH];
#pragma unroll
        for (int kk = 0; kk < CH; kk++)
        {
            i64 j = c0 + stride + kk;
            kn[kk] = dec_load<DT, E, VEC>(k, kbase + j * st.k[2], st.k[3], D, lane, j < je);
            vn[kk] = dec_load<DT, E, VEC>(v, vbase + j * st.v[2], st.v[3], Dv, lane, j < je);
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
            i64 j = c0 + kk;
            bool visible = livel && j < je && j <= lastl;
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
    for (int idx = tid; idx < R * DMAX; idx += DEC_THREADS)
    {
        int r = idx / DMAX, d = idx % DMAX;
        i64 rr = rc * R + r;
        if (rr >= GT || d >= Dv) continue;
        float a = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++) a += sh.acc[w][r][d] * sh.wt[w][r];
        i64 h = hk * G + rr / T, t = rr % T;
        float M = sh.rowm[r], L = sh.rowl[r];
        if (splits == 1)
        {
            store<float>(o, DT, b * st.o[0] + h * st.o[1] + t * st.o[2] + d * st.o[3], a / L); // L = 0: NaN, as the composite
            if (lse && d == 0) store<float>(lse, ldt, b * st.l[0] + h * st.l[1] + t * st.l[2], L > 0.0f ? M * 0.6931471805599453f + logf(L) : ninf);
        }
        else
        {
            // scratch: [rows][splits] (m, l) pairs, then [rows][splits][Dv] accumulators; row = (b·H + h)·T + t
            i64 slot = ((b * H + h) * T + t) * splits + split;
            part[B * H * T * splits * 2 + slot * Dv + d] = a;
            if (d == 0)
            {
                part[2 * slot] = M;
                part[2 * slot + 1] = L;
            }
        }
    }
}

template <int DT>
__device__ __forceinline__ void decode_entry(const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt,
                                             const AttnStrides& st, i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal,
                                             i64 query_offset, double scale, int vec, i64 splits, float* part, const void* pos, int pdt)
{
    __shared__ DecShared sh;
    float sc = (float)scale;
    if (D <= 64 && Dv <= 64)
    {
        if (vec) decode_block<DT, 64, true>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, splits, part, pos, pdt, sh);
        else decode_block<DT, 64, false>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, splits, part, pos, pdt, sh);
    }
    else
    {
        if (vec) decode_block<DT, 128, true>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, splits, part, pos, pdt, sh);
        else decode_block<DT, 128, false>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, D, Dv, causal, query_offset, sc, splits, part, pos, pdt, sh);
    }
}

// Grid: B·Hkv·ceil((H / Hkv)·T / DEC_ROWS)·splits blocks of DEC_THREADS threads (split fastest); one kernel per dtype
// (_bf16, _f32: q, k, v, o of that dtype), so that the f32 code's registers do not cap the bf16 kernel's occupancy.
// max(D, Dv) <= 128; vec: K and V rows may be read as vectors (unit dim stride, D, Dv and every row start a multiple
// of E = max(D, Dv) <= 64 ? 2 : 4 elements, data aligned to E elements). With splits > 1, part is float32 scratch of
// B·H·T·splits·(Dv + 2) elements for attention_decode_v1_combine, and o and lse are not written here.
extern "C" __global__ void __launch_bounds__(DEC_THREADS, 2) attention_decode_v1_forward_bf16(
    const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt, AttnStrides st,
    i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal, i64 query_offset, double scale, int vec, i64 splits, float* part)
{
    decode_entry<DT_BF16>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, D, Dv, causal, query_offset, scale, vec, splits, part, nullptr, 0);
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS) attention_decode_v1_forward_f32(
    const void* q, const void* k, const void* v, void* o, const void* mask, int mdt, void* lse, int ldt, AttnStrides st,
    i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, int causal, i64 query_offset, double scale, int vec, i64 splits, float* part)
{
    decode_entry<DT_F32>(q, k, v, o, mask, mdt, lse, ldt, st, B, H, Hkv, T, S, D, Dv, causal, query_offset, scale, vec, splits, part, nullptr, 0);
}

// The decode kernels with the positions on the device, so that a decode step's launch is the same every token (a CUDA
// graph replays it): k and v are whole caches [B, Hkv, S = capacity, D]; row b's T queries sit at positions
// pos[b] .. pos[b] + T - 1 (pdt: DT_I32 or DT_I64) and see keys [0, pos[b] + T) causally (query t: keys up to
// pos[b] + t). splits is sized by the launcher for the whole cache; a split past a row's keys writes an empty state
// (m = -inf, l = 0) that attention_decode_v1_combine skips. Same arithmetic as the kernels above: with the same splits,
// S = pos + T and query_offset = pos, the bits are theirs. No mask (a padded batch does not decode this way).
extern "C" __global__ void __launch_bounds__(DEC_THREADS, 2) attention_decode_v1_at_bf16(
    const void* q, const void* k, const void* v, void* o, void* lse, int ldt, AttnStrides st,
    i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, double scale, int vec, i64 splits, float* part, const void* pos, int pdt)
{
    decode_entry<DT_BF16>(q, k, v, o, nullptr, DT_F32, lse, ldt, st, B, H, Hkv, T, S, D, Dv, 1, 0, scale, vec, splits, part, pos, pdt);
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS) attention_decode_v1_at_f32(
    const void* q, const void* k, const void* v, void* o, void* lse, int ldt, AttnStrides st,
    i64 B, i64 H, i64 Hkv, i64 T, i64 S, i64 D, i64 Dv, double scale, int vec, i64 splits, float* part, const void* pos, int pdt)
{
    decode_entry<DT_F32>(q, k, v, o, nullptr, DT_F32, lse, ldt, st, B, H, Hkv, T, S, D, Dv, 1, 0, scale, vec, splits, part, pos, pdt);
}

// Merges the splits' (m, l, acc) of attention_decode_v1_forward into o and the log-sum-exp: one warp per query row
// (row = (b·H + h)·T + t), grid ceil(B·H·T / 4) blocks of 128 threads. o = Σ acc_p 2^(m_p - M) / Σ l_p 2^(m_p - M).
extern "C" __global__ void attention_decode_v1_combine(const float* part, void* o, int dt, void* lse, int ldt, AttnStrides st,
                                                    i64 B, i64 H, i64 T, i64 Dv, i64 splits)
{
    const float ninf = -__int_as_float(0x7f800000);
    const int lane = threadIdx.x & 31;
    const i64 rows = B * H * T, row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const i64 t = row % T, h = (row / T) % H, b = row / T / H;
    const float* ml = part + 2 * row * splits;
    const float* acc = part + rows * splits * 2 + row * splits * Dv;
    float M = ninf, L = 0.0f;
    for (i64 p = lane; p < splits; p += 32) M = fmaxf(M, ml[2 * p]);
    M = warp_reduce<MaxOp>(M);
    for (i64 p = lane; p < splits; p += 32)
        if (ml[2 * p] != ninf) L += ml[2 * p + 1] * exp2f(ml[2 * p] - M);
    L = warp_reduce<SumOp>(L);
    for (i64 d = lane; d < Dv; d += 32)
    {
        float a = 0.0f;
        for (i64 p = 0; p < splits; p++)
            if (ml[2 * p] != ninf) a += acc[p * Dv + d] * exp2f(ml[2 * p] - M);
        store<float>(o, dt, b * st.o[0] + h * st.o[1] + t * st.o[2] + d * st.o[3], a / L); // L = 0: NaN, as the composite
    }
    if (lse && lane == 0) store<float>(lse, ldt, b * st.l[0] + h * st.l[1] + t * st.l[2], L > 0.0f ? M * 0.6931471805599453f + logf(L) : ninf);
}
