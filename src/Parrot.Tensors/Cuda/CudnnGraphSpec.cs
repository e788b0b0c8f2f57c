using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// One tensor of a cuDNN operation graph: its unique id (the variant pack's key for non-virtual tensors), cudnnDataType_t,
/// dimensions and element strides, whether it only lives inside the fused kernel (virtual), whether it is a host scalar
/// passed by value, and its reordering (F16x16 marks the backward's float32 dQ accumulator).
/// </summary>
internal sealed record CudnnTensorSpec(long Uid, string Name, int DataType, long[] Dims, long[] Strides,
    bool Virtual = false, bool ByValue = false, int Reordering = Cudnn.Reordering.None);

/// <summary>One operation of a cuDNN operation graph (what cudnn-frontend's nodes lower to).</summary>
internal abstract record CudnnOpSpec(string Name);

/// <summary>
/// A pointwise operation: y = mode(x[, b[, t]]) computed in <paramref name="ComputeType"/>; b and t broadcast over
/// their dimensions of size 1. GEN_INDEX writes each element's index along <paramref name="Axis"/>; BINARY_SELECT is
/// y = t ? x : b.
/// </summary>
internal sealed record CudnnPointwiseSpec(string Name, int Mode, int ComputeType, CudnnTensorSpec X, CudnnTensorSpec? B, CudnnTensorSpec? T,
    CudnnTensorSpec Y, long Axis = -1) : CudnnOpSpec(Name);

/// <summary>A reduction (ADD or MAX, float32) of x over the dimensions where y is smaller (size 1, or a whole group of heads).</summary>
internal sealed record CudnnReductionSpec(string Name, int Operator, CudnnTensorSpec X, CudnnTensorSpec Y) : CudnnOpSpec(Name);

/// <summary>c = a·b over the last two dimensions, float32 accumulation; a batch dimension of a or b divides c's (GQA heads).</summary>
internal sealed record CudnnMatmulSpec(string Name, CudnnTensorSpec A, CudnnTensorSpec B, CudnnTensorSpec C) : CudnnOpSpec(Name);

/// <summary>y reads x's elements through y's own dimensions and strides (a transposed view of the same memory).</summary>
internal sealed record CudnnReshapeSpec(string Name, CudnnTensorSpec X, CudnnTensorSpec Y) : CudnnOpSpec(Name);

/// <summary>
/// A cuDNN operation graph as data: tensors, operations in the order they are created, and the values of the
/// by-value scalars that are constants of the graph (the attention scale is not one: it is passed at each call).
/// Built without cuDNN (<see cref="CudnnSdpaGraphs"/>), so the node list can be checked on any machine, and lowered
/// to backend descriptors by <see cref="CudnnGraphPlan"/>.
/// </summary>
internal sealed class CudnnGraphSpec
{
    private long _nextVirtual = 100;

    internal List<CudnnTensorSpec> Tensors { get; } = [];
    internal List<CudnnOpSpec> Ops { get; } = [];

    /// <summary>Values of constant by-value scalars, by uid (float32 or int32 as the tensor's data type says).</summary>
    internal Dictionary<long, double> Constants { get; } = [];

    /// <summary>The non-virtual tensors, in uid order: what the variant pack must bind.</summary>
    internal IEnumerable<CudnnTensorSpec> Bound => Tensors.Where(t => !t.Virtual).OrderBy(t => t.Uid);

    internal CudnnTensorSpec Add(CudnnTensorSpec t)
    {
        if (Tensors.Any(x => x.Uid == t.Uid)) throw new InvalidOperationException($"cuDNN graph: uid {t.Uid} ({t.Name}) used twice");
        Tensors.Add(t);
        return t;
    }

    /// <summary>A virtual tensor (intermediate) with a fresh uid.</summary>
    internal CudnnTensorSpec Virtual(string name, int dataType, long[] dims, long[] strides) =>
        Add(new CudnnTensorSpec(_nextVirtual++, name, dataType, dims, strides, Virtual: true));

    /// <summary>A by-value constant scalar of <paramref name="rank"/> unit dimensions.</summary>
    internal CudnnTensorSpec Constant(long uid, string name, int dataType, double value, int rank = 4)
    {
        var t = Add(new CudnnTensorSpec(uid, name, dataType, Ones(rank), Ones(rank), ByValue: true));
        Constants[uid] = value;
        return t;
    }

    internal static long[] Ones(int rank) => Enumerable.Repeat(1L, rank).ToArray();

    /// <summary>Row-major (packed) strides of <paramref name="dims"/>.</summary>
    internal static long[] Packed(params long[] dims)
    {
        var s = new long[dims.Length];
        long acc = 1;
        for (int i = dims.Length - 1; i >= 0; i--) { s[i] = acc; acc *= dims[i]; }
        return s;
    }

    /// <summary>y = mode(x[, b[, t]]) into a new virtual tensor of x's dimensions and strides, of <paramref name="outType"/>.</summary>
    internal CudnnTensorSpec Pointwise(string name, int mode, int compute, CudnnTensorSpec x, CudnnTensorSpec? b = null, CudnnTensorSpec? t = null,
        int outType = Cudnn.DataType.Float, long axis = -1, CudnnTensorSpec? into = null)
    {
        var y = into ?? Virtual(name, outType, x.Dims, x.Strides);
        Ops.Add(new CudnnPointwiseSpec(name, mode, compute, x, b, t, y, axis));
        return y;
    }

    internal CudnnTensorSpec Reduction(string name, int op, CudnnTensorSpec x, CudnnTensorSpec y)
    {
        Ops.Add(new CudnnReductionSpec(name, op, x, y));
        return y;
    }

    internal CudnnTensorSpec Matmul(string name, CudnnTensorSpec a, CudnnTensorSpec b, CudnnTensorSpec c)
    {
        Ops.Add(new CudnnMatmulSpec(name, a, b, c));
        return c;
    }

    internal CudnnTensorSpec Reshape(string name, CudnnTensorSpec x, CudnnTensorSpec y)
    {
        Ops.Add(new CudnnReshapeSpec(name, x, y));
        return y;
    }
}
