// CPU emulation of the warp-collective tensor-core operations native/attention_mma.cu uses through inline PTX:
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16, and
// (not collective) cvt.rn.bf16x2.f32 and cp.async.{cg,ca}.shared.global (16 and 4 bytes) with its commit/wait groups.
// Defining PARROT_CUDA_EMU makes the kernel file skip its asm versions of these functions; the ones here take their
// place. Like a shuffle, mma and ldmatrix are collective over the warp: every lane
// leaves its operands in a slot, the warp meets at a barrier, every lane gathers what it needs from the 32
// slots of its warp, and the warp meets again before a slot is reused.
// The layouts here are written from the PTX ISA by element number; mma_check_test.cpp checks them against
// the ISA's tables as printed (row/col formulas per register), so a misreading shows as a failed check.
#pragma once
#define PARROT_CUDA_EMU 1
#include "emu_threads.h"

struct EmuMmaSlot { unsigned a[4], b[2]; const unsigned short* p; };
static EmuMmaSlot g_mma_slots[1024];

inline float emu_bf16(unsigned short h) { unsigned u = (unsigned)h << 16; float f; memcpy(&f, &u, 4); return f; }
// Element e (0 = low half) of 32-bit register r of a lane's fragment.
inline unsigned short emu_half(unsigned r, int e) { return (unsigned short)(e ? r >> 16 : r & 0xffffu); }

// d += a·b; A 16×16 row-major, B 16×8 column-major, C/D 16×8, bf16 inputs, float32 accumulate.
// Element i of a lane (i = 2·register + half) sits at, with g = lane / 4, c = lane % 4:
//   A: row g + 8·(bit 1 of i), col 2c + (bit 0 of i) + 8·(bit 2 of i)
//   B: k 2c + (bit 0 of i) + 8·(bit 1 of i), n g
//   C: row g + 8·(bit 1 of i), col 2c + (bit 0 of i)
inline void mma_bf16_16816(float* d, const unsigned* a, const unsigned* b)
{
    int self = threadIdx.x, base = self & ~31, lane = self & 31;
    EmuMmaSlot& mine = g_mma_slots[self];
    for (int r = 0; r < 4; r++) mine.a[r] = a[r];
    for (int r = 0; r < 2; r++) mine.b[r] = b[r];
    warp_sync();
    float A[16][16], Bm[16][8];
    for (int l = 0; l < 32; l++)
    {
        int g = l >> 2, c = l & 3;
        const EmuMmaSlot& s = g_mma_slots[base + l];
        for (int i = 0; i < 8; i++) A[g + 8 * ((i >> 1) & 1)][2 * c + (i & 1) + 8 * (i >> 2)] = emu_bf16(emu_half(s.a[i >> 1], i & 1));
        for (int i = 0; i < 4; i++) Bm[2 * c + (i & 1) + 8 * (i >> 1)][g] = emu_bf16(emu_half(s.b[i >> 1], i & 1));
    }
    warp_sync();
    int g = lane >> 2, c = lane & 3;
    for (int i = 0; i < 4; i++)
    {
        int row = g + 8 * (i >> 1), col = 2 * c + (i & 1);
        float acc = d[i]; // products of bf16 values are exact in float; the sum is rounded as it goes
        for (int kk = 0; kk < 16; kk++) acc += A[row][kk] * Bm[kk][col];
        d[i] = acc;
    }
}

// Four 8×8 matrices of 16-bit elements: lane 8m + j gives the address of row j of matrix m. Register m of lane l
// gets row l / 4, elements 2(l % 4) and 2(l % 4) + 1 of matrix m (low half first); with trans, column l / 4,
// elements of rows 2(l % 4) and 2(l % 4) + 1.
inline void emu_ldmatrix_x4(unsigned* r, const unsigned short* p, bool trans)
{
    int self = threadIdx.x, base = self & ~31, lane = self & 31;
    g_mma_slots[self].p = p;
    warp_sync();
    int q = lane >> 2, c = lane & 3;
    for (int m = 0; m < 4; m++)
    {
        unsigned short lo, hi;
        if (!trans) { const unsigned short* row = g_mma_slots[base + 8 * m + q].p; lo = row[2 * c]; hi = row[2 * c + 1]; }
        else { lo = g_mma_slots[base + 8 * m + 2 * c].p[q]; hi = g_mma_slots[base + 8 * m + 2 * c + 1].p[q]; }
        r[m] = (unsigned)lo | ((unsigned)hi << 16);
    }
    warp_sync();
}
inline void ldmatrix_x4(unsigned* r, const unsigned short* p) { emu_ldmatrix_x4(r, p, false); }
inline void ldmatrix_x4_trans(unsigned* r, const unsigned short* p) { emu_ldmatrix_x4(r, p, true); }
// The 32-bit shared addresses of attention_mma.cuh (mma_sptr) as plain pointers here; offsets in elements either way.
typedef const unsigned short* mma_sptr;
inline mma_sptr mma_sptr_of(const unsigned short* p) { return p; }
inline mma_sptr mma_sptr_add(mma_sptr a, int elems) { return a + elems; }
inline void ldmatrix_x4_at(unsigned* r, mma_sptr a) { emu_ldmatrix_x4(r, a, false); }
inline void ldmatrix_x4_trans_at(unsigned* r, mma_sptr a) { emu_ldmatrix_x4(r, a, true); }

// cvt.rn.bf16x2.f32 d, a, b: a into the upper half, b into the lower, each rounded to nearest even (finite inputs).
inline unsigned short emu_rne_bf16(float f) { unsigned u; memcpy(&u, &f, 4); u += 0x7fffu + ((u >> 16) & 1u); return (unsigned short)(u >> 16); }
inline unsigned cvt_rn_bf16x2(float a, float b) { return (unsigned)emu_rne_bf16(a) << 16 | emu_rne_bf16(b); }

// cp.async: copies are queued per thread and done only when a cp_async_wait<N> retires their group, the latest a real
// GPU could make them land, so a read of a staged tile before its wait sees stale data and fails the tests.
struct EmuCopy { void* dst; const void* src; size_t n; };
static thread_local std::vector<EmuCopy> t_open_group;
static thread_local std::vector<std::vector<EmuCopy>> t_groups; // committed, oldest first
// g_cp_async_early (set between launches): each copy is done when issued instead, the earliest a GPU could read its
// source and fill its destination, so a source written after the issue (even by the issuing block) or a destination
// another warp still reads after it shows; the late default cannot show either. A test runs its kernel both ways.
inline bool g_cp_async_early = false;
inline void cp_async16(void* dst, const void* src) { if (g_cp_async_early) memcpy(dst, src, 16); else t_open_group.push_back({dst, src, 16}); }
inline void cp_async4(void* dst, const void* src) { if (g_cp_async_early) memcpy(dst, src, 4); else t_open_group.push_back({dst, src, 4}); }
inline void cp_async_commit() { t_groups.push_back(std::move(t_open_group)); t_open_group.clear(); }
template <int N> inline void cp_async_wait()
{
    while (t_groups.size() > (size_t)N)
    {
        for (auto& c : t_groups.front()) memcpy(c.dst, c.src, c.n);
        t_groups.erase(t_groups.begin());
    }
}
