// Integer matrix products (int32, int64): c = a·b over batches, bit for bit the CPU backend's SimpleGemm, whose
// arithmetic wraps (int for int32, as PyTorch; long for int64). cuBLAS has no such product, and integer matmul is
// rare (index arithmetic, tests), so this is the plain shared-memory tiling: a 16×16 tile of c per block, one
// element per thread, a 16-deep slice of a's rows and b's columns staged per step.
// The sum runs in unsigned 64-bit arithmetic: wrapping is then defined, and the low 32 bits of a sum of int32
// products wrapped at 2^64 are the products and sums wrapped at 2^32, so int32 (stored truncated) and int64 share
// the loop. Operands have any strides (transposed, broadcast views read in place); the batch dims arrive as a
// Layout over c, a and b (operand 0 is c) and each block finds its matrix by its batch index.
#include "prelude.cuh"

#define MMI_TILE 16

// One block per (batch entry, tile row, tile column), the column fastest; MMI_TILE² threads. dt is I32 or I64 for
// all three operands; element strides: csr/csc of c's rows/columns, and so on.
extern "C" __global__ void matmul_int(Layout L, int M, int N, int K, void* c, i64 csr, i64 csc, const void* a, i64 asr, i64 asc,
                                      const void* b, i64 bsr, i64 bsc, int dt)
{
    __shared__ i64 as[MMI_TILE][MMI_TILE];
    __shared__ i64 bs[MMI_TILE][MMI_TILE + 1]; // +1: the k-loop reads a column of bs down the warp's rows
    const int tilesN = N / MMI_TILE + (N % MMI_TILE != 0), tilesM = M / MMI_TILE + (M % MMI_TILE != 0); // no overflow near 2^31
    unsigned blk = blockIdx.x;
    const int tn = (int)(blk % (unsigned)tilesN);
    blk /= (unsigned)tilesN;
    const int tm = (int)(blk % (unsigned)tilesM);
    const i64 z = blk / (unsigned)tilesM;
    i64 o[MAX_OPERANDS];
    offsets(L, z, 3, o);
    const int tx = threadIdx.x % MMI_TILE, ty = threadIdx.x / MMI_TILE;
    const int row = tm * MMI_TILE + ty, col = tn * MMI_TILE + tx;
    unsigned long long acc = 0;
    for (int k0 = 0; k0 < K; k0 += MMI_TILE)
    {
        const int ka = k0 + tx, kb = k0 + ty;
        as[ty][tx] = row < M && ka < K ? load<i64>(a, dt, o[1] + row * asr + ka * asc) : 0;
        bs[ty][tx] = kb < K && col < N ? load<i64>(b, dt, o[2] + kb * bsr + col * bsc) : 0;
        __syncthreads();
        for (int k = 0; k < MMI_TILE; k++) acc += (unsigned long long)as[ty][k] * (unsigned long long)bs[k][tx];
        __syncthreads();
    }
    // Two's complement: the bits of acc are the wrapped signed sum; store truncates to int32 where dt is I32.
    if (row < M && col < N) store<i64>(c, dt, o[0] + row * csr + col * csc, (i64)acc);
}
