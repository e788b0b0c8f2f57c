using Parrot.Tensors;

namespace Parrot.Autograd;

public sealed partial class Variable
{
    /// <summary>The shape a reduction has with keepDim (reduced axes set to 1), and the normalised axes.</summary>
    private (int[] KeepShape, int[] Axes) ReducedShape(int[] axes, string op)
    {
        var all = axes.Length == 0 ? Enumerable.Range(0, Rank).ToArray() : axes.Select(a => Tensor.NormalizeAxis(a, Rank, op)).ToArray();
        var keep = Shape.ToArray();
        foreach (var a in all) keep[a] = 1;
        return (keep, all);
    }

    /// <summary>Sum over <paramref name="axes"/> (all when empty).</summary>
    public Variable Sum(int[] axes, bool keepDim = false)
    {
        var (keepShape, _) = ReducedShape(axes, "Sum");
        var from = Shape.ToArray();
        return Graph.Record("Sum", Value.Sum(axes, keepDim), [this], (_, g) => [g.Reshape(keepShape).Expand(from)]);
    }

    /// <summary>Sum of every element.</summary>
    public Variable Sum() => Sum([], false);

    /// <summary>Mean over <paramref name="axes"/> (all when empty).</summary>
    public Variable Mean(int[] axes, bool keepDim = false)
    {
        var (keepShape, all) = ReducedShape(axes, "Mean");
        var from = Shape.ToArray();
        long count = all.Aggregate(1L, (acc, a) => acc * from[a]);
        return Graph.Record("Mean", Value.Mean(axes, keepDim), [this], (_, g) => [(g / count).Reshape(keepShape).Expand(from)]);
    }

    /// <summary>Mean of every element.</summary>
    public Variable Mean() => Mean([], false);

    /// <summary>Maximum over <paramref name="axes"/>; the gradient is shared evenly between tied maxima (PyTorch's amax).</summary>
    public Variable Max(int[] axes, bool keepDim = false) => Extremum(ReduceOp.Max, axes, keepDim);

    /// <summary>Minimum over <paramref name="axes"/>; ties share the gradient evenly.</summary>
    public Variable Min(int[] axes, bool keepDim = false) => Extremum(ReduceOp.Min, axes, keepDim);

    private Variable Extremum(ReduceOp op, int[] axes, bool keepDim)
    {
        var (keepShape, all) = ReducedShape(axes, op.ToString());
        var y = Value.Reduce(op, axes, keepDim);
        var from = Shape.ToArray();
        return Graph.Record(op.ToString(), y, [this], (n, g) =>
        {
            var x = n.Saved(0);
            var winners = x.Eq(n.Saved(1).Reshape(keepShape)).To(g.DType);
            var count = winners.Sum(all, keepDim: true);
            return [winners * (g.Reshape(keepShape) / count)];
        }, Value, y);
    }

    /// <summary>Variance over <paramref name="axes"/> with PyTorch's correction (1 = unbiased), composed from differentiable ops.</summary>
    public Variable Variance(int[] axes, int correction = 1, bool keepDim = false)
    {
        var (_, all) = ReducedShape(axes, "Variance");
        long count = all.Aggregate(1L, (acc, a) => acc * Shape[a]);
        var d = this - Mean(all, keepDim: true);
        return (d * d).Sum(all, keepDim) / Math.Max(count - correction, 0);
    }
}
