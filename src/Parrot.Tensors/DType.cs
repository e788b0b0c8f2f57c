namespace Parrot.Tensors;

/// <summary>Element types a tensor can hold. BF16 and F16 are storage types: kernels compute in float32.</summary>
public enum DType
{
    /// <summary>IEEE 754 binary32.</summary>
    F32,
    /// <summary>IEEE 754 binary64.</summary>
    F64,
    /// <summary>bfloat16, stored as the upper 16 bits of a float32 (a <see cref="ushort"/>).</summary>
    BF16,
    /// <summary>IEEE 754 binary16 (<see cref="Half"/>).</summary>
    F16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Boolean stored as one byte holding 0 or 1.</summary>
    Bool,
}

/// <summary>Facts about each <see cref="DType"/>.</summary>
public static class DTypeInfo
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this DType t) => t switch
    {
        DType.F32 or DType.I32 => 4,
        DType.F64 or DType.I64 => 8,
        DType.BF16 or DType.F16 => 2,
        DType.U8 or DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown dtype"),
    };

    /// <summary>True for F32, F64, BF16 and F16.</summary>
    public static bool IsFloat(this DType t) => t is DType.F32 or DType.F64 or DType.BF16 or DType.F16;

    /// <summary>True for the 16-bit float storage types that compute in float32.</summary>
    public static bool IsHalfStorage(this DType t) => t is DType.BF16 or DType.F16;

    /// <summary>True for I32, I64 and U8.</summary>
    public static bool IsInteger(this DType t) => t is DType.I32 or DType.I64 or DType.U8;

    /// <summary>Lower-case name as PyTorch prints it (float32, bfloat16, int64 ...).</summary>
    public static string Name(this DType t) => t switch
    {
        DType.F32 => "float32",
        DType.F64 => "float64",
        DType.BF16 => "bfloat16",
        DType.F16 => "float16",
        DType.I32 => "int32",
        DType.I64 => "int64",
        DType.U8 => "uint8",
        DType.Bool => "bool",
        _ => t.ToString(),
    };

    /// <summary>
    /// The dtype of a binary op's result (PyTorch-style promotion between tensors): floats win over
    /// integers, wider wins over narrower, BF16 with F16 gives F32, anything with Bool gives the other.
    /// </summary>
    public static DType Promote(DType a, DType b)
    {
        if (a == b) return a;
        if (a == DType.Bool) return b;
        if (b == DType.Bool) return a;
        if (a.IsFloat() || b.IsFloat())
        {
            if (a == DType.F64 || b == DType.F64) return DType.F64;
            if (a == DType.F32 || b == DType.F32) return DType.F32;
            if (a.IsFloat() && b.IsFloat()) return DType.F32; // BF16 with F16
            return a.IsFloat() ? a : b;
        }
        if (a == DType.I64 || b == DType.I64) return DType.I64;
        return DType.I32; // I32 with U8
    }
}
