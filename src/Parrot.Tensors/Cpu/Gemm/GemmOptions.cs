using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

// The tests of this assembly reach internal knobs and helpers (other families' tests rely on this too).
[assembly: InternalsVisibleTo("Parrot.Tensors.Tests")]

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// Switches of the CPU matrix product, for tests and benchmarks. The defaults pick the fastest path
/// the processor supports; nothing here needs setting in normal use.
/// </summary>
public static class GemmOptions
{
    /// <summary>
    /// When set, the CPU kernels (the float32 product, and through <c>VectorWidth</c> the elementwise ops,
    /// reductions, norms and attention) use their Vector256 forms even where Vector512 is accelerated, so that
    /// the paths taken by machines without AVX-512 (AVX2) can be tested and measured on one that has it.
    /// </summary>
    public static bool ForceVector256 { get; set; }

    /// <summary>
    /// A switch for kernel experiments, 0 unless set. Code under trial reads it to choose the new path (1) or the
    /// old one (0) inside one process, and <c>parrot bench gemm --ab</c> flips it between samples in ABBA order, so
    /// both sides meet the same machine state (on a shared machine that drifts by up to 2× within a minute, timings
    /// of two processes run one after the other were found to swing ±15–50 %, paired samples in one process a few
    /// per cent). A finished change removes its branch: no released kernel reads this switch, so a run of
    /// <c>--ab</c> on a released build measures the same code twice and shows the noise floor of the method.
    /// </summary>
    public static int Experiment { get; set; } = ExperimentFromEnvironment();

    /// <summary>
    /// <c>PARROT_EXPERIMENT</c> as the switch's starting value, so a trial can also run through whole commands
    /// (a decode or training benchmark) in two processes; anything but an integer leaves it 0.
    /// </summary>
    private static int ExperimentFromEnvironment() =>
        int.TryParse(Environment.GetEnvironmentVariable("PARROT_EXPERIMENT"), out int value) ? value : 0;

    /// <summary>True when the Vector512 kernels run.</summary>
    internal static bool UseVector512 => Vector512.IsHardwareAccelerated && !ForceVector256;
}
