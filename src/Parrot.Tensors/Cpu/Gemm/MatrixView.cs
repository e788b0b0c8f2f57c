using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// A matrix operand as the GEMM reads it: element (i, j) is at
/// <c>Data + (i·RowStride + j·ColStride)·sizeof(DType)</c>. Any strides are allowed, so transposed and
/// sliced tensors are read in place; packing absorbs the layout.
/// </summary>
internal readonly struct MatrixView(nint data, DType dtype, long rowStride, long colStride)
{
    /// <summary>Address of element (0, 0).</summary>
    public nint Data { get; } = data;

    /// <summary>Element type.</summary>
    public DType DType { get; } = dtype;

    /// <summary>Elements between rows.</summary>
    public long RowStride { get; } = rowStride;

    /// <summary>Elements between columns.</summary>
    public long ColStride { get; } = colStride;

    /// <summary>Address of element (i, j).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint At(long i, long j) => Data + (nint)((i * RowStride + j * ColStride) * DType.SizeOf());

    /// <summary>The same matrix with rows and columns swapped (no copy).</summary>
    public MatrixView Transposed => new(Data, DType, ColStride, RowStride);

    /// <summary>The sub-matrix starting at element (i, j).</summary>
    public MatrixView From(long i, long j) => new(At(i, j), DType, RowStride, ColStride);
}
