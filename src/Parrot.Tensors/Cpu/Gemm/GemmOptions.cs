using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

// The GEMM tests reach the schedule's size knobs (below) to cover paths that otherwise need huge matrices.
[assembly: InternalsVisibleTo("Parrot.Tensors.Tests")]

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// Switches of the CPU matrix product, for tests and benchmarks. The defaults pick the fastest path
/// the processor supports; nothing here needs setting in normal use.
/// </summary>
public static class GemmOptions
{
    /// <summary>
    /// When set, the float32 product uses its Vector256 kernels even where Vector512 is accelerated,
    /// so that the path taken by machines without AVX-512 can be tested and measured on one that has it.
    /// </summary>
    public static bool ForceVector256 { get; set; }

    /// <summary>True when the Vector512 kernels run.</summary>
    internal static bool UseVector512 => Vector512.IsHardwareAccelerated && !ForceVector256;

    /// <summary>
    /// Bytes of A that the threads pack ahead and share at a time; a larger A is processed in chunks of rows.
    /// 32 MiB keeps the shared block within reach of L3 while covering 4096 × 2048 float32 at once.
    /// </summary>
    internal static long SharedRowsBytes { get; set; } = 32L << 20;

    /// <summary>
    /// Column ranges of C per thread in the multi-threaded packed product: several, so that a thread slowed by
    /// other work on the machine simply takes fewer. 1 gives each thread one fixed block of columns.
    /// </summary>
    internal static int ColumnRangesPerWorker { get; set; } = 6;

    /// <summary>Fewest micro-panels (of 64 columns) in a column range: each reuses the packed A block from L2 that many times.</summary>
    internal static int MinRangeTiles { get; set; } = 1;
}
