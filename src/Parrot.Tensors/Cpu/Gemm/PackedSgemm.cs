using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// The cache-blocked float32 GEMM for shapes with enough rows to amortise packing (Goto's algorithm).
/// Loop nest, outermost first: NC columns of B (the packed panel, KC × NC floats = 4 MiB, lives in L3) →
/// KC steps of k → MC rows of A (the packed block, MC × KC floats, lives in L2 with the current B micro-panel)
/// → NR-wide micro-panels → MR-row slivers → the micro-kernel. One call runs on one thread with its own
/// workspace; <see cref="Sgemm"/> splits C between threads so that they never synchronise.
/// </summary>
internal static unsafe class PackedSgemm
{
    /// <summary>Rows of the micro-tile.</summary>
    public const int MR = 6;

    /// <summary>Depth of a packed block: the row stride of the packed A block, fixed at compile time.</summary>
    public const int KC = 512;

    /// <summary>Rows of the packed A block (a multiple of <see cref="MR"/>).</summary>
    public const int MC = 144;

    /// <summary>Columns of the packed B panel (a multiple of every kernel's NR).</summary>
    public const int NC = 2048;

    /// <summary>
    /// C[0..m, 0..n] = A · B (float32, C row stride <paramref name="ldc"/>, unit column stride), k ≥ 1,
    /// with the micro-kernel <typeparamref name="TKernel"/>, on the calling thread alone.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run<TKernel>(in MatrixView a, in MatrixView b, float* c, long ldc, int m, int n, int k, GemmWorkspace ws)
        where TKernel : struct, IMicroKernel
    {
        float* packA = ws.PackA, packB = ws.PackB;
        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc);
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                Packing.PackB(b, pc, jc, kc, nc, TKernel.NR, packB);
                for (int ic = 0; ic < m; ic += MC)
                {
                    int mc = Math.Min(MC, m - ic);
                    Packing.PackA(a, ic, pc, mc, kc, packA);
                    Block<TKernel>(packA, packB, c + ic * ldc + jc, ldc, mc, nc, kc, pc > 0);
                }
            }
        }
    }

    /// <summary>C block [mc × nc] (+)= packed A block · packed B panel: micro-panels outside, slivers inside.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block<TKernel>(float* packA, float* packB, float* c, long ldc, int mc, int nc, int kc, bool accumulate)
        where TKernel : struct, IMicroKernel
    {
        int nr = TKernel.NR;
        // Edge tiles (fewer than MR rows or NR columns left) are computed in full into this buffer from the
        // zero-padded panels, and only their valid part is copied out.
        float* edge = stackalloc float[MR * 64];
        for (int jr = 0; jr < nc; jr += nr)
        {
            int w = Math.Min(nr, nc - jr);
            float* panel = packB + (long)jr * kc;
            for (int ir = 0; ir < mc; ir += MR)
            {
                int h = Math.Min(MR, mc - ir);
                float* sliver = packA + (long)ir * KC;
                float* tile = c + ir * ldc + jr;
                if (h == MR && w == nr)
                {
                    TKernel.Run(sliver, panel, kc, tile, ldc, accumulate);
                }
                else
                {
                    TKernel.Run(sliver, panel, kc, edge, nr, false);
                    CopyEdge(edge, nr, tile, ldc, h, w, accumulate);
                }
            }
        }
    }

    private static void CopyEdge(float* edge, int nr, float* c, long ldc, int h, int w, bool accumulate)
    {
        for (int r = 0; r < h; r++)
        {
            float* src = edge + r * nr;
            float* dst = c + r * ldc;
            if (accumulate) for (int j = 0; j < w; j++) dst[j] += src[j];
            else for (int j = 0; j < w; j++) dst[j] = src[j];
        }
    }
}
