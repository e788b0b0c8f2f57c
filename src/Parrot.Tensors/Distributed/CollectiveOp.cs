namespace Parrot.Tensors.Distributed;

/// <summary>How a reducing collective combines the ranks' tensors, element by element.</summary>
public enum CollectiveOp
{
    /// <summary>The sum over ranks.</summary>
    Sum,
    /// <summary>The sum over ranks divided by the world size.</summary>
    Average,
    /// <summary>The largest value over ranks.</summary>
    Max,
}
