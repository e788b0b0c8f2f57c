using System.Globalization;

namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// The decode step's switches as they stand now (programmatic launches, the gemv kernel and its lean form, L2
    /// prefetch and K split, the norm and RoPE fusions, keys per decode-attention range, tensor-core decode attention),
    /// one "name=value" each: benchmark records carry it, so an A/B result names what it ran rather than what its file
    /// name says.
    /// </summary>
    public string DecodeSwitches => string.Create(CultureInfo.InvariantCulture,
        $"pdl={Bit(ProgrammaticLaunches)} gemv={Bit(GemvKernel)} lean={Bit(GemvLean)} prefetch_mib={PrefetchMib(GemvPrefetchBytes)} warps_per_sm={GemvWarpsPerSm} " +
        $"norm_gemv={Bit(NormGemvKernel)} rope_fused={Bit(DecodeRopeFused)} min_keys={DecodeMinKeys} mma={Bit(DecodeMma)}");

    private static int Bit(bool on) => on ? 1 : 0;

    /// <summary>
    /// A prefetch budget in MiB, exactly: whole MiB as an integer ("64"), any other budget as the exact decimal fraction
    /// ("0.5", "1.0009765625" for 1 MiB + 1 KiB); a shift by 20 showed such a budget truncated (0 for half a MiB, which
    /// read as off).
    /// </summary>
    internal static string PrefetchMib(long bytes) => ((decimal)bytes / (1L << 20)).ToString(CultureInfo.InvariantCulture);
}
