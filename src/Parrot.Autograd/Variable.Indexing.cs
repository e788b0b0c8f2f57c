using Parrot.Tensors;

namespace Parrot.Autograd;

public sealed partial class Variable
{
    /// <summary>Rows of <paramref name="weight"/> [vocab, dim] for <paramref name="ids"/> (any shape); the gradient scatters back into the used rows.</summary>
    public static Variable Embedding(Variable weight, Tensor ids)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var y = Tensor.Embedding(weight.Value, ids);
        // One fused, deterministic backend pass: each used row sums its tokens' gradients in ascending order.
        return Graph.Record("Embedding", y, [weight], (n, g) =>
            [Tensor.EmbeddingBackward(n.Saved(0), g, n.Inputs[0].Shape[0], n.Inputs[0].DType)], ids);
    }

    /// <summary>Entries along <paramref name="axis"/> at the positions of the 1-D <paramref name="index"/>.</summary>
    public Variable IndexSelect(int axis, Tensor index)
    {
        var y = Value.IndexSelect(axis, index);
        int a = Tensor.NormalizeAxis(axis, Rank, "IndexSelect");
        return Graph.Record("IndexSelect", y, [this], (n, g) =>
        {
            // The picked slices add back with the embedding gradient (axis moved to the front): one fused pass,
            // deterministic on every backend, each slice summed in ascending order in float32 and rounded once.
            var gt = a == 0 ? g : g.Transpose(0, a);
            var shape = gt.Shape.ToArray();
            shape[0] = n.Inputs[0].Shape[a];
            int rest = 1;
            for (int d = 1; d < shape.Length; d++) rest *= shape[d];
            using var rows = gt.Reshape(gt.Dim(0), rest);
            using var dw = Tensor.EmbeddingBackward(n.Saved(0), rows, shape[0], n.Inputs[0].DType);
            var r = dw.Reshape(shape);
            if (a == 0) return [r];
            using (r) return [r.Transpose(0, a).Contiguous()];
        }, index);
    }

    /// <summary>torch.gather along <paramref name="axis"/>.</summary>
    public Variable Gather(int axis, Tensor index)
    {
        var y = Value.Gather(axis, index);
        return Graph.Record("Gather", y, [this], (n, g) =>
        {
            var zeros = Tensor.Zeros(n.Inputs[0].Shape, g.DType, g.Device);
            return [zeros.ScatterAdd(axis, n.Saved(0), g)];
        }, index);
    }

    /// <summary>Joins variables along <paramref name="axis"/>; each gets its slice of the gradient.</summary>
    public static Variable Concat(int axis, params Variable[] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        var y = Tensor.Concat(axis, parts.Select(p => p.Value).ToArray());
        int a = Tensor.NormalizeAxis(axis, y.Rank, "Concat");
        var sizes = parts.Select(p => p.Shape[a]).ToArray();
        var dtypes = parts.Select(p => p.DType).ToArray();
        return Graph.Record("Concat", y, parts, (n, g) =>
        {
            var grads = new Tensor?[sizes.Length];
            int start = 0;
            for (int i = 0; i < sizes.Length; i++)
            {
                if (n.NeedsGrad(i)) grads[i] = g.Narrow(a, start, sizes[i]).To(dtypes[i]);
                start += sizes[i];
            }
            return grads;
        });
    }

    /// <summary>Stacks variables along a new axis.</summary>
    public static Variable Stack(int axis, params Variable[] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Length == 0) throw new ArgumentException("Stack: needs at least one variable");
        int a = Tensor.NormalizeAxis(axis, parts[0].Rank + 1, "Stack");
        return Concat(a, parts.Select(p => p.Unsqueeze(a)).ToArray());
    }

    /// <summary>Splits into pieces of the given sizes along <paramref name="axis"/> (views).</summary>
    public Variable[] Split(int axis, params int[] sizes)
    {
        int a = Tensor.NormalizeAxis(axis, Rank, "Split");
        if (sizes.Sum() != Shape[a]) throw new ArgumentException($"Split: sizes [{string.Join(", ", sizes)}] do not add up to dimension {a} of {Value.ShapeString()}");
        var r = new Variable[sizes.Length];
        int start = 0;
        for (int i = 0; i < sizes.Length; i++) { r[i] = Narrow(a, start, sizes[i]); start += sizes[i]; }
        return r;
    }

    /// <summary>Rotary embedding (HF rotate-half); see <see cref="Tensor.ApplyRope(Tensor, Tensor)"/>. Tables are constants.</summary>
    public Variable ApplyRope(Tensor cos, Tensor sin)
    {
        var y = Value.ApplyRope(cos, sin);
        // The rotation is orthogonal: its transpose is the rotation by −θ. Its result is laid out as x is: for q and k,
        // the head split of the projection's output ([B, T, H, D] memory seen as [B, H, T, D]), so the transpose and
        // reshape it goes back through are views, not a copy into [B, T, H·D] (two per layer). Same values.
        // Where x offers a place for its gradient (a packed q/k/v projection's gradient columns, Node.GradientTarget),
        // the rotation is written there and nothing gathers it after.
        var layout = Value.DimensionsByStride();
        return Graph.Record("Rope", y, [this], (n, g) =>
        {
            if (Target(n, 0, g) is not { } into) return [g.ApplyRope(n.Saved(0), -n.Saved(1), layout)];
            g.ApplyRopeInto(n.Saved(0), -n.Saved(1), into);
            return [into];
        }, cos, sin);
    }
}
