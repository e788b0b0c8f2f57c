namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// A register-tiled micro-kernel: C[MR × NR] (+)= A sliver · B micro-panel over kc steps. The packed driver
/// is generic over the kernel struct, so each kernel gets its own specialised driver and a direct call.
/// </summary>
internal unsafe interface IMicroKernel
{
    /// <summary>Columns of the tile (the width of a B micro-panel).</summary>
    static abstract int NR { get; }

    /// <summary>
    /// Computes the MR × NR tile: <paramref name="a"/> is an A sliver (MR rows with row stride
    /// <see cref="PackedSgemm.KC"/>), <paramref name="b"/> a micro-panel (NR floats per k). Stores into
    /// <paramref name="c"/> (row stride <paramref name="ldc"/>), adding to what is there when
    /// <paramref name="accumulate"/> is set.
    /// </summary>
    static abstract void Run(float* a, float* b, int kc, float* c, long ldc, bool accumulate);
}
