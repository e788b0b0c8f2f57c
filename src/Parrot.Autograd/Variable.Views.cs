using Parrot.Tensors;

namespace Parrot.Autograd;

public sealed partial class Variable
{
    private Variable ViewOp(string name, Tensor y, Func<Tensor, Tensor> back) =>
        Graph.Record(name, y, [this], (_, g) => [back(g)]);

    /// <summary>Whether a view of this needs no backward rule (inference: no closure or shape copy is made per view).</summary>
    private bool Untracked => Graph.IsGradDisabled || !RequiresGrad;

    /// <summary>Same data, new shape (one size may be -1).</summary>
    public Variable Reshape(params int[] shape)
    {
        if (Untracked) return new Variable(Value.Reshape(shape));
        var from = Shape.ToArray();
        var y = ViewOp("Reshape", Value.Reshape(shape), g => g.Reshape(from));
        var to = y.Shape.ToArray();
        return y.OfferThrough(this, t => t.TryViewAs(to));
    }

    /// <summary>Flattens dims start..end into one.</summary>
    public Variable Flatten(int start = 0, int end = -1)
    {
        if (Untracked) return new Variable(Value.Flatten(start, end));
        var from = Shape.ToArray();
        return ViewOp("Flatten", Value.Flatten(start, end), g => g.Reshape(from));
    }

    /// <summary>Reorders dims.</summary>
    public Variable Permute(params int[] order)
    {
        var y = Value.Permute(order);
        if (Untracked) return new Variable(y);
        var inverse = new int[order.Length];
        for (int i = 0; i < order.Length; i++) inverse[Tensor.NormalizeAxis(order[i], order.Length, "Permute")] = i;
        var forward = (int[])order.Clone();
        return ViewOp("Permute", y, g => g.Permute(inverse)).OfferThrough(this, t => t.Permute(forward));
    }

    /// <summary>Swaps two dims.</summary>
    public Variable Transpose(int axis0 = -2, int axis1 = -1) =>
        Untracked ? new Variable(Value.Transpose(axis0, axis1))
            : ViewOp("Transpose", Value.Transpose(axis0, axis1), g => g.Transpose(axis0, axis1)).OfferThrough(this, t => t.Transpose(axis0, axis1));

    /// <summary>A range along one dim.</summary>
    public Variable Narrow(int axis, int start, int length)
    {
        var y = Value.Narrow(axis, start, length);
        if (Untracked) return new Variable(y);
        return ViewOp("Narrow", y, g => Scatter(g, t => t.Narrow(axis, start, length)));
    }

    /// <summary>A strided slice along one dim.</summary>
    public Variable Slice(int axis, int? start = null, int? end = null, int step = 1)
    {
        var y = Value.Slice(axis, start, end, step);
        return ViewOp("Slice", y, g => Scatter(g, t => t.Slice(axis, start, end, step)));
    }

    /// <summary>One index along a dim, dropping it.</summary>
    public Variable Select(int axis, int index)
    {
        var y = Value.Select(axis, index);
        return ViewOp("Select", y, g => Scatter(g, t => t.Select(axis, index)));
    }

    /// <summary>Broadcast view; the gradient sums over the expanded dims.</summary>
    public Variable Expand(params int[] shape)
    {
        if (Untracked) return new Variable(Value.Expand(shape));
        var from = Shape.ToArray();
        return ViewOp("Expand", Value.Expand(shape), g => Broadcast.SumTo(g, from));
    }

    /// <summary>Removes size-1 dims (all, or one).</summary>
    public Variable Squeeze(int? axis = null)
    {
        if (Untracked) return new Variable(Value.Squeeze(axis));
        var from = Shape.ToArray();
        return ViewOp("Squeeze", Value.Squeeze(axis), g => g.Reshape(from));
    }

    /// <summary>Inserts a size-1 dim.</summary>
    public Variable Unsqueeze(int axis)
    {
        if (Untracked) return new Variable(Value.Unsqueeze(axis));
        var from = Shape.ToArray();
        return ViewOp("Unsqueeze", Value.Unsqueeze(axis), g => g.Reshape(from));
    }

    /// <summary>A contiguous version (identity for gradients).</summary>
    public Variable Contiguous() => ViewOp("Contiguous", Value.Contiguous(), g => g);

    /// <summary>The gradient of a view of this value: zeros with g written into the viewed region.</summary>
    private Tensor Scatter(Tensor g, Func<Tensor, Tensor> view)
    {
        var full = Tensor.Zeros(Shape, g.DType, g.Device);
        using var region = view(full);
        region.CopyFrom(g);
        return full;
    }
}
