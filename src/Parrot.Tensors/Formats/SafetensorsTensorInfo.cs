namespace Parrot.Tensors.Formats;

/// <summary>
/// What a safetensors header says about one tensor, already validated: its dtype, shape and where its
/// bytes lie. Reading an info touches no tensor data.
/// </summary>
public sealed class SafetensorsTensorInfo
{
    private readonly int[] _shape;

    internal SafetensorsTensorInfo(string file, string name, string formatDType, DType? dtype, int[] shape,
        long elementCount, long dataBegin, long dataEnd, long dataStart)
    {
        File = file;
        Name = name;
        FormatDType = formatDType;
        DType = dtype;
        _shape = shape;
        ElementCount = elementCount;
        DataBegin = dataBegin;
        DataEnd = dataEnd;
        FileOffset = dataStart + dataBegin;
    }

    /// <summary>The file holding the tensor.</summary>
    public string File { get; }

    /// <summary>The tensor's name (its key in the header).</summary>
    public string Name { get; }

    /// <summary>The dtype as the header spells it: "F32", "BF16", "I8", "F8_E4M3" ...</summary>
    public string FormatDType { get; }

    /// <summary>The dtype ParrotNative stores it in, or null when it has none (the tensor cannot be loaded).</summary>
    public DType? DType { get; }

    /// <summary>True when <see cref="DType"/> is known, so the tensor can be loaded.</summary>
    public bool IsSupported => DType is not null;

    /// <summary>Sizes of the dimensions (empty for a 0-dimensional tensor).</summary>
    public ReadOnlySpan<int> Shape => _shape;

    /// <summary>Number of elements (the product of the shape).</summary>
    public long ElementCount { get; }

    /// <summary>Start of the tensor's bytes, counted from the start of the data section (the header's first offset).</summary>
    public long DataBegin { get; }

    /// <summary>End (exclusive) of the tensor's bytes, counted from the start of the data section.</summary>
    public long DataEnd { get; }

    /// <summary>Number of bytes the tensor occupies.</summary>
    public long ByteLength => DataEnd - DataBegin;

    /// <summary>Start of the tensor's bytes, counted from the start of the file.</summary>
    public long FileOffset { get; }

    /// <summary>"name: BF16 [2, 3], bytes 0..12".</summary>
    public override string ToString() =>
        $"{FormatText.Printable(Name)}: {FormatDType} {Tensor.FormatShape(_shape)}, bytes {DataBegin}..{DataEnd}";
}
