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
        $"pdl={Bit(ProgrammaticLaunches)} gemv={Bit(GemvKernel)} lean={Bit(GemvLean)} prefetch_mib={GemvPrefetchBytes >> 20} warps_per_sm={GemvWarpsPerSm} " +
        $"norm_gemv={Bit(NormGemvKernel)} rope_fused={Bit(DecodeRopeFused)} min_keys={DecodeMinKeys} mma={Bit(DecodeMma)}");

    private static int Bit(bool on) => on ? 1 : 0;
}
