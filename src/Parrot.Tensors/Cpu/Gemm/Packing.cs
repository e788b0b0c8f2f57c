using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
            // Rows are strided (a transposed operand, typically). With unit row stride, 16 × 16 blocks are
            // transposed in registers; the rest walks k in the outer loop so that the MR elements read for
            // one k sit next to each other in memory when the row stride is 1.
            nint origin = a.At(i0, p0);
            long rs = a.RowStride, cs = a.ColStride;
            int done = 0;
            if (rs == 1 && GemmOptions.UseVector512)
            {
                var block = stackalloc Vector512<float>[16];
                int kFull = kc / 16 * 16;
                for (; done + 16 <= mc; done += 16)
                {
                    nint rows = origin + (nint)(done * size);
                    for (int k = 0; k < kFull; k += 16)
                    {
                        for (int t = 0; t < 16; t++) block[t] = TSrc.Load512(rows + (nint)((k + t) * cs * size), 0);
                        Transpose16.InPlace(block);
                        for (int t = 0; t < 16; t++) block[t].Store(dst + (long)(done + t) * S + k);
                    }
                    for (int k = kFull; k < kc; k++)
                        for (int t = 0; t < 16; t++) dst[(long)(done + t) * S + k] = TSrc.Read(rows, t + k * cs);
                }
            }
            else if (rs == 1 && Avx.IsSupported)
            {
                var block = stackalloc Vector256<float>[8];
                int kFull = kc / 8 * 8;
                for (; done + 8 <= mc; done += 8)
                {
                    nint rows = origin + (nint)(done * size);
                    for (int k = 0; k < kFull; k += 8)
                    {
                        for (int t = 0; t < 8; t++) block[t] = TSrc.Load256(rows + (nint)((k + t) * cs * size), 0);
                        Transpose8.InPlace(block);
                        for (int t = 0; t < 8; t++) block[t].Store(dst + (long)(done + t) * S + k);
                    }
                    for (int k = kFull; k < kc; k++)
                        for (int t = 0; t < 8; t++) dst[(long)(done + t) * S + k] = TSrc.Read(rows, t + k * cs);
                }
            }
            for (int i = done; i < mc; i += MR)
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
        int q0 = 0;
        if (cs == 1) q0 = PackRowMajorPanels<TSrc>(b, p0, j0, kc, nc, nr, dst);
        for (int q = q0; q * nr < nc; q++)
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
            else if (rs == 1 && (GemmOptions.UseVector512 || Avx.IsSupported))
            {
                // Columns are contiguous (a transposed operand, e.g. Wᵀ of a linear layer): square blocks
                // are loaded column by column and transposed in registers into panel rows.
                PackColumnMajor<TSrc>(src, cs * size, kc, w, nr, panel);
            }
            else
            {
                // Columns are strided: read down each column and scatter it into the panel; the panel
                // (kc·nr floats) stays in cache meanwhile.
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

    /// <summary>
    /// The whole micro-panels (nr columns each) of a row-major block, row by row: each row of B is read front to back
    /// across all the panels. Panel by panel instead, every row gave 64 bytes (nr = 16) and the next row lay on another
    /// page, where the hardware prefetchers stop (paired on Zen 3, 2 threads: 1.31–1.36× at 17–64 rows × 896–4864,
    /// 1.06× at 128 rows, 1.16× at 2048³). Returns how many panels were packed (the last, partial one is not).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int PackRowMajorPanels<TSrc>(in MatrixView b, long p0, long j0, int kc, int nc, int nr, float* dst) where TSrc : struct, IFloatSource
    {
        int full = nc / nr;
        long panelFloats = (long)nr * kc;
        for (int k = 0; k < kc; k++)
        {
            nint row = b.At(p0 + k, j0);
            float* d = dst + (long)k * nr;
            for (int q = 0; q < full; q++, d += panelFloats)
                for (int t = 0; t < nr; t += 8) TSrc.Load256(row, (long)q * nr + t).Store(d + t);
        }
        return full;
    }

    /// <summary>
    /// One micro-panel from a column-major block: column j of the block starts at <paramref name="src"/> +
    /// j·<paramref name="columnBytes"/> and is contiguous along k; with 16 × 16 register transposes where
    /// AVX-512 runs, else 8 × 8 ones (AVX). Panels of fewer than 16 (8) columns are copied element by element.
    /// </summary>
    public static void PackColumnMajor<TSrc>(nint src, long columnBytes, int kc, int w, int nr, float* panel) where TSrc : struct, IFloatSource
    {
        if (GemmOptions.UseVector512) PackColumnMajor16<TSrc>(src, columnBytes, kc, w, nr, panel);
        else PackColumnMajor8<TSrc>(src, columnBytes, kc, w, nr, panel);
    }

    /// <summary>
    /// <see cref="PackColumnMajor{TSrc}"/> with AVX-512: whole 16 × 16 blocks go through <see cref="Transpose16"/>;
    /// the k tail and the last columns (fewer than 16) are copied element by element.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackColumnMajor16<TSrc>(nint src, long columnBytes, int kc, int w, int nr, float* panel) where TSrc : struct, IFloatSource
    {
        var block = stackalloc Vector512<float>[16];
        int j = 0;
        for (; j + 16 <= w; j += 16)
        {
            nint first = src + (nint)(j * columnBytes);
            int k = 0;
            for (; k + 16 <= kc; k += 16)
            {
                for (int t = 0; t < 16; t++) block[t] = TSrc.Load512(first + (nint)(t * columnBytes), k);
                Transpose16.InPlace(block);
                for (int t = 0; t < 16; t++) block[t].Store(panel + (long)(k + t) * nr + j);
            }
            for (; k < kc; k++)
                for (int t = 0; t < 16; t++) panel[(long)k * nr + j + t] = TSrc.Read(first + (nint)(t * columnBytes), k);
        }
        PackLastColumns<TSrc>(src, columnBytes, kc, j, w, nr, panel);
    }
    /// <summary><see cref="PackColumnMajor{TSrc}"/> with AVX: whole 8 × 8 blocks go through <see cref="Transpose8"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackColumnMajor8<TSrc>(nint src, long columnBytes, int kc, int w, int nr, float* panel) where TSrc : struct, IFloatSource
    {
        var block = stackalloc Vector256<float>[8];
        int j = 0;
        for (; j + 8 <= w; j += 8)
        {
            nint first = src + (nint)(j * columnBytes);
            int k = 0;
            for (; k + 8 <= kc; k += 8)
            {
                for (int t = 0; t < 8; t++) block[t] = TSrc.Load256(first + (nint)(t * columnBytes), k);
                Transpose8.InPlace(block);
                for (int t = 0; t < 8; t++) block[t].Store(panel + (long)(k + t) * nr + j);
            }
            for (; k < kc; k++)
                for (int t = 0; t < 8; t++) panel[(long)k * nr + j + t] = TSrc.Read(first + (nint)(t * columnBytes), k);
        }
        PackLastColumns<TSrc>(src, columnBytes, kc, j, w, nr, panel);
    }

    /// <summary>Columns [j, w) of a column-major micro-panel element by element (fewer than a transpose block), then the zero padding up to <paramref name="nr"/>.</summary>
    private static void PackLastColumns<TSrc>(nint src, long columnBytes, int kc, int j, int w, int nr, float* panel) where TSrc : struct, IFloatSource
    {
        for (; j < w; j++)
        {
            nint col = src + (nint)(j * columnBytes);
            for (int k = 0; k < kc; k++) panel[(long)k * nr + j] = TSrc.Read(col, k);
        }
        if (w < nr)
            for (int k = 0; k < kc; k++) NativeMemory.Clear(panel + (long)k * nr + w, (nuint)(nr - w) * sizeof(float));
    }
}
