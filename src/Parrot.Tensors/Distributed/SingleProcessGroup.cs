namespace Parrot.Tensors.Distributed;

/// <summary>
/// World size 1: every collective is the identity (reduce-scatter and all-gather copy input to output), so
/// data-parallel code runs unchanged, and bit for bit as the plain single-process code, without a launcher.
/// </summary>
public sealed class SingleProcessGroup(Device device) : ProcessGroup
{
    /// <summary>A group on the CPU.</summary>
    public SingleProcessGroup() : this(Device.Cpu) { }

    /// <inheritdoc/>
    public override int Rank => 0;
    /// <inheritdoc/>
    public override int WorldSize => 1;
    /// <inheritdoc/>
    public override string Backend => "single";
    /// <inheritdoc/>
    public override Device Device { get; } = device;

    /// <inheritdoc/>
    public override PendingCollective StartAllReduce(Tensor tensor, CollectiveOp op = CollectiveOp.Sum)
    {
        CheckTensor(tensor, "AllReduce");
        return PendingCollective.Done;
    }

    /// <inheritdoc/>
    public override PendingCollective StartReduceScatter(Tensor input, Tensor output, CollectiveOp op = CollectiveOp.Sum)
    {
        CheckTensor(input, "ReduceScatter", "input");
        CheckTensor(output, "ReduceScatter", "output");
        CheckParts(output, input, "ReduceScatter");
        Copy(input, output);
        return PendingCollective.Done;
    }

    /// <inheritdoc/>
    public override PendingCollective StartAllGather(Tensor input, Tensor output)
    {
        CheckTensor(input, "AllGather", "input");
        CheckTensor(output, "AllGather", "output");
        CheckParts(input, output, "AllGather");
        Copy(input, output);
        return PendingCollective.Done;
    }

    /// <inheritdoc/>
    public override PendingCollective StartBroadcast(Tensor tensor, int root = 0)
    {
        CheckTensor(tensor, "Broadcast");
        if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), root, "Broadcast: the only rank is 0");
        return PendingCollective.Done;
    }

    /// <inheritdoc/>
    public override void Barrier() { }

    private static void Copy(Tensor from, Tensor to)
    {
        if (ReferenceEquals(from, to) || (from.Storage == to.Storage && from.DataPointer == to.DataPointer)) return;
        using var src = from.Reshape(to.Shape.ToArray());
        to.CopyFrom(src);
    }
}
