using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// The matrix product for float64 and the integer types: a plainly blocked loop, correct for any strides and
/// vectorised along the rows of B, without the packing and register tiling of the float32 GEMM (these dtypes
/// serve references, gradient checks and index arithmetic, not the model's hot path). Computes in T:
/// double for F64, int for I32 (wrapping, as PyTorch does), long for I64.
/// </summary>
internal static unsafe class SimpleGemm
{
    private const int KBlock = 256;
    private const int NBlock = 512;

    /// <summary>C[m × n] (row stride <paramref name="ldc"/>, contiguous rows) = A · B, A and B read and converted from any dtype and strides.</summary>
    public static void Multiply<T>(in MatrixView a, in MatrixView b, T* c, long ldc, int m, int n, int k, int workers)
        where T : unmanaged, INumber<T>
    {
        for (int i = 0; i < m; i++) NativeMemory.Clear(c + i * ldc, (nuint)(n * sizeof(T)));
        if (m == 0 || n == 0 || k == 0) return;
        var av = a;
        var bv = b;
        T* block = (T*)NativeMemory.AlignedAlloc((nuint)(KBlock * NBlock * sizeof(T)), 64);
        try
        {
            for (int j0 = 0; j0 < n; j0 += NBlock)
            {
                int nb = Math.Min(NBlock, n - j0);
                for (int p0 = 0; p0 < k; p0 += KBlock)
                {
                    int kb = Math.Min(KBlock, k - p0);
                    // One block of B, contiguous in T, shared read-only by the threads.
                    for (int p = 0; p < kb; p++) RowIO.Load(bv.At(p0 + p, j0), bv.DType, bv.ColStride, nb, block + p * nb);
                    int parts = (long)m * nb * kb >= 1L << 18 ? Math.Min(workers, m) : 1;
                    T* blk = block;
                    int jStart = j0, pStart = p0;
                    CpuParallel.For(parts, w =>
                    {
                        int i0 = (int)((long)m * w / parts), i1 = (int)((long)m * (w + 1) / parts);
                        AccumulateRows(av, blk, c, ldc, i0, i1, jStart, nb, pStart, kb);
                    });
                }
            }
        }
        finally { NativeMemory.AlignedFree(block); }
    }

    /// <summary>C[i, j0..j0+nb) += A[i, p0..p0+kb) · block for rows i0..i1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateRows<T>(MatrixView a, T* block, T* c, long ldc, int i0, int i1, int j0, int nb, int p0, int kb)
        where T : unmanaged, INumber<T>
    {
        T* arow = stackalloc T[KBlock];
        int width = Vector<T>.Count;
        for (int i = i0; i < i1; i++)
        {
            RowIO.Load(a.At(i, p0), a.DType, a.ColStride, kb, arow);
            T* crow = c + i * ldc + j0;
            for (int p = 0; p < kb; p++)
            {
                T x = arow[p];
                T* brow = block + p * nb;
                var xv = new Vector<T>(x);
                int j = 0;
                for (; j + width <= nb; j += width)
                {
                    var sum = Unsafe.ReadUnaligned<Vector<T>>(crow + j) + xv * Unsafe.ReadUnaligned<Vector<T>>(brow + j);
                    Unsafe.WriteUnaligned(crow + j, sum);
                }
                for (; j < nb; j++) crow[j] += x * brow[j];
            }
        }
    }
}
