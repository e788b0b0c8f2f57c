using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// Copies blocks of the operands into the layouts the micro-kernels stream, converting to float32 on the way.
/// Packing reads any strides, so transposed or sliced operands cost no extra copy.
/// <para>A block: a row-major block whose row stride is the compile-time <see cref="PackedSgemm.KC"/>, rows
/// padded with zeros up to a multiple of <see cref="PackedSgemm.MR"/>. A sliver of MR rows is then MR rows at
/// constant offsets, so each broadcast in the kernel is a fixed displacement from one pointer (this beat the
/// usual k-major sliver by about 5%, and a row-major source packs with plain row copies).</para>
/// <para>B panel: micro-panels of NR columns, each k-major (NR contiguous floats per k), zero-padded to NR
/// columns, laid one after another.</para>
/// </summary>
internal static unsafe class Packing
{
    /// <summary>Packs rows [i0, i0+mc) × columns [p0, p0+kc) of <paramref name="a"/> into <paramref name="dst"/>.</summary>
    public static void PackA(in MatrixView a, long i0, long p0, int mc, int kc, float* dst)
    {
        switch (a.DType)
        {
            case DType.F32: PackA<F32Source>(a, i0, p0, mc, kc, dst); break;
            case DType.BF16: PackA<BF16Source>(a, i0, p0, mc, kc, dst); break;
            case DType.F16: PackA<F16Source>(a, i0, p0, mc, kc, dst); break;
            default: throw new NotSupportedException($"MatMul: the float GEMM cannot read {a.DType.Name()}");
        }
    }

    /// <summary>Packs rows [p0, p0+kc) × columns [j0, j0+nc) of <paramref name="b"/> into micro-panels of <paramref name="nr"/> columns.</summary>
    public static void PackB(in MatrixView b, long p0, long j0, int kc, int nc, int nr, float* dst)
    {
        switch (b.DType)
        {
            case DType.F32: PackB<F32Source>(b, p0, j0, kc, nc, nr, dst); break;
            case DType.BF16: PackB<BF16Source>(b, p0, j0, kc, nc, nr, dst); break;
            case DType.F16: PackB<F16Source>(b, p0, j0, kc, nc, nr, dst); break;
            default: throw new NotSupportedException($"MatMul: the float GEMM cannot read {b.DType.Name()}");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackA<TSrc>(MatrixView a, long i0, long p0, int mc, int kc, float* dst) where TSrc : struct, IFloatSource
    {
        const int S = PackedSgemm.KC;
        const int MR = PackedSgemm.MR;
        int size = a.DType.SizeOf();
        if (a.ColStride == 1)
        {
            for (int i = 0; i < mc; i++) TSrc.Load(a.At(i0 + i, p0), dst + (long)i * S, kc);
        }
        else
        {
            // Rows are strided (a transposed operand, typically): walk k in the outer loop so that the MR
            // elements read for one k sit next to each other in memory when the row stride is 1.
            nint origin = a.At(i0, p0);
            long rs = a.RowStride, cs = a.ColStride;
            for (int i = 0; i < mc; i += MR)
            {
                int rows = Math.Min(MR, mc - i);
                float* d = dst + (long)i * S;
                nint src = origin + (nint)(i * rs * size);
                for (int k = 0; k < kc; k++)
                {
                    long ko = k * cs;
                    for (int r = 0; r < rows; r++) d[r * S + k] = TSrc.Read(src, r * rs + ko);
                }
            }
        }
        int padded = (mc + MR - 1) / MR * MR;
        for (int i = mc; i < padded; i++) NativeMemory.Clear(dst + (long)i * S, (nuint)kc * sizeof(float));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB<TSrc>(MatrixView b, long p0, long j0, int kc, int nc, int nr, float* dst) where TSrc : struct, IFloatSource
    {
        int size = b.DType.SizeOf();
        long rs = b.RowStride, cs = b.ColStride;
        for (int q = 0; q * nr < nc; q++)
        {
            int w = Math.Min(nr, nc - q * nr);
            float* panel = dst + (long)q * nr * kc;
            nint src = b.At(p0, j0 + (long)q * nr);
            if (cs == 1)
            {
                for (int k = 0; k < kc; k++)
                {
                    TSrc.Load(src + (nint)(k * rs * size), panel + (long)k * nr, w);
                    if (w < nr) NativeMemory.Clear(panel + (long)k * nr + w, (nuint)(nr - w) * sizeof(float));
                }
            }
            else if (rs == 1 && TransposedPacking.CanPack(nr))
            {
                TransposedPacking.Pack<TSrc>(src, cs, kc, w, nr, panel);
            }
            else
            {
                // Columns are strided (for a transposed operand each column is contiguous): read down each
                // column and scatter it into the panel; the panel (kc·nr floats) stays in cache meanwhile.
                for (int j = 0; j < w; j++)
                {
                    nint col = src + (nint)(j * cs * size);
                    float* d = panel + j;
                    for (int k = 0; k < kc; k++) d[(long)k * nr] = TSrc.Read(col, k * rs);
                }
                if (w < nr)
                    for (int k = 0; k < kc; k++) NativeMemory.Clear(panel + (long)k * nr + w, (nuint)(nr - w) * sizeof(float));
            }
        }
    }
}
