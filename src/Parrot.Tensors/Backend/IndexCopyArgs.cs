namespace Parrot.Tensors;

/// <summary>
/// The argument checks of <see cref="IBackend.IndexCopy"/> that need no index value, shared by the backends. The op has
/// no Tensor front-end, so each backend checks its own arguments; the CUDA launcher must refuse what the CPU refuses,
/// because its kernel trusts the layout: a src longer than dst along another dimension, or of a wider dtype, would
/// store past dst's end or read past src's, and a float index would be read as int64 (past its end).
/// </summary>
internal static class IndexCopyArgs
{
    /// <summary>
    /// Throws unless the tensors are alive and on one device, <paramref name="index"/> is 1-D int64/int32,
    /// <paramref name="src"/> has dst's dtype and dst's shape with the index's length at <paramref name="axis"/> (in
    /// range), and dst has no broadcast (stride 0, size &gt; 1) dimension. The index values are each backend's to check.
    /// </summary>
    internal static void Check(Tensor dst, int axis, Tensor index, Tensor src)
    {
        const string op = "IndexCopy";
        ArgumentNullException.ThrowIfNull(dst);
        ArgumentNullException.ThrowIfNull(index);
        ArgumentNullException.ThrowIfNull(src);
        dst.EnsureAlive(op);
        index.EnsureAlive(op);
        src.EnsureAlive(op);
        if (index.Device != dst.Device || src.Device != dst.Device)
            throw new ArgumentException($"{op}: dst is on {dst.Device}, index on {index.Device} and src on {src.Device}; all three must be on one device");
        if (index.DType is not (DType.I64 or DType.I32))
            throw new ArgumentException($"{op}: index must be int64 or int32, got {index.DType.Name()}");
        if (index.Rank != 1)
            throw new ArgumentException($"{op}: the index must be 1-D, got {index.ShapeString()}");
        if (src.DType != dst.DType)
            throw new ArgumentException($"{op}: src is {src.DType.Name()} but dst is {dst.DType.Name()}");
        if ((uint)axis >= (uint)dst.Rank)
            throw new ArgumentOutOfRangeException(nameof(axis), $"{op}: axis {axis} is out of range for dst {dst.ShapeString()}");
        int k = index.Dim(0);
        bool shapeOk = src.Rank == dst.Rank;
        for (int d = 0; shapeOk && d < dst.Rank; d++) shapeOk = src.Dim(d) == (d == axis ? k : dst.Dim(d));
        if (!shapeOk)
            throw new ArgumentException($"{op}: src {src.ShapeString()} must have dst {dst.ShapeString()}'s shape with size {k} (the index's length) at axis {axis}");
        for (int d = 0; d < dst.Rank; d++)
            if (dst.Strides[d] == 0 && dst.Dim(d) > 1)
                throw new ArgumentException($"{op}: dst {dst.ShapeString()} is a broadcast view (dimension {d} has stride 0); copy into a contiguous tensor");
    }
}
