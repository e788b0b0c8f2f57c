using Parrot.Tensors;

namespace Parrot.Autograd;

/// <summary>Undoing broadcasting in backward: a gradient of the broadcast shape summed back to an input's shape.</summary>
internal static class Broadcast
{
    /// <summary>Sums <paramref name="g"/> over the dims that broadcasting added or stretched to reach <paramref name="shape"/>.</summary>
    public static Tensor SumTo(Tensor g, ReadOnlySpan<int> shape)
    {
        if (g.Shape.SequenceEqual(shape)) return g;
        int lead = g.Rank - shape.Length;
        var axes = new List<int>();
        for (int d = 0; d < g.Rank; d++)
            if (d < lead || (shape[d - lead] == 1 && g.Shape[d] != 1)) axes.Add(d);
        using var summed = g.Sum(axes.ToArray(), keepDim: true);
        return summed.Reshape(shape.ToArray());
    }
}
