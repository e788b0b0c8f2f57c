// Rotary position embedding, Hugging Face rotate-half convention, over the last axis of length 2h.
// `L` lays out [..., h] (operands: y, x, cos, sin); *last are each operand's last-axis stride, so the
// partner of element d is d + h. Each product is rounded before the sum (no fused multiply-add), as PyTorch.
#include "prelude.cuh"
#include "rope.cuh"

extern "C" __global__ void rope(Layout L, i64 n, i64 half, void* y, i64 ylast, const void* x, i64 xlast,
                                const void* c, const void* s, int tdt, i64 clast, i64 slast, int dt)
{
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 4, o);
        rope_pair(o, half, y, ylast, x, xlast, c, s, tdt, clast, slast, dt);
    }
}

// Inference's step into a KV cache in one launch (decode is host-bound: four launches become one):
// qy = rope(q), ky = rope(k) and vy = v, where ky and vy are the cache's slots at the current position.
// Positions [0, nq) are q's pairs (LQ over [B, H, T, h]: qy, q, cos, sin); [nq, nq + nk) are k's pairs (LK over
// [B, Hkv, T, h]: ky, k, cos, sin) and, in the same thread, v's two elements at those positions (LV: vy, v),
// copied as bits. One dtype dt for q, k, v and the outputs; the tables share tdt and their last-axis strides.
extern "C" __global__ void rope_kv_append(Layout LQ, Layout LK, Layout LV, i64 nq, i64 nk, i64 half,
                                          void* qy, i64 qylast, const void* q, i64 qlast,
                                          void* ky, i64 kylast, const void* k, i64 klast,
                                          void* vy, i64 vylast, const void* v, i64 vlast,
                                          const void* c, const void* s, int tdt, i64 clast, i64 slast, int dt)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels
    GRID_STRIDE_LOOP(i, nq + nk)
    {
        i64 o[MAX_OPERANDS];
        if (i < nq)
        {
            offsets(LQ, i, 4, o);
            rope_pair(o, half, qy, qylast, q, qlast, c, s, tdt, clast, slast, dt);
        }
        else
        {
            i64 j = i - nq;
            offsets(LK, j, 4, o);
            rope_pair(o, half, ky, kylast, k, klast, c, s, tdt, clast, slast, dt);
            offsets(LV, j, 2, o);
            int es = elem_size(dt);
            copy_bits(vy, o[0], v, o[1], es);
            copy_bits(vy, o[0] + half * vylast, v, o[1] + half * vlast, es);
        }
    }
}

// rope_kv_append at positions held on the device (a decode step whose launch is the same every token, so that a CUDA
// graph can replay it): row b's T new rows go to cache rows pos[b] .. pos[b] + T - 1 and are rotated by table rows
// pos[b] + t. The operands are rope_kv_append's, except that ky/vy are the whole caches [B, Hkv, capacity, D] (LK and
// LV lay out their first T rows, so pos[b] rows are added), the tables are whole too ([rows >= capacity, D]: LQ/LK
// carry only their last-axis stride, and row pos[b] + t is added by crow/srow), and pos (pdt: DT_I32 or DT_I64) is read here. The arithmetic is rope_pair, so the
// bits equal rope_kv_append's at the same rows. A row outside [0, capacity) writes no cache element and gives q NaN:
// nothing out of bounds, and a wrong position cannot pass silently (the host checks the room before the step).
__device__ __forceinline__ i64 rope_row_at(const void* pos, int pdt, i64 b, i64 t)
{
    return (pdt == DT_I32 ? (i64)((const int*)pos)[b] : ((const i64*)pos)[b]) + t;
}

extern "C" __global__ void rope_kv_append_at(Layout LQ, Layout LK, Layout LV, i64 nq, i64 nk, i64 half,
                                             void* qy, i64 qylast, const void* q, i64 qlast,
                                             void* ky, i64 kylast, const void* k, i64 klast,
                                             void* vy, i64 vylast, const void* v, i64 vlast,
                                             const void* c, const void* s, int tdt, i64 clast, i64 slast, int dt,
                                             const void* pos, int pdt, i64 H, i64 Hkv, i64 T, i64 capacity,
                                             i64 crow, i64 srow, i64 kyrow, i64 vyrow)
{
    PDL_ENTRY(); // listed in CudaKernels.ProgrammaticKernels
    GRID_STRIDE_LOOP(i, nq + nk)
    {
        i64 o[MAX_OPERANDS];
        if (i < nq)
        {
            // i runs over [B, H, T, half] in C order
            i64 t = (i / half) % T, b = i / (half * T * H);
            i64 row = rope_row_at(pos, pdt, b, t);
            offsets(LQ, i, 4, o);
            if (row < 0 || row >= capacity)
            {
                float nan = __int_as_float(0x7fc00000);
                store<float>(qy, dt, o[0], nan);
                store<float>(qy, dt, o[0] + half * qylast, nan);
                continue;
            }
            o[2] += row * crow;
            o[3] += row * srow;
            rope_pair(o, half, qy, qylast, q, qlast, c, s, tdt, clast, slast, dt);
        }
        else
        {
            i64 j = i - nq;
            i64 t = (j / half) % T, b = j / (half * T * Hkv);
            i64 row = rope_row_at(pos, pdt, b, t);
            if (row < 0 || row >= capacity) continue;
            offsets(LK, j, 4, o);
            o[0] += (row - t) * kyrow; // LK lays out the cache's first T rows: t is in o[0] already
            o[2] += row * crow;
            o[3] += row * srow;
            rope_pair(o, half, ky, kylast, k, klast, c, s, tdt, clast, slast, dt);
            offsets(LV, j, 2, o);
            o[0] += (row - t) * vyrow;
            int es = elem_size(dt);
            copy_bits(vy, o[0], v, o[1], es);
            copy_bits(vy, o[0] + half * vylast, v, o[1] + half * vlast, es);
        }
    }
}
