namespace Parrot.Tensors.Formats;

/// <summary>
/// The dtype names a safetensors header may use, their sizes in bits and the <see cref="DType"/> that
/// stores each one (null where ParrotNative has none). Every name the reference implementation knows is
/// listed, so a file with, say, F8_E4M3 or I8 tensors still opens and lists its names and shapes;
/// only loading such a tensor fails.
/// </summary>
internal static class SafetensorsDTypes
{
    /// <summary>One dtype: its header name, its width, our dtype, and its rank in the reference's ordering.</summary>
    internal readonly record struct Entry(string Name, int Bits, DType? Ours, int Order);

    // Order is the position in the reference crate's Dtype enum ("increasing alignment"); its writer
    // sorts tensors by this order, descending, then by name, so that every tensor starts aligned to its
    // element size once the header is padded to 8 bytes. Only the relative order of our eight dtypes
    // matters for writing; the others keep their places for completeness.
    private static readonly Entry[] All =
    [
        new("BOOL", 8, DType.Bool, 0),
        new("F4", 4, null, 1),
        new("F6_E2M3", 6, null, 2),
        new("F6_E3M2", 6, null, 3),
        new("U8", 8, DType.U8, 4),
        new("I8", 8, null, 5),
        new("F8_E5M2", 8, null, 6),
        new("F8_E4M3", 8, null, 7),
        new("F8_E8M0", 8, null, 8),
        new("F8_E4M3FNUZ", 8, null, 9),
        new("F8_E5M2FNUZ", 8, null, 10),
        new("I16", 16, null, 11),
        new("U16", 16, null, 12),
        new("F16", 16, DType.F16, 13),
        new("BF16", 16, DType.BF16, 14),
        new("I32", 32, DType.I32, 15),
        new("U32", 32, null, 16),
        new("F32", 32, DType.F32, 17),
        new("C64", 64, null, 18),
        new("F64", 64, DType.F64, 19),
        new("I64", 64, DType.I64, 20),
        new("U64", 64, null, 21),
    ];

    private static readonly Dictionary<string, Entry> ByName = All.ToDictionary(e => e.Name, StringComparer.Ordinal);

    /// <summary>The names of the dtypes ParrotNative can load, for error messages.</summary>
    public const string SupportedNames = "F32, F16, BF16, F64, I64, I32, U8, BOOL";

    /// <summary>Looks up a header dtype name (case-sensitive, as the reference is).</summary>
    public static bool TryGet(string name, out Entry entry) => ByName.TryGetValue(name, out entry);

    /// <summary>The header name and ordering entry of one of our dtypes.</summary>
    public static Entry Of(DType dtype) => dtype switch
    {
        DType.F32 => ByName["F32"],
        DType.F64 => ByName["F64"],
        DType.BF16 => ByName["BF16"],
        DType.F16 => ByName["F16"],
        DType.I32 => ByName["I32"],
        DType.I64 => ByName["I64"],
        DType.U8 => ByName["U8"],
        DType.Bool => ByName["BOOL"],
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "no safetensors dtype for this dtype"),
    };
}
