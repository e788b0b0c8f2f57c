using Parrot.Tensors;

namespace Parrot.Autograd;

/// <summary>
/// A differentiable value: a <see cref="Tensor"/>, the node of the graph that produced it (none for
/// leaves), and — for leaves that require gradients — the accumulated gradient. Ops on variables
/// compute their value at once and, when any input requires a gradient and no <see cref="Graph.NoGrad"/>
/// scope is open, record a node whose backward rule maps the output gradient to input gradients.
/// </summary>
public sealed partial class Variable
{
    private bool _requiresGrad;

    /// <summary>The value.</summary>
    public Tensor Value { get; private set; }

    /// <summary>The accumulated gradient of a leaf (null until a backward pass reaches it, or after <see cref="ZeroGrad"/>).</summary>
    public Tensor? Grad { get; private set; }

    /// <summary>The node that produced this value; null for leaves.</summary>
    public Node? GradFn { get; }

    /// <summary>An optional name (parameters carry their state-dict key), used in error messages.</summary>
    public string? Name { get; set; }

    /// <summary>Wraps a tensor as a leaf. The variable does not own the tensor's lifetime beyond what its scope decides.</summary>
    public Variable(Tensor value, bool requiresGrad = false, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(value);
        Value = value;
        Name = name;
        RequiresGrad = requiresGrad;
    }

    internal Variable(Tensor value, Node node)
    {
        Value = value;
        GradFn = node;
        _requiresGrad = true;
    }

    /// <summary>True for values not produced by a recorded op.</summary>
    public bool IsLeaf => GradFn is null;

    /// <summary>Whether gradients flow to (leaf) or through (non-leaf) this value. Only leaves can change it.</summary>
    public bool RequiresGrad
    {
        get => _requiresGrad;
        set
        {
            if (!IsLeaf) throw new InvalidOperationException($"RequiresGrad can only be set on leaves; {Describe()} was produced by {GradFn!.Name}");
            if (value && !Value.DType.IsFloat())
                throw new ArgumentException($"only float tensors can require gradients; {Describe()} is {Value.DType.Name()}");
            _requiresGrad = value;
        }
    }

    /// <summary>Shape of the value.</summary>
    public ReadOnlySpan<int> Shape => Value.Shape;

    /// <summary>Rank of the value.</summary>
    public int Rank => Value.Rank;

    /// <summary>dtype of the value.</summary>
    public DType DType => Value.DType;

    /// <summary>
    /// Gives a leaf a new value (PyTorch's <c>param.data = ...</c>): a cast to another dtype, a move to
    /// another device. The gradient is dropped; the caller owns the old value.
    /// </summary>
    public void ReplaceValue(Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (!IsLeaf) throw new InvalidOperationException($"ReplaceValue: {Describe()} is not a leaf");
        if (_requiresGrad && !value.DType.IsFloat()) throw new ArgumentException($"ReplaceValue: {Describe()} requires gradients but the new value is {value.DType.Name()}");
        ZeroGrad();
        Value = value;
    }

    /// <summary>A leaf sharing this value (a view), cut from the graph.</summary>
    public Variable Detach() => new(Value.Alias());

    /// <summary>Drops the accumulated gradient (its memory is freed).</summary>
    public void ZeroGrad()
    {
        Grad?.Dispose();
        Grad = null;
    }

    /// <summary>Adds <paramref name="g"/> into the leaf's gradient; the gradient tensor is kept out of any open scope.</summary>
    /// <param name="g">The gradient arriving (the graph disposes its view after this call).</param>
    /// <param name="exclusive">
    /// True when no other tensor can read or write g's elements (the graph checked every holder of its storage): the
    /// variable may then keep g itself.
    /// </param>
    internal void AccumulateGrad(Tensor g, bool exclusive)
    {
        if (Grad is null)
        {
            // The gradient outlives the step's scope: the variable needs a tensor of its own. The one arriving usually
            // is just that (a fresh result, or a row range of one that only other leaves' disjoint ranges share, as
            // SplitLinear's packed q/k/v weight gradient): then an alias keeps it with no copy (a device-to-device memcpy
            // per parameter per step saved). Elements another tensor can see (one gradient handed to two inputs) are
            // copied, since the optimizer, clipping and accumulation write into Grad in place.
            var own = g.DType != Value.DType || !g.IsContiguous ? g.To(Value.DType) : exclusive ? g.Alias() : g.Clone();
            Grad = TensorScope.Detach(own);
        }
        else
        {
            using var sum = Grad + g;
            Grad.CopyFrom(sum);
        }
    }

    /// <summary>
    /// Back-propagates from this value. A scalar needs no seed (the gradient of itself is 1); otherwise
    /// <paramref name="gradient"/> gives d(objective)/d(this).
    /// </summary>
    public void Backward(Tensor? gradient = null) => Graph.Backward(this, gradient);

    /// <summary>Text for messages: the name if any, else the shape and dtype.</summary>
    public string Describe() => Name is not null ? $"'{Name}' {Value.ShapeString()}" : $"{Value.ShapeString()} {Value.DType.Name()}";

    /// <inheritdoc/>
    public override string ToString() => $"Variable({Describe()}{(GradFn is null ? "" : ", from " + GradFn.Name)})";

    /// <summary>Wraps a tensor as a constant (no gradient).</summary>
    public static implicit operator Variable(Tensor t) => new(t);
}
