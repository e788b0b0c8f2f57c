using System.Runtime.Intrinsics;
using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Tensors.Cpu;

/// <summary>
/// The one choice of vector width for the CPU kernels outside the matrix product. It follows the GEMM's
/// switch, so that <see cref="GemmOptions.ForceVector256"/> sends every kernel down its Vector256 path and
/// a machine with AVX-512 can test (and time) what a machine with only AVX2 runs.
/// </summary>
internal static class VectorWidth
{
    /// <summary>True when the Vector512 paths run: accelerated, and not forced down to 256.</summary>
    public static bool Use512 => GemmOptions.UseVector512;

    /// <summary>True when Vector256 is accelerated (the path taken whenever <see cref="Use512"/> is false).</summary>
    public static bool Use256 => Vector256.IsHardwareAccelerated;
}
