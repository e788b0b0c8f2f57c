namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <inheritdoc/>
    public void Reduce(ReduceOp op, Tensor x, int[] axes, Tensor y)
    {
        if (axes.Length == 0) { Copy(x, y); return; }
        var reduced = new HashSet<int>(axes);
        var keptShape = new List<int>(); var keptY = new List<long>(); var keptX = new List<long>();
        var innerShape = new List<int>(); var innerX = new List<long>();
        for (int d = 0; d < x.Rank; d++)
        {
            if (reduced.Contains(d)) { innerShape.Add(x.Shape[d]); innerX.Add(x.Strides[d]); }
            else { keptShape.Add(x.Shape[d]); keptY.Add(y.Strides[d]); keptX.Add(x.Strides[d]); }
        }
        long rows = 1, count = 1;
        foreach (var s in keptShape) rows *= s;
        foreach (var s in innerShape) count *= s;
        if (count == 0 && op is ReduceOp.Max or ReduceOp.Min)
            throw new ArgumentException($"Reduce: {op} over an empty set of elements (reduced axes [{string.Join(", ", axes)}] of {x.ShapeString()})");
        if (rows == 0) return;
        var outer = KernelLayout.Create("Reduce", keptShape.ToArray(), keptY.ToArray(), keptX.ToArray());
        var inner = KernelLayout.Create("Reduce", innerShape.ToArray(), innerX.ToArray());
        using var a = new KernelArgs().Add(outer).Add(rows).Add(inner).Add(count).Add((int)op).Ptr(y).Add(Code(y.DType)).Ptr(x).Add(Code(x.DType));
        _kernels.Launch("reduce.cu", "reduce", CudaKernels.RowGrid(rows), 256, a);
    }

    /// <inheritdoc/>
    public void ArgReduce(ArgReduceOp op, Tensor x, int axis, Tensor y)
    {
        var (L, rows) = RowsLayout("ArgReduce", x, y, axis);
        if (rows == 0) return;
        using var a = new KernelArgs().Add(L).Add(rows).Add((long)x.Shape[axis]).Add(x.Strides[axis])
            .Add(op == ArgReduceOp.ArgMax ? 1 : 0).Ptr(y).Ptr(x).Add(Code(x.DType));
        _kernels.Launch("reduce.cu", "arg_reduce", CudaKernels.RowGrid(rows), 256, a);
    }

    /// <summary>Top-k runs on the CPU backend through a host round-trip (it serves sampling, not training).</summary>
    public void TopK(Tensor x, int k, Tensor values, Tensor indices)
    {
        using var hx = x.To(global::Parrot.Tensors.Device.Cpu);
        using var hv = Tensor.Empty(values.Shape, values.DType);
        using var hi = Tensor.Empty(indices.Shape, indices.DType);
        Cpu.CpuBackend.Instance.TopK(hx, k, hv, hi);
        using var dv = hv.To(Device);
        using var di = hi.To(Device);
        Copy(dv, values);
        Copy(di, indices);
    }

    /// <summary>
    /// The layout of the rows of <paramref name="x"/> along <paramref name="axis"/> (every other dim), with
    /// operands (y, x); y has x's rank (size 1 or the same size on the axis).
    /// </summary>
    private static (KernelLayout Layout, long Rows) RowsLayout(string op, Tensor x, Tensor y, int axis)
    {
        var shape = new List<int>(); var ys = new List<long>(); var xs = new List<long>();
        long rows = 1;
        for (int d = 0; d < x.Rank; d++)
        {
            if (d == axis) continue;
            shape.Add(x.Shape[d]); ys.Add(y.Strides[d]); xs.Add(x.Strides[d]);
            rows *= x.Shape[d];
        }
        return (KernelLayout.Create(op, shape.ToArray(), ys.ToArray(), xs.ToArray()), rows);
    }
}
