namespace Parrot.Tensors.Cpu;

/// <summary>
/// The CPU backend: vectorised C# kernels, one op family per file in this folder. Integer and float
/// kernels share code through generic math over a compute type (float, double or long); BF16 and F16
/// tensors are widened to float32 for computing and rounded back on store.
/// </summary>
public sealed partial class CpuBackend : IBackend
{
    /// <summary>The one CPU backend.</summary>
    public static CpuBackend Instance { get; } = new();

    private CpuBackend() { }

    /// <inheritdoc/>
    public Device Device => Device.Cpu;

    /// <inheritdoc/>
    public Storage Allocate(long bytes, bool zero) => NativeStorage.Allocate(bytes, zero);

    /// <summary>The compute type kernels use for a dtype: float, double or long.</summary>
    internal static ComputeType ComputeTypeOf(DType dt) => dt switch
    {
        DType.F32 or DType.BF16 or DType.F16 => ComputeType.Float,
        DType.F64 => ComputeType.Double,
        _ => ComputeType.Long,
    };

    /// <summary>Strides of each operand, for <see cref="StridedLoop"/>.</summary>
    internal static long[][] StridesOf(params Tensor[] ts)
    {
        var r = new long[ts.Length][];
        for (int i = 0; i < ts.Length; i++) r[i] = ts[i].Strides.ToArray();
        return r;
    }

    /// <summary>Offsets of each operand, for <see cref="StridedLoop"/>.</summary>
    internal static long[] OffsetsOf(params Tensor[] ts)
    {
        var r = new long[ts.Length];
        for (int i = 0; i < ts.Length; i++) r[i] = ts[i].Offset;
        return r;
    }
}

/// <summary>The arithmetic type a kernel runs in.</summary>
internal enum ComputeType
{
    /// <summary>float32 (F32, BF16, F16).</summary>
    Float,
    /// <summary>float64.</summary>
    Double,
    /// <summary>64-bit integer (I32, I64, U8, Bool).</summary>
    Long,
}
